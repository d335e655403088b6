"""The files under deploy/, checked with the tools a deployment uses: nginx -t, systemd-analyze.

A typo in a unit or the nginx site would otherwise only show on the operator's
server. Nothing here is skipped: a missing nginx fails with the command that
installs it; without systemd-analyze the units still go through a strict parser.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.nginx_conf import SITE, nginx_command, nginx_conf_around_site

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SYSTEMD = DEPLOY / "systemd"
ENV_EXAMPLE = DEPLOY / "runboard.env.example"
SETTINGS = ROOT / "runboard" / "settings.py"

VAR_DIR = "/var/lib/runboard"
ENV_FILE = "/etc/runboard/runboard.env"
# What `python -m venv /opt/runboard/.venv && pip install '.[postgres,redis]'` makes.
VENV_BIN = "/opt/runboard/.venv/bin"

# unit file → (the instance verified, the sections it must have, long-running?)
UNITS = {
    "runboard-web@.service": ("runboard-web@8001.service", ("Unit", "Service", "Install"), True),
    "runboard-bridge@.service": ("runboard-bridge@1.service", ("Unit", "Service", "Install"), True),
    # Started by hand (migrate) or by the timer (prune): never enabled, never restarted.
    "runboard-migrate.service": ("runboard-migrate.service", ("Unit", "Service"), False),
    "runboard-prune.service": ("runboard-prune.service", ("Unit", "Service"), False),
    "runboard-prune.timer": ("runboard-prune.timer", ("Unit", "Timer", "Install"), False),
}

Unit = dict[str, dict[str, list[str]]]


# --- nginx -------------------------------------------------------------------------


def nginx_t(conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(nginx_command(conf, "-t"), capture_output=True, text=True, timeout=60)


def test_the_nginx_site_passes_nginx_t_without_warnings(tmp_path: Path) -> None:
    result = nginx_t(nginx_conf_around_site(tmp_path, SITE.read_text()))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "test is successful" in output, output
    assert "[warn]" not in output, output


def test_nginx_t_catches_a_broken_site(tmp_path: Path) -> None:
    """The check above can fail: a site missing a brace does not pass."""
    broken = SITE.read_text().replace("location /ws/ {", "location /ws/ ", 1)
    result = nginx_t(nginx_conf_around_site(tmp_path, broken))
    assert result.returncode != 0


def site_blocks(site: str) -> dict[str, str]:
    """``location`` bodies of the site, by path (the site nests no blocks inside them)."""
    return dict(re.findall(r"location\s+(\S+)\s*\{([^}]*)\}", site))


def test_the_socket_location_upgrades_the_connection_and_waits_long() -> None:
    site = SITE.read_text()
    assert re.search(r"map \$http_upgrade \$connection_upgrade \{\s*default\s+upgrade;", site)
    assert "proxy_set_header Upgrade $http_upgrade;" in site
    assert "proxy_set_header Connection $connection_upgrade;" in site
    assert "proxy_http_version 1.1;" in site
    ws = site_blocks(site)["/ws/"]
    assert "proxy_pass http://runboard_web;" in ws
    timeout = re.search(r"proxy_read_timeout\s+(\d+)([smh]);", ws)
    assert timeout, ws
    seconds = int(timeout[1]) * {"s": 1, "m": 60, "h": 3600}[timeout[2]]
    assert seconds >= 600, "a quiet console's socket must outlive daphne's 20 s ping by far"


def test_the_site_forwards_the_client_scheme_and_host_and_limits_bodies() -> None:
    site = SITE.read_text()
    for header in ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Host"):
        assert re.search(rf"proxy_set_header {header} \$", site), header
    assert "client_max_body_size 1m;" in site
    assert "return 301 https://$host$request_uri;" in site


def test_the_upstream_names_the_web_workers_the_guide_starts() -> None:
    upstream = re.search(r"upstream runboard_web \{([^}]*)\}", SITE.read_text())
    assert upstream
    assert re.findall(r"server (127\.0\.0\.1:\d+)", upstream[1]) == [
        "127.0.0.1:8001",
        "127.0.0.1:8002",
    ]
    guide = (ROOT / "docs" / "deploy.md").read_text()
    assert "runboard-web@8001" in guide and "runboard-web@8002" in guide


def test_nginx_serves_static_from_the_folder_collectstatic_fills() -> None:
    static = site_blocks(SITE.read_text())["/static/"]
    assert f"alias {VAR_DIR}/staticfiles/;" in static
    assert env_example()["RUNBOARD_VAR_DIR"] == VAR_DIR


# --- systemd -----------------------------------------------------------------------


def parse_unit(text: str) -> Unit:
    """A strict reading of systemd's unit syntax: anything else is an error, not ignored."""
    sections: Unit = {}
    current: dict[str, list[str]] | None = None
    lines = iter(text.splitlines())
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        while line.endswith("\\"):
            line = line[:-1] + " " + next(lines).strip()
        if not line or line[0] in "#;":
            continue
        if header := re.fullmatch(r"\[([A-Za-z]+)\]", line):
            assert header[1] not in sections, f"line {number}: [{header[1]}] twice"
            current = sections[header[1]] = {}
            continue
        assignment = re.fullmatch(r"([A-Z][A-Za-z0-9]*)=(.*)", line)
        assert assignment, f"line {number}: neither a section, a comment nor Key=value: {raw!r}"
        assert current is not None, f"line {number}: {assignment[1]} outside any section"
        current.setdefault(assignment[1], []).append(assignment[2].strip())
    return sections


