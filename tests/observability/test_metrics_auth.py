"""/metrics opens for a viewer's API token or RUNBOARD_METRICS_TOKEN, and for nothing else."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from adminpanel.api import tokens
from adminpanel.roles import VIEW
from tests.api.support import role_tokens
from tests.observability.support import METRICS_TOKEN

pytestmark = pytest.mark.django_db


def scrape(header: str | None) -> Any:
    return Client().get("/metrics", headers={} if header is None else {"Authorization": header})


def test_metrics_without_a_token_is_refused_with_401() -> None:
    response = scrape(None)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="runboard"'
    assert "Bearer" in response.json()["error"]


def test_metrics_with_a_viewer_api_token_answers_the_text_format() -> None:
    response = scrape(f"Bearer {role_tokens()['viewer']}")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert b"# TYPE runboard_viewers gauge" in response.content


def test_metrics_with_the_metrics_token_answers_without_any_user() -> None:
    response = scrape(f"Bearer {METRICS_TOKEN}")

    assert response.status_code == 200
    assert b"runboard_gateway_up" in response.content or b"runboard_viewers" in response.content


def test_metrics_with_an_unknown_token_is_refused_without_echoing_it() -> None:
    response = scrape("Bearer rb_not-a-real-token-SECRETSECRET")

    assert response.status_code == 401
    assert b"SECRETSECRET" not in response.content
    assert b"rb_not" not in response.content


def test_metrics_with_a_bad_header_is_refused_without_echoing_it() -> None:
    response = scrape("Basic c2VjcmV0OnBhc3N3b3Jk-SECRET")

    assert response.status_code == 401
    assert b"SECRET" not in response.content
    assert b"c2Vj" not in response.content
    assert b"Basic" not in response.content


def test_metrics_with_a_revoked_token_is_refused() -> None:
    token = role_tokens()["viewer"]
    tokens.revoke(token)

    assert scrape(f"Bearer {token}").status_code == 401


def test_metrics_with_the_token_of_a_user_without_view_is_forbidden() -> None:
    response = scrape(f"Bearer {role_tokens()['nobody']}")

    assert response.status_code == 403
    assert VIEW in response.json()["error"]


def test_metrics_token_is_not_accepted_when_it_is_not_configured(settings: Any) -> None:
    settings.RUNBOARD_METRICS_TOKEN = ""

    assert scrape(f"Bearer {METRICS_TOKEN}").status_code == 401


def test_metrics_answers_only_get() -> None:
    response = Client().post("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})

    assert response.status_code == 405
