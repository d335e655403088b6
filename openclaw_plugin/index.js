// Runboard's companion plugin for OpenClaw: the registry methods of Runboard's docs/protocol.md §2.
//
//   runboard.registry.snapshot    operator.read   the reply-run registry, exact at a seq
//   runboard.registry.subscribe   operator.read   then `runboard.registry` change events
//   runboard.registry.forceClear  operator.admin  compare-and-clear through the registry's clear path
//   runboard.registry.requeue     operator.write  re-dispatch messages exactly as chat.send would
//
// Dependency-free ESM; loaded with `plugins.load.paths` and enabled with
// `plugins.entries["runboard-registry"].enabled = true`.

import { readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { Mirror, previewOf } from "./mirror.js";
import { UnsupportedRegistry } from "./registry-shape.js";

const PLUGIN_ID = "runboard-registry";
const MIRROR_SYMBOL = Symbol.for("runboard.registryMirror");
const MAX_REQUEUE = 50;
const MAX_TEXT = 8000;
const MAX_REASON = 512;

/** OpenClaw's version, from the package.json next to the CLI entry that started the gateway. */
function openclawVersion() {
  try {
    const entry = process.argv[1] ?? "";
    const manifest = JSON.parse(readFileSync(join(dirname(entry), "package.json"), "utf8"));
    if (manifest?.name === "openclaw" && typeof manifest.version === "string") return manifest.version;
  } catch {
    // fall through
  }
  return "unknown";
}

/** One mirror per gateway process, however many times OpenClaw calls register(). */
function sharedMirror(logger) {
  let mirror = globalThis[MIRROR_SYMBOL];
  if (!(mirror instanceof Mirror)) {
    mirror = new Mirror({ version: openclawVersion(), logger });
    globalThis[MIRROR_SYMBOL] = mirror;
  }
  mirror.start();
  return mirror;
}

function invalid(respond, message) {
  respond(false, undefined, { code: "INVALID_REQUEST", message });
}

function unsupported(respond, err) {
  respond(false, undefined, { code: "UNSUPPORTED_REGISTRY", message: err.message });
}

/** Run `work`; turn an UnsupportedRegistry into its error code and anything else into UNAVAILABLE. */
async function answer(respond, work) {
  try {
    const payload = await work();
    if (payload !== undefined) respond(true, payload);
  } catch (err) {
    if (err instanceof UnsupportedRegistry) unsupported(respond, err);
    else respond(false, undefined, { code: "UNAVAILABLE", message: String(err?.message ?? err) });
  }
}

function nonEmptyString(value, max) {
  return typeof value === "string" && value.length > 0 && value.length <= max;
}

/** Call the gateway's own chat.send handler for one message, as the requeue's connection. */
function chatSend(opts, sendHandler, sessionKey, message) {
  return new Promise((resolve, reject) => {
    const params = { sessionKey, message: message.text, idempotencyKey: message.idempotencyKey };
    const respond = (ok, payload, error) => {
      if (ok) resolve(payload ?? {});
      else reject(new Error(`chat.send refused: ${error?.code ?? "ERROR"} ${error?.message ?? ""}`.trim()));
    };
    Promise.resolve(
      sendHandler({
        ...opts,
        req: { type: "req", id: `${opts.req?.id ?? "requeue"}:${message.idempotencyKey}`, method: "chat.send", params },
        params,
        respond,
      }),
    ).catch(reject);
  });
}

/**
 * The gateway's own chat.send handler. 2026.7+ hands plugins the method registry on the
 * request context; 2026.5.x does not, but its server-methods module exports
 * `coreGatewayHandlers`: import that very module (same URL, so the same instance the gateway
 * runs) from the installed dist folder. Anything else: none, and requeue refuses.
 */
async function chatSendHandler(context) {
  const registry = context?.getGatewayMethodRegistry?.();
  const handler = registry?.getHandler?.("chat.send");
  if (typeof handler === "function") return handler;
  const handlers = await coreHandlersFromDist();
  const core = handlers?.["chat.send"];
  return typeof core === "function" ? core : null;
}

let coreHandlers;
function coreHandlersFromDist() {
  coreHandlers ??= (async () => {
    const dist = join(dirname(process.argv[1] ?? ""), "dist");
    let names;
    try {
      names = readdirSync(dist).filter((n) => /^server-methods-[A-Za-z0-9_-]+\.m?js$/.test(n) && !n.startsWith("server-methods-list-"));
    } catch {
      return null;
    }
    for (const name of names) {
      try {
        const mod = await import(pathToFileURL(join(dist, name)).href);
        if (mod.coreGatewayHandlers && typeof mod.coreGatewayHandlers === "object") return mod.coreGatewayHandlers;
      } catch {
        // not the module we look for
      }
    }
    return null;
  })();
  return coreHandlers;
}

export default {
  id: PLUGIN_ID,
  name: "Runboard registry",
  description: "Exposes the reply-run registry to Runboard: snapshot, change events, force-clear, requeue.",
  register(api) {
    const mirror = sharedMirror(api.logger);

    api.registerGatewayMethod(
      "runboard.registry.snapshot",
      ({ respond }) => answer(respond, () => mirror.snapshot()),
      { scope: "operator.read" },
    );

    api.registerGatewayMethod(
      "runboard.registry.subscribe",
      ({ params, respond, client }) => {
        // Optional resume point: the changes after afterSeq of boot bootId are sent again.
        const { bootId, afterSeq } = params ?? {};
        const resuming = bootId !== undefined || afterSeq !== undefined;
        if (resuming && (!nonEmptyString(bootId, 512) || !Number.isSafeInteger(afterSeq) || afterSeq < 0)) {
          return invalid(respond, "bootId (a string) and afterSeq (a whole number ≥ 0) go together");
        }
        return answer(respond, () => {
          const socket = client?.socket;
          if (!socket || typeof socket.send !== "function" || !client.connId) {
            throw new Error("this connection cannot receive registry events");
          }
          mirror.snapshot(); // brings seq up to date (and refuses an unknown shape)
          const replayed = resuming && mirror.canReplay(bootId, afterSeq);
          if (replayed) mirror.replay(socket, afterSeq);
          mirror.subscribe(client.connId, socket);
          const out = { bootId: mirror.bootId, seq: mirror.seq };
          return resuming ? { ...out, replayed } : out;
        });
      },
      { scope: "operator.read" },
    );

    api.registerGatewayMethod(
      "runboard.registry.forceClear",
      ({ params, respond }) => {
        const { sessionKey, expectRunId, reason } = params ?? {};
        if (!nonEmptyString(sessionKey, 512)) return invalid(respond, "sessionKey must be a non-empty string");
        if (!nonEmptyString(expectRunId, 512)) return invalid(respond, "expectRunId must be a non-empty string");
        if (typeof reason !== "string" || !reason.trim() || reason.length > MAX_REASON) {
          return invalid(respond, `reason must be a non-empty string of at most ${MAX_REASON} characters`);
        }
        return answer(respond, () => {
          const out = mirror.forceClear(sessionKey, expectRunId, reason);
          if (out === null) throw new Error(`the registry kept the entry for ${sessionKey} after its clear path ran`);
          return out;
        });
      },
      { scope: "operator.admin" },
    );

    api.registerGatewayMethod(
      "runboard.registry.requeue",
      (opts) => {
        const { params, respond, context } = opts;
        const { sessionKey, messages } = params ?? {};
        if (!nonEmptyString(sessionKey, 512)) return invalid(respond, "sessionKey must be a non-empty string");
        if (!Array.isArray(messages) || messages.length < 1 || messages.length > MAX_REQUEUE) {
          return invalid(respond, `messages must hold 1-${MAX_REQUEUE} items`);
        }
        for (const [i, m] of messages.entries()) {
          if (!nonEmptyString(m?.text, MAX_TEXT)) return invalid(respond, `messages[${i}].text must be 1-${MAX_TEXT} characters`);
          if (!nonEmptyString(m?.idempotencyKey, 512)) return invalid(respond, `messages[${i}].idempotencyKey must be a non-empty string`);
        }
        return answer(respond, async () => {
          const send = await chatSendHandler(context);
          if (!send) throw new UnsupportedRegistry("this gateway exposes no chat.send handler to plugins");
          const results = [];
          for (const m of messages) {
            const sent = await chatSend(opts, send, sessionKey, m);
            results.push({
              idempotencyKey: m.idempotencyKey,
              runId: typeof sent.runId === "string" ? sent.runId : m.idempotencyKey,
              status: sent.status === "started" ? "started" : "duplicate",
              preview: previewOf(m.text),
            });
          }
          return { results };
        });
      },
      { scope: "operator.write" },
    );
  },
};
