"""The OpenAPI 3.1 description of /api/v1/, written by hand next to the views it describes.

Enumerations come from the code (phases, sorts, results, actions), so they
cannot drift; the shapes are checked against real answers of every endpoint
in tests/api/test_openapi.py. Served without a token: it holds no data.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from adminpanel.actions import ACTIONS
from adminpanel.api.views import ACTION_SLUGS, IDEMPOTENCY_KEY_MAX, MAX_LIMIT, REQUEST_ID_MAX
from adminpanel.audit.views import RESULTS as AUDIT_RESULTS
from adminpanel.forms import SORTS
from adminpanel.models import Flag, Gateway
from gateway_bridge.events import PHASES

JSON = "application/json"


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(kind: str, **more: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **more}


def strict(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """An object with exactly these keys (all required unless told)."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


TEXT = {"type": "string"}
WHEN = nullable("string", format="date-time")
CURSOR = nullable("string", description="Pass as `after` for the next page; null on the last.")
NEXT_URL = nullable("string", description="This request's URL with `after` set; null on the last.")


def schemas() -> dict[str, Any]:
    return {
        "Error": strict(
            {
                "error": {**TEXT, "description": "What was wrong, as a sentence."},
                "details": {"type": "object", "description": "The parts of it, by name."},
            }
        ),
        "Flag": strict(
            {
                "code": TEXT,
                "severity": {"enum": list(Flag.SEVERITIES)},
                "since": WHEN,
                "why": TEXT,
            }
        ),
        "Session": strict(
            {
                "gateway": TEXT,
                "session_key": TEXT,
                "agent": TEXT,
                "channel": TEXT,
                "phase": {**TEXT, "description": "The lock's phase, or `idle` without a lock."},
                "result": {**TEXT, "description": "A run result while held: the lock leaked."},
                "locked": {"type": "boolean"},
                "lock_age_s": nullable("number"),
                "waiters": {"type": "integer", "minimum": 0},
                "run_id": TEXT,
                "last_progress_at": WHEN,
                "flags": {"type": "array", "items": ref("Flag")},
            }
        ),
        "SessionList": strict(
            {
                "sessions": {"type": "array", "items": ref("Session")},
                "next": CURSOR,
                "next_url": NEXT_URL,
            }
        ),
        "Gateway": strict(
            {
                "name": TEXT,
                "enabled": {"type": "boolean"},
                "status": {"enum": list(Gateway.STATUSES)},
                "mode": {"enum": list(Gateway.MODES)},
                "version": TEXT,
                "profile": TEXT,
                "connected_since": WHEN,
                "last_event_at": WHEN,
                "reconnects": {"type": "integer", "minimum": 0},
                "last_error": TEXT,
                "cannot_see": {
                    "type": "array",
                    "items": TEXT,
                    "description": "What observer mode cannot see (empty with the plugin).",
                },
                "bridge": {
                    "oneOf": [
                        {"type": "null"},
                        strict(
                            {"host": TEXT, "pid": {"type": "integer"}, "since": WHEN},
                        ),
                    ],
                    "description": "The bridge that holds the gateway now (its lease), or null.",
                },
            }
        ),
        "GatewayList": strict({"gateways": {"type": "array", "items": ref("Gateway")}}),
        "Attempt": strict(
            {
                "audit_id": {"type": "integer"},
                "seq": {"type": "integer"},
                "at": {"type": "string", "format": "date-time"},
                "actor": TEXT,
                "actor_kind": {"enum": ["user", "policy"]},
                "action": {"enum": list(ACTIONS)},
                "gateway": TEXT,
                "session_key": TEXT,
                "session_pk": nullable("integer"),
                "expect_run_id": TEXT,
                "reason": TEXT,
                "batch": TEXT,
                "dry_run": {"type": "boolean"},
                "request_id": TEXT,
                "client_addr": TEXT,
                "once_key": TEXT,
                "state_before": {"type": "object"},
                "planned_calls": {"type": "array"},
                "result": {"enum": list(AUDIT_RESULTS)},
                "detail": TEXT,
                "finished_at": WHEN,
                "duration_ms": nullable("integer"),
                "state_after": nullable("object"),
                "calls": {"type": "array"},
                "outcome_id": nullable("integer"),
                "outcome_seq": nullable("integer"),
                "intent_hash": TEXT,
                "outcome_hash": nullable("string"),
            }
        ),
        "AttemptList": strict(
            {
                "attempts": {"type": "array", "items": ref("Attempt")},
                "next": CURSOR,
                "next_url": NEXT_URL,
            }
        ),
        "ActionRequest": strict(
            {
                "gateway": {**TEXT, "minLength": 1},
                "session_key": {**TEXT, "minLength": 1},
                "reason": {**TEXT, "description": "Why; it goes into the audit log."},
                "expect_run_id": nullable(
                    "string",
                    description="The run you saw holding the lock; nothing is done "
                    "if another holds it now.",
                ),
            },
            ["gateway", "session_key", "reason"],
        ),
        "SessionState": strict(
            {
                "locked": {"type": "boolean"},
                "run_id": TEXT,
                "phase": TEXT,
                "result": TEXT,
                "lock_age_s": nullable("number"),
                "last_progress_s": nullable("number"),
                "waiters": {"type": "integer"},
                "flags": {"type": "integer"},
                "mode": {"enum": list(Gateway.MODES)},
            },
            [],  # empty while the first submit of a repeated request is still running
        ),
        "ActionResult": strict(
            {
                "audit_id": {"type": "integer"},
                "result": {"enum": ["success", "noop", "pending", "conflict", "error"]},
                "detail": TEXT,
                "action": {"enum": list(ACTIONS)},
                "gateway": TEXT,
                "session_key": TEXT,
                "repeated": {"type": "boolean"},
                "state": ref("SessionState"),
                "request_id": TEXT,
            }
        ),
    }


