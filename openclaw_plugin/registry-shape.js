// Reading OpenClaw's in-memory reply-run registry, and refusing shapes we do not know.
//
// The registry is a process-global singleton: `globalThis[Symbol.for("openclaw.replyRunRegistry")]`
// (src/auto-reply/reply/reply-run-registry*.ts, resolveGlobalSingleton). Two shapes are known:
//
//   "2026.9": 2026.7+ builds (seen on 2026.9.6). Operations carry startedAtMs /
//             lastActivityAtMs / turnKind / staleExpiryReason, and the state object keeps
//             `clearOperationByOperation` (operation -> its own clearState), which is what
//             the registry's forceClearReplyOperation() calls after op.fail("run_failed").
//   "2026.5": 2026.5.x builds (seen on 2026.5.28). Five maps only; op.fail() clears the
//             entry itself, which is what forceClearReplyRunBySessionId() relies on.
//
// Anything else is UNSUPPORTED: the plugin says so instead of guessing.

export const REGISTRY_SYMBOL = Symbol.for("openclaw.replyRunRegistry");

const BASE_MAPS = ["activeRunsByKey", "activeSessionIdsByKey", "activeKeysBySessionId", "waitKeysBySessionId", "waitersByKey"];

export class UnsupportedRegistry extends Error {
  constructor(message) {
    super(message);
    this.name = "UnsupportedRegistry";
  }
}

/** The registry state object, or null when the registry module has not been loaded yet. */
export function registryState() {
  return Object.hasOwn(globalThis, REGISTRY_SYMBOL) ? globalThis[REGISTRY_SYMBOL] : null;
}

/** "2026.9" | "2026.5"; throws UnsupportedRegistry for any other shape. */
export function detectShape(state) {
  if (state === null || typeof state !== "object") {
    throw new UnsupportedRegistry("the reply-run registry singleton is not an object");
  }
  for (const name of BASE_MAPS) {
    if (!(state[name] instanceof Map)) {
      throw new UnsupportedRegistry(`the reply-run registry has no Map ${name}`);
    }
  }
  if (state.clearOperationByOperation instanceof WeakMap) return "2026.9";
  const extra = Object.keys(state).filter((k) => !BASE_MAPS.includes(k));
  if (extra.length === 0) return "2026.5";
  throw new UnsupportedRegistry(
    `the reply-run registry has fields this plugin does not know (${extra.slice(0, 8).join(", ")}) ` +
      "and no clearOperationByOperation: refusing to guess how to clear it",
  );
}

/** Check one operation has what the plugin reads and calls. */
export function checkOperation(op, key) {
  if (op === null || typeof op !== "object") {
    throw new UnsupportedRegistry(`registry entry for ${key} is not an object`);
  }
  if (typeof op.phase !== "string" || typeof op.sessionId !== "string" || typeof op.fail !== "function") {
    throw new UnsupportedRegistry(
      `registry entry for ${key} lacks phase / sessionId / fail(): an operation shape this plugin does not know`,
    );
  }
  if (op.result !== null && op.result !== undefined && typeof op.result?.kind !== "string") {
    throw new UnsupportedRegistry(`registry entry for ${key} has a result without a kind`);
  }
}

/** One operation's facts, as plain data. */
export function readOperation(op) {
  const result = op.result ?? null;
  return {
    sessionId: op.sessionId,
    phase: op.phase,
    resultKind: result ? result.kind : null,
    resultCode: result && typeof result.code === "string" ? result.code : null,
    turnKind: typeof op.turnKind === "string" ? op.turnKind : "visible",
    startedAtMs: typeof op.startedAtMs === "number" ? op.startedAtMs : null,
    lastActivityAtMs: typeof op.lastActivityAtMs === "number" ? op.lastActivityAtMs : null,
    staleExpiryReason: typeof op.staleExpiryReason === "string" ? op.staleExpiryReason : null,
  };
}

/** A waiter's own timeout in ms if it armed a timer (Node keeps it as _idleTimeout), else null. */
export function waiterTimeoutMs(waiter) {
  const timer = waiter?.timer;
  if (!timer) return null;
  const ms = timer._idleTimeout;
  return typeof ms === "number" && ms >= 0 ? Math.round(ms) : null;
}

/**
 * Clear `op` through the registry's own clear path. Returns true when the entry is gone.
 * 2026.9: op.fail("run_failed") then the registry's clearState for that op (forceClearReplyOperation).
 * 2026.5: op.fail("run_failed") clears the entry itself (forceClearReplyRunBySessionId).
 */
export function clearThroughRegistry(state, shape, key, op, cause) {
  if (state.activeRunsByKey.get(key) !== op) return false;
  if (shape === "2026.9") {
    const clearState = state.clearOperationByOperation.get(op);
    if (typeof clearState !== "function") {
      throw new UnsupportedRegistry(`the registry keeps no clear function for the entry of ${key}`);
    }
    op.fail("run_failed", cause);
    clearState();
  } else {
    op.fail("run_failed", cause);
  }
  return state.activeRunsByKey.get(key) !== op;
}
