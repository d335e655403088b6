"""Pages for operator actions: the confirmation dialog, its result, and bulk actions.

GET shows the dialog: the targets, the state the operator sees, a warning when
the run made progress moments ago, the messages a requeue would send and the
exact gateway calls; it asks for a reason. POST performs the action through
``adminpanel.actions`` (audited there) and shows its result. With htmx the
dialog and the result are partials for the page's ``<dialog>``; without
JavaScript they are whole pages. The views are async: the action waits on the
gateway without holding the thread that ingest writes on.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import structlog
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from adminpanel import actions
from adminpanel.actions import ActionRefused, Actor, Target
from adminpanel.forms import ActionForm, BulkActionForm, SessionFilterForm
from adminpanel.models import Session
from adminpanel.roles import ACTION_PERMISSION, BULK
from adminpanel.session_rows import filtered_sessions

log = structlog.get_logger(__name__)

SLUGS = {
    "force-clear": "force_clear",
    "requeue": "requeue",
    "abort": "abort",
    "clear-and-requeue": "clear_and_requeue",
}
SLUG_OF = {action: slug for slug, action in SLUGS.items()}
BULK_CAP = 100  # sessions one bulk action may touch
TYPE_COUNT_ABOVE = 10  # more targets than this: the operator types the count
BULK_CONCURRENCY = 4


def _action_of(slug: str) -> str:
    try:
        return SLUGS[slug]
    except KeyError:
        raise Http404(f"no action {slug!r}; one of {', '.join(SLUGS)}") from None


async def _allowed(request: HttpRequest, *permissions: str) -> HttpResponse | None:
    """None when the user may go on; else the login redirect or a 403 page."""
    user = await request.auser()
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    missing = [p for p in permissions if not await sync_to_async(user.has_perm)(p)]
    if missing:
        log.info("action_forbidden", user=user.username, missing=missing)
        return await sync_to_async(render)(
            request,
            "adminpanel/forbidden.html",
            {"missing": missing},
            status=403,
        )
    return None


def _client_addr(request: HttpRequest) -> str:
    return str(request.META.get("REMOTE_ADDR") or "")[:64]


def _request_id(request: HttpRequest) -> str:
    given = str(request.headers.get("X-Request-ID", ""))[:64]
    return given or uuid.uuid4().hex


def _template(request: HttpRequest, name: str) -> str:
    partial = getattr(request, "htmx", False)
    return f"adminpanel/{name}{'_partial' if partial else ''}.html"


# One session ------------------------------------------------------------------------


async def session_action(request: HttpRequest, pk: int, slug: str) -> HttpResponse:
    action = _action_of(slug)
    if (refused := await _allowed(request, ACTION_PERMISSION[action])) is not None:
        return refused
    session = await Session.objects.select_related("gateway").filter(pk=pk).afirst()
    if session is None:
        raise Http404("no such session")
    if request.method == "POST":
        return await _perform(request, action, session)
    if request.method != "GET":
        return HttpResponse(status=405, headers={"Allow": "GET, POST"})
    seen = str(request.GET.get("run", ""))[:128] or session.run_id
    form = ActionForm(initial={"expect_run_id": seen, "submission": uuid.uuid4()})
    return await sync_to_async(_render_dialog)(request, action, session, form, seen)


def _render_dialog(
    request: HttpRequest,
    action: str,
    session: Session,
    form: ActionForm,
    seen: str,
    status: int = 200,
) -> HttpResponse:
    expect = seen if session.locked or action in actions.NEEDS_RUN else ""
    preview = actions.preview(action, Target(session.gateway.name, session.session_key, expect))
    context = {
        "action": action,
        "label": actions.LABELS[action],
        "slug": SLUG_OF[action],
        "session": session,
        "preview": preview,
        "seen": seen,
        "stale": bool(seen) and seen != preview.state["run_id"],
        "form": form,
        "needs_run": action in actions.NEEDS_RUN,
        "timeout_s": settings.RUNBOARD_CALL_TIMEOUT_S,
    }
    return render(request, _template(request, "action_dialog"), context, status=status)


async def _perform_as_user(
    request: HttpRequest, action: str, target: Target, form: ActionForm, **more: Any
) -> actions.Outcome:
    """``actions.perform`` on behalf of the request's user, with its request id and address."""
    user = await request.auser()
    return await actions.perform(
        action,
        target,
        reason=form.cleaned_data["reason"],
        actor=Actor(user.get_username()),
        request_id=_request_id(request),
        client_addr=_client_addr(request),
        **more,
    )


