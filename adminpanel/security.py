"""Browser security the settings cannot express: Permissions-Policy and the socket's origin.

Django's own middleware sends the Content-Security-Policy, X-Frame-Options,
nosniff and Referrer-Policy (runboard/settings.py). Two gaps remain: no
Permissions-Policy setting, and Channels' ``AllowedHostsOriginValidator``
compares only the Origin's host, so a page on another port of the same host
could open a socket with a user's cookie. ``SameOriginValidator`` compares
scheme, host and port with the socket request's own Host header instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import structlog
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.request import split_domain_port, validate_host

log = structlog.get_logger(__name__)

# Features the console never uses: no page of it (nor a page framing it) may ask for them.
PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer",
        "camera",
        "display-capture",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "payment",
        "usb",
    )
)

DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]
ASGIApp = Callable[..., Any]


class PermissionsPolicyMiddleware:
    """Adds ``Permissions-Policy`` to every response that has none."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        return response


def parse_origin(value: str) -> Origin | None:
    """``https://Host:443`` → ``("https", "host", 443)``; None when it is not an origin."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port or DEFAULT_PORTS[parts.scheme]


def own_origin(host_header: str, socket_scheme: str, https: bool) -> Origin | None:
    """The origin of the page that may open this socket: its Host, with the page's scheme.

    Behind a TLS-terminating proxy (``RUNBOARD_HTTPS``) pages are always https;
    otherwise a ``wss`` socket belongs to an https page and ``ws`` to an http one.
    """
    scheme = "https" if https or socket_scheme == "wss" else "http"
    return parse_origin(f"{scheme}://{host_header}")


def allowed_origin(origin: str, host_header: str, socket_scheme: str) -> bool:
    """Whether a socket with this Origin and Host may open (pure: settings read here only)."""
    domain, _port = split_domain_port(host_header)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    asked = parse_origin(origin)
    if asked is None:
        return False
    if asked == own_origin(host_header, socket_scheme, settings.HTTPS):
        return True
    return any(asked == parse_origin(trusted) for trusted in settings.CSRF_TRUSTED_ORIGINS)


def header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin1")
    return ""


class SameOriginValidator:
    """Refuses a WebSocket handshake whose Origin is not the page's own (HTTP 403)."""

    def __init__(self, application: ASGIApp) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket":
            origin = header(scope, b"origin")
            host = header(scope, b"host")
            if not allowed_origin(origin, host, scope.get("scheme", "ws")):
                log.warning("live_socket_refused", reason="origin", origin=origin, host=host)
                denier = WebsocketDenier()
                return await denier(scope, receive, send)
        return await self.application(scope, receive, send)
