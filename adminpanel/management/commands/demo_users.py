"""Create the demo's three users: an admin, an operator and a read-only viewer."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand

from adminpanel.roles import ROLES, ensure_roles


class Command(BaseCommand):
    help = "Create (or reset) the demo users admin, operator and viewer."

    def handle(self, *args: Any, **options: Any) -> None:
        password = settings.RUNBOARD_DEMO_PASSWORD
        ensure_roles()
        groups = {name: Group.objects.get(name=name) for name in ROLES}
        for name in ROLES:
            user, _ = User.objects.get_or_create(username=name)
            user.is_staff = name == "admin"
            user.is_superuser = name == "admin"
            user.set_password(password)
            user.save()
            user.groups.set([groups[name]])
        port = settings.RUNBOARD_DEMO_PORT
        self.stdout.write(
            f"Demo users ready. Log in at http://127.0.0.1:{port}/ as admin, operator or viewer; "
            f"password: {password}"
        )