def one(unit: Unit, section: str, key: str) -> str:
    values = unit.get(section, {}).get(key, [])
    assert len(values) == 1, f"[{section}] {key}: expected one value, got {values}"
    return values[0]


def unit_file(name: str) -> Unit:
    return parse_unit((SYSTEMD / name).read_text())


def test_deploy_holds_exactly_the_units_the_guide_names() -> None:
    assert sorted(p.name for p in SYSTEMD.iterdir()) == sorted(UNITS)
    guide = (ROOT / "docs" / "deploy.md").read_text()
    for name in UNITS:
        assert name.split("@")[0].removesuffix(".service") in guide, name


@pytest.mark.parametrize("name", sorted(UNITS))
def test_each_unit_has_its_sections_and_nothing_unparsable(name: str) -> None:
    unit = unit_file(name)
    assert sorted(unit) == sorted(UNITS[name][1])
    assert one(unit, "Unit", "Description")


SERVICES = sorted(n for n in UNITS if n.endswith(".service"))


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_runs_the_venv_as_runboard_with_the_env_file(name: str) -> None:
    service = unit_file(name)["Service"]
    assert service["User"] == ["runboard"]
    assert service["EnvironmentFile"] == [ENV_FILE]
    assert service["WorkingDirectory"] == ["/opt/runboard"]
    for command in service["ExecStart"]:
        program = command.lstrip("-@:+!").split()[0]
        assert program.startswith(VENV_BIN + "/"), command


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_is_hardened_with_only_the_var_dir_writable(name: str) -> None:
    unit = unit_file(name)
    for key, value in {
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "StateDirectory": "runboard",
        "ReadWritePaths": VAR_DIR,
        "CapabilityBoundingSet": "",
    }.items():
        assert one(unit, "Service", key) == value, key
    # The default var dir matches the writable one; the env file may only repeat it.
    assert f"RUNBOARD_VAR_DIR={VAR_DIR}" in one(unit, "Service", "Environment").split()


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_stops_gracefully_on_sigterm(name: str) -> None:
    unit = unit_file(name)
    assert one(unit, "Service", "KillSignal") == "SIGTERM"
    assert 10 <= int(one(unit, "Service", "TimeoutStopSec")) <= 90
    long_running = UNITS[name][2]
    if long_running:
        assert one(unit, "Service", "Type") == "simple"
        assert one(unit, "Service", "Restart") == "on-failure"
        assert one(unit, "Install", "WantedBy") == "multi-user.target"
    else:
        assert one(unit, "Service", "Type") == "oneshot"
        assert "Restart" not in unit["Service"], "a failed oneshot waits for its operator"


