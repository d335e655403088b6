"""Typed errors for every call that crosses the bridge/gateway boundary.

Each error says whether retrying can help (``retryable``) and carries a short
machine-readable ``code``, so callers (the bridge's reconnect loop, the
actions that force-clear or requeue) decide without parsing messages.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Base class: something went wrong talking to a gateway."""

    default_code = "GATEWAY_ERROR"
    default_retryable = False

    def __init__(
        self, message: str, *, code: str | None = None, retryable: bool | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.retryable = self.default_retryable if retryable is None else retryable


class GatewayUnavailable(GatewayError):
    """Cannot connect, or the socket closed: a later attempt may reach it."""

    default_code = "UNAVAILABLE"
    default_retryable = True


class GatewayTimeout(GatewayError):
    """A call passed its deadline. The gateway may still act on it; the caller decides."""

    default_code = "TIMEOUT"
    default_retryable = True


class GatewayRejected(GatewayError):
    """The gateway answered ``ok: false``. Retryable only when the gateway says so."""

    default_code = "REJECTED"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool | None = None,
        details: dict[str, Any] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, code=code, retryable=retryable)
        self.details = details or {}
        self.retry_after_s = retry_after_s

    @classmethod
    def from_error(cls, error: dict[str, Any] | None) -> GatewayRejected:
        """Build from a response's ``error`` object, tolerating missing or odd fields."""
        error = error or {}
        code = error.get("code")
        message = error.get("message")
        details = error.get("details")
        retry_after_ms = error.get("retryAfterMs")
        return cls(
            message if isinstance(message, str) and message else "gateway rejected the request",
            code=code if isinstance(code, str) and code else None,
            retryable=error.get("retryable") is True,
            details=details if isinstance(details, dict) else None,
            retry_after_s=_ms_to_s(retry_after_ms),
        )


class HandshakeFailed(GatewayError):
    """Bad token, protocol mismatch, refused connect: the same attempt fails again."""

    default_code = "HANDSHAKE_FAILED"


class ProtocolViolation(GatewayError):
    """The peer broke the protocol (wrong first frame, malformed hello)."""

    default_code = "PROTOCOL_VIOLATION"


class NotSupported(GatewayError):
    """The gateway lacks the method (e.g. no companion plugin: observer mode)."""

    default_code = "NOT_SUPPORTED"


def _ms_to_s(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return value / 1000.0
    return None
