"""JSON API tokens: made, stored as a SHA-256 only, checked on every /api/v1/ request.

A token is ``rb_`` and 40 URL-safe characters, shown once when it is made;
the store keeps its digest and its first characters (to tell tokens apart in
lists and to revoke one), and optionally when it expires. A revoked token
stays revoked: nothing here, the demo included, makes it valid again. A
request authenticates with ``Authorization: Bearer <token>`` and nothing
else: the API ignores session cookies, so it needs no CSRF token. The token's
user then needs exactly the permissions the pages need (adminpanel/roles.py).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

import structlog
from django.contrib.auth.models import User
from django.db.models import Q
from django.utils import timezone

from adminpanel.models import ApiToken

log = structlog.get_logger(__name__)

TOKEN_PREFIX = "rb_"
# 30 random bytes are 40 URL-safe base64 characters.
TOKEN_BYTES = 30
# How many of the token's first characters are stored to tell tokens apart.
SHOWN_CHARS = 10
# A token's last use is written at most this often (a read per request, a write per minute).
LAST_USED_EVERY = timedelta(minutes=1)
# A token given from outside (RUNBOARD_DEMO_API_TOKEN) must be at least this long.
MIN_GIVEN_LENGTH = 16


class TokenError(ValueError):
    """A token cannot be made, given or revoked as asked; the message says why."""


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    user: User, name: str = "", expires_in: timedelta | None = None
) -> tuple[ApiToken, str]:
    """A new token for ``user``: (its row, the token itself — shown once, never stored)."""
    token = new_token()
    expires_at = timezone.now() + expires_in if expires_in is not None else None
    row = ApiToken.objects.create(
        user=user,
        name=name,
        digest=digest(token),
        prefix=token[:SHOWN_CHARS],
        expires_at=expires_at,
    )
    log.info(
        "api_token_created", user=user.username, prefix=row.prefix, name=name, expires_at=expires_at
    )
    return row, token


def give_token(user: User, token: str, name: str) -> ApiToken:
    """Make ``token`` (chosen outside, e.g. by the demo's environment) valid for ``user``.

    Idempotent: the same token on every start is the same row. A revoked one stays
    revoked (with a warning): revoking is how an admin ends a leaked demo token.
    """
    if len(token) < MIN_GIVEN_LENGTH:
        raise TokenError(f"an API token needs at least {MIN_GIVEN_LENGTH} characters")
    row = ApiToken.objects.filter(digest=digest(token)).first()
    if row is not None and row.user_id != user.pk:
        raise TokenError(f"this API token already belongs to user {row.user.username!r}")
    if row is None:
        row = ApiToken.objects.create(
            user=user, name=name, digest=digest(token), prefix=token[:SHOWN_CHARS]
        )
        log.info("api_token_given", user=user.username, prefix=row.prefix, name=name)
    elif row.revoked_at is not None:
        log.warning(
            "api_token_kept_revoked",
            user=user.username,
            prefix=row.prefix,
            name=name,
            revoked_at=row.revoked_at.isoformat(),
            why="this configured token was revoked; set a new one to use the API",
        )
    return row


def give_demo_token(token: str, username: str = "operator") -> ApiToken | None:
    """The demo's operator gets ``token`` (RUNBOARD_DEMO_API_TOKEN) when it is set."""
    if not token:
        return None
    user = User.objects.filter(username=username).first()
    if user is None:
        log.warning("api_token_not_given", user=username, why="no such user; run demo_users")
        return None
    try:
        return give_token(user, token, "demo")
    except TokenError as exc:
        raise TokenError(f"RUNBOARD_DEMO_API_TOKEN: {exc}") from None


def revoke(prefix: str, user: User | None = None) -> ApiToken:
    """Revoke the one live token starting with ``prefix`` (or the whole token)."""
    if len(prefix) < len(TOKEN_PREFIX) + 4:
        raise TokenError(
            f"give at least {len(TOKEN_PREFIX) + 4} characters of the token (e.g. its prefix)"
        )
    live = ApiToken.objects.filter(revoked_at__isnull=True).select_related("user")
    if user is not None:
        live = live.filter(user=user)
    found = list(live.filter(Q(digest=digest(prefix)) | Q(prefix__startswith=prefix[:SHOWN_CHARS])))
    if len(prefix) > SHOWN_CHARS:  # a whole token: only its digest counts
        found = [row for row in found if row.digest == digest(prefix)]
    if not found:
        raise TokenError(
            f"no live API token matches {prefix!r}: give the prefix shown when it was made "
            f"(its first {SHOWN_CHARS} characters, or fewer) or the whole token"
        )
    if len(found) > 1:
        names = ", ".join(f"{row.prefix}… ({row.user.username})" for row in found)
        raise TokenError(f"{len(found)} live tokens start with {prefix!r}: {names}; say which")
    row = found[0]
    row.revoked_at = timezone.now()
    ApiToken.objects.filter(pk=row.pk).update(revoked_at=row.revoked_at)
    log.info("api_token_revoked", user=row.user.username, prefix=row.prefix)
    return row


# Authorization schemes (IANA registry) a 401 may name; the header's value never appears.
KNOWN_SCHEMES = frozenset(
    {"basic", "bearer", "digest", "hoba", "mutual", "negotiate", "ntlm", "oauth", "token"}
)


@dataclass(frozen=True, slots=True)
class Unauthenticated:
    """Why a request has no valid token (the API answers 401 with this)."""

    why: str


def bearer_token(header: str) -> str | Unauthenticated:
    """The token in an ``Authorization`` header's value."""
    if not header:
        return Unauthenticated(
            "No API token: send the header 'Authorization: Bearer <token>' "
            "(make a token with: python manage.py create_api_token USER)."
        )
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        # Named only when it is a known scheme: anything else may be the token itself.
        got = f"the scheme {scheme!r}" if scheme.lower() in KNOWN_SCHEMES else "something else"
        return Unauthenticated(f"The Authorization header must be 'Bearer <token>'; got {got}.")
    return token.strip()


def authenticate(header: str) -> ApiToken | Unauthenticated:
    """The live token an ``Authorization`` header names, with its user loaded."""
    token = bearer_token(header)
    if isinstance(token, Unauthenticated):
        return token
    row = ApiToken.objects.select_related("user").filter(digest=digest(token)).first()
    if row is None:
        return Unauthenticated("Unknown API token.")
    if row.revoked_at is not None:
        return Unauthenticated(f"This API token ({row.prefix}…) was revoked.")
    if row.expires_at is not None and row.expires_at <= timezone.now():
        when = row.expires_at.isoformat(timespec="seconds")
        return Unauthenticated(
            f"This API token ({row.prefix}…) expired at {when}; make a new one "
            "(python manage.py create_api_token USER)."
        )
    if not row.user.is_active:
        return Unauthenticated(f"This API token's user {row.user.username!r} is inactive.")
    touch(row)
    return row


def touch(row: ApiToken) -> bool:
    """Record the token's use, at most once a minute (compare-and-set); whether it wrote."""
    now = timezone.now()
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_EVERY)
    if ApiToken.objects.filter(stale, pk=row.pk).update(last_used_at=now) == 0:
        return False
    row.last_used_at = now
    return True
