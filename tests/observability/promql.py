"""Just enough PromQL reading to list the metric names an expression uses, and promtool."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "runboard.json"

# Words that are PromQL, not metric names (functions are told apart by their "(").
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run Debian's promtool; a missing one fails the test with how to install it."""
    exe = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(exe).exists():
        pytest.fail("promtool is missing: install it with `sudo apt-get install prometheus`")
    return subprocess.run(
        [exe, *args], input=stdin, capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects (label names, functions and strings left out)."""
    expr = re.sub(r"label_values\(\s*([a-zA-Z_:][\w:]*)[^)]*\)", r"\1", expr)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for found in re.finditer(r"(?<![\w$.])[a-zA-Z_:][\w:]*", expr):
        if expr[found.end() :].lstrip().startswith("(") or found.group() in KEYWORDS:
            continue
        names.add(found.group())
    return names


def rule_expressions() -> list[str]:
    """Every ``expr:`` of alerts.yml (one line each there; no YAML library needed)."""
    lines = RULES.read_text().splitlines()
    return [line.split("expr:", 1)[1].strip() for line in lines if line.strip().startswith("expr:")]