def answer(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": ref(schema)}}}


def errors(*statuses: int) -> dict[str, Any]:
    said = {
        400: "Bad query parameters or body; `details` names each.",
        401: "No token, or an unknown, revoked or inactive one.",
        403: "The token's user lacks a permission; `details.missing` names it.",
        404: "No such action, or the gateway has no such session.",
        405: "Another method than the one this endpoint takes.",
        500: "An internal error; the server's log has the details.",
    }
    return {str(s): answer(said[s], "Error") for s in statuses}


def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


LIMIT = query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, "Page size.")
AFTER = query("after", TEXT, "The cursor of the previous page's `next`.")


def read(
    summary: str, operation: str, schema: str, parameters: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "operationId": operation,
            "parameters": parameters,
            "responses": {"200": answer(summary, schema), **errors(400, 401, 403, 405, 500)},
        }
    }


def act(slug: str) -> dict[str, Any]:
    action = ACTION_SLUGS[slug]
    headers = [
        {
            "name": "X-Request-ID",
            "in": "header",
            "required": False,
            "schema": {**TEXT, "maxLength": REQUEST_ID_MAX},
            "description": "Recorded in the audit log and echoed back; made up when absent.",
        },
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "schema": {**TEXT, "maxLength": IDEMPOTENCY_KEY_MAX},
            "description": "The same key again returns the first attempt's outcome.",
        },
    ]
    outcome = "ActionResult"
    return {
        "post": {
            "summary": f"{action.replace('_', ' ').capitalize()} one session, audited.",
            "operationId": action,
            "parameters": headers,
            "requestBody": {"required": True, "content": {JSON: {"schema": ref("ActionRequest")}}},
            "responses": {
                "200": answer("Done (`success`) or nothing to do (`noop`).", outcome),
                "202": answer("A repeat whose first attempt is still running.", outcome),
                "409": answer("Another run holds the lock now: nothing was done.", outcome),
                "502": answer("The gateway or its bridge failed; see `detail`.", outcome),
                **errors(400, 401, 403, 404, 405, 500),
            },
        }
    }


def document() -> dict[str, Any]:
    session_filters = [
        query("gateway", TEXT, "Only this gateway."),
        query("agent", TEXT, "Only this agent."),
        query("channel", TEXT, "Only this channel."),
        query("phase", {"enum": list(PHASES)}, "Only locks in this phase."),
        query("q", TEXT, "Session key contains."),
        query("flagged", {"type": "boolean"}, "Only sessions with an active flag."),
        query("sort", {"enum": list(SORTS)}, "Order (default: oldest lock first)."),
        AFTER,
        LIMIT,
    ]
    audit_filters = [
        query("actor", TEXT, "Only this actor."),
        query("action", {"enum": [*ACTIONS, *ACTION_SLUGS]}, "Only this action."),
        query("result", {"enum": list(AUDIT_RESULTS)}, "Only this result."),
        query("gateway", TEXT, "Only this gateway."),
        query("q", TEXT, "Session key contains."),
        query("session", {"type": "integer", "minimum": 1}, "Only this session id."),
        query("batch", TEXT, "Only this bulk action's attempts."),
        query("attempt", {"type": "integer", "minimum": 1}, "Only this audit entry."),
        query("since", {"type": "string", "format": "date"}, "From this date."),
        query("until", {"type": "string", "format": "date"}, "Until this date, inclusive."),
        AFTER,
        LIMIT,
    ]
    paths: dict[str, Any] = {
        "/sessions": read(
            "Sessions, filtered and paged.", "sessions", "SessionList", session_filters
        ),
        "/gateways": read("Every gateway and its connection.", "gateways", "GatewayList", []),
        "/audit": read("Action attempts, newest first.", "audit", "AttemptList", audit_filters),
    }
    paths.update({f"/actions/{slug}": act(slug) for slug in ACTION_SLUGS})
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Runboard API",
            "version": "1",
            "description": (
                "Read the sessions, gateways and audit log; force-clear, requeue, abort. "
                "Every request needs `Authorization: Bearer <token>` (`manage.py "
                "create_api_token USER`); the token's user needs the pages' permissions "
                "(viewer reads, operator acts)."
            ),
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas(),
        },
    }


@require_GET
def openapi_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse(document())