def test_the_web_worker_binds_loopback_on_its_instance_port() -> None:
    command = one(unit_file("runboard-web@.service"), "Service", "ExecStart").split()
    assert command[:3] == [f"{VENV_BIN}/python", "manage.py", "runweb"]
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "%i"


def test_the_bridge_runs_runbridge_and_migrate_runs_migrate_then_collectstatic() -> None:
    bridge = one(unit_file("runboard-bridge@.service"), "Service", "ExecStart")
    assert bridge == f"{VENV_BIN}/python manage.py runbridge"
    assert unit_file("runboard-migrate.service")["Service"]["ExecStart"] == [
        f"{VENV_BIN}/python manage.py migrate --noinput",
        f"{VENV_BIN}/python manage.py collectstatic --noinput",
    ]
    for name in ("runboard-web@.service", "runboard-bridge@.service"):
        assert "runboard-migrate.service" in one(unit_file(name), "Unit", "After").split()


def test_the_timer_prunes_hourly() -> None:
    timer = unit_file("runboard-prune.timer")
    assert one(timer, "Timer", "OnCalendar") == "hourly"
    assert one(timer, "Timer", "Unit") == "runboard-prune.service"
    assert one(timer, "Install", "WantedBy") == "timers.target"
    prune = one(unit_file("runboard-prune.service"), "Service", "ExecStart")
    assert prune == f"{VENV_BIN}/python manage.py prune"


def test_the_strict_parser_refuses_what_systemd_would_only_warn_about() -> None:
    with pytest.raises(AssertionError, match="neither a section"):
        parse_unit("[Service]\nExecStart /bin/true\n")
    with pytest.raises(AssertionError, match="outside any section"):
        parse_unit("User=runboard\n")
    with pytest.raises(AssertionError, match="twice"):
        parse_unit("[Unit]\n[Unit]\n")


@pytest.fixture(scope="module")
def systemd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file system root holding systemd's own units, ours, and the venv's programs as stubs.

    ``verify`` checks that each ExecStart program exists and is executable; only
    the two programs the install makes exist here, so a wrong path still fails.
    """
    root = tmp_path_factory.mktemp("systemd-root")
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    shutil.copytree(SYSTEMD, root / "etc/systemd/system")
    bin_dir = root / VENV_BIN.lstrip("/")
    bin_dir.mkdir(parents=True)
    for program in ("python", "daphne"):
        (bin_dir / program).write_text("#!/bin/sh\n")
        (bin_dir / program).chmod(0o755)
    return root


def systemd_analyze_verify(root: Path, instance: str) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    assert analyze
    return subprocess.run(
        [analyze, "verify", "--man=no", f"--root={root}", instance],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("name", sorted(UNITS))
def test_each_unit_passes_systemd_analyze_verify(name: str, systemd_root: Path) -> None:
    """systemd's own check where systemd-analyze exists; the strict parser above where not."""
    if not shutil.which("systemd-analyze"):
        print(
            "systemd-analyze not found: the units were checked by the strict parser only",
            file=sys.stderr,
        )
        assert sorted(unit_file(name)) == sorted(UNITS[name][1])
        return
    result = systemd_analyze_verify(systemd_root, UNITS[name][0])
    output = (result.stdout + result.stderr).strip()
    # Unknown keys and bad values are only warnings to systemd: fail on any output.
    assert result.returncode == 0 and not output, output


def test_systemd_analyze_verify_catches_a_unit_with_a_typo(systemd_root: Path) -> None:
    """The check above can fail: a misspelt key is reported."""
    if not shutil.which("systemd-analyze"):
        return  # the strict parser's own test above covers this case
    typo = systemd_root / "etc/systemd/system/runboard-typo.service"
    typo.write_text(
        (SYSTEMD / "runboard-prune.service").read_text().replace("PrivateTmp=", "PrivatTmp=")
    )
    try:
        result = systemd_analyze_verify(systemd_root, typo.name)
    finally:
        typo.unlink()
    assert "PrivatTmp" in result.stdout + result.stderr


# --- the environment file ----------------------------------------------------------


