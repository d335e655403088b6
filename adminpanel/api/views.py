"""The JSON API v1: the sessions, gateways and audit lists, and the four actions.

Thin like the pages: authenticate the Bearer token (``tokens``), check the same
permissions the pages check (roles), validate with the pages' forms, query with
the pages' queries, act through ``actions.perform``. Every answer is JSON;
every error is ``{"error": "...", "details": {...}}`` with a message that
says what was wrong. Session cookies are ignored here, so there is no CSRF.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from typing import Any

import structlog
from asgiref.sync import sync_to_async
from django import forms
from django.contrib.auth.models import User
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.urls import path, re_path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from adminpanel import actions
from adminpanel.api import tokens
from adminpanel.audit.queries import AuditFilterForm, attempt_json, attempts
from adminpanel.bridges import leases
from adminpanel.forms import CursorField, SessionFilterForm, StrictQueryForm, encode_cursor
from adminpanel.models import Gateway, Session
from adminpanel.roles import ACTION_PERMISSION, VIEW, VIEW_AUDIT
from adminpanel.session_rows import PAGE_SIZE, SORT_SEGMENTS, filtered_sessions, keyset_page
from gateway_bridge.observer import OBSERVER_BLIND_SPOTS

log = structlog.get_logger(__name__)

MAX_LIMIT = 500
MAX_BODY_BYTES = 64 * 1024
# URL slug → action (adminpanel/actions.py).
ACTION_SLUGS = {a.replace("_", "-"): a for a in actions.ACTIONS}
ACTION_FIELDS = {"gateway": True, "session_key": True, "reason": True, "expect_run_id": False}
# An action's result → HTTP status; ``pending``: a retry whose first attempt still runs.
RESULT_STATUS = {"success": 200, "noop": 200, "pending": 202, "conflict": 409, "error": 502,
                 "interrupted": 502}  # fmt: skip
_PRINTABLE = re.compile(r"^[\x21-\x7e]+$")
REQUEST_ID_MAX = 64  # AuditEntry.request_id
IDEMPOTENCY_KEY_MAX = 200

AsyncView = Callable[..., Coroutine[Any, Any, HttpResponse]]


def error(status: int, message: str, **details: Any) -> JsonResponse:
    return JsonResponse({"error": message, "details": details}, status=status)


# Authentication and permissions --------------------------------------------------------


def api_view(*methods: str) -> Callable[[AsyncView], AsyncView]:
    """Allowed methods (else 405), then a live Bearer token (else 401); errors as JSON."""

    def decorate(view: AsyncView) -> AsyncView:
        @functools.wraps(view)
        async def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                response = error(
                    405,
                    f"{request.method} is not allowed here; use {' or '.join(methods)}.",
                    allowed=list(methods),
                )
                response["Allow"] = ", ".join(methods)
                return response
            header = request.headers.get("Authorization", "")
            found = await sync_to_async(tokens.authenticate)(header)
            if isinstance(found, tokens.Unauthenticated):
                log.info("api_request_unauthenticated", path=request.path, why=found.why)
                response = error(401, found.why)
                response["WWW-Authenticate"] = 'Bearer realm="runboard"'
                return response
            request.user = found.user  # the token's user; a session cookie counts for nothing
            try:
                return await view(request, *args, **kwargs)
            except RequestDataTooBig:  # a body without Content-Length, past Django's limit
                return error(413, f"The body is too large; at most {MAX_BODY_BYTES} bytes.")
            except Exception:
                log.exception("api_request_failed", path=request.path, user=found.user.username)
                return error(500, "Internal error; the server's log has the details.")

        return csrf_exempt(wrapped)  # type: ignore[return-value]

    return decorate


@sync_to_async
def missing_permissions(user: User, *permissions: str) -> list[str]:
    return [p for p in permissions if not user.has_perm(p)]


async def forbidden(request: HttpRequest, *permissions: str) -> JsonResponse | None:
    """403 naming each permission the token's user lacks, or None when it has them all."""
    user: User = request.user  # type: ignore[assignment]
    missing = await missing_permissions(user, *permissions)
    if not missing:
        return None
    return error(
        403,
        f"User {user.username!r} lacks the permission {', '.join(missing)} "
        "(the same roles as the pages: viewer reads, operator also acts).",
        missing=missing,
        user=user.username,
    )


