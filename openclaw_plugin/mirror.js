// The mirror: watches the registry, numbers its changes, and fans them out to subscribers.
//
// OpenClaw's registry announces nothing, so the mirror compares what it saw last with
// what the registry holds now ("scan"). It scans on a short timer and, where the shape
// allows, right before and after every set/delete on activeRunsByKey (wrapped on the
// instance), so a lock that comes and goes between two timer ticks is still seen.
// Every change gets the next seq of this process (bootId); a snapshot is taken right
// after a scan, so it is exact at the seq it reports.

import { randomUUID } from "node:crypto";
import {
  UnsupportedRegistry,
  checkOperation,
  clearThroughRegistry,
  detectShape,
  readOperation,
  registryState,
  waiterTimeoutMs,
} from "./registry-shape.js";

export const EVENT = "runboard.registry";
const SCAN_INTERVAL_MS = 100;
const PREVIEW_CHARS = 120;
const RECENT_CHANGES = 10000;
const MAX_TEXT = 8000;
const FOLLOWUP_QUEUES = Symbol.for("openclaw.followupQueues");

/** The follow-up queue items waiting for `key` (the queue module's global Map), or []. */
function followupItems(key) {
  const queues = Object.hasOwn(globalThis, FOLLOWUP_QUEUES) ? globalThis[FOLLOWUP_QUEUES] : null;
  const queue = queues instanceof Map ? queues.get(key) : undefined;
  const items = queue?.items;
  return Array.isArray(items) ? items.filter((item) => item && typeof item === "object") : [];
}

export class Mirror {
  constructor({ version, logger }) {
    this.bootId = randomUUID();
    this.version = version;
    this.logger = logger;
    this.seq = 0;
    this.runCounter = 0;
    this.waiterCounter = 0;
    this.profile = null;
    this.unsupported = null;
    this.known = new Map(); // sessionKey -> {op, runId, facts, waiters: Map<waiterObj, info>}
    this.runIds = new WeakMap(); // operation -> runId
    this.releaseHow = new WeakMap(); // operation -> {how, detail}
    this.subscribers = new Map(); // connId -> socket
    // The latest changes' frames, at seq % RECENT_CHANGES: a subscriber resuming from its
    // last seq (a reconnecting bridge, or one taking over a dead one's gateway) misses none.
    this.recent = new Array(RECENT_CHANGES);
    this.wrapped = null;
    this.timer = null;
    this.emit({ kind: "started", version, profile: "" });
  }

  start() {
    if (this.timer) return;
    this.timer = setInterval(() => this.safeScan(), SCAN_INTERVAL_MS);
    this.timer.unref?.();
  }

