"""The durable store: what Runboard knows about each gateway's reply-run registry.

Everything below ``Gateway``'s editable fields is *mirrored* state, written
only by ``adminpanel.ingest`` (one writer per kind of state, DESIGN.md).
Times are stored in UTC; ingest works on epoch seconds and converts at the edge.
``AuditEntry`` is written only by ``adminpanel.audit.chain`` (append-only, hash-chained);
``RecoveryPolicy`` and ``ApiToken`` are settings an admin edits.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Q

# Session key segments that are a peer kind or a reserved namespace, never a channel.
_NOT_CHANNELS = frozenset({"main", "direct", "group", "channel", "heartbeat", "explicit", "thread"})


def parse_session_key(session_key: str) -> tuple[str, str]:
    """``agent:<agent>:<channel>:...`` → ``(agent, channel)``; blanks when the key has none."""
    parts = session_key.split(":")
    if len(parts) < 3 or parts[0] != "agent":
        return "", ""
    rest = parts[2:]
    if len(rest) >= 2 and rest[0] not in _NOT_CHANNELS:
        return parts[1], rest[0]
    return parts[1], ""


class Gateway(models.Model):
    STATUSES = ("connecting", "connected", "disconnected", "stopped")
    MODES = ("plugin", "observer", "unknown")

    name = models.SlugField(max_length=64, unique=True)
    url = models.CharField(max_length=500, blank=True)
    token = models.CharField(max_length=500, blank=True)
    enabled = models.BooleanField(default=True)

    # Connection state, mirrored from the bridge by Ingestor.record_connection.
    status = models.CharField(
        max_length=16, default="disconnected", choices=[(s, s) for s in STATUSES]
    )
    mode = models.CharField(max_length=16, default="unknown", choices=[(m, m) for m in MODES])
    version = models.CharField(max_length=64, blank=True)
    profile = models.CharField(max_length=64, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    reconnects = models.PositiveIntegerField(default=0)
    connected_since = models.DateTimeField(null=True, blank=True)
    # Frames from this gateway the store could not hold (gateway_bridge.bounds), written by ingest.
    rejected_frames = models.PositiveBigIntegerField(default=0)
    last_rejected_at = models.DateTimeField(null=True, blank=True)
    last_rejected_reason = models.TextField(blank=True)
    # Least privilege: the operator scopes the bridge asks for (gateway_bridge.scopes).
    access = models.CharField(
        max_length=8,
        default="admin",  # gateway_bridge.scopes.DEFAULT_ACCESS
        choices=[
            ("view", "view: operator.read (no actions)"),
            ("act", "act: + operator.write (requeue, abort; all actions in observer mode)"),
            ("admin", "admin: + operator.admin (the plugin's force-clear)"),
        ],
        help_text="Which OpenClaw scopes Runboard asks this gateway for.",
    )
    # What the gateway granted at the last connection (hello-ok); null: it did not say.
    granted_scopes = models.JSONField(null=True, blank=True)

    # Ingest's cursor: the last applied (boot_id, seq). Only ingest moves it.
    boot_id = models.CharField(max_length=128, blank=True)
    last_seq = models.BigIntegerField(default=0)
    # Boots this gateway had before the current one: late events from them are stale.
    past_boot_ids = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_connected(self) -> bool:
        return self.status == "connected"


# Operator actions: one permission each (adminpanel/roles.py gives them to the groups).
ACTION_PERMISSIONS = (
    ("force_clear", "Can force-clear a session's lock"),
    ("requeue", "Can requeue a session's held messages"),
    ("abort", "Can abort a session's run"),
    ("clear_and_requeue", "Can force-clear a lock and requeue in one step"),
    ("bulk_act", "Can act on all sessions matching a filter"),
)


class Session(models.Model):
    gateway = models.ForeignKey(Gateway, on_delete=models.CASCADE, related_name="sessions")
    session_key = models.CharField(max_length=512)
    agent = models.CharField(max_length=64, blank=True)
    channel = models.CharField(max_length=64, blank=True)
    session_id = models.CharField(max_length=128, blank=True)
    store_status = models.CharField(max_length=16, blank=True)
    store_status_at = models.DateTimeField(null=True, blank=True)

    # The live lock, denormalized from Run so the sessions page is one query.
    locked = models.BooleanField(default=False)
    run_id = models.CharField(max_length=128, blank=True)
    phase = models.CharField(max_length=40, blank=True)
    result = models.CharField(max_length=16, blank=True)
    result_code = models.CharField(max_length=64, blank=True)
    lock_acquired_at = models.DateTimeField(null=True, blank=True)
    last_progress_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    waiter_count = models.PositiveIntegerField(default=0)
    flag_count = models.PositiveIntegerField(default=0)
    worst_severity = models.CharField(max_length=16, blank=True)
    updated_at = models.DateTimeField(null=True, blank=True)
    # A recovery policy's countdown on this lock; written only by adminpanel.bridges.recovery.
    auto_action_at = models.DateTimeField(null=True, blank=True)
    auto_policy = models.CharField(max_length=64, blank=True)

    class Meta:
        permissions = ACTION_PERMISSIONS
        constraints = [
            models.UniqueConstraint(
                fields=["gateway", "session_key"], name="session_key_per_gateway"
            )
        ]
        indexes = [
            # Sessions page: locked first, oldest lock first.
            models.Index(fields=["locked", "lock_acquired_at"], name="session_lock_age"),
            # Stuck tab and tick: sessions with flags, worst first.
            models.Index(fields=["flag_count", "worst_severity"], name="session_flagged"),
            # Sessions page sorted by key (across gateways): read in order, not sorted.
            models.Index(fields=["session_key", "id"], name="session_key_order"),
        ]

    def __str__(self) -> str:
        return self.session_key

    @property
    def is_terminal_but_held(self) -> bool:
        return self.locked and bool(self.result)


class Run(models.Model):
    RELEASE_HOWS = (
        "normal",
        "forced_settle",
        "stale_takeover",
        "force_clear",
        "restart",
        "reconciled",
    )

    gateway = models.ForeignKey(Gateway, on_delete=models.CASCADE, related_name="runs")
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="runs")
    run_id = models.CharField(max_length=128)
    boot_id = models.CharField(max_length=128, blank=True)
    # The gateway's sessionId for this run (``session_id`` is the FK's column).
    gateway_session_id = models.CharField(max_length=128, blank=True)
    turn_kind = models.CharField(max_length=32, blank=True)
    message_id = models.CharField(max_length=128, blank=True)
    preview = models.CharField(max_length=200, blank=True)
    phase = models.CharField(max_length=40, blank=True)
    result = models.CharField(max_length=16, blank=True)
    code = models.CharField(max_length=64, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    release_how = models.CharField(
        max_length=16, blank=True, choices=[(h, h) for h in RELEASE_HOWS]
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["gateway", "run_id"], name="run_id_per_gateway")
        ]
        indexes = [
            # Session page's run history, newest first; detect's recent admissions.
            models.Index(fields=["session", "started_at"], name="run_session_started"),
            # Restart closure: runs a gateway still holds (released_at IS NULL).
            models.Index(fields=["gateway", "released_at"], name="run_gateway_open"),
        ]

    def __str__(self) -> str:
        return self.run_id

    @property
    def is_open(self) -> bool:
        return self.released_at is None


class Waiter(models.Model):
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="waiters")
    boot_id = models.CharField(max_length=128, blank=True)
    waiter_id = models.CharField(max_length=128)
    # The run that held the lock when the message started waiting.
    blocking_run_id = models.CharField(max_length=128, blank=True)
    timeout_ms = models.BigIntegerField(null=True, blank=True)  # null: waits forever
    since = models.DateTimeField()
    turn_kind = models.CharField(max_length=32, blank=True)
    message_id = models.CharField(max_length=128, blank=True)
    preview = models.CharField(max_length=200, blank=True)
    text = models.TextField(blank=True)  # kept whole so the message can be requeued
    resolved_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["session", "boot_id", "waiter_id"], name="waiter_id_per_session_boot"
            )
        ]
        indexes = [
            # Session page and detect: the unresolved waiters of a session.
            models.Index(fields=["session", "resolved_at"], name="waiter_session_open"),
        ]

    def __str__(self) -> str:
        return self.waiter_id

    @property
    def waits_forever(self) -> bool:
        return self.timeout_ms is None


class TimelineEvent(models.Model):
    gateway = models.ForeignKey(Gateway, on_delete=models.CASCADE, related_name="timeline")
    session = models.ForeignKey(
        Session, on_delete=models.CASCADE, null=True, blank=True, related_name="timeline"
    )
    boot_id = models.CharField(max_length=128)
    # Null for rows Runboard itself inferred (a run lost at restart, a lock
    # released by reconciliation): they have no gateway sequence number, and
    # NULLs never collide in the unique constraint below.
    seq = models.BigIntegerField(null=True, blank=True)
    kind = models.CharField(max_length=40)
    at = models.DateTimeField()
    received_at = models.DateTimeField()
    run_id = models.CharField(max_length=128, blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["gateway", "boot_id", "seq"], name="timeline_event_once"
            )
        ]
        indexes = [
            # Session page timeline, newest first.
            models.Index(fields=["session", "at"], name="timeline_session_at"),
            # Gateway page: recent events of one gateway.
            models.Index(fields=["gateway", "at"], name="timeline_gateway_at"),
            # Retention: the oldest received rows first (adminpanel/retention.py).
            models.Index(fields=["received_at"], name="timeline_received_at"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}#{self.seq}"


class DispatchSkip(models.Model):
    KINDS = ("skip", "drain_failed")

    gateway = models.ForeignKey(Gateway, on_delete=models.CASCADE, related_name="skips")
    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="skips")
    kind = models.CharField(max_length=16, choices=[(k, k) for k in KINDS])
    reason = models.CharField(max_length=64, blank=True)  # skip reason, or the error's name
    error = models.TextField(blank=True)  # the drain failure's message
    at = models.DateTimeField()
    blocking_run_id = models.CharField(max_length=128, blank=True)
    message_id = models.CharField(max_length=128, blank=True)
    preview = models.CharField(max_length=200, blank=True)
    text = models.TextField(blank=True)  # for requeue
    boot_id = models.CharField(max_length=128, blank=True)
    seq = models.BigIntegerField(null=True, blank=True)

    class Meta:
        indexes = [
            # Detect (skip bursts, alternating errors) and the session page: recent skips.
            models.Index(fields=["session", "at"], name="skip_session_at"),
            # Tick: sessions with any skip inside the detect windows.
            models.Index(fields=["at"], name="skip_at"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.reason}"


class Flag(models.Model):
    SEVERITIES: tuple[str, ...] = ("warning", "critical")

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="flags")
    code = models.CharField(max_length=40)
    severity = models.CharField(max_length=16, choices=[(s, s) for s in SEVERITIES])
    why = models.TextField()
    since = models.DateTimeField()  # when the condition became true (detect.Finding.since)
    details = models.JSONField(default=dict, blank=True)
    raised_at = models.DateTimeField()
    cleared_at = models.DateTimeField(null=True, blank=True)  # null while active

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["session", "code"],
                condition=Q(cleared_at__isnull=True),
                name="one_active_flag_per_code",
            )
        ]
        indexes = [
            # Stuck tab and detect: the active flags (cleared_at IS NULL) of sessions.
            models.Index(fields=["cleared_at", "session"], name="flag_active"),
        ]

    def __str__(self) -> str:
        return f"{self.code}@{self.session_id}"

    @property
    def is_active(self) -> bool:
        return self.cleared_at is None


class AppendOnlyQuerySet(models.QuerySet["AuditEntry"]):
    def update(self, **kwargs: Any) -> int:
        raise PermissionError("audit entries are append-only")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise PermissionError("audit entries are append-only")


class AuditEntry(models.Model):
    """One immutable record in the audit chain: an action's intent, or its outcome.

    An attempt is two records: the intent (who, what, why, the state seen, the
    gateway calls planned), written before the gateway is called, and the
    outcome (result, state after, the calls' requests and answers in summary,
    duration), written after; ``intent`` links the outcome to it. A crash in
    between leaves the intent without an outcome. Rows are never updated or
    deleted (the model and its querysets refuse it; on PostgreSQL a trigger
    too); ``hash`` chains each row to the one before, keyed with the audit key,
    so ``manage.py verify_audit`` finds the first altered or missing one,
    whoever changed the table underneath.
    """

    objects = AppendOnlyQuerySet.as_manager()

    KINDS = ("intent", "outcome")
    ACTIONS = ("force_clear", "requeue", "abort", "clear_and_requeue")
    # interrupted: the attempt stopped between its intent and its outcome (a crash);
    # whether the gateway acted is unknown. Recorded at the next start (adminpanel.actions).
    RESULTS = ("success", "noop", "conflict", "error", "interrupted")

    at = models.DateTimeField()
    kind = models.CharField(max_length=8, choices=[(k, k) for k in KINDS])
    intent = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="outcome"
    )
    # Intent fields.
    actor = models.CharField(max_length=150, blank=True)  # username, or the policy's name
    actor_kind = models.CharField(max_length=8, blank=True)  # user | policy
    action = models.CharField(max_length=24, blank=True)
    gateway = models.CharField(max_length=64, blank=True)
    session_key = models.CharField(max_length=512, blank=True)
    session_pk = models.BigIntegerField(null=True, blank=True)  # not a FK: rows never change
    expect_run_id = models.CharField(max_length=128, blank=True)
    reason = models.TextField(blank=True)
    batch = models.CharField(max_length=40, blank=True)  # shared by one bulk action's entries
    dry_run = models.BooleanField(default=False)
    state_before = models.JSONField(default=dict, blank=True)
    planned_calls = models.JSONField(default=list, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    # Same key, same attempt: a double submit finds the first one's intent (per target).
    once_key = models.CharField(max_length=200, blank=True, db_index=True)
    client_addr = models.CharField(max_length=64, blank=True)
    # Outcome fields.
    result = models.CharField(max_length=16, blank=True, choices=[(r, r) for r in RESULTS])
    detail = models.TextField(blank=True)
    state_after = models.JSONField(default=dict, blank=True)
    calls = models.JSONField(default=list, blank=True)  # [{method, params, answer}] in summary
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    # The chain: ``seq`` counts from 1 without gaps; ``hash`` covers every field and prev_hash.
    seq = models.PositiveBigIntegerField(unique=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    # 1: plain SHA-256 (rows written before the chain was keyed); 2: HMAC with the audit key.
    scheme = models.PositiveSmallIntegerField(default=1)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["kind", "at"], name="audit_kind_at"),
            models.Index(fields=["session_pk", "kind"], name="audit_session"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}#{self.pk} {self.action} {self.session_key}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise PermissionError("audit entries are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise PermissionError("audit entries are append-only")


class RecoveryPolicy(models.Model):
    """An opt-in automatic recovery for one gateway; off until an admin enables it."""

    TRIGGERS = (
        ("terminal_but_held", "a lock held after its run ended"),
        ("no_progress", "a lock with no progress"),
    )
    ACTIONS = (("force_clear", "force-clear"), ("clear_and_requeue", "force-clear and requeue"))

    name = models.SlugField(max_length=64, unique=True)
    gateway = models.ForeignKey(Gateway, on_delete=models.CASCADE, related_name="policies")
    enabled = models.BooleanField(default=False)
    dry_run = models.BooleanField(
        default=True, help_text="Only record what the policy would do; call nothing."
    )
    trigger = models.CharField(max_length=24, choices=TRIGGERS)
    after_s = models.PositiveIntegerField(
        help_text="Act once the flag has been active this long (seconds)."
    )
    action = models.CharField(max_length=24, choices=ACTIONS, default="clear_and_requeue")
    max_actions_per_hour = models.PositiveIntegerField(default=10)

    class Meta:
        verbose_name_plural = "recovery policies"

    def __str__(self) -> str:
        return self.name


class ApiToken(models.Model):
    """A JSON API token; only its SHA-256 is stored, the token is shown once at creation."""

    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=64, blank=True)
    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12)  # the token's first characters, to tell them apart
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)  # None: until revoked

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class BridgeInstance(models.Model):
    """A running ``manage.py runbridge``: its heartbeat tells the others it is alive.

    Written only by ``adminpanel.bridges.leases``.
    """

    instance = models.CharField(max_length=64, unique=True)  # host:pid:random
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.host} pid {self.pid}"


class GatewayLease(models.Model):
    """Which bridge mirrors a gateway: exactly one holds it, until ``expires_at``.

    A holder renews its lease well before it expires; a bridge that died stops
    renewing, and once it expired another bridge takes the gateway over. Ingest
    checks the lease inside each batch's transaction (a fence), so a bridge
    that lost it can never write the gateway again. Written only by
    ``adminpanel.bridges.leases``.
    """

    gateway = models.OneToOneField(Gateway, on_delete=models.CASCADE, related_name="lease")
    holder = models.CharField(max_length=64)  # BridgeInstance.instance
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    since = models.DateTimeField()  # when this holder took the gateway
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.gateway_id} held by {self.holder}"


class MetricCounter(models.Model):
    """A durable number behind /metrics, shared by every web worker and bridge.

    Counters (events ingested, skips, actions) only grow, so pruning the rows
    they count never makes Prometheus see them go backwards; a few last-seen
    values (the last batch's ingest lag) live here too. Written only by
    ``adminpanel.observability.counters`` with one atomic upsert each.
    """

    name = models.CharField(max_length=64)
    labels = models.CharField(max_length=500, default="{}")  # canonical JSON, sorted keys
    value = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["name", "labels"], name="metric_counter_once")
        ]

    def __str__(self) -> str:
        return f"{self.name}{self.labels}={self.value}"


class LiveViewer(models.Model):
    """An open live-view WebSocket, so /metrics counts viewers across web workers.

    Written only by ``adminpanel.observability.viewers``: a row on connect, gone on disconnect.
    """

    channel_name = models.CharField(max_length=200, unique=True)
    connected_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.channel_name


# Notification channels and deliveries live with their package (adminpanel/notify/).
from adminpanel.notify.models import Delivery, NotificationChannel  # noqa: E402, F401
