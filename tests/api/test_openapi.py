"""/api/v1/openapi.json describes every endpoint, and real answers of each match it."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient, Client
from jsonschema import Draft202012Validator

from adminpanel import actions
from adminpanel.api.views import ACTION_SLUGS
from adminpanel.audit import chain
from simgateway.server import SimGateway
from tests.actions.support import hung_run, mirrored
from tests.api.support import apost, auth, get, post, role_tokens
from tests.observability.support import flag, gateway, session
from tests.support.fixtures_sim import FAST, SimGatewayFactory

KEY = "agent:main:telegram:direct:{}"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    response = Client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def check(spec: dict[str, Any], path: str, method: str, response: Any) -> dict[str, Any]:
    """Validate a real response against the schema documented for its path and status."""
    documented = spec["paths"][path][method]["responses"]
    status = str(response.status_code)
    assert status in documented, f"{method.upper()} {path} answered undocumented {status}"
    schema = documented[status]["content"]["application/json"]["schema"]
    body = response.json()
    Draft202012Validator({**schema, "components": spec["components"]}).validate(body)
    return dict(body)


def store() -> None:
    alpha = gateway("alpha", status="connected", mode="plugin", version="2026.9")
    gateway("beta", mode="observer", last_error="refused")
    held = session(alpha, KEY.format(1), locked_for_s=90)
    flag(held, "no_progress")
    session(alpha, KEY.format(2))


def test_the_document_is_openapi_3_1_and_is_served_without_a_token(spec: dict[str, Any]) -> None:
    assert spec["openapi"] == "3.1.0"
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for schema in spec["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_the_check_refuses_an_answer_that_strays_from_the_document(spec: dict[str, Any]) -> None:
    session = spec["components"]["schemas"]["Session"]
    validator = Draft202012Validator({**session, "components": spec["components"]})
    good = {name: None for name in session["required"]}

    assert not validator.is_valid(good)  # nulls where strings are documented
    assert not validator.is_valid({"gateway": "alpha"})  # fields missing
    assert not validator.is_valid({**good, "surprise": 1})  # an undocumented field


def test_the_document_covers_every_endpoint_of_the_api(spec: dict[str, Any]) -> None:
    wanted = {"/sessions": "get", "/gateways": "get", "/audit": "get"}
    wanted |= {f"/actions/{slug}": "post" for slug in ACTION_SLUGS}

    assert {path: next(iter(ops)) for path, ops in spec["paths"].items()} == wanted
    assert set(ACTION_SLUGS) == {"force-clear", "requeue", "abort", "clear-and-requeue"}


@pytest.mark.django_db
def test_real_reads_and_their_errors_match_the_document(spec: dict[str, Any]) -> None:
    tokens = role_tokens()
    store()
    client = Client()
    viewer = tokens["viewer"]

    body = check(spec, "/sessions", "get", get(client, "/api/v1/sessions", viewer, limit=1))
    assert body["sessions"][0]["flags"][0]["code"] == "no_progress" and body["next"]
    check(
        spec,
        "/sessions",
        "get",
        get(client, "/api/v1/sessions", viewer, after=body["next"], limit=1),
    )
    check(spec, "/sessions", "get", get(client, "/api/v1/sessions", viewer, phase="nonsense"))
    check(spec, "/sessions", "get", get(client, "/api/v1/sessions", None))
    check(spec, "/sessions", "get", get(client, "/api/v1/sessions", tokens["nobody"]))
    check(spec, "/sessions", "get", post(client, "/api/v1/sessions", viewer, {}))
    gateways = check(spec, "/gateways", "get", get(client, "/api/v1/gateways", viewer))
    assert {g["mode"] for g in gateways["gateways"]} == {"plugin", "observer"}
    check(spec, "/gateways", "get", get(client, "/api/v1/gateways", viewer, extra="1"))
    check(spec, "/audit", "get", get(client, "/api/v1/audit", viewer))  # 403: needs audit view
    check(spec, "/audit", "get", get(client, "/api/v1/audit", tokens["operator"], result="x"))


@pytest.mark.django_db(transaction=True)
async def test_real_audit_pages_with_finished_and_pending_attempts_match_the_document(
    spec: dict[str, Any],
) -> None:
    tokens = await sync_to_async(role_tokens)()
    await sync_to_async(store)()
    wrong = actions.Target("alpha", KEY.format(1), expect_run_id="another-run")
    await actions.perform("force_clear", wrong, reason="test", actor=actions.Actor("operator"))
    await sync_to_async(chain.append)(
        kind="intent",
        actor="operator",
        actor_kind="user",
        action="abort",
        gateway="alpha",
        session_key=KEY.format(1),
        reason="crashed before its outcome",
    )
    client = AsyncClient()

    first = await client.get("/api/v1/audit", {"limit": 1}, headers=auth(tokens["admin"]))
    body = await sync_to_async(check)(spec, "/audit", "get", first)
    assert body["attempts"][0]["result"] == "pending" and body["next"]
    rest = await client.get("/api/v1/audit", {"after": body["next"]}, headers=auth(tokens["admin"]))
    body = await sync_to_async(check)(spec, "/audit", "get", rest)
    assert body["attempts"][0]["result"] == "conflict"


@pytest.mark.django_db(transaction=True)
async def test_real_action_answers_of_every_action_match_the_document(
    spec: dict[str, Any],
) -> None:
    tokens = await sync_to_async(role_tokens)()
    await sync_to_async(store)()
    client = AsyncClient()
    operator = tokens["operator"]

    for slug in ACTION_SLUGS:
        path = f"/actions/{slug}"
        url = f"/api/v1{path}"
        target = {"gateway": "alpha", "session_key": KEY.format(1), "reason": "test"}
        answered = await apost(client, url, operator, {**target, "expect_run_id": "another-run"})
        body = check(spec, path, "post", answered)
        assert body["action"] == ACTION_SLUGS[slug] and body["state"]["locked"]
        check(spec, path, "post", await apost(client, url, operator, {**target, "extra": 1}))
        check(spec, path, "post", await apost(client, url, None, target))
        check(spec, path, "post", await apost(client, url, tokens["viewer"], target))
        missing = {**target, "session_key": "agent:main:none"}
        check(spec, path, "post", await apost(client, url, operator, missing))
        check(spec, path, "post", await client.get(url, headers=auth(operator)))


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("quick_supervisor")
async def test_a_real_successful_force_clear_answer_matches_the_document(
    spec: dict[str, Any], sim_gateway: SimGatewayFactory
) -> None:
    operator = (await sync_to_async(role_tokens)())["operator"]
    gw: SimGateway = await sim_gateway(profile="2026.9", **FAST)
    async with mirrored(gw):
        run_id = await hung_run(gw)
        body = {
            "gateway": "sim",
            "session_key": "agent:main:telegram:direct:hung",
            "reason": "no answer",
            "expect_run_id": run_id,
        }
        response = await apost(AsyncClient(), "/api/v1/actions/force-clear", operator, body)

    answer = check(spec, "/actions/force-clear", "post", response)
    assert answer["result"] == "success" and answer["state"]["mode"] in ("plugin", "observer")
