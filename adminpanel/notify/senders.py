"""The calls that leave the process: an HTTP POST and an SMTP conversation, each with a timeout.

Each failure is a ``SendFailed`` that says whether trying again can help.
"""

from __future__ import annotations

import json
import smtplib
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage, mailers

USER_AGENT = "Runboard-notify/1"
# Client errors a later attempt may get past; any other 4xx means the request is wrong.
RETRYABLE_STATUS = frozenset({408, 425, 429})


class SendFailed(Exception):
    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def post_json(url: str, payload: dict[str, Any], timeout: float) -> None:
    body = json.dumps(payload).encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(4096)
    except urllib.error.HTTPError as exc:
        retryable = exc.code >= 500 or exc.code in RETRYABLE_STATUS
        raise SendFailed(f"HTTP {exc.code} {exc.reason}", retryable=retryable) from None
    except TimeoutError:
        raise SendFailed(f"no answer within {timeout:g} s", retryable=True) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            raise SendFailed(f"no answer within {timeout:g} s", retryable=True) from None
        raise SendFailed(f"cannot connect: {reason}", retryable=True) from None


def send_email(recipients: Sequence[str], subject: str, body: str, timeout: float) -> None:
    """Through Django's default mailer; settings.MAILERS sets its timeout to ``timeout``."""
    message = EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, list(recipients))
    try:
        mailers.default.send_messages([message])
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as exc:
        raise SendFailed(f"SMTP refused: {exc}", retryable=False) from None
    except TimeoutError:
        raise SendFailed(f"SMTP: no answer within {timeout:g} s", retryable=True) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise SendFailed(f"SMTP: {exc}", retryable=True) from None
