"""``python -m simgateway`` (and ``manage.py simgateway``).

Runs one or more simulated gateways in one process, each with its own
profile and port, drives them with a workload, and stops them cleanly on
SIGINT/SIGTERM::

    python -m simgateway --gateway sim-eu=2026.5.28:18789 \\
        --gateway sim-next=2026.9:18791 --token T --workload demo --seed 7
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from simgateway.profiles import PROFILES, Knobs
from simgateway.server import SimGateway
from simgateway.workload import Workload

log = structlog.get_logger(__name__)

DEFAULT_GATEWAYS = ("sim-eu=2026.5.28:18789", "sim-us=2026.5.3:18790", "sim-next=2026.9:18791")
WORKLOADS = ("demo", "steady", "none")


@dataclass(frozen=True, slots=True)
class GatewaySpec:
    name: str
    profile: str
    port: int


def parse_gateway(spec: str) -> GatewaySpec:
    """``NAME=PROFILE:PORT`` → GatewaySpec, with an error that says what is wrong."""
    name, sep, rest = spec.partition("=")
    profile, sep2, port = rest.rpartition(":")
    if not (sep and sep2 and name and profile and port.isdigit()):
        raise argparse.ArgumentTypeError(f"--gateway {spec!r} is not NAME=PROFILE:PORT")
    if profile not in PROFILES:
        raise argparse.ArgumentTypeError(
            f"--gateway {spec!r}: unknown profile {profile!r}; known: {', '.join(PROFILES)}"
        )
    if not 0 <= int(port) <= 65535:  # 0: any free port
        raise argparse.ArgumentTypeError(f"--gateway {spec!r}: port out of range")
    return GatewaySpec(name, profile, int(port))


def parse_knob(spec: str) -> tuple[str, float]:
    name, sep, value = spec.partition("=")
    known = set(Knobs.__dataclass_fields__)
    if not sep or name not in known:
        raise argparse.ArgumentTypeError(
            f"--knob {spec!r} is not NAME=VALUE with NAME one of {', '.join(sorted(known))}"
        )
    try:
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--knob {spec!r}: {value!r} is not a number") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gateway", action="append", type=parse_gateway, default=None,
        metavar="NAME=PROFILE:PORT",
        help=f"a gateway to run (repeatable; default: {' '.join(DEFAULT_GATEWAYS)})",
    )  # fmt: skip
    parser.add_argument("--token", default="sim-token", help="shared gateway token")
    parser.add_argument("--workload", choices=WORKLOADS, default="demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.5, help="messages/s per gateway")
    parser.add_argument("--sessions", type=int, default=12, help="sessions per gateway")
    parser.add_argument(
        "--knob", action="append", type=parse_knob, default=None, metavar="NAME=VALUE",
        help="override a time constant or rate on every gateway (repeatable)",
    )  # fmt: skip
    parser.add_argument("--tick-interval-s", type=float, default=15.0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simgateway",
        description="Run simulated OpenClaw gateways with Runboard's registry methods.",
    )
    add_arguments(parser)
    return parser


def workload_for(options: Mapping[str, Any], profile: str, index: int) -> Workload | None:
    seed = int(options["seed"]) * 1000 + index
    rate, sessions = float(options["rate"]), int(options["sessions"])
    if options["workload"] == "demo":
        return Workload.demo(profile, seed=seed, rate=rate, sessions=sessions)
    if options["workload"] == "steady":
        return Workload.steady_preset(seed=seed, rate=rate, sessions=sessions)
    return None


async def serve(options: Mapping[str, Any], stop_event: asyncio.Event) -> None:
    """Start every gateway and workload, wait for ``stop_event``, then stop them all."""
    specs = options["gateway"] or [parse_gateway(s) for s in DEFAULT_GATEWAYS]
    knobs = dict(options["knob"] or [])
    gateways: list[SimGateway] = []
    workloads: list[asyncio.Task[None]] = []
    try:
        for index, spec in enumerate(specs):
            workload = workload_for(options, spec.profile, index)
            gateway_knobs = dict(knobs)
            if workload is not None:
                gateway_knobs.setdefault("turn_median_s", workload.turn_median_s)
            gateway = SimGateway(
                name=spec.name, profile=spec.profile, token=options["token"],
                seed=int(options["seed"]) + index,
                tick_interval_s=float(options["tick_interval_s"]), **gateway_knobs,
            )  # fmt: skip
            await gateway.start(port=spec.port)
            gateways.append(gateway)
            if workload is not None:
                workloads.append(asyncio.create_task(workload.run(gateway, stop_event)))
        await stop_event.wait()
    finally:
        stop_event.set()
        await asyncio.gather(*workloads, return_exceptions=True)
        for gateway in gateways:
            await gateway.stop()


async def _main(options: Mapping[str, Any]) -> None:
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop_event.set)
    await serve(options, stop_event)


def run(options: Mapping[str, Any]) -> int:
    asyncio.run(_main(options))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(vars(build_parser().parse_args(argv)))