async def _perform(request: HttpRequest, action: str, session: Session) -> HttpResponse:
    form = ActionForm(request.POST)
    if not form.is_valid():
        seen = str(request.POST.get("expect_run_id", ""))[:128]
        return await sync_to_async(_render_dialog)(request, action, session, form, seen, 400)
    target = Target(session.gateway.name, session.session_key, form.cleaned_data["expect_run_id"])
    try:
        outcome = await _perform_as_user(
            request, action, target, form, once_key=f"form:{form.cleaned_data['submission']}"
        )
    except ActionRefused as exc:
        form.add_error(None, str(exc))
        seen = form.cleaned_data["expect_run_id"]
        return await sync_to_async(_render_dialog)(request, action, session, form, seen, 400)
    context = {
        "outcomes": [outcome],
        "label": actions.LABELS[action],
        "session": session,
        "slug": SLUG_OF[action],
    }
    return await sync_to_async(render)(request, _template(request, "action_result"), context)


# Bulk -------------------------------------------------------------------------------


def _bulk_targets(query: Any) -> tuple[SessionFilterForm, list[Session], bool]:
    """The locked sessions matching the sessions page's filters, oldest lock first, capped."""
    filters = SessionFilterForm(query)
    if not filters.is_valid():
        return filters, [], False
    data = dict(filters.cleaned_data)
    data.pop("after", None)
    matching = filtered_sessions(data).filter(locked=True).order_by("lock_acquired_at", "pk")
    rows = list(matching[: BULK_CAP + 1])
    return filters, rows[:BULK_CAP], len(rows) > BULK_CAP


async def bulk_action(request: HttpRequest, slug: str) -> HttpResponse:
    action = _action_of(slug)
    if (refused := await _allowed(request, ACTION_PERMISSION[action], BULK)) is not None:
        return refused
    if request.method == "POST":
        return await _perform_bulk(request, action)
    if request.method != "GET":
        return HttpResponse(status=405, headers={"Allow": "GET, POST"})
    form = BulkActionForm(initial={"submission": uuid.uuid4()})
    return await sync_to_async(_render_bulk)(request, action, request.GET, form)


def _render_bulk(
    request: HttpRequest, action: str, query: Any, form: BulkActionForm, status: int = 200
) -> HttpResponse:
    filters, targets, capped = _bulk_targets(query)
    if not filters.is_valid():
        context = {"form": filters, "problems": filters.messages()}
        return render(request, "adminpanel/bad_request.html", context, status=400)
    form.initial["targets"] = ",".join(f"{s.pk}:{s.run_id}" for s in targets)
    context = {
        "action": action,
        "label": actions.LABELS[action],
        "slug": SLUG_OF[action],
        "targets": targets,
        "capped": capped,
        "cap": BULK_CAP,
        "type_count": len(targets) > TYPE_COUNT_ABOVE,
        "form": form,
        "query": query.urlencode(),
        "timeout_s": settings.RUNBOARD_CALL_TIMEOUT_S,
    }
    return render(request, _template(request, "bulk_dialog"), context, status=status)


async def _perform_bulk(request: HttpRequest, action: str) -> HttpResponse:
    form = BulkActionForm(request.POST)
    query = request.GET
    if not form.is_valid():
        return await sync_to_async(_render_bulk)(request, action, query, form, 400)
    pairs: list[tuple[int, str]] = form.cleaned_data["targets"]
    if len(pairs) > BULK_CAP:
        form.add_error("targets", f"At most {BULK_CAP} sessions at once.")
        return await sync_to_async(_render_bulk)(request, action, query, form, 400)
    if len(pairs) > TYPE_COUNT_ABOVE and form.cleaned_data.get("confirm_count") != len(pairs):
        form.add_error("confirm_count", f"Type {len(pairs)}, the number of sessions, to confirm.")
        return await sync_to_async(_render_bulk)(request, action, query, form, 400)
    sessions = {
        s.pk: s
        async for s in Session.objects.select_related("gateway").filter(
            pk__in=[pk for pk, _ in pairs]
        )
    }
    batch = f"bulk:{form.cleaned_data['submission'].hex}"  # fits AuditEntry.batch (40)
    limit = asyncio.Semaphore(BULK_CONCURRENCY)
    # Once a call times out the gateway is slow or gone: the rest are not started.
    gave_up = asyncio.Event()

    async def one(pk: int, run_id: str) -> actions.Outcome | None:
        session = sessions.get(pk)
        if session is None:
            return None
        target = Target(session.gateway.name, session.session_key, run_id)
        async with limit:
            if gave_up.is_set():
                detail = "Not attempted: an earlier call timed out (gateway slow or gone)."
                return actions.Outcome(0, "error", detail, action, target)
            try:
                outcome = await _perform_as_user(
                    request, action, target, form, batch=batch, once_key=batch
                )
            except ActionRefused as exc:
                return actions.Outcome(0, "error", str(exc), action, target)
            if outcome.timed_out:
                gave_up.set()
            return outcome

    results = await asyncio.gather(*(one(pk, run) for pk, run in pairs))
    outcomes = [o for o in results if o is not None]
    context = {
        "outcomes": outcomes,
        "label": actions.LABELS[action],
        "bulk": True,
    }
    return await sync_to_async(render)(request, _template(request, "action_result"), context)