  stop() {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  // --- reading ---------------------------------------------------------------------------

  /** The registry and its shape; throws UnsupportedRegistry. Null state = not loaded yet. */
  resolve() {
    const state = registryState();
    if (state === null) return { state: null, shape: this.profile };
    const shape = detectShape(state);
    this.profile = shape;
    this.wrap(state);
    return { state, shape };
  }

  safeScan() {
    try {
      this.scan();
    } catch (err) {
      if (err instanceof UnsupportedRegistry) {
        if (!this.unsupported) this.logger?.warn?.(`runboard: ${err.message}`);
        this.unsupported = err.message;
      } else {
        this.logger?.warn?.(`runboard: registry scan failed: ${err?.stack ?? err}`);
      }
    }
  }

  scan() {
    const { state } = this.resolve();
    const now = Date.now();
    const live = state ? state.activeRunsByKey : new Map();
    for (const [key, op] of live) checkOperation(op, key);
    for (const [key, seen] of this.known) {
      const op = live.get(key);
      if (op !== seen.op) this.released(key, seen, now, op !== undefined);
    }
    for (const [key, op] of live) {
      let seen = this.known.get(key);
      if (!seen) seen = this.acquired(key, op);
      else this.changed(key, seen, readOperation(op));
      this.scanWaiters(key, seen, state.waitersByKey.get(key), now);
    }
    this.unsupported = null;
  }

  runIdOf(op) {
    let id = this.runIds.get(op);
    if (!id) {
      this.runCounter += 1;
      id = `op-${this.bootId.slice(0, 8)}-${this.runCounter}`;
      this.runIds.set(op, id);
    }
    return id;
  }

  acquired(key, op) {
    const facts = readOperation(op);
    const seen = { op, runId: this.runIdOf(op), facts, waiters: new Map(), ended: false };
    this.known.set(key, seen);
    this.emit({
      kind: "acquired",
      sessionKey: key,
      runId: seen.runId,
      sessionId: facts.sessionId,
      phase: facts.phase,
      turnKind: facts.turnKind,
    });
    if (facts.resultKind) this.ended(key, seen, facts);
    return seen;
  }

  changed(key, seen, facts) {
    const before = seen.facts;
    seen.facts = facts;
    if (facts.phase !== before.phase && !facts.resultKind) {
      this.emit({ kind: "phase", sessionKey: key, runId: seen.runId, phase: facts.phase });
    }
    if (facts.lastActivityAtMs !== null && facts.lastActivityAtMs !== before.lastActivityAtMs && !facts.resultKind) {
      this.emit({ kind: "activity", sessionKey: key, runId: seen.runId, activity: `phase ${facts.phase}` });
    }
    if (facts.resultKind && !seen.ended) this.ended(key, seen, facts);
  }

  ended(key, seen, facts) {
    seen.ended = true;
    this.emit({
      kind: "ended",
      sessionKey: key,
      runId: seen.runId,
      result: facts.resultKind,
      code: facts.resultCode,
    });
  }

  released(key, seen, now, replaced) {
    const facts = readOperation(seen.op);
    if (!seen.ended) this.ended(key, seen, { ...facts, resultKind: facts.resultKind ?? "completed" });
    for (const info of seen.waiters.values()) {
      this.emit({ kind: "waiter.resolved", sessionKey: key, waiterId: info.waiterId, outcome: "admitted" });
    }
    const how = this.releaseHow.get(seen.op) ?? releaseKind(facts, now);
    this.emit({
      kind: "released",
      sessionKey: key,
      runId: seen.runId,
      how: how.how,
      ...(how.detail ? { detail: how.detail } : {}),
    });
    this.known.delete(key);
    void replaced;
  }

  /**
   * Two kinds of waiting message: the registry's own waiters (waitForIdle: an object with a
   * finish() and maybe a timer, no message) and the session's follow-up queue items (a
   * chat.send to a busy session on 2026.5.28 / 2026.9.6 lands there: prompt and messageId).
   */
  scanWaiters(key, seen, waiters, now) {
    const current = new Map();
    for (const waiter of waiters instanceof Set ? waiters : []) current.set(waiter, "registry");
    for (const item of followupItems(key)) current.set(item, "followup");
    for (const [waiter, info] of seen.waiters) {
      if (current.has(waiter)) continue;
      seen.waiters.delete(waiter);
      // Gone while the lock is still held: a registry wait gave up (a timed slice, or an
      // abort); a follow-up item was dropped or cleared (drained items go at release).
      const outcome = info.source === "registry" ? "timed_out" : "aborted";
      this.emit({ kind: "waiter.resolved", sessionKey: key, waiterId: info.waiterId, outcome });
    }
    for (const [waiter, source] of current) {
      if (seen.waiters.has(waiter)) continue;
      const info = this.waiterInfo(waiter, source, now);
      seen.waiters.set(waiter, info);
      this.emit({
        kind: "waiter.added",
        sessionKey: key,
        waiterId: info.waiterId,
        timeoutMs: info.timeoutMs,
        turnKind: info.turnKind,
        blockingRunId: seen.runId,
        messageId: info.messageId,
        preview: previewOf(info.text),
        text: info.text,
      });
    }
  }

  waiterInfo(waiter, source, now) {
    this.waiterCounter += 1;
    const waiterId = `w-${this.waiterCounter}`;
    if (source === "registry") {
      // The registry's waiters carry no message: name the waiter, leave the text empty.
      return { source, waiterId, sinceMs: now, timeoutMs: waiterTimeoutMs(waiter), turnKind: "visible", messageId: waiterId, text: "" };
    }
    const text = typeof waiter.prompt === "string" ? waiter.prompt.slice(0, MAX_TEXT) : "";
    const messageId = typeof waiter.messageId === "string" && waiter.messageId ? waiter.messageId : waiterId;
    const since = typeof waiter.enqueuedAt === "number" ? waiter.enqueuedAt : now;
    return { source, waiterId, sinceMs: since, timeoutMs: null, turnKind: "queued_followup", messageId, text };
  }

  // --- hooks on the registry -------------------------------------------------------------

  /** Scan right before and after each set/delete on activeRunsByKey (instance-level wrap). */
  wrap(state) {
    const map = state.activeRunsByKey;
    if (this.wrapped === map) return;
    const mirror = this;
    const originalSet = map.set;
    const originalDelete = map.delete;
    map.set = function (key, value) {
      mirror.safeScan();
      const out = originalSet.call(this, key, value);
      mirror.safeScan();
      return out;
    };
    map.delete = function (key) {
      mirror.safeScan();
      const out = originalDelete.call(this, key);
      mirror.safeScan();
      return out;
    };
    this.wrapped = map;
  }

  // --- out -------------------------------------------------------------------------------

  emit(change) {
    this.seq += 1;
    const payload = { bootId: this.bootId, seq: this.seq, ts: Date.now(), ...change };
    const frame = JSON.stringify({ type: "event", event: EVENT, payload });
    this.recent[this.seq % RECENT_CHANGES] = frame;
    if (this.subscribers.size === 0) return;
    for (const [connId, socket] of this.subscribers) {
      if (socket.readyState !== 1) {
        this.subscribers.delete(connId);
        continue;
      }
      try {
        socket.send(frame);
      } catch {
        this.subscribers.delete(connId);
      }
    }
  }

  /**
   * Whether every change after `afterSeq` of boot `bootId` can be sent again: the same
   * boot, and no more than RECENT_CHANGES ago.
   */
  canReplay(bootId, afterSeq) {
    return bootId === this.bootId && afterSeq >= 0 && this.seq - afterSeq <= RECENT_CHANGES;
  }

  /** Send `socket` the changes after `afterSeq` again, in order (canReplay said yes). */
  replay(socket, afterSeq) {
    for (let seq = afterSeq + 1; seq <= this.seq; seq += 1) {
      socket.send(this.recent[seq % RECENT_CHANGES]);
    }
  }

  subscribe(connId, socket) {
    this.subscribers.set(connId, socket);
    socket.once?.("close", () => {
      if (this.subscribers.get(connId) === socket) this.subscribers.delete(connId);
    });
  }

  // --- answers ---------------------------------------------------------------------------

  entryOf(key, seen) {
    const f = seen.facts;
    return {
      sessionKey: key,
      sessionId: f.sessionId,
      runId: seen.runId,
      phase: f.phase,
      result: f.resultKind ? { kind: f.resultKind, code: f.resultCode } : null,
      turnKind: f.turnKind,
      startedAtMs: f.startedAtMs,
      lastActivityAtMs: f.lastActivityAtMs,
      waiters: [...seen.waiters.values()].map((w) => ({
        waiterId: w.waiterId,
        sinceMs: w.sinceMs,
        timeoutMs: w.timeoutMs,
        turnKind: w.turnKind,
        messageId: w.messageId,
        preview: previewOf(w.text),
        text: w.text,
      })),
    };
  }

  snapshot() {
    this.scan();
    const entries = [...this.known].map(([key, seen]) => this.entryOf(key, seen));
    return {
      bootId: this.bootId,
      seq: this.seq,
      ts: Date.now(),
      version: this.version,
      profile: this.profile ?? "",
      entries,
      sessions: {},
    };
  }

  forceClear(sessionKey, expectRunId, reason) {
    this.scan();
    const seen = this.known.get(sessionKey);
    if (!seen) return { cleared: false, sessionKey, reason: "not_locked", current: null };
    if (seen.runId !== expectRunId) {
      return { cleared: false, sessionKey, reason: "owner_changed", current: this.entryOf(sessionKey, seen) };
    }
    const { state, shape } = this.resolve();
    const op = seen.op;
    this.releaseHow.set(op, { how: "force_clear", detail: reason.slice(0, 512) });
    // First cancel the owner's backend, as OpenClaw's own stuck-session recovery does before
    // it force-clears: a cleared entry whose model call still runs keeps the session's lane,
    // and the user's next message would wait behind it (seen on 2026.9.6).
    cancelBackend(op);
    if (state.activeRunsByKey.get(sessionKey) === op) {
      const cause = new Error(`Reply run force-cleared by Runboard: ${reason}`);
      clearThroughRegistry(state, shape, sessionKey, op, cause);
    }
    const gone = state.activeRunsByKey.get(sessionKey) !== op;
    const phase = op.phase;
    this.scan();
    if (!gone) return null;
    return { cleared: true, sessionKey, runId: seen.runId, phase, seq: this.seq };
  }
}

/** op.abortByUser(): aborts the owner's signal and cancels its backend; never throws. */
function cancelBackend(op) {
  if (op.result || typeof op.abortByUser !== "function") return;
  try {
    op.abortByUser();
  } catch {
    // The clear below still releases the entry.
  }
}

function releaseKind(facts, now) {
  if (facts.staleExpiryReason) return { how: "stale_takeover", detail: facts.staleExpiryReason };
  // 2026.7+: an entry whose result is older than the 60 s terminal settle was released by it.
  if (facts.resultKind === "aborted" && facts.lastActivityAtMs !== null && now - facts.lastActivityAtMs >= 60_000) {
    return { how: "forced_settle", detail: "" };
  }
  return { how: "normal", detail: "" };
}

export function previewOf(text) {
  return text.length > PREVIEW_CHARS ? text.slice(0, PREVIEW_CHARS) : text;
}
