from __future__ import annotations

from django.apps import AppConfig


class AdminpanelConfig(AppConfig):
    name = "adminpanel"
    verbose_name = "Runboard"
    default_auto_field = "django.db.models.BigAutoField"
