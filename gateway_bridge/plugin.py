"""Plugin mode: the companion plugin exposes the gateway's reply-run registry.

Subscribe first, then take a snapshot, so no change falls between the two.
The sink gets the ``Snapshot`` first, then the live changes after it, in
batches. When the sink answers True (the store saw a gap it cannot fill), or
a resync was asked for, a new snapshot is taken and delivered: the one way
the store is brought back in line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog

from gateway_bridge import frames
from gateway_bridge.client import GatewayClient, Hello
from gateway_bridge.errors import GatewayRejected, ProtocolViolation
from gateway_bridge.events import RegistryEvent, Snapshot
from gateway_bridge.feed import WAKE, EventQueue, Link, Marker, ends
from gateway_bridge.registry_decode import DecodeError, decode_or_reject, decode_snapshot_entry
from gateway_bridge.registry_decode import decode_snapshot as decode_snapshot_payload
from gateway_bridge.results import ForceClearResult, RequeueResult

log = structlog.get_logger(__name__)

SUBSCRIBE = "runboard.registry.subscribe"
SNAPSHOT = "runboard.registry.snapshot"
FORCE_CLEAR = "runboard.registry.forceClear"
REQUEUE = "runboard.registry.requeue"
REGISTRY_EVENT = "runboard.registry"


class PluginMode:
    """Streams the plugin's registry changes into the sink; its forceClear and requeue."""

    name = "plugin"

    def __init__(self, link: Link, *, batch_max: int = 2000, batch_wait_s: float = 0.0) -> None:
        self.link = link
        self.gateway = link.gateway
        self.batch_max = max(1, batch_max)
        self.batch_wait_s = batch_wait_s
        # (boot id, seq) of the last snapshot delivered: changes at or before it are in it.
        self.synced: tuple[str, int] | None = None

    async def serve(self, client: GatewayClient, hello: Hello, queue: EventQueue) -> None:
        self.synced = None
        if not await self.subscribe(client):
            # Subscribed before the snapshot: every change after the snapshot's seq is
            # then either in the snapshot or on its way to us.
            await self.resync(client, interruptible=True)
        await self.pump(client, queue)

    async def subscribe(self, client: GatewayClient) -> bool:
        """Subscribe, resuming from the store's cursor when the gateway can replay from it.

        Returns True when the gateway replays every change after the cursor (the
        store then misses none, and needs no snapshot); False when it cannot
        (another boot, or past its buffer) or does not know how (an older plugin).
        """
        point = await self.link.resume_point()
        params: dict[str, Any] = {"bootId": point[0], "afterSeq": point[1]} if point else {}
        try:
            subscribed = await self.link.unless_stopped(client.call(SUBSCRIBE, params))
        except GatewayRejected:
            if not params:
                raise
            params = {}  # a plugin from before resuming: subscribe plainly, then snapshot
            subscribed = await self.link.unless_stopped(client.call(SUBSCRIBE, params))
        if not isinstance(subscribed, dict) or not isinstance(subscribed.get("seq"), int):
            raise ProtocolViolation(f"{SUBSCRIBE} answered {str(subscribed)[:200]!r}")
        resumed = bool(params) and subscribed.get("replayed") is True
        if resumed:
            assert point is not None
            log.info("registry_resumed", gateway=self.gateway, boot_id=point[0],
                     after_seq=point[1], seq=subscribed["seq"])  # fmt: skip
        return resumed

    async def pump(self, client: GatewayClient, queue: EventQueue) -> None:
        """Deliver buffered changes in batches until the connection closes or stop().

        A batch goes out when it holds ``batch_max`` events or its first event
        has waited ``batch_wait_s``: one sink call (one store transaction) per
        batch instead of per event. The default wait is zero: an idle store gets
        each change at once, and while a delivery is in flight the changes that
        arrive meanwhile queue up and go out together as the next batch, so
        batches grow with the load instead of adding a fixed delay to every event.
        """
        loop = asyncio.get_running_loop()
        batch: list[RegistryEvent] = []
        deadline = 0.0
        while True:
            timeout = max(0.0, deadline - loop.time()) if batch else None
            try:
                item = await asyncio.wait_for(queue.get(), timeout)
            except TimeoutError:
                await self.flush(client, batch)
                batch = []
                continue
            # Take what is already waiting without a wait_for per event.
            while not isinstance(item, Marker):
                event = self.decode(*item)
                if event is not None:
                    if not batch:
                        deadline = loop.time() + self.batch_wait_s
                    batch.append(event)
                if len(batch) >= self.batch_max:
                    await self.flush(client, batch)
                    batch = []
                if queue.empty():
                    break
                item = queue.get_nowait()
            if item is WAKE:
                await self.flush(client, batch)
                batch = []
            elif ends(item):
                batch.extend(self.decode_queued(queue))
                await self.flush(client, batch, may_resync=False)
                return

    def decode(self, received_at: float, payload: Any) -> RegistryEvent | None:
        try:
            event = decode_or_reject(self.gateway, payload, received_at)  # bad: FrameRejected
        except DecodeError as exc:
            log.warning("frame_rejected", gateway=self.gateway, reason=str(exc))
            return None
        synced = self.synced
        if synced is not None and event.boot_id == synced[0] and event.seq <= synced[1]:
            return None  # already part of the snapshot we delivered
        return event

    def decode_queued(self, queue: EventQueue) -> list[RegistryEvent]:
        """Decode whatever is still queued (behind a marker), without waiting."""
        decoded = []
        while not queue.empty():
            item = queue.get_nowait()
            if isinstance(item, Marker):
                continue
            if isinstance(item[1], frames.Event):
                continue  # observer mode's leftovers: the next snapshot covers them
            event = self.decode(*item)
            if event is not None:
                decoded.append(event)
        return decoded

    async def drain(self, queue: EventQueue) -> None:
        """After the connection ended: deliver what was still queued."""
        leftovers = self.decode_queued(queue)
        if leftovers:
            await self.link.deliver(leftovers)
            self.link.received(leftovers)

    async def flush(
        self, client: GatewayClient, batch: list[RegistryEvent], *, may_resync: bool = True
    ) -> None:
        if batch:
            gap = await self.link.deliver(batch)
            self.link.received(batch)
        else:
            gap = False
        if may_resync and (gap or self.link.resync_due) and not client.closed:
            await self.resync(client)

    async def resync(self, client: GatewayClient, *, interruptible: bool = False) -> Snapshot:
        """Take a snapshot and deliver it; later changes continue from its seq.

        ``interruptible``: ``stop()`` may abandon the fetch (never the delivery,
        so the sink is not cancelled halfway through a write).
        """
        self.link.resync_due = False
        fetching = self.fetch_snapshot(client)
        snapshot = await (self.link.unless_stopped(fetching) if interruptible else fetching)
        self.synced = (snapshot.boot_id, snapshot.seq)
        if snapshot.version:
            self.link.set_state(boot_id=snapshot.boot_id, version=snapshot.version)
        else:
            self.link.set_state(boot_id=snapshot.boot_id)
        log.info(
            "registry_snapshot_delivering",
            gateway=self.gateway,
            boot_id=snapshot.boot_id,
            seq=snapshot.seq,
            entries=len(snapshot.entries),
        )
        if await self.link.deliver([snapshot]):
            # Not looping here: the next batch's answer asks again if it is still needed.
            log.warning("snapshot_left_gap", gateway=self.gateway, seq=snapshot.seq)
        return snapshot

    async def fetch_snapshot(self, client: GatewayClient) -> Snapshot:
        payload = await client.call(SNAPSHOT, {})
        try:
            return decode_snapshot_payload(self.gateway, payload, self.link.clock())
        except DecodeError as exc:
            log.warning("frame_rejected", gateway=self.gateway, reason=str(exc))
            raise ProtocolViolation(f"unusable snapshot: {exc}") from None

    # --- commands -------------------------------------------------------------------

    async def force_clear(
        self, session_key: str, expect_run_id: str, reason: str
    ) -> ForceClearResult:
        """Compare-and-clear in the registry: clears only if ``expect_run_id`` still owns it."""
        client = self.link.connected_client(FORCE_CLEAR)
        params = {"sessionKey": session_key, "expectRunId": expect_run_id, "reason": reason}
        payload = await client.call(FORCE_CLEAR, params)
        result = force_clear_result(session_key, payload)
        log.info(
            "force_clear_answered",
            gateway=self.gateway,
            session_key=session_key,
            expect_run_id=expect_run_id,
            cleared=result.cleared,
            refusal=result.reason,
        )
        return result

    async def requeue(
        self, session_key: str, messages: Sequence[tuple[str, str]]
    ) -> list[RequeueResult]:
        client = self.link.connected_client(REQUEUE)
        params = {
            "sessionKey": session_key,
            "messages": [{"text": text, "idempotencyKey": key} for text, key in messages],
        }
        return requeue_results(await client.call(REQUEUE, params))


