"""The three roles as Django groups, and the permission each page, action and socket needs.

viewer: reads everything; operator: also acts on sessions (one permission per
action); admin: also edits gateways, recovery policies and API tokens. The
groups are (re)made after every ``migrate``, so a new permission reaches them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import Group, Permission
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

View = Callable[..., HttpResponse]

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
ROLES = (VIEWER, OPERATOR, ADMIN)

# What every page, the JSON API's reads and the live socket need.
VIEW = "adminpanel.view_session"
VIEW_AUDIT = "adminpanel.view_auditentry"
# One permission per action (models.ACTION_PERMISSIONS).
ACTION_PERMISSION = {
    "force_clear": "adminpanel.force_clear",
    "requeue": "adminpanel.requeue",
    "abort": "adminpanel.abort",
    "clear_and_requeue": "adminpanel.clear_and_requeue",
}
BULK = "adminpanel.bulk_act"

_VIEWER_CODENAMES = [
    f"view_{model}"
    for model in (
        "gateway",
        "session",
        "run",
        "waiter",
        "timelineevent",
        "dispatchskip",
        "flag",
        "auditentry",
        "recoverypolicy",
    )
]
_OPERATOR_CODENAMES = [
    *_VIEWER_CODENAMES,
    *(p.split(".", 1)[1] for p in ACTION_PERMISSION.values()),
    BULK.split(".", 1)[1],
]
_ADMIN_CODENAMES = [
    *_OPERATOR_CODENAMES,
    *(
        f"{verb}_{model}"
        for model in ("gateway", "recoverypolicy", "apitoken")
        for verb in ("add", "change", "delete", "view")
    ),
]
CODENAMES = {VIEWER: _VIEWER_CODENAMES, OPERATOR: _OPERATOR_CODENAMES, ADMIN: _ADMIN_CODENAMES}


def ensure_roles(**_: Any) -> None:
    """Create the groups and give each exactly its permissions (a post_migrate handler)."""
    for role, codenames in CODENAMES.items():
        group, _created = Group.objects.get_or_create(name=role)
        permissions = Permission.objects.filter(
            content_type__app_label="adminpanel", codename__in=codenames
        )
        group.permissions.set(permissions)


def forbidden(request: HttpRequest, *missing: str) -> HttpResponse:
    """The 403 page: which permission is missing, and what each role may do."""
    return render(request, "adminpanel/forbidden.html", {"missing": missing}, status=403)


def permission_required(*permissions: str) -> Callable[[View], View]:
    """Login required (redirect), then every permission (403 page naming what is missing)."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            missing = [p for p in permissions if not request.user.has_perm(p)]
            if missing:
                return forbidden(request, *missing)
            return view(request, *args, **kwargs)

        return wrapped

    return decorate


view_required = permission_required(VIEW)
