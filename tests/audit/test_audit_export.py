"""CSV and JSON exports: the page's filters, one record per attempt with every field and
both hashes, streamed, capped with a note."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any, cast

import pytest
from django.http import StreamingHttpResponse
from django.test import Client

from adminpanel.audit import views as audit_views
from adminpanel.audit.queries import CSV_COLUMNS, attempt_json, attempts
from tests.audit.support import attempt

pytestmark = pytest.mark.django_db


def export(client: Client, fmt: str, query: str = "") -> tuple[Any, str]:
    response = client.get(f"/audit/export.{fmt}{query}")
    assert response.status_code == 200, response
    assert response.streaming
    assert "attachment" in response["Content-Disposition"]
    streamed = cast(StreamingHttpResponse, response)
    body = b"".join(cast(Iterator[bytes], streamed.streaming_content)).decode()
    return response, body


def csv_rows(body: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body)))


def test_csv_has_one_record_per_attempt_with_every_field_and_both_hashes(
    viewer: Client,
) -> None:
    done_intent, done = attempt(reason="stuck for 5 min", client_addr="10.0.0.7")
    crashed, _ = attempt(reason="crashed half way", result=None)
    assert done is not None
    response, body = export(viewer, "csv")
    assert response["Content-Type"].startswith("text/csv")
    assert response["X-Runboard-Export-Capped"] == "no"
    assert body.splitlines()[0].split(",") == list(CSV_COLUMNS)
    rows = csv_rows(body)
    assert [r["audit_id"] for r in rows] == [str(crashed.pk), str(done_intent.pk)]
    pending, complete = rows
    assert pending["result"] == "pending" and pending["outcome_hash"] == ""
    assert pending["detail"] == "pending — no outcome recorded"
    assert complete["result"] == "success"
    assert complete["reason"] == "stuck for 5 min" and complete["client_addr"] == "10.0.0.7"
    assert complete["intent_hash"] == done_intent.hash and complete["outcome_hash"] == done.hash
    assert json.loads(complete["calls"])[0]["answer"]["cleared"] is True
    assert json.loads(complete["state_before"])["run_id"] == "run-1"
    assert complete["duration_ms"] == "42"


def test_json_export_is_the_same_record_the_api_serializer_gives(viewer: Client) -> None:
    for n in range(3):
        attempt(reason=f"r{n}", result="error" if n == 1 else "success")
    response, body = export(viewer, "json", "?result=success")
    assert response["Content-Type"] == "application/json"
    data = json.loads(body)
    expected = [attempt_json(i) for i in attempts({"result": "success"})]
    assert data == {"attempts": expected, "count": 2, "capped": False, "note": ""}
    assert set(expected[0]) >= {"intent_hash", "outcome_hash", "state_before", "state_after",
                                "planned_calls", "calls", "duration_ms", "request_id"}  # fmt: skip


def test_an_export_past_the_cap_stops_there_and_says_so(
    viewer: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_views, "EXPORT_CAP", 3)
    monkeypatch.setattr(audit_views, "EXPORT_CHUNK", 2)  # and read in several chunks
    intents = [attempt(reason=f"r{n}")[0] for n in range(5)]
    response, body = export(viewer, "csv")
    assert response["X-Runboard-Export-Capped"] == "3"
    lines = body.splitlines()
    assert len(lines) == 1 + 3 + 1
    assert lines[-1].startswith("# export capped at 3 attempts")
    assert [r["audit_id"] for r in csv_rows("\n".join(lines[:-1]))] == [
        str(i.pk) for i in reversed(intents[2:])
    ]
    response, body = export(viewer, "json")
    data = json.loads(body)
    assert data["count"] == 3 and data["capped"] is True
    assert "narrow the filters" in data["note"]
    assert [a["audit_id"] for a in data["attempts"]] == [i.pk for i in reversed(intents[2:])]


def test_exactly_the_cap_is_not_called_capped(
    viewer: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_views, "EXPORT_CAP", 3)
    for n in range(3):
        attempt(reason=f"r{n}")
    response, body = export(viewer, "json")
    assert response["X-Runboard-Export-Capped"] == "no"
    assert json.loads(body)["capped"] is False


def test_a_cell_a_spreadsheet_would_run_as_a_formula_is_defused(viewer: Client) -> None:
    attempt(reason='=HYPERLINK("http://evil.example","click")')
    _, body = export(viewer, "csv")
    assert csv_rows(body)[0]["reason"] == '\'=HYPERLINK("http://evil.example","click")'
