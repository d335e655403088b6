"""``demo --bridge inline``: bridges that crash on the web server's loop are started again."""

from __future__ import annotations

import asyncio

import pytest

from adminpanel.management.commands import demo


async def test_inline_bridges_that_crash_are_started_again_and_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    runs: list[int] = []
    stop = asyncio.Event()

    class Crashing:
        def __init__(self, targets: object) -> None:
            pass

        async def run(self, stop_event: asyncio.Event) -> None:
            runs.append(1)
            if len(runs) == 1:
                raise RuntimeError("the store went away")
            stop_event.set()

    monkeypatch.setattr(demo, "BridgeSupervisor", Crashing)
    async with asyncio.timeout(30):
        await demo.keep_inline([], stop)
    assert len(runs) == 2
    assert any("inline_bridges_crashed" in str(r.msg) for r in caplog.records)
