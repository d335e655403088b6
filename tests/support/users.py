"""Users in a role, for tests that log in (the pages need at least the viewer role)."""

from __future__ import annotations

from django.contrib.auth.models import Group, User

from adminpanel.roles import ensure_roles


def make_user(username: str, password: str = "pw", role: str | None = "viewer") -> User:
    """A user in ``role``'s group (None: in no group, so allowed nothing)."""
    user = User.objects.create_user(username, password=password)
    if role is not None:
        ensure_roles()
        user.groups.add(Group.objects.get(name=role))
    return user
