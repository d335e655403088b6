"""Create the demo's three users: an admin, an operator and a read-only viewer.

Users this command made are in the ``runboard_demo`` group; only those get the
demo password and role again on a later run. A user of the same name that it
did not make (an installation's own ``admin``, say) is left as it is, so
pointing ``make demo`` at a real database never resets anyone's password.
"""

from __future__ import annotations

from typing import Any

import structlog
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand
from django.db import transaction

from adminpanel.roles import ROLES, ensure_roles

log = structlog.get_logger(__name__)

# Marks the users this command created (a group with no permissions).
DEMO_GROUP = "runboard_demo"


class Command(BaseCommand):
    help = (
        "Create the demo users admin, operator and viewer (or reset those it created); "
        "users of those names it did not create are left alone."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        password = settings.RUNBOARD_DEMO_PASSWORD
        ensure_roles()
        demo, _ = Group.objects.get_or_create(name=DEMO_GROUP)
        groups = {name: Group.objects.get(name=name) for name in ROLES}
        kept = []
        for name in ROLES:
            with transaction.atomic():
                user, created = User.objects.get_or_create(username=name)
                if not created and not user.groups.filter(pk=demo.pk).exists():
                    kept.append(name)
                    log.warning(
                        "demo_user_left_alone",
                        user=name,
                        why="a user of this name exists and was not made by demo_users",
                    )
                    continue
                user.is_staff = name == "admin"
                user.is_superuser = name == "admin"
                user.set_password(password)
                user.save()
                user.groups.set([groups[name], demo])
        port = settings.RUNBOARD_DEMO_PORT
        if kept:
            self.stdout.write(
                f"Left alone (not made by demo_users, password unchanged): {', '.join(kept)}."
            )
        self.stdout.write(
            f"Demo users ready. Log in at http://127.0.0.1:{port}/ as admin, operator or viewer; "
            f"password: {password}"
        )
