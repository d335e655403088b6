"""Shared by the API tests: a token per role, and requests that carry one."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.models import User
from django.test import AsyncClient, Client

from adminpanel.api import tokens
from tests.actions.support import role_users

# Every role the matrix checks; "anonymous" sends no token, "nobody" is a user in no group.
ROLES = ("anonymous", "nobody", "viewer", "operator", "admin")
ACTION_SLUGS = ("force-clear", "requeue", "abort", "clear-and-requeue")


def role_tokens() -> dict[str, str]:
    """One user per role with one API token each: role → token."""
    users: dict[str, User] = role_users()
    return {role: tokens.create_token(user, "tests")[1] for role, user in users.items()}


def auth(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def get(client: Client, path: str, token: str | None, **params: Any) -> Any:
    return client.get(path, params, headers=auth(token))


def post(client: Client, path: str, token: str | None, body: Any, **headers: str) -> Any:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(
        path, data, content_type="application/json", headers={**auth(token), **headers}
    )


async def apost(
    client: AsyncClient, path: str, token: str | None, body: Any, **headers: str
) -> Any:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return await client.post(
        path, data, content_type="application/json", headers={**auth(token), **headers}
    )


async def aget(client: AsyncClient, path: str, token: str | None, **params: Any) -> Any:
    return await client.get(path, params, headers=auth(token))