# Query parameters ----------------------------------------------------------------------


def bad_parameters(query: QueryDict, form: StrictQueryForm) -> JsonResponse:
    """400 listing each bad parameter with its messages."""
    problems: dict[str, list[str]] = {}
    for name in sorted(set(query) - set(form.fields)):
        problems[name] = [f"Unknown parameter; this endpoint takes: {', '.join(form.fields)}."]
    for name, errors in form.errors.items():
        messages = [str(e) for e in errors]
        if name == "__all__":  # unknown parameters are listed by name above
            messages = [m for m in messages if not m.startswith("Unknown parameter")]
            name = "query"
        if messages:
            problems.setdefault(name, []).extend(messages)
    summary = "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in problems.items())
    return error(400, f"Bad query parameters — {summary}", parameters=problems)


class SessionsQuery(SessionFilterForm):
    """The sessions page's filters, and how many sessions to answer (no auto refresh)."""

    refresh = None  # type: ignore[assignment]
    limit = forms.IntegerField(required=False, min_value=1, max_value=MAX_LIMIT)


class AuditQuery(AuditFilterForm):
    """The audit page's filters, where the page starts and how many attempts."""

    after = CursorField()
    limit = forms.IntegerField(required=False, min_value=1, max_value=MAX_LIMIT)


class PlainQuery(StrictQueryForm):
    """An endpoint that takes no parameters (a typo is still an error)."""


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _next_url(request: HttpRequest, cursor: str | None) -> str | None:
    if cursor is None:
        return None
    query = request.GET.copy()
    query["after"] = cursor
    return f"{request.path}?{query.urlencode()}"


# Reads -----------------------------------------------------------------------------------


def session_json(session: Session, now: datetime) -> dict[str, Any]:
    locked = session.locked
    age = (now - session.lock_acquired_at).total_seconds() if session.lock_acquired_at else None
    return {
        "gateway": session.gateway.name,
        "session_key": session.session_key,
        "agent": session.agent,
        "channel": session.channel,
        "phase": session.phase if locked else "idle",
        "result": session.result if locked else "",  # a result while held: the lock leaked
        "locked": locked,
        "lock_age_s": round(age, 1) if locked and age is not None else None,
        "waiters": session.waiter_count,
        "run_id": session.run_id if locked else "",
        "last_progress_at": _iso(session.last_progress_at),
        "flags": [
            {"code": f.code, "severity": f.severity, "since": _iso(f.since), "why": f.why}
            for f in getattr(session, "active_flags", [])
        ],
    }


