"""A real Prometheus (Debian's package) scrapes a live Runboard with a token and loads the rules."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.observability.promql import RULES
from tests.observability.support import METRICS_TOKEN, gateway, held, session

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WAIT_S = 60.0  # an upper bound only: scrapes run every second


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def wait_for(what: str, check: Callable[[], Any], log: Path) -> Any:
    deadline = time.monotonic() + WAIT_S
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except OSError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    pytest.fail(
        f"{what} not within {WAIT_S:g} s (last: {last!r}); Prometheus said:\n"
        f"{log.read_text()[-3000:]}"
    )


@pytest.fixture
def prometheus(live_server: Any, tmp_path: Path) -> Iterator[str]:
    exe = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(exe).exists():
        pytest.fail("prometheus is missing: install it with `sudo apt-get install prometheus`")
    target = urllib.parse.urlsplit(live_server.url).netloc
    shutil.copy(RULES, tmp_path / "alerts.yml")
    config = {  # JSON is YAML
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["alerts.yml"],
        "scrape_configs": [
            {
                "job_name": "runboard",
                "metrics_path": "/metrics",
                "authorization": {"type": "Bearer", "credentials": METRICS_TOKEN},
                "static_configs": [{"targets": [target]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))
    port = free_port()
    log = tmp_path / "prometheus.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                exe,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            "Prometheus ready",
            lambda: urllib.request.urlopen(f"{base}/-/ready", timeout=2).status == 200,
            log,
        )
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def query(base: str, promql: str) -> list[dict[str, Any]]:
    answer = get_json(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


def test_prometheus_scrapes_runboard_with_the_metrics_token_and_stores_its_metrics(
    prometheus: str, tmp_path: Path
) -> None:
    alpha = gateway("alpha", status="connected")
    held(alpha)
    session(alpha, "agent:main:telegram:direct:1", locked_for_s=42)
    log = tmp_path / "prometheus.log"

    up = wait_for("the target up", lambda: query(prometheus, 'up{job="runboard"} == 1'), log)
    stored = wait_for(
        "runboard_gateway_up stored", lambda: query(prometheus, "runboard_gateway_up"), log
    )
    targets = get_json(f"{prometheus}/api/v1/targets")["data"]["activeTargets"]
    locks = query(prometheus, 'runboard_locks_held{gateway="alpha"}')

    assert up[0]["metric"]["job"] == "runboard"
    assert [(s["metric"]["gateway"], s["value"][1]) for s in stored] == [("alpha", "1")]
    assert [t["health"] for t in targets] == ["up"]
    assert targets[0]["lastError"] == ""
    assert locks[0]["value"][1] == "1"


def test_prometheus_loads_the_alert_rules_healthy(prometheus: str, tmp_path: Path) -> None:
    def rules() -> list[dict[str, Any]]:
        groups = get_json(f"{prometheus}/api/v1/rules")["data"]["groups"]
        return [
            r for g in groups for r in g["rules"] if r.get("lastEvaluation", "").startswith("2")
        ]

    def evaluated() -> list[dict[str, Any]]:
        found = rules()
        return found if len(found) == 6 and all(r["health"] == "ok" for r in found) else []

    found = wait_for("six healthy rules", evaluated, tmp_path / "prometheus.log")

    assert {r["name"] for r in found} == {
        "RunboardGatewayDown",
        "RunboardGatewayNotHeld",
        "RunboardSessionStuck",
        "RunboardSkipBurst",
        "RunboardIngestLag",
        "RunboardActionsFailing",
    }
