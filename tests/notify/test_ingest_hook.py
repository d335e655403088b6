"""Ingest's flag writer queues the notices in its own transaction; who cleared a flag."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from adminpanel.audit import chain as audit
from adminpanel.detect import Thresholds
from adminpanel.ingest import Ingestor
from adminpanel.models import Flag, Gateway
from adminpanel.notify import notice
from adminpanel.notify.models import Delivery
from gateway_bridge.events import GatewayStarted, LockAcquired, LockReleased, RunEnded
from tests.ingest.streams import KEY, T0, GatewayScript
from tests.notify.support import make_channel, make_flag, make_session

pytestmark = pytest.mark.django_db


def test_ingest_queues_a_notice_when_it_raises_a_flag_and_another_when_it_clears_it() -> None:
    make_channel("webhook", "http://127.0.0.1:9/hook", name="hook")
    g = GatewayScript()
    now = [T0 + 3]
    ing = Ingestor(thresholds=Thresholds(terminal_held_after_s=5.0), clock=lambda: now[0])
    ing.apply(
        [
            g.next(GatewayStarted),
            g.next(LockAcquired, session_key=KEY, run_id="run-1"),
            g.next(RunEnded, session_key=KEY, run_id="run-1", result="aborted", code="aborted"),
        ]
    )
    now[0] = g.at + 30
    ing.tick()
    ing.tick()  # still true: no second notice
    flag = Flag.objects.get(code="terminal_but_held")
    assert list(Delivery.objects.values_list("flag_id", "kind")) == [(flag.pk, "raised")]

    ing.apply([g.next(LockReleased, session_key=KEY, run_id="run-1", how="forced_settle")])
    assert sorted(Delivery.objects.values_list("kind", flat=True)) == ["cleared", "raised"]


def cleared_flag(gateway: Gateway) -> Flag:
    flag = make_flag(make_session(gateway), at=timezone.now() - timedelta(minutes=10))
    flag.cleared_at = timezone.now() + timedelta(seconds=1)
    flag.save()
    return flag


def record_intent(flag: Flag, actor: str, actor_kind: str, action: str = "force_clear") -> None:
    audit.append(
        kind="intent",
        actor=actor,
        actor_kind=actor_kind,
        action=action,
        gateway="gw-eu",
        session_key=flag.session.session_key,
        session_pk=flag.session_id,
    )


def test_a_flag_cleared_after_an_operators_action_names_the_operator(gateway: Gateway) -> None:
    flag = cleared_flag(gateway)
    record_intent(flag, "alice", "user", "clear_and_requeue")
    assert notice.cleared_by(flag) == "operator alice (clear-and-requeue)"


def test_a_flag_cleared_after_a_policys_action_names_the_policy(gateway: Gateway) -> None:
    flag = cleared_flag(gateway)
    record_intent(flag, "leak-sweeper", "policy")
    assert notice.cleared_by(flag) == "recovery policy leak-sweeper (force-clear)"


def test_a_flag_that_cleared_on_its_own_names_the_gateway(gateway: Gateway) -> None:
    assert notice.cleared_by(cleared_flag(gateway)) == "the gateway itself (the condition ended)"
