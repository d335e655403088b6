"""Settings come from the environment; a bad value stops the process and names the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runboard.env import SettingError, env_bool, env_float, env_phase_seconds, env_url

ROOT = Path(__file__).resolve().parents[2]


def test_a_number_setting_rejects_text_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNBOARD_STUCK_AFTER_S", "soon")
    with pytest.raises(SettingError, match="RUNBOARD_STUCK_AFTER_S='soon': expected a number"):
        env_float("RUNBOARD_STUCK_AFTER_S", 120.0)


def test_a_number_setting_below_its_minimum_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNBOARD_CALL_TIMEOUT_S", "0")
    with pytest.raises(SettingError, match=r"at least 0\.1"):
        env_float("RUNBOARD_CALL_TIMEOUT_S", 5.0, minimum=0.1)


def test_a_boolean_setting_accepts_the_usual_spellings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNBOARD_DEBUG", "yes")
    assert env_bool("RUNBOARD_DEBUG", False) is True
    monkeypatch.setenv("RUNBOARD_DEBUG", "maybe")
    with pytest.raises(SettingError, match="RUNBOARD_DEBUG"):
        env_bool("RUNBOARD_DEBUG", False)


def test_a_gateway_url_must_be_a_websocket_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNBOARD_GATEWAY_URL", "http://127.0.0.1:18789")
    with pytest.raises(SettingError, match="ws:// or wss://"):
        env_url("RUNBOARD_GATEWAY_URL", "", schemes=("ws", "wss"))


def test_per_phase_thresholds_parse_and_reject_unknown_phases(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RUNBOARD_STUCK_AFTER_BY_PHASE", "queued=30, running=300")
    assert env_phase_seconds("RUNBOARD_STUCK_AFTER_BY_PHASE", ("queued", "running")) == {
        "queued": 30.0,
        "running": 300.0,
    }
    monkeypatch.setenv("RUNBOARD_STUCK_AFTER_BY_PHASE", "thinking=30")
    with pytest.raises(SettingError, match="phase one of"):
        env_phase_seconds("RUNBOARD_STUCK_AFTER_BY_PHASE", ("queued", "running"))


def test_manage_py_stops_at_start_on_a_bad_setting_with_a_clear_message(tmp_path: Path) -> None:
    env = {**os.environ, "RUNBOARD_STUCK_AFTER_S": "two minutes", "RUNBOARD_VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "RUNBOARD_STUCK_AFTER_S='two minutes': expected a number" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_sqlite_database_url_needs_no_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNBOARD_DATABASE_URL", "sqlite:////tmp/runboard.sqlite3")
    url = env_url("RUNBOARD_DATABASE_URL", "", schemes=("sqlite", "postgres"), hostless=("sqlite",))
    assert url == "sqlite:////tmp/runboard.sqlite3"
    monkeypatch.setenv("RUNBOARD_DATABASE_URL", "postgres:///runboard")
    with pytest.raises(SettingError, match="RUNBOARD_DATABASE_URL"):
        env_url("RUNBOARD_DATABASE_URL", "", schemes=("sqlite", "postgres"), hostless=("sqlite",))


def test_a_sqlite_database_url_runs_in_wal_mode_like_the_default(tmp_path: Path) -> None:
    db = tmp_path / "elsewhere.sqlite3"
    env = {**os.environ, "RUNBOARD_DATABASE_URL": f"sqlite:///{db}"}
    env["RUNBOARD_VAR_DIR"] = str(tmp_path)
    ask = (
        "from django.db import connection\n"
        "with connection.cursor() as c:\n"
        "    c.execute('PRAGMA journal_mode'); print(c.fetchone()[0])\n"
        "    c.execute('PRAGMA synchronous'); print(c.fetchone()[0])\n"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", ask],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["wal", "1"]  # synchronous=NORMAL is 1
    assert db.exists()


def manage_py_says(
    tmp_path: Path, env: dict[str, str], code: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
        cwd=ROOT, env={**os.environ, "RUNBOARD_VAR_DIR": str(tmp_path), **env},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_channel_hub_setting_picks_the_hub_layer_and_must_be_an_absolute_path(
    tmp_path: Path,
) -> None:
    ask = (
        "from channels.layers import get_channel_layer\n"
        "layer = get_channel_layer(); print(type(layer).__name__, layer.path)\n"
    )
    hub = str(tmp_path / "hub.sock")
    result = manage_py_says(tmp_path, {"RUNBOARD_CHANNEL_HUB": hub}, ask)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["HubChannelLayer", hub]
    result = manage_py_says(tmp_path, {"RUNBOARD_CHANNEL_HUB": "hub.sock"}, ask)
    assert result.returncode != 0
    assert "RUNBOARD_CHANNEL_HUB='hub.sock': expected the absolute path" in result.stderr


def test_prepared_statements_are_on_for_postgresql_and_can_be_turned_off(tmp_path: Path) -> None:
    ask = (
        "from django.conf import settings\n"
        "print(settings.DATABASES['default']['OPTIONS']['prepare_threshold'])\n"
    )
    url = {"RUNBOARD_DATABASE_URL": "postgres://u:p@127.0.0.1:5432/runboard"}
    assert manage_py_says(tmp_path, url, ask).stdout.split() == ["5"]
    off = {**url, "RUNBOARD_DB_PREPARED_STATEMENTS": "off"}
    assert manage_py_says(tmp_path, off, ask).stdout.split() == ["None"]
    bad = manage_py_says(tmp_path, {**url, "RUNBOARD_DB_PREPARED_STATEMENTS": "sometimes"}, ask)
    assert bad.returncode != 0
    assert "RUNBOARD_DB_PREPARED_STATEMENTS='sometimes'" in bad.stderr
