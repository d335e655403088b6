"""flag_latency_ms: from a rule's condition becoming true in the gateway to the flag in the store.

A real simulated gateway (2026.5.28 profile) on loopback, the real bridge and
ingest, the detect tick at its default period. Sessions are made to hang
(the model never answers); half of them are wedged (their backend ignores a
cancel) and aborted ``ABORT_AFTER_S`` after their message, well before the
stuck threshold, which on this build leaks the lock (``terminal_but_held``,
and nothing else); the other half just sit still (``no_progress``). Only
raised flags of the intended kind count (``terminal_but_held`` on a wedged
session, ``no_progress`` on a hung one); the per-kind counts are printed,
and so is the number of any other flag the sessions got (``other_flags``:
0 when the mix is the one described).
A flag stores ``since`` — the moment its condition became true, computed
from the gateway's own timestamps — and ``raised_at``, when ingest wrote it;
the latency is the difference.

The baseline, measured in the same run, is how long a plain registry event
takes from the gateway's timestamp to its commit in the store: the floor any
flag latency stands on. Goal: p99 <= 1000 ms.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.support import percentile, setup_django

SESSIONS = 60
STAGGER_S = 0.05
TERMINAL_HELD_AFTER_S = 1.0
STUCK_AFTER_S = 2.0
ABORT_AFTER_S = 0.5  # a wedged session is aborted this long after its message, < STUCK_AFTER_S
DEADLINE_S = 60.0


async def scenario() -> tuple[list[float], list[float], dict[str, int]]:
    from asgiref.sync import sync_to_async

    from adminpanel.bridges.supervisor import BridgeSupervisor, GatewayTarget
    from adminpanel.detect import Thresholds
    from adminpanel.ingest import Ingestor
    from adminpanel.models import Flag
    from gateway_bridge.events import RegistryEvent
    from simgateway.server import SimGateway

    event_latencies: list[float] = []

    class TimedSupervisor(BridgeSupervisor):
        def _apply(self, events: Sequence[RegistryEvent]) -> bool:
            needs_snapshot = super()._apply(events)
            committed = time.time()
            event_latencies.extend(committed - e.at for e in events if e.kind != "snapshot")
            return needs_snapshot

    gateway = SimGateway(name="bench", profile="2026.5.28", token="bench-token")
    await gateway.start()
    thresholds = Thresholds(
        stuck_after_s=STUCK_AFTER_S,
        terminal_held_after_s=TERMINAL_HELD_AFTER_S,
        waiter_unbounded_after_s=3600,
        store_mismatch_after_s=3600,
    )
    supervisor = TimedSupervisor(
        [GatewayTarget("bench", gateway.url, "bench-token")],
        ingestor=Ingestor(thresholds=thresholds),
    )
    stop = asyncio.Event()
    running = asyncio.create_task(supervisor.run(stop))
    try:
        await asyncio.sleep(1.0)  # connected, snapshot applied
        keys = [f"agent:main:telegram:direct:bench-{n}" for n in range(SESSIONS)]
        intended = {key: "terminal_but_held" if n % 2 == 0 else "no_progress"
                    for n, key in enumerate(keys)}  # fmt: skip
        loop = asyncio.get_running_loop()
        for key, code in intended.items():
            # The aborted half wedges: a hung turn would settle on abort and release.
            wedged = code == "terminal_but_held"
            gateway.send_inbound(key, f"please {'WEDGE' if wedged else 'HANG'} {key}")
            if wedged:
                loop.call_later(ABORT_AFTER_S, gateway.abort, key)
            await asyncio.sleep(STAGGER_S)
        flags = sync_to_async(
            lambda: list(
                Flag.objects.filter(session__session_key__in=keys).values_list(
                    "session__session_key", "code", "since", "raised_at", "cleared_at"
                )
            )
        )
        deadline = time.monotonic() + DEADLINE_S
        counts: dict[str, int] = {}
        latencies: list[float] = []
        while time.monotonic() < deadline:
            latencies, counts = [], {"terminal_but_held": 0, "no_progress": 0, "other_flags": 0}
            for key, code, since, raised, cleared in await flags():
                if code == intended[key] and cleared is None:
                    counts[code] += 1
                    latencies.append((raised - since).total_seconds())
                else:
                    counts["other_flags"] += 1
            if len(latencies) >= SESSIONS:
                break
            await asyncio.sleep(0.2)
        if len(latencies) < SESSIONS:
            raise SystemExit(f"only {counts} of {SESSIONS} flags appeared in {DEADLINE_S} s")
        return latencies, event_latencies, counts
    finally:
        stop.set()
        await running
        await gateway.stop()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="runboard-bench-") as workdir:
        setup_django(Path(workdir))
        flag_s, event_s, counts = asyncio.run(scenario())
    p50, p99 = percentile(flag_s, 50) * 1000, percentile(flag_s, 99) * 1000
    base_p99 = percentile(event_s, 99) * 1000
    print(
        json.dumps(
            {
                "metric": "flag_latency_ms",
                "value": round(p99, 1),
                "unit": "ms (p99)",
                "p50": round(p50, 1),
                "samples": len(flag_s),
                **counts,
                "baseline": round(base_p99, 1),
                "baseline_metric": "event_to_store_ms p99",
                "baseline_p50": round(percentile(event_s, 50) * 1000, 1),
                "ratio": round(p99 / base_p99, 2) if base_p99 else None,
                "goal": "p99 <= 1000",
            }
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
