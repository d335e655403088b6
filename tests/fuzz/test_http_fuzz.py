"""Pages, the API and forms under arbitrary input: never a 500.

Query strings of every page and API list answer 200 or 400 (with a message);
action bodies, action dialogs, bulk forms and logins answer anything but a
server error. Django's test client on the real (SQLite) database.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

from adminpanel.api import tokens
from adminpanel.models import Gateway, Session
from tests.actions.support import role_users
from tests.fuzz.strategies import fuzz, http_text, json_values

pytestmark = pytest.mark.django_db

PAGES = (
    "/",
    "/stuck/",
    "/warnings/",
    "/gateways/",
    "/charts/",
    "/audit/",
    "/audit/export.csv",
    "/audit/export.json",
    "/api/v1/sessions",
    "/api/v1/gateways",
    "/api/v1/audit",
)
KNOWN_PARAMS = (
    "gateway",
    "agent",
    "channel",
    "phase",
    "q",
    "refresh",
    "flagged",
    "sort",
    "cursor",
    "hours",
    "limit",
    "before",
    "after",
    "since",
    "until",
    "actor",
    "action",
    "result",
    "kind",
    "range",
    "metric",
    "page",
    "format",
)
ACTIONS = ("force-clear", "requeue", "abort", "clear-and-requeue")
FORM_FIELDS = (
    "reason",
    "expect_run_id",
    "submission",
    "targets",
    "confirm_count",
    "dry_run",
    "csrfmiddlewaretoken",
)
KEY = "agent:main:telegram:direct:1"


@pytest.fixture
def world(settings: Any) -> dict[str, Any]:
    """A gateway with one locked session, and a logged-in client per role."""
    settings.RUNBOARD_CALL_TIMEOUT_S = 0.05  # no bridge runs: an action gives up at once
    gw = Gateway.objects.create(name="gw", mode="plugin", status="connected")
    session = Session.objects.create(gateway=gw, session_key=KEY, locked=True, run_id="run-1")
    clients, bearer = {}, {}
    for role, user in role_users().items():
        client = Client()
        client.login(username=role, password="pw")
        clients[role] = client
        bearer[role] = {"Authorization": f"Bearer {tokens.create_token(user, 'fuzz')[1]}"}
    return {"session": session, "clients": clients, "bearer": bearer}


def raw_query(pairs: list[tuple[bytes, bytes]]) -> str:
    """Any bytes, percent-encoded: not necessarily UTF-8 once decoded."""
    return "&".join(f"{quote_from_bytes(k)}={quote_from_bytes(v)}" for k, v in pairs)


query_pairs = st.lists(
    st.tuples(
        st.one_of(st.sampled_from(KNOWN_PARAMS).map(str.encode), st.binary(max_size=8)),
        st.one_of(
            http_text.map(str.encode),
            st.binary(max_size=20),
            st.sampled_from([b"-1", b"0", b"99999999999999999999", b"nan", b"1e309"]),
        ),
    ),
    max_size=4,
)


@fuzz
@given(path=st.sampled_from(PAGES), pairs=query_pairs)
def test_every_page_and_api_list_answers_200_or_400_to_any_query(
    world: dict[str, Any], path: str, pairs: list[tuple[bytes, bytes]]
) -> None:
    client = world["clients"]["viewer"]
    headers = world["bearer"]["viewer"] if path.startswith("/api/") else {}
    response = client.get(f"{path}?{raw_query(pairs)}", headers=headers)
    assert response.status_code in (200, 400), (path, pairs, response.status_code)
    if response.status_code == 400:
        assert response.content.strip()


@fuzz
@given(pairs=query_pairs)
def test_the_session_page_answers_200_or_400_to_any_query(
    world: dict[str, Any], pairs: list[tuple[bytes, bytes]]
) -> None:
    client = world["clients"]["viewer"]
    response = client.get(f"/sessions/{world['session'].pk}/?{raw_query(pairs)}")
    assert response.status_code in (200, 400)


action_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "gateway": st.one_of(st.just("gw"), json_values),
            "session_key": st.one_of(st.just(KEY), json_values),
            "reason": st.one_of(st.just("stuck"), json_values),
            "expect_run_id": st.one_of(st.just("run-1"), json_values),
        },
    ),
)


@fuzz
@given(slug=st.sampled_from((*ACTIONS, "nope")), body=action_bodies)
def test_an_api_action_never_answers_500_to_any_json_body(
    world: dict[str, Any], slug: str, body: object
) -> None:
    client, headers = world["clients"]["operator"], world["bearer"]["operator"]
    response = client.post(
        f"/api/v1/actions/{slug}",
        json.dumps(body),
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code < 500 or response.status_code in (502, 503, 504)


@fuzz
@given(slug=st.sampled_from(ACTIONS), raw=st.binary(max_size=200))
def test_an_api_action_never_answers_500_to_any_bytes(
    world: dict[str, Any], slug: str, raw: bytes
) -> None:
    client, headers = world["clients"]["operator"], world["bearer"]["operator"]
    response = client.post(
        f"/api/v1/actions/{slug}", raw, content_type="application/json", headers=headers
    )
    assert response.status_code < 500


form_data = st.dictionaries(
    st.one_of(st.sampled_from(FORM_FIELDS), http_text),
    st.one_of(http_text, st.uuids().map(str), st.just("run-1")),
    max_size=5,
)


@fuzz
@given(slug=st.sampled_from(ACTIONS), data=form_data, htmx=st.booleans())
def test_the_action_dialog_never_answers_500_to_any_form(
    world: dict[str, Any], slug: str, data: dict[str, str], htmx: bool
) -> None:
    client = world["clients"]["operator"]
    headers = {"HX-Request": "true"} if htmx else {}
    response = client.post(f"/sessions/{world['session'].pk}/act/{slug}/", data, headers=headers)
    assert response.status_code < 500 or response.status_code in (502, 503, 504)


@fuzz
@given(slug=st.sampled_from(ACTIONS), data=form_data, pairs=query_pairs)
def test_the_bulk_form_never_answers_500(
    world: dict[str, Any], slug: str, data: dict[str, str], pairs: list[tuple[bytes, bytes]]
) -> None:
    client = world["clients"]["admin"]
    response = client.post(f"/act/bulk/{slug}/?{raw_query(pairs)}", data)
    assert response.status_code < 500 or response.status_code in (502, 503, 504)


@fuzz
@given(data=st.dictionaries(st.sampled_from(("username", "password", "next")), http_text))
def test_the_login_form_never_answers_500(data: dict[str, str]) -> None:
    response = Client().post("/login/", data)
    assert response.status_code < 500
