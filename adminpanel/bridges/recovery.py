"""Automatic recovery: opt-in policies that force-clear (and requeue) stuck locks.

A ``RecoveryPolicy`` names a gateway, a trigger (an active ``terminal_but_held``
or ``no_progress`` flag), how long the flag must have been active, and the
action. Off by default; ``dry_run`` (the default when enabled) only records
what it would do. Each tick:

- every locked session a policy will act on gets a countdown
  (``Session.auto_action_at``, shown on its row), cleared when the flag goes;
- a session whose countdown ran out is acted on through ``adminpanel.actions``
  — the same race-safe path as an operator's, audited under the policy's name
  — at most once per run, and at most ``max_actions_per_hour`` times per policy
  (counted from the audit log, dry runs included); past the limit the policy
  waits and logs ``recovery_rate_limited``.

Runs next to the bridges (``BridgeSupervisor``), and acts on them directly:
its ``caller`` is the supervisor's own bridges, not the channel layer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from adminpanel import actions
from adminpanel.actions import ActionRefused, Actor, Target
from adminpanel.bridges.command_client import BridgeCaller
from adminpanel.models import AuditEntry, Flag, RecoveryPolicy, Session

log = structlog.get_logger(__name__)

SessionKey = tuple[str, str]  # (gateway name, session key), as the broadcaster takes them


@dataclass(frozen=True, slots=True)
class Due:
    policy: str
    action: str
    dry_run: bool
    target: Target
    reason: str


def _acted(policy: str, session_pk: int, run_id: str) -> bool:
    return AuditEntry.objects.filter(
        kind="intent", actor_kind="policy", actor=policy, session_pk=session_pk,
        expect_run_id=run_id,
    ).exists()  # fmt: skip


def _acted_last_hour(policy: str, now: datetime) -> int:
    return AuditEntry.objects.filter(
        kind="intent", actor_kind="policy", actor=policy, at__gte=now - timedelta(hours=1)
    ).count()


def plan(now: datetime | None = None) -> tuple[list[Due], set[SessionKey]]:
    """Set the countdowns; return what is due now and the sessions whose countdown changed."""
    now = now or timezone.now()
    wanted: dict[int, tuple[datetime, str]] = {}
    due: list[Due] = []
    for policy in RecoveryPolicy.objects.filter(enabled=True).select_related("gateway"):
        flags = (
            Flag.objects.filter(
                cleared_at__isnull=True,
                code=policy.trigger,
                session__gateway=policy.gateway,
                session__locked=True,
            )
            .select_related("session")
            .order_by("since")
        )
        budget = policy.max_actions_per_hour - _acted_last_hour(policy.name, now)
        for flag in flags:
            session = flag.session
            if _acted(policy.name, session.pk, session.run_id):
                continue
            at = flag.since + timedelta(seconds=policy.after_s)
            if session.pk not in wanted or at < wanted[session.pk][0]:
                wanted[session.pk] = (at, policy.name)
            if at > now or wanted[session.pk][1] != policy.name:
                continue
            if budget <= 0:
                log.warning(
                    "recovery_rate_limited",
                    policy=policy.name,
                    session_key=session.session_key,
                    max_actions_per_hour=policy.max_actions_per_hour,
                )
                continue
            budget -= 1
            held_s = (now - flag.since).total_seconds()
            reason = (
                f"automatic: policy {policy.name} — {flag.code} for {held_s:.0f} s "
                f"(acts after {policy.after_s} s)"
            )
            target = Target(policy.gateway.name, session.session_key, session.run_id)
            due.append(Due(policy.name, policy.action, policy.dry_run, target, reason))
    return due, _set_countdowns(wanted)


def _set_countdowns(wanted: dict[int, tuple[datetime, str]]) -> set[SessionKey]:
    changed: set[SessionKey] = set()
    current = Session.objects.filter(auto_action_at__isnull=False).select_related("gateway")
    have = {s.pk: s for s in current}
    missing = [pk for pk in wanted if pk not in have]
    have.update({s.pk: s for s in Session.objects.filter(pk__in=missing).select_related("gateway")})
    for pk, session in have.items():
        at, policy = wanted.get(pk, (None, ""))
        if session.auto_action_at == at and session.auto_policy == policy:
            continue
        Session.objects.filter(pk=pk).update(auto_action_at=at, auto_policy=policy)
        changed.add((session.gateway.name, session.session_key))
    return changed


async def act(item: Due, caller: BridgeCaller) -> actions.Outcome | None:
    try:
        outcome = await actions.perform(
            item.action,
            item.target,
            reason=item.reason,
            actor=Actor(item.policy, kind="policy"),
            dry_run=item.dry_run,
            caller=caller,
        )
    except ActionRefused as exc:  # the session went away between plan and act
        log.warning("recovery_refused", policy=item.policy, error=str(exc))
        return None
    log.info(
        "recovery_acted",
        policy=item.policy,
        action=item.action,
        session_key=item.target.session_key,
        result=outcome.result,
        dry_run=item.dry_run,
        audit_id=outcome.audit_id,
    )
    return outcome


async def tick(
    caller: BridgeCaller,
    note: Callable[[Iterable[SessionKey]], None],
    now: datetime | None = None,
) -> list[actions.Outcome | None]:
    """One round: countdowns to the viewers (``note``), then what is due, one by one."""
    planning = sync_to_async(plan, thread_sensitive=True)
    due, changed = await planning(now)
    note(changed)
    outcomes = [await act(item, caller) for item in due]
    if due:  # the countdowns of what just ran are gone now
        note((await planning(now))[1])
    return outcomes


async def run(
    stop: asyncio.Event, note: Callable[[Iterable[SessionKey]], None], caller: BridgeCaller
) -> None:
    """Tick until ``stop``."""
    while not stop.is_set():
        try:
            await tick(caller, note)
        except Exception:  # a bad tick must not end recovery for good
            log.exception("recovery_tick_failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.RUNBOARD_RECOVERY_TICK_S)
