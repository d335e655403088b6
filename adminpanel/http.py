"""What every HTML page shares: its common context, and the 400 page for a bad query.

The pages, the audit pages and the action pages answer a bad URL the same
way: the form's messages on ``bad_request.html`` with status 400.
"""

from __future__ import annotations

from typing import Any

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from adminpanel import degraded
from adminpanel.forms import StrictQueryForm
from adminpanel.session_rows import stuck_count


def page_context(context: dict[str, Any]) -> dict[str, Any]:
    """``context`` with what the base template reads: ``now``, the header's stuck count,
    and what is degraded now (the banner)."""
    context.setdefault("now", timezone.now())
    context["degraded"] = degraded.notices()
    try:
        context["stuck_count"] = stuck_count()
    except DatabaseError:
        context["stuck_count"] = 0  # the banner says the store is unavailable
    return context


def bad_request(request: HttpRequest, form: StrictQueryForm) -> HttpResponse:
    """400: the query's problems, field by field, and how to put them right."""
    context = {"form": form, "problems": form.messages()}
    return render(request, "adminpanel/bad_request.html", page_context(context), status=400)
