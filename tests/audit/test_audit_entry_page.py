"""One attempt's page: state before and after, the calls planned and made, both hashes."""

from __future__ import annotations

from html import unescape

import pytest
from django.test import Client

from tests.audit.support import attempt, make_session

pytestmark = pytest.mark.django_db


def entry_page(client: Client, pk: int) -> str:
    response = client.get(f"/audit/{pk}/")
    assert response.status_code == 200, response.content.decode()[-2000:]
    return unescape(response.content.decode())


def test_an_attempt_shows_state_before_and_after_and_the_calls_in_summary(
    viewer: Client,
) -> None:
    session = make_session()
    intent, outcome = attempt(session_pk=session.pk, reason="user waited 5 min")
    assert outcome is not None
    html = entry_page(viewer, intent.pk)
    assert "Force-clear by operator" in html
    assert "user waited 5 min" in html
    # State: the lock was held by run-1 before, released after (a changed row).
    assert '<tr class="changed"><th scope="row">locked</th><td><code>true</code></td>' in html
    assert "<td><code>false</code></td>" in html
    # Planned call, and the call made with its answer.
    assert "runboard.registry.forceClear" in html
    assert '"expectRunId": "run-1"' in html
    assert "<code>force_clear</code>" in html
    assert 'answer <code class="params">{"cleared": true, "run_id": "run-1"}</code>' in html
    assert intent.hash in html and outcome.hash in html
    assert f'href="/sessions/{session.pk}/"' in html


def test_an_attempt_without_outcome_says_so(viewer: Client) -> None:
    intent, _ = attempt(result=None)
    html = entry_page(viewer, intent.pk)
    assert "pending — no outcome recorded" in html
    assert "whether the gateway acted is unknown" in html


def test_an_outcome_entry_id_leads_to_its_attempt(viewer: Client) -> None:
    intent, outcome = attempt()
    assert outcome is not None
    response = viewer.get(f"/audit/{outcome.pk}/")
    assert response.status_code == 302
    assert response["Location"] == f"/audit/{intent.pk}/"


def test_an_unknown_entry_is_a_404_and_an_unknown_parameter_a_400(viewer: Client) -> None:
    intent, _ = attempt()
    assert viewer.get("/audit/999999/").status_code == 404
    assert viewer.get(f"/audit/{intent.pk}/?x=1").status_code == 400