def env_example() -> dict[str, str]:
    """The example's assignments, read the way systemd's EnvironmentFile= reads them."""
    values: dict[str, str] = {}
    for number, raw in enumerate(ENV_EXAMPLE.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        assignment = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(\S*)", line)
        assert assignment, f"line {number}: expected NAME=value without spaces: {raw!r}"
        assert assignment[1] not in values, f"line {number}: {assignment[1]} set twice"
        values[assignment[1]] = assignment[2]
    return values


def names_settings_reads() -> set[str]:
    return set(re.findall(r"RUNBOARD_[A-Z0-9_]+", SETTINGS.read_text()))


def test_the_env_example_names_only_variables_settings_reads() -> None:
    named = set(re.findall(r"RUNBOARD_[A-Z0-9_]+", ENV_EXAMPLE.read_text()))
    unknown = named - names_settings_reads()
    assert not unknown, f"not read by runboard/settings.py: {sorted(unknown)}"


def test_the_env_example_sets_every_production_setting() -> None:
    assert set(env_example()) >= {
        "RUNBOARD_SECRET_KEY",
        "RUNBOARD_DEBUG",
        "RUNBOARD_ALLOWED_HOSTS",
        "RUNBOARD_CSRF_TRUSTED_ORIGINS",
        "RUNBOARD_DATABASE_URL",
        "RUNBOARD_REDIS_URL",
        "RUNBOARD_LOG_FORMAT",
        "RUNBOARD_VAR_DIR",
        "RUNBOARD_RETENTION_DAYS",
        "RUNBOARD_GATEWAY_URL",
        "RUNBOARD_GATEWAY_TOKEN",
    }
    values = env_example()
    assert values["RUNBOARD_LOG_FORMAT"] == "json"
    assert values["RUNBOARD_DEBUG"] == "false"
    assert values["RUNBOARD_DATABASE_URL"].startswith("postgres://")
    assert "sslmode=require" in values["RUNBOARD_DATABASE_URL"]


def test_the_settings_accept_every_value_of_the_env_example(tmp_path: Path) -> None:
    """Loaded in a fresh interpreter, as a unit would: a value settings refuses fails here."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOARD_")}
    env.update(env_example())
    # The example's placeholder is refused on purpose (too short): a real key stands in.
    assert env["RUNBOARD_SECRET_KEY"] == "change-me-to-a-long-random-string"
    env["RUNBOARD_SECRET_KEY"] = secrets.token_urlsafe(50)
    env["RUNBOARD_VAR_DIR"] = str(tmp_path)  # settings makes the folder at import
    env["DJANGO_SETTINGS_MODULE"] = "runboard.settings"
    script = (
        "from django.conf import settings\n"
        "print(settings.DATABASES['default']['ENGINE'], settings.CHANNEL_LAYERS['default']"
        "['BACKEND'], settings.DEBUG, settings.DATABASES['default']['OPTIONS']['sslmode'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.postgresql",
        "adminpanel.live.redis_layer.RedisChannelLayer",
        "False",
        "require",
    ]


# --- the manage.py helper ----------------------------------------------------------

MANAGE = DEPLOY / "runboard-manage"


def test_the_manage_helper_is_valid_shell_and_runs_as_the_units_do() -> None:
    assert os.access(MANAGE, os.X_OK)
    subprocess.run(["sh", "-n", str(MANAGE)], check=True, timeout=30)
    script = MANAGE.read_text()
    assert "--uid=runboard" in script
    assert f"--property=EnvironmentFile={ENV_FILE}" in script
    assert "--working-directory=/opt/runboard" in script
    assert f"{VENV_BIN}/python manage.py" in script


def test_the_manage_helper_uses_only_options_systemd_run_has() -> None:
    systemd_run = shutil.which("systemd-run")
    assert systemd_run, "systemd-run is missing: apt-get install systemd"
    usage = subprocess.run(
        [systemd_run, "--help"], capture_output=True, text=True, timeout=30
    ).stdout
    for option in re.findall(r"(--[a-z-]+)", MANAGE.read_text()):
        assert option in usage, option