def _sessions(filters: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    sort = filters.get("sort") or "age"
    page = keyset_page(
        filtered_sessions(dict(filters)),
        SORT_SEGMENTS[sort],
        filters.get("after"),
        filters.get("limit") or PAGE_SIZE,
    )
    now = timezone.now()
    return [session_json(s, now) for s in page.rows], page.next_cursor


@api_view("GET")
async def sessions(request: HttpRequest) -> HttpResponse:
    if refused := await forbidden(request, VIEW):
        return refused
    form = SessionsQuery(request.GET)
    if not form.is_valid():
        return bad_parameters(request.GET, form)
    try:
        rows, cursor = await sync_to_async(_sessions)(form.cleaned_data)
    except ValueError:
        form.add_error("after", "This cursor belongs to another sort; start without it.")
        return bad_parameters(request.GET, form)
    return JsonResponse({"sessions": rows, "next": cursor, "next_url": _next_url(request, cursor)})


def gateway_json(gateway: Gateway, now: datetime) -> dict[str, Any]:
    lease = leases.holder_of(gateway, now)
    return {
        "name": gateway.name,
        "enabled": gateway.enabled,
        "status": gateway.status,
        "mode": gateway.mode,
        "version": gateway.version,
        "profile": gateway.profile,
        "connected_since": _iso(gateway.connected_since),
        "last_event_at": _iso(gateway.last_event_at),
        "reconnects": gateway.reconnects,
        "last_error": gateway.last_error,
        # Without the companion plugin Runboard infers the registry, and some of it stays dark.
        "cannot_see": list(OBSERVER_BLIND_SPOTS) if gateway.mode == "observer" else [],
        # Which bridge process mirrors it now (several share the gateways through leases).
        "bridge": (
            {"host": lease.host, "pid": lease.pid, "since": _iso(lease.since)} if lease else None
        ),
    }


@sync_to_async
def _gateways() -> list[dict[str, Any]]:
    now = timezone.now()
    return [gateway_json(g, now) for g in Gateway.objects.select_related("lease").order_by("name")]


@api_view("GET")
async def gateways(request: HttpRequest) -> HttpResponse:
    if refused := await forbidden(request, VIEW):
        return refused
    form = PlainQuery(request.GET)
    if not form.is_valid():
        return bad_parameters(request.GET, form)
    return JsonResponse({"gateways": await _gateways()})


def _audit(filters: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    rows = attempts(filters)
    cursor = filters.get("after")
    if cursor:
        if len(cursor) != 1 or not isinstance(cursor[0], int):
            raise ValueError("not an audit cursor")
        rows = rows.filter(pk__lt=cursor[0])
    limit = filters.get("limit") or PAGE_SIZE
    page = list(rows[: limit + 1])
    next_cursor = encode_cursor([page[limit - 1].pk]) if len(page) > limit else None
    return [attempt_json(intent) for intent in page[:limit]], next_cursor


@api_view("GET")
async def audit(request: HttpRequest) -> HttpResponse:
    if refused := await forbidden(request, VIEW, VIEW_AUDIT):
        return refused
    form = AuditQuery(request.GET)
    if not form.is_valid():
        return bad_parameters(request.GET, form)
    try:
        rows, cursor = await sync_to_async(_audit)(form.cleaned_data)
    except ValueError:
        form.add_error("after", "Not a cursor of this list; start without it.")
        return bad_parameters(request.GET, form)
    return JsonResponse({"attempts": rows, "next": cursor, "next_url": _next_url(request, cursor)})


# Actions -------------------------------------------------------------------------------


class BadBody(ValueError):
    """The request body is not what an action takes; the message says what is wrong."""

    status = 400


class TooLarge(BadBody):
    """The request body is larger than an action takes (413)."""

    status = 413


def action_body(request: HttpRequest) -> dict[str, str]:
    """``{gateway, session_key, reason, expect_run_id}`` from the JSON body, checked."""
    length = request.META.get("CONTENT_LENGTH") or "0"
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise TooLarge(f"The body is {length} bytes; at most {MAX_BODY_BYTES} are accepted.")
    try:
        raw = request.body
    except RequestDataTooBig:
        raise TooLarge(f"The body is too large; at most {MAX_BODY_BYTES} bytes.") from None
    if len(raw) > MAX_BODY_BYTES:
        raise TooLarge(f"The body is {len(raw)} bytes; at most {MAX_BODY_BYTES} are accepted.")
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadBody("The body is not UTF-8 text.") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise BadBody(f"The body is not JSON: {exc.msg} at {where}.") from None
    if not isinstance(body, dict):
        raise BadBody(f"The body must be a JSON object, not {type(body).__name__}.")
    unknown = sorted(set(body) - set(ACTION_FIELDS))
    if unknown:
        raise BadBody(
            f"Unknown key(s) {', '.join(map(repr, unknown))}; an action takes "
            f"{', '.join(ACTION_FIELDS)}."
        )
    wanted = [k for k, required in ACTION_FIELDS.items() if required and k not in body]
    if wanted:
        raise BadBody(f"Missing key(s): {', '.join(wanted)}.")
    out: dict[str, str] = {}
    for key in ACTION_FIELDS:
        value = body.get(key)
        if value is None and not ACTION_FIELDS[key]:
            value = ""
        if not isinstance(value, str):
            raise BadBody(f"{key} must be a string, not {type(value).__name__}.")
        out[key] = value
    for key in ("gateway", "session_key"):
        if not out[key]:
            raise BadBody(f"{key} must not be empty.")
    return out


def _header(request: HttpRequest, name: str, max_chars: int) -> str:
    value = request.headers.get(name, "")
    if value and (len(value) > max_chars or not _PRINTABLE.match(value)):
        raise BadBody(
            f"The {name} header must be printable ASCII without spaces, "
            f"at most {max_chars} characters."
        )
    return value


def once_key(user: User, action: str, key: str) -> str:
    """An Idempotency-Key, per user and action, short enough for the audit row."""
    if not key:
        return ""
    return f"api-{user.pk}-{action}-{hashlib.sha256(key.encode()).hexdigest()[:32]}"


@sync_to_async
def _session_exists(gateway: str, session_key: str) -> bool:
    return Session.objects.filter(gateway__name=gateway, session_key=session_key).exists()


@api_view("POST")
async def act(request: HttpRequest, slug: str) -> HttpResponse:
    action = ACTION_SLUGS.get(slug)
    if action is None:
        return error(
            404,
            f"No action {slug!r}; one of {', '.join(ACTION_SLUGS)}.",
            actions=list(ACTION_SLUGS),
        )
    if refused := await forbidden(request, ACTION_PERMISSION[action]):
        return refused
    user: User = request.user  # type: ignore[assignment]
    try:
        body = action_body(request)
        request_id = _header(request, "X-Request-ID", REQUEST_ID_MAX) or uuid.uuid4().hex
        retry_key = _header(request, "Idempotency-Key", IDEMPOTENCY_KEY_MAX)
    except BadBody as exc:
        return error(exc.status, str(exc))
    if not await _session_exists(body["gateway"], body["session_key"]):
        return error(
            404,
            f"Gateway {body['gateway']!r} has no session {body['session_key']!r}.",
            gateway=body["gateway"],
            session_key=body["session_key"],
        )
    target = actions.Target(body["gateway"], body["session_key"], body["expect_run_id"])
    try:
        outcome = await actions.perform(
            action,
            target,
            reason=body["reason"],
            actor=actions.Actor(user.username),
            request_id=request_id,
            client_addr=request.META.get("REMOTE_ADDR", "") or "",
            once_key=once_key(user, action, retry_key),
        )
    except actions.ActionRefused as exc:
        gone = "has no session" in str(exc)  # removed since the check above
        return error(404 if gone else 400, str(exc), action=action)
    response = JsonResponse(
        {
            "audit_id": outcome.audit_id,
            "result": outcome.result,
            "detail": outcome.detail,
            "action": action,
            "gateway": target.gateway,
            "session_key": target.session_key,
            "repeated": outcome.repeated,
            "state": outcome.state,
            "request_id": request_id,
        },
        status=RESULT_STATUS.get(outcome.result, 500),
    )
    response["X-Request-ID"] = request_id
    return response


def not_found(request: HttpRequest, rest: str = "") -> JsonResponse:
    return error(
        404,
        f"No endpoint {request.path!r}. The API v1 has: GET sessions, GET gateways, GET audit, "
        f"POST actions/{{{'|'.join(ACTION_SLUGS)}}}.",
    )


urlpatterns = [
    path("sessions", sessions, name="api_sessions"),
    path("gateways", gateways, name="api_gateways"),
    path("audit", audit, name="api_audit"),
    path("actions/<slug:slug>", act, name="api_action"),
    re_path(r"^(?P<rest>.*)$", not_found),
]
