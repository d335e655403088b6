"""Production settings: a real secret key, HTTPS hardening, bad values name the variable."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEY = secrets.token_urlsafe(50)


def manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOARD_")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT, env={**base, "RUNBOARD_VAR_DIR": str(tmp_path), **env},
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip


def test_without_a_secret_key_and_debug_off_nothing_starts_and_the_variable_is_named(
    tmp_path: Path,
) -> None:
    result = manage(tmp_path, "check")
    assert result.returncode == 2
    assert "RUNBOARD_SECRET_KEY is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_mode_runs_with_the_development_key(tmp_path: Path) -> None:
    result = manage(tmp_path, "check", RUNBOARD_DEBUG="true")
    assert result.returncode == 0, result.stderr


def test_a_short_secret_key_is_refused(tmp_path: Path) -> None:
    result = manage(tmp_path, "check", RUNBOARD_SECRET_KEY="changeme")
    assert result.returncode == 2
    assert "RUNBOARD_SECRET_KEY: too short or too simple" in result.stderr


def test_the_secret_key_can_come_from_a_file_and_a_missing_file_is_named(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    assert manage(tmp_path, "check", RUNBOARD_SECRET_KEY_FILE=str(key_file)).returncode == 0
    missing = manage(tmp_path, "check", RUNBOARD_SECRET_KEY_FILE=str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert "RUNBOARD_SECRET_KEY_FILE=" in missing.stderr and "cannot read it" in missing.stderr


def test_https_deployment_settings_pass_the_deploy_check_with_nothing_silenced(
    tmp_path: Path,
) -> None:
    result = manage(
        tmp_path, "check", "--deploy", "--fail-level", "WARNING",
        RUNBOARD_SECRET_KEY=KEY, RUNBOARD_HTTPS="true",
        RUNBOARD_ALLOWED_HOSTS="runboard.example.com",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_without_https_the_deploy_check_names_what_is_missing(tmp_path: Path) -> None:
    result = manage(tmp_path, "check", "--deploy", RUNBOARD_SECRET_KEY=KEY)
    assert "security.W004" in result.stderr and "security.W008" in result.stderr


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("RUNBOARD_TIME_ZONE", "Mars/Olympus", "expected an IANA time zone name"),
        ("RUNBOARD_DEMO_PORT", "99999", "must be at most 65535"),
        ("RUNBOARD_DEMO_PORT", "0", "must be at least 1"),
        ("RUNBOARD_HTTPS", "sometimes", "expected one of 1/0"),
        ("RUNBOARD_HSTS_SECONDS", "-1", "must be at least 0"),
        ("RUNBOARD_DB_POOL_MAX", "0", "must be at least 1"),
    ],
)
def test_a_bad_value_stops_the_process_with_one_line_naming_the_variable(
    tmp_path: Path, name: str, value: str, says: str
) -> None:
    env = {"RUNBOARD_SECRET_KEY": KEY, name: value}
    if name == "RUNBOARD_HSTS_SECONDS":
        env["RUNBOARD_HTTPS"] = "true"
    result = manage(tmp_path, "check", **env)
    assert result.returncode == 2
    assert f"{name}={value!r}: {says}" in result.stderr
    assert "Traceback" not in result.stderr
