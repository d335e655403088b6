"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "runboard.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from adminpanel.live.consumers import SessionsConsumer  # noqa: E402
from adminpanel.security import SameOriginValidator  # noqa: E402
from runboard.runtime import freeze_imported_objects  # noqa: E402

websocket_urlpatterns = [
    path("ws/sessions/", SessionsConsumer.as_asgi()),
]

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Origin must be this page's own: scheme, host and port (adminpanel/security.py).
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# Everything a request needs is imported by now: spare the GC from walking it.
freeze_imported_objects()
