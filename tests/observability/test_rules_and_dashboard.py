"""The alert rules pass promtool and their unit tests; rules and dashboard use real metrics only."""

from __future__ import annotations

import json
from typing import Any

import pytest

from adminpanel.observability.collector import FAMILIES
from tests.observability.promql import (
    DASHBOARD,
    RULE_TESTS,
    RULES,
    metric_names,
    promtool,
    rule_expressions,
)
from tests.observability.support import gateway, held, scrape_text, session


def test_the_alert_rules_pass_promtool_check_rules() -> None:
    result = promtool("check", "rules", str(RULES))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


def test_the_alert_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_the_issue_asks_for_exists() -> None:
    text = RULES.read_text()

    for alert in (
        "RunboardGatewayDown",
        "RunboardSessionStuck",
        "RunboardSkipBurst",
        "RunboardIngestLag",
        "RunboardGatewayNotHeld",
        "RunboardActionsFailing",
    ):
        assert f"alert: {alert}\n" in text
        assert f"alertname: {alert}\n" in RULE_TESTS.read_text()  # and each has a unit test


def test_the_alert_rules_name_only_metrics_the_exporter_exposes() -> None:
    used = set().union(*(metric_names(e) for e in rule_expressions()))

    assert used, "no expressions found"
    assert used <= set(FAMILIES), used - set(FAMILIES)


def dashboard_expressions(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k in ("expr", "definition") and isinstance(v, str)]
        return found + [e for v in node.values() for e in dashboard_expressions(v)]
    if isinstance(node, list):
        return [e for v in node for e in dashboard_expressions(v)]
    return []


def test_the_grafana_dashboard_names_only_metrics_the_exporter_exposes() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = dashboard_expressions(dashboard)

    used = set().union(*(metric_names(e) for e in expressions))
    assert used <= set(FAMILIES), used - set(FAMILIES)
    assert used == set(FAMILIES)  # and every family has a panel
    assert dashboard["uid"] == "runboard"
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"])


def test_metric_names_reads_past_labels_functions_and_ranges() -> None:
    expr = 'sum by (gateway, reason) (rate(runboard_skips_total{gateway=~"$g"}[5m])) * 60'

    assert metric_names(expr) == {"runboard_skips_total"}
    assert metric_names("a_metric / on (x) other_metric > bool 3") == {"a_metric", "other_metric"}


@pytest.mark.django_db
def test_a_real_scrape_passes_promtool_check_metrics() -> None:
    alpha = gateway("alpha", status="connected", reconnects=2)
    held(alpha)
    session(alpha, "agent:main:telegram:direct:1", locked_for_s=30)
    text = scrape_text()

    result = promtool("check", "metrics", stdin=text)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stderr
