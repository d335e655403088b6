"""Admin: channels are edited here; deliveries are a read-only record of every attempt."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from adminpanel.notify.models import Delivery, NotificationChannel


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "gateway", "min_severity", "enabled")
    list_filter = ("kind", "enabled", "min_severity", "gateway")
    search_fields = ("name",)
    fields = ("name", "kind", "url", "recipients", "gateway", "min_severity", "enabled")


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "kind",
        "flag",
        "channel_name",
        "status",
        "attempts",
        "next_attempt_at",
        "sent_at",
        "last_error",
    )
    list_filter = ("status", "kind", "channel_name")
    list_select_related = ("flag",)
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
