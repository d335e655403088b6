"""``/metrics``: Prometheus' text format, for a viewer's API token or RUNBOARD_METRICS_TOKEN.

The answer to a refused request never repeats what was sent: a scraper
misconfigured with a secret in the wrong header must not see it in logs.
"""

from __future__ import annotations

import hmac

import structlog
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from adminpanel.api import tokens
from adminpanel.observability.collector import RunboardCollector
from adminpanel.roles import VIEW

log = structlog.get_logger(__name__)

REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(RunboardCollector())

NO_TOKEN = (
    "No token: send 'Authorization: Bearer <token>' with a viewer's API token "
    "or RUNBOARD_METRICS_TOKEN."
)
BAD_SCHEME = "The Authorization header must be 'Bearer <token>'."
BAD_TOKEN = "Unknown, revoked or inactive token."


def refusal(header: str) -> tuple[int, str] | None:
    """(status, why) when ``header`` does not open /metrics, or None when it does."""
    if not header.strip():
        return 401, NO_TOKEN
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return 401, BAD_SCHEME
    wanted = settings.RUNBOARD_METRICS_TOKEN
    if wanted and hmac.compare_digest(token.encode(), wanted.encode()):
        return None
    found = tokens.authenticate(f"Bearer {token}")
    if isinstance(found, tokens.Unauthenticated):
        return 401, BAD_TOKEN
    if not found.user.has_perm(VIEW):
        return 403, f"User {found.user.username!r} lacks the permission {VIEW}."
    return None


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    refused = refusal(request.headers.get("Authorization", ""))
    if refused is not None:
        status, why = refused
        log.info("metrics_scrape_refused", status=status, why=why)
        response = JsonResponse({"error": why}, status=status)
        if status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="runboard"'
        return response
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
