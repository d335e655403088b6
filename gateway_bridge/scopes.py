"""Which OpenClaw operator scopes Runboard asks for, and what each one enables.

Least privilege: a gateway's token need not carry ``operator.admin`` for
Runboard to show its sessions. Each gateway has an *access* level an admin
picks; the bridge asks for that level's scopes only (docs/protocol.md):

- ``view``: ``operator.read`` — the registry snapshot and subscription,
  ``sessions.list``, ``logs.tail``: every page, no action.
- ``act``: adds ``operator.write`` — ``chat.abort`` and the plugin's
  ``requeue`` (``chat.send`` in observer mode). In observer mode that is
  every action, as its force-clear is an abort.
- ``admin``: adds ``operator.admin`` — the plugin's ``forceClear``.

``hello-ok`` says which scopes the gateway granted (``auth.scopes``); the
gateways page names the actions a missing one disables.
"""

from __future__ import annotations

from collections.abc import Iterable

READ, WRITE, ADMIN = "operator.read", "operator.write", "operator.admin"
# A broader operator scope satisfies a narrower one (OpenClaw's rule).
IMPLIED_BY: dict[str, frozenset[str]] = {
    READ: frozenset({READ, WRITE, ADMIN}),
    WRITE: frozenset({WRITE, ADMIN}),
    ADMIN: frozenset({ADMIN}),
}
ACCESS_SCOPES: dict[str, tuple[str, ...]] = {
    "view": (READ,),
    "act": (READ, WRITE),
    "admin": (READ, WRITE, ADMIN),
}
ACCESS_LEVELS: tuple[str, ...] = tuple(ACCESS_SCOPES)
DEFAULT_ACCESS = "admin"
DEFAULT_SCOPES = ACCESS_SCOPES[DEFAULT_ACCESS]

# The scopes each action's gateway calls need, per mode.
ACTION_NEEDS: dict[str, dict[str, tuple[str, ...]]] = {
    "plugin": {
        "force_clear": (ADMIN,),
        "requeue": (WRITE,),
        "abort": (WRITE,),
        "clear_and_requeue": (ADMIN, WRITE),
    },
    "observer": {
        "force_clear": (WRITE,),  # chat.abort
        "requeue": (WRITE,),  # chat.send
        "abort": (WRITE,),
        "clear_and_requeue": (WRITE,),
    },
}


def scopes_for(access: str) -> tuple[str, ...]:
    """The scopes to ask for at this access level (an unknown level: the default)."""
    return ACCESS_SCOPES.get(access, DEFAULT_SCOPES)


def has_scope(granted: Iterable[str], needed: str) -> bool:
    return bool(frozenset(granted) & IMPLIED_BY[needed])


def missing_for_actions(mode: str, granted: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Each action the granted scopes disable in ``mode`` -> the scopes it lacks.

    An unknown mode (not connected yet) is judged as plugin mode, the stricter one.
    """
    have = frozenset(granted)
    needs = ACTION_NEEDS.get(mode, ACTION_NEEDS["plugin"])
    missing = {}
    for action, scopes in needs.items():
        lacking = tuple(s for s in scopes if not has_scope(have, s))
        if lacking:
            missing[action] = lacking
    return missing
