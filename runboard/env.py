"""Read settings from environment variables; fail loudly, naming the variable.

Every variable Runboard reads goes through one of these helpers, so a typo in
a deployment stops the process at start with a message that says which
variable and what it should look like, instead of running on a silent default.
"""

from __future__ import annotations

import os
import zoneinfo
from pathlib import Path
from urllib.parse import urlsplit


class SettingError(ValueError):
    """A bad value in an environment variable."""


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise SettingError(f"{name}={raw!r}: expected one of 1/0, true/false, yes/no, on/off")


def env_int(
    name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r}: expected a whole number") from None
    if minimum is not None and value < minimum:
        raise SettingError(f"{name}={raw!r}: must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise SettingError(f"{name}={raw!r}: must be at most {maximum}")
    return value


def env_port(name: str, default: int) -> int:
    return env_int(name, default, minimum=1, maximum=65535)


def env_time_zone(name: str, default: str) -> str:
    value = os.environ.get(name) or default
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise SettingError(
            f"{name}={value!r}: expected an IANA time zone name such as UTC or Europe/Berlin"
        ) from None
    return value


def env_optional_key(name: str, file_name: str, *, min_length: int = 32) -> str:
    """A key from ``name`` or the file ``file_name`` names, or "" when neither is set."""
    value, named = _key_from(name, file_name)
    if value and (
        len(value) < min_length or len(set(value)) < 5 or value.startswith("django-insecure-")
    ):
        raise SettingError(
            f"{named}: too short or too simple; use {min_length} or more random characters"
        )
    return value


def env_secret_key(name: str, file_name: str, *, debug: bool, development_key: str) -> str:
    """The secret key from ``name`` or the file ``file_name`` names; required unless ``debug``."""
    value = env_optional_key(name, file_name, min_length=50)
    if value:
        return value
    if debug:
        return development_key
    raise SettingError(
        f"{name} is not set: set it to a long random string (for example the output of "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))'); "
        "only RUNBOARD_DEBUG=true runs with a built-in development key"
    )


def _key_from(name: str, file_name: str) -> tuple[str, str]:
    """(the key, the variable it came from): the value of ``name``, or the file's content."""
    value = os.environ.get(name, "")
    path = os.environ.get(file_name, "")
    if value and path:
        raise SettingError(f"{name} and {file_name} are both set: set one of them")
    if not path:
        return value, name
    try:
        return Path(path).read_text().strip(), file_name
    except OSError as exc:
        raise SettingError(f"{file_name}={path!r}: cannot read it ({exc.strerror})") from None


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r}: expected a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise SettingError(f"{name}={raw!r}: expected a finite number")
    if minimum is not None and value < minimum:
        raise SettingError(f"{name}={raw!r}: must be at least {minimum}")
    return value


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name) or default
    if value not in choices:
        raise SettingError(f"{name}={value!r}: expected one of {', '.join(choices)}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [part.strip() for part in raw.split(",") if part.strip()]


def env_url(
    name: str, default: str, *, schemes: tuple[str, ...], hostless: tuple[str, ...] = ()
) -> str:
    """A URL with one of ``schemes``; a host is required except for ``hostless`` schemes."""
    value = os.environ.get(name) or default
    if not value:
        return value
    parts = urlsplit(value)
    if parts.scheme not in schemes or not (parts.hostname or parts.scheme in hostless):
        starts = " or ".join(s + "://" for s in schemes)
        raise SettingError(f"{name}={value!r}: expected a URL starting with {starts}")
    return value


def env_phase_seconds(name: str, phases: tuple[str, ...]) -> dict[str, float]:
    """``queued=30,running=300`` → ``{"queued": 30.0, "running": 300.0}``."""
    raw = os.environ.get(name, "").strip()
    result: dict[str, float] = {}
    if not raw:
        return result
    for part in raw.split(","):
        phase, sep, seconds = part.strip().partition("=")
        if not sep or phase not in phases:
            raise SettingError(
                f"{name}={raw!r}: expected phase=seconds pairs, phase one of {', '.join(phases)}"
            )
        try:
            value = float(seconds)
        except ValueError:
            raise SettingError(f"{name}={raw!r}: {seconds!r} is not a number of seconds") from None
        if value <= 0:
            raise SettingError(f"{name}={raw!r}: seconds for {phase} must be positive")
        result[phase] = value
    return result
