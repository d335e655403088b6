"""GET /api/v1/sessions, /gateways and /audit: the pages' filters, their data as JSON."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from adminpanel.bridges import leases
from adminpanel.bridges.leases import Holder
from adminpanel.detect import Thresholds
from adminpanel.ingest import Ingestor
from adminpanel.models import Gateway
from gateway_bridge.connection import ConnectionState
from gateway_bridge.observer import OBSERVER_BLIND_SPOTS
from tests.api.support import get, post
from tests.support.streams import Stream, ingest, locked_sessions

pytestmark = pytest.mark.django_db

KEY = "agent:main:telegram:direct:{}"
SESSION_FIELDS = {
    "gateway", "session_key", "agent", "channel", "phase", "result", "locked", "lock_age_s",
    "waiters", "run_id", "last_progress_at", "flags",
}  # fmt: skip


@pytest.fixture
def viewer(tokens: dict[str, str]) -> str:
    return tokens["viewer"]


def sessions(token: str, **params: Any) -> dict[str, Any]:
    response = get(Client(), "/api/v1/sessions", token, **params)
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


def keys(body: dict[str, Any]) -> list[str]:
    return [s["session_key"] for s in body["sessions"]]


def test_each_session_has_its_lock_waiters_and_flags_with_their_why(viewer: str) -> None:
    ingest(locked_sessions(Stream("gw-a"), 2, leaked=1))
    body = sessions(viewer)
    leaked = body["sessions"][0]
    assert set(leaked) == SESSION_FIELDS
    assert leaked["gateway"] == "gw-a" and leaked["session_key"] == KEY.format(0)
    assert leaked["agent"] == "main" and leaked["channel"] == "telegram"
    assert leaked["locked"] and leaked["run_id"] == "run-0" and leaked["result"] == "aborted"
    assert isinstance(leaked["lock_age_s"], float) and leaked["waiters"] == 0
    codes = {f["code"] for f in leaked["flags"]}
    assert "terminal_but_held" in codes
    (flag,) = [f for f in leaked["flags"] if f["code"] == "terminal_but_held"]
    assert flag["severity"] == "critical" and flag["since"] and "lock" in flag["why"]
    assert body["sessions"][1]["flags"] == [] and body["next"] is None


def test_flagged_gateway_and_key_filters_narrow_the_list(viewer: str) -> None:
    ingest(locked_sessions(Stream("gw-a"), 3, leaked=1))
    ingest(locked_sessions(Stream("gw-b"), 2))
    assert keys(sessions(viewer, flagged="1")) == [KEY.format(0)]
    assert {s["gateway"] for s in sessions(viewer, gateway="gw-b")["sessions"]} == {"gw-b"}
    assert keys(sessions(viewer, q="direct:2")) == [KEY.format(2)]
    assert keys(sessions(viewer, phase="running", gateway="gw-b", sort="key")) == [
        KEY.format(0),
        KEY.format(1),
    ]


def test_limit_and_the_next_cursor_walk_every_session_once(viewer: str) -> None:
    ingest(locked_sessions(Stream("gw-a"), 7))
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 3, "sort": "key"}
    pages = 0
    while True:
        body = sessions(viewer, **params)
        seen += keys(body)
        pages += 1
        if body["next"] is None:
            break
        assert body["next_url"].startswith("/api/v1/sessions?") and "after=" in body["next_url"]
        params["after"] = body["next"]
    assert pages == 3 and seen == sorted(KEY.format(n) for n in range(7))


def test_the_list_takes_a_few_queries_however_many_sessions(viewer: str) -> None:
    ingest(locked_sessions(Stream("gw-a"), 3, leaked=3))
    with CaptureQueriesContext(connection) as few:
        sessions(viewer)
    ingest(locked_sessions(Stream("gw-b"), 30, leaked=30))
    with CaptureQueriesContext(connection) as many:
        body = sessions(viewer, limit=100)
    assert len(body["sessions"]) == 33
    assert len(many.captured_queries) == len(few.captured_queries)


def test_bad_parameters_are_a_400_listing_each_one(viewer: str) -> None:
    response = get(
        Client(), "/api/v1/sessions", viewer, phase="sleeping", limit="501", colour="red"
    )
    assert response.status_code == 400
    body = response.json()
    problems = body["details"]["parameters"]
    assert set(problems) == {"phase", "limit", "colour"}
    assert "Select a valid choice" in problems["phase"][0]
    assert "500" in problems["limit"][0]
    assert "Unknown parameter" in problems["colour"][0]
    assert "phase" in body["error"] and "colour" in body["error"]


def test_a_cursor_of_another_sort_is_a_400_on_after(viewer: str) -> None:
    ingest(locked_sessions(Stream("gw-a"), 3))
    cursor = sessions(viewer, limit=1, sort="key")["next"]
    response = get(Client(), "/api/v1/sessions", viewer, after=cursor, sort="waiters")
    assert response.status_code == 400
    assert "another sort" in response.json()["details"]["parameters"]["after"][0]


def test_a_garbled_cursor_is_a_400(viewer: str) -> None:
    response = get(Client(), "/api/v1/sessions", viewer, after="%%%")
    assert response.status_code == 400 and "after" in response.json()["details"]["parameters"]


def connected(name: str, mode: str) -> None:
    Ingestor(thresholds=Thresholds()).record_connection(
        name, ConnectionState(gateway=name, status="connected", mode=mode, version="2026.9.6")
    )


def test_gateways_say_their_mode_and_what_observer_mode_cannot_see(viewer: str) -> None:
    connected("gw-obs", "observer")
    connected("gw-plugin", "plugin")
    response = get(Client(), "/api/v1/gateways", viewer)
    assert response.status_code == 200
    by_name = {g["name"]: g for g in response.json()["gateways"]}
    assert by_name["gw-obs"]["mode"] == "observer" and by_name["gw-obs"]["status"] == "connected"
    assert by_name["gw-obs"]["cannot_see"] == list(OBSERVER_BLIND_SPOTS)
    assert by_name["gw-plugin"]["mode"] == "plugin" and by_name["gw-plugin"]["cannot_see"] == []
    assert by_name["gw-plugin"]["version"] == "2026.9.6"


def test_each_gateway_names_the_bridge_that_holds_it(viewer: str) -> None:
    connected("gw-held", "plugin")
    connected("gw-free", "plugin")
    held = Gateway.objects.get(name="gw-held")
    since = timezone.now()
    leases.acquire(Holder("box-2:77:cd", "box-2", 77), held.pk, since, timedelta(seconds=60))
    by_name = {g["name"]: g for g in get(Client(), "/api/v1/gateways", viewer).json()["gateways"]}
    assert by_name["gw-held"]["bridge"] == {"host": "box-2", "pid": 77, "since": since.isoformat()}
    assert by_name["gw-free"]["bridge"] is None


def test_gateways_take_no_parameters(viewer: str) -> None:
    response = get(Client(), "/api/v1/gateways", viewer, verbose="1")
    assert response.status_code == 400
    assert "verbose" in response.json()["details"]["parameters"]


def stale_attempt(token: str, slug: str, key: str, reason: str) -> int:
    body = {"gateway": "gw-a", "session_key": key, "reason": reason, "expect_run_id": "old"}
    response = post(Client(), f"/api/v1/actions/{slug}", token, body)
    assert response.status_code == 409, response.content
    audit_id: int = response.json()["audit_id"]
    return audit_id


def test_the_audit_lists_attempts_newest_first_with_the_pages_filters(
    tokens: dict[str, str],
) -> None:
    ingest(locked_sessions(Stream("gw-a"), 2))
    first = stale_attempt(tokens["operator"], "force-clear", KEY.format(0), "one")
    second = stale_attempt(tokens["admin"], "abort", KEY.format(1), "two")
    response = get(Client(), "/api/v1/audit", tokens["viewer"])
    assert response.status_code == 200
    rows = response.json()["attempts"]
    assert [r["audit_id"] for r in rows] == [second, first]
    assert rows[1]["actor"] == "operator" and rows[1]["action"] == "force_clear"
    assert rows[1]["result"] == "conflict" and rows[1]["reason"] == "one"
    assert rows[1]["client_addr"] == "127.0.0.1" and rows[1]["request_id"]
    only = get(Client(), "/api/v1/audit", tokens["viewer"], action="abort", result="conflict")
    assert [r["audit_id"] for r in only.json()["attempts"]] == [second]
    by_actor = get(Client(), "/api/v1/audit", tokens["viewer"], actor="operator")
    assert [r["audit_id"] for r in by_actor.json()["attempts"]] == [first]


def test_the_audit_pages_with_limit_and_next(tokens: dict[str, str]) -> None:
    ingest(locked_sessions(Stream("gw-a"), 1))
    made = [stale_attempt(tokens["operator"], "abort", KEY.format(0), f"r{n}") for n in range(3)]
    page = get(Client(), "/api/v1/audit", tokens["viewer"], limit=2).json()
    assert [r["audit_id"] for r in page["attempts"]] == made[:0:-1]
    rest = get(Client(), "/api/v1/audit", tokens["viewer"], limit=2, after=page["next"]).json()
    assert [r["audit_id"] for r in rest["attempts"]] == [made[0]] and rest["next"] is None


def test_a_bad_audit_filter_is_a_400_naming_it(tokens: dict[str, str]) -> None:
    response = get(Client(), "/api/v1/audit", tokens["viewer"], action="reboot", since="soon")
    assert response.status_code == 400
    assert set(response.json()["details"]["parameters"]) == {"action", "since"}