def force_clear_result(session_key: str, payload: object) -> ForceClearResult:
    if not isinstance(payload, dict) or not isinstance(payload.get("cleared"), bool):
        raise ProtocolViolation(f"{FORCE_CLEAR} answered {str(payload)[:200]!r}")
    current = None
    if payload.get("current") is not None:
        try:
            current = decode_snapshot_entry(payload["current"], f"{FORCE_CLEAR} current")
        except DecodeError as exc:
            raise ProtocolViolation(str(exc)) from None
    run_id = payload.get("runId")
    phase = payload.get("phase")
    seq = payload.get("seq")
    reason = payload.get("reason")
    return ForceClearResult(
        cleared=payload["cleared"],
        session_key=session_key,
        run_id=run_id if isinstance(run_id, str) else "",
        reason=reason if isinstance(reason, str) else "",
        current=current,
        phase=phase if isinstance(phase, str) else "",
        seq=seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
    )


def requeue_results(payload: object) -> list[RequeueResult]:
    rows = payload.get("results") if isinstance(payload, dict) else None
    if not isinstance(rows, list):
        raise ProtocolViolation(f"{REQUEUE} answered {str(payload)[:200]!r}")
    results = []
    for row in rows:
        if not isinstance(row, dict) or not all(
            isinstance(row.get(k), str) for k in ("idempotencyKey", "runId", "status")
        ):
            raise ProtocolViolation(f"{REQUEUE} result row {str(row)[:200]!r} is malformed")
        results.append(RequeueResult(row["idempotencyKey"], row["runId"], row["status"]))
    return results
