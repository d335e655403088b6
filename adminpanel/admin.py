"""Admin: gateways are editable; everything mirrored from a gateway is read-only.

Mirrored state has one writer (``adminpanel.ingest``), so the admin shows it
but never saves it.
"""

from __future__ import annotations

from typing import Any

import structlog
from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from adminpanel.models import (
    ApiToken,
    AuditEntry,
    DispatchSkip,
    Flag,
    Gateway,
    RecoveryPolicy,
    Run,
    Session,
    TimelineEvent,
    Waiter,
)

log = structlog.get_logger(__name__)


class GatewayAdminForm(forms.ModelForm):
    """The gateway token is write-only: never rendered back, blank keeps the stored one.

    A changed URL needs the token entered again (or removed), so a gateway moved to
    another address never receives the old address's token.
    """

    token = forms.CharField(
        label="Token",
        required=False,
        strip=True,
        max_length=500,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: it is never shown again. Leave blank to keep the stored token.",
    )
    clear_token = forms.BooleanField(
        label="Remove the stored token", required=False, help_text="Connect without a token."
    )

    class Meta:
        model = Gateway
        fields = ("name", "url", "token", "enabled", "access")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stored_token: str = self.instance.token  # the form's own copy is overwritten
        self.initial["token"] = ""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        new_token, clear = cleaned.get("token", ""), cleaned.get("clear_token", False)
        if new_token and clear:
            self.add_error("clear_token", "Either enter a new token or remove it, not both.")
        stored = self.instance.pk is not None and bool(self.stored_token)
        moved = self.instance.pk is not None and "url" in self.changed_data
        if moved and stored and not new_token and not clear:
            self.add_error(
                "token",
                "The URL changed: enter the token again (or remove it). The stored token is "
                "never sent to a new URL.",
            )
        return cleaned

    def save(self, commit: bool = True) -> Gateway:
        gateway: Gateway = super().save(commit=False)
        if self.cleaned_data.get("clear_token"):
            gateway.token = ""
        else:
            gateway.token = self.cleaned_data.get("token") or self.stored_token
        if commit:
            gateway.save()
        return gateway


@admin.register(Gateway)
class GatewayAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "url",
        "enabled",
        "status",
        "mode",
        "version",
        "last_event_at",
        "reconnects",
    )
    list_filter = ("enabled", "status", "mode")
    search_fields = ("name", "url")
    form = GatewayAdminForm
    fields = ("name", "url", "token", "token_stored", "clear_token", "enabled", "access")
    readonly_fields = ("token_stored",)

    @admin.display(description="Stored token")
    def token_stored(self, gateway: Gateway) -> str:
        return "set (hidden)" if gateway.token else "none"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Mirrored rows: visible to staff, changed only by ingest."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Session)
class SessionAdmin(ReadOnlyAdmin):
    list_display = (
        "session_key",
        "gateway",
        "locked",
        "phase",
        "lock_acquired_at",
        "waiter_count",
        "flag_count",
    )
    list_filter = ("gateway", "locked", "phase", "worst_severity")
    search_fields = ("session_key",)
    list_select_related = ("gateway",)


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = (
        "run_id",
        "session",
        "phase",
        "result",
        "started_at",
        "released_at",
        "release_how",
    )
    list_filter = ("gateway", "result", "release_how")
    search_fields = ("run_id", "session__session_key")
    list_select_related = ("session",)


@admin.register(Waiter)
class WaiterAdmin(ReadOnlyAdmin):
    list_display = ("waiter_id", "session", "since", "timeout_ms", "resolved_at", "outcome")
    list_filter = ("outcome",)
    list_select_related = ("session",)


@admin.register(DispatchSkip)
class DispatchSkipAdmin(ReadOnlyAdmin):
    list_display = ("session", "kind", "reason", "at", "preview")
    list_filter = ("kind", "reason", "gateway")
    list_select_related = ("session",)


@admin.register(Flag)
class FlagAdmin(ReadOnlyAdmin):
    list_display = ("session", "code", "severity", "since", "cleared_at")
    list_filter = ("code", "severity")
    list_select_related = ("session",)


@admin.register(TimelineEvent)
class TimelineEventAdmin(ReadOnlyAdmin):
    list_display = ("gateway", "seq", "kind", "at", "session", "run_id")
    list_filter = ("gateway", "kind")
    list_select_related = ("gateway", "session")


@admin.register(RecoveryPolicy)
class RecoveryPolicyAdmin(admin.ModelAdmin):
    """Admins (the admin role) turn automatic recovery on per gateway; off by default."""

    list_display = (
        "name",
        "gateway",
        "enabled",
        "dry_run",
        "trigger",
        "after_s",
        "action",
        "max_actions_per_hour",
    )
    list_filter = ("enabled", "dry_run", "trigger", "gateway")
    fields = list_display


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """The audit chain, read-only (the audit page is the operator's view of it)."""

    list_display = ("seq", "at", "kind", "actor", "action", "gateway", "session_key", "result")
    list_filter = ("kind", "action", "result", "actor_kind")
    search_fields = ("session_key", "actor", "reason")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """API tokens listed for admins, who revoke them here; made by ``create_api_token``.

    Only the digest is stored and it is never shown: the prefix tells tokens apart.
    """

    list_display = ("prefix", "user", "name", "created_at", "last_used_at", "expires_at",
                    "revoked_at")  # fmt: skip
    list_filter = ("revoked_at", "expires_at")
    search_fields = ("prefix", "name", "user__username")
    list_select_related = ("user",)
    fields = ("prefix", "user", "name", "created_at", "last_used_at", "expires_at", "revoked_at")
    readonly_fields = fields
    actions = ("revoke",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a token is shown once, by the command that makes it

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoked rows stay, so a revoked token is refused as revoked

    @admin.action(description="Revoke the selected API tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        now = timezone.now()
        live = list(queryset.filter(revoked_at__isnull=True).select_related("user"))
        ApiToken.objects.filter(pk__in=[row.pk for row in live]).update(revoked_at=now)
        for row in live:
            log.info("api_token_revoked", user=row.user.username, prefix=row.prefix,
                     by=request.user.get_username())  # fmt: skip
        self.message_user(request, f"Revoked {len(live)} API token(s).")


# Registers the notification channels and the deliveries' record.
from adminpanel.notify import admin as notify_admin  # noqa: E402, F401
