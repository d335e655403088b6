from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AdminpanelConfig(AppConfig):
    name = "adminpanel"
    verbose_name = "Runboard"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from adminpanel import logins  # noqa: F401 - connects the login signal receivers
        from adminpanel.roles import ensure_roles

        post_migrate.connect(ensure_roles, sender=self)
