"""Logins: throttled by django-axes, and every failure and lockout logged as a warning.

Axes counts failures per user name and per client address; past the limit it
refuses that user name or client for a while, even with the right password.
Its ``AxesStandaloneBackend`` needs the request; a login without one (Django's
test client, a shell) is not a visitor's and is left to the model backend.
"""

from __future__ import annotations

from typing import Any

import structlog
from axes.backends import AxesStandaloneBackend
from axes.signals import user_locked_out
from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

log = structlog.get_logger(__name__)


class LoginThrottleBackend(AxesStandaloneBackend):
    def authenticate(
        self, request: HttpRequest | None, username: str | None = None,
        password: str | None = None, **kwargs: Any,
    ) -> None:  # fmt: skip
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)  # type: ignore[no-any-return]


def _client(request: HttpRequest | None) -> str:
    return request.META.get("REMOTE_ADDR", "") if request is not None else ""


@receiver(user_login_failed)
def login_failed(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None,
                 **kwargs: Any) -> None:  # fmt: skip
    log.warning("login_failed", username=credentials.get("username", ""), client=_client(request))


@receiver(user_locked_out)
def locked_out(sender: Any, request: HttpRequest | None = None, username: str | None = None,
               ip_address: str | None = None, **kwargs: Any) -> None:  # fmt: skip
    log.warning("login_locked_out", username=username or "", client=ip_address or "")
