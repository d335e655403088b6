"""The companion plugin's registry reading, run in the pinned Node against hand-built registries.

The contract tests (tests/contract/) run the plugin inside real OpenClaw
releases; these check what no release can show: a registry shape the plugin
does not know is refused, not guessed at. Each test runs one small ES module
script in Node that imports the plugin's own modules and prints JSON.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.contract.targets import require_installed
from tests.openclaw.gateway import PLUGIN_DIR
from tests.openclaw.install import layout

PRELUDE = f"""
import {{ Mirror }} from {json.dumps((PLUGIN_DIR / "mirror.js").as_uri())};
import {{ detectShape }} from {json.dumps((PLUGIN_DIR / "registry-shape.js").as_uri())};
const SYM = Symbol.for("openclaw.replyRunRegistry");
const maps = () => ({{
  activeRunsByKey: new Map(), activeSessionIdsByKey: new Map(), activeKeysBySessionId: new Map(),
  waitKeysBySessionId: new Map(), waitersByKey: new Map(),
}});
function op(state, key, sessionId) {{
  const o = {{
    key, sessionId, phase: "running", result: null,
    fail(code) {{
      o.result = {{ kind: "failed", code }};
      o.phase = "failed";
      state.activeRunsByKey.delete(key);
    }},
  }};
  state.activeRunsByKey.set(key, o);
  return o;
}}
const out = (value) => console.log(JSON.stringify(value));
"""


def run_node(script: str) -> Any:
    require_installed("2026.9.6")  # only for Node: the same skip/fail rule as the contract tests
    done = subprocess.run(
        [str(layout().node), "--input-type=module", "-e", PRELUDE + script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.openclaw
def test_the_two_known_registry_shapes_are_recognised() -> None:
    got = run_node(
        """
        const old = maps();
        const next = { ...maps(), clearOperationByOperation: new WeakMap() };
        next.sourceTurnByKey = new Map();
        out([detectShape(old), detectShape(next)]);
        """
    )
    assert got == ["2026.5", "2026.9"]


@pytest.mark.openclaw
def test_an_unknown_registry_shape_is_refused_with_a_reason_instead_of_guessed() -> None:
    got = run_node(
        """
        const results = [];
        const shapes = [{ activeRunsByKey: new Map() }, { ...maps(), somethingNew: new Map() }];
        for (const state of shapes) {
          globalThis[SYM] = state;
          const mirror = new Mirror({ version: "x", logger: null });
          try { mirror.snapshot(); results.push("accepted"); }
          catch (err) { results.push(`${err.name}: ${err.message}`); }
        }
        out(results);
        """
    )
    assert got[0].startswith("UnsupportedRegistry: ") and "activeSessionIdsByKey" in got[0]
    assert got[1].startswith("UnsupportedRegistry: ") and "somethingNew" in got[1]


@pytest.mark.openclaw
def test_a_snapshot_is_exact_at_the_seq_of_the_last_change_it_reports() -> None:
    got = run_node(
        """
        const state = maps();
        globalThis[SYM] = state;
        const mirror = new Mirror({ version: "x", logger: null });
        op(state, "agent:main:a", "s-a");
        const first = mirror.snapshot();
        op(state, "agent:main:b", "s-b");
        const second = mirror.snapshot();
        out({ first: [first.seq, first.entries.length], second: [second.seq, second.entries.length],
              profile: second.profile });
        """
    )
    # seq 1 is the plugin's `started`; each acquisition is one more change.
    assert got == {"first": [2, 1], "second": [3, 2], "profile": "2026.5"}


@pytest.mark.openclaw
def test_force_clear_refuses_a_stale_owner_or_no_lock_and_clears_the_expected_one() -> None:
    got = run_node(
        """
        const state = maps();
        globalThis[SYM] = state;
        const mirror = new Mirror({ version: "x", logger: null });
        op(state, "agent:main:a", "s-a");
        const [entry] = mirror.snapshot().entries;
        const stale = mirror.forceClear("agent:main:a", "someone-else", "why");
        const none = mirror.forceClear("agent:main:zzz", entry.runId, "why");
        const done = mirror.forceClear("agent:main:a", entry.runId, "why");
        out({ stale: [stale.cleared, stale.reason, stale.current.runId === entry.runId],
              none: [none.cleared, none.reason], done: [done.cleared, done.runId === entry.runId],
              left: state.activeRunsByKey.size });
        """
    )
    assert got == {
        "stale": [False, "owner_changed", True],
        "none": [False, "not_locked"],
        "done": [True, True],
        "left": 0,
    }


@pytest.mark.openclaw
def test_a_subscriber_resuming_from_its_last_seq_gets_every_later_change_again_in_order() -> None:
    got = run_node(
        """
        const state = maps();
        globalThis[SYM] = state;
        const mirror = new Mirror({ version: "x", logger: null });
        op(state, "agent:main:a", "s-a");
        mirror.snapshot();
        const seen = mirror.seq;
        op(state, "agent:main:b", "s-b");
        op(state, "agent:main:c", "s-c");
        mirror.snapshot();
        const sent = [];
        const socket = { readyState: 1, send: (f) => sent.push(JSON.parse(f).payload.seq) };
        const ok = mirror.canReplay(mirror.bootId, seen);
        if (ok) mirror.replay(socket, seen);
        out({ ok, sent, seq: mirror.seq, otherBoot: mirror.canReplay("another-boot", seen),
              tooOld: mirror.canReplay(mirror.bootId, mirror.seq - 10001) });
        """
    )
    assert got["ok"] is True and got["otherBoot"] is False and got["tooOld"] is False
    assert got["sent"] == list(range(got["sent"][0], got["seq"] + 1)) and len(got["sent"]) == 2
