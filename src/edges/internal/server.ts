// The internal API edge (split shape): the engine's relay over HTTPS with client certificates from the internal
// CA, on a local address only. It relays; it decides nothing.
import type { ServerResponse } from "node:http";
import Fastify, { type FastifyInstance } from "fastify";
import type { Config } from "../../config.ts";
import { bindAllowed } from "../../config.ts";
import type { Logger } from "../../log.ts";
import type { Relay } from "../../relay.types.ts";
import { decode, encode } from "../../store/codec.ts";
import { RELAY_METHODS, checkArgs, type RelayMethod } from "./protocol.ts";
import { Held } from "../../held.ts";
import { mtlsServer } from "../../tls/mtls.ts";

export interface InternalEdgeOptions {
  relay: Relay;
  log: Logger;
  tls: { key: string; cert: string; ca: string };
  /**
   * Notice bytes waiting for a bot that does not read its stream (stalled, its network gone quiet) before that stream
   * is closed (default 8 MB): the bot reconnects, and notices are held for it meanwhile, as when none is connected.
   */
  maxStreamBufferBytes?: number;
  /** How long a request may take to arrive, headers and body (30 s, as the admin edge's, unless a test shortens it). */
  requestTimeoutMs?: number;
}

export async function buildInternalEdge(o: InternalEdgeOptions): Promise<FastifyInstance> {
  const requestTimeout = o.requestTimeoutMs ?? 30_000;
  // The admin edge's TLS and request limits (tls/mtls.ts): without them, a local process with a stolen bot certificate,
  // or a bot wedged mid-request, could hold sockets open without end. The notice stream is exempt from the idle limit
  // (below): it is quiet whenever nothing happens.
  const app = Fastify({ logger: false, ...mtlsServer(o.tls, requestTimeout), bodyLimit: 64 * 1024 });
  const log = o.log.child({ edge: "internal" });
  app.addContentTypeParser("application/json", { parseAs: "buffer" }, (_req, body, done) => {
    try {
      done(null, decode(body as Buffer));
    } catch {
      done(Object.assign(new Error("the body is not valid JSON"), { statusCode: 400 }), undefined);
    }
  });
  app.post("/relay/:method", async (req, reply) => {
    const method = (req.params as { method: string }).method;
    if (!Object.hasOwn(RELAY_METHODS, method)) return reply.code(404).send({ error: `no relay method ${method}` });
    const args = (req.body as { args?: unknown } | undefined)?.args;
    const why = checkArgs(method as RelayMethod, args);
    if (why) return reply.code(400).send({ error: why });
    const fn = o.relay[method as RelayMethod] as (...a: unknown[]) => Promise<unknown>;
    const result = await fn.apply(o.relay, args as unknown[]);
    return reply.type("application/json").send(encode({ result }));
  });
  app.get("/relay/info", async (_req, reply) => reply.type("application/json").send(encode({ result: o.relay.info() })));
  const streams = new Set<ServerResponse>();
  // Notices made while no bot is connected (it connects after the engine is up, or reconnects): kept for the next.
  const held = new Held<string>(10_000);
  const maxBuffered = o.maxStreamBufferBytes ?? 8 * 1024 * 1024;
  const off = o.relay.onNotification((n) => {
    const line = `data: ${encode(n).toString("utf8")}\n\n`;
    for (const s of streams) {
      if (s.writableLength <= maxBuffered) continue;
      // Without this, every notice would wait in memory for a reader that is not reading, without end.
      log.warn({ bufferedBytes: s.writableLength }, "a bot is not reading its notice stream: closed (notices are held until it reconnects; those still buffered for it are lost)");
      streams.delete(s);
      s.destroy();
    }
    if (streams.size === 0) {
      if (held.hold(line)) log.warn({ kept: held.max }, "no bot has connected for notices: the oldest kept ones are dropped");
      return;
    }
    for (const s of streams) s.write(line);
  });
  app.get("/relay/notifications", (req, reply) => {
    reply.hijack();
    // Quiet for as long as no notice is made: not an idle connection to be closed.
    req.raw.socket.setTimeout(0);
    reply.raw.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store", connection: "keep-alive" });
    reply.raw.write(": connected\n\n");
    for (const line of held.take()) reply.raw.write(line);
    streams.add(reply.raw);
    req.raw.on("close", () => streams.delete(reply.raw));
  });
  // In preClose, not onClose: Fastify's close waits for every open connection before its onClose hooks run, and a
  // bot's notice stream stays open until it is ended here, so `runigun engine` never finished a SIGTERM while a bot
  // was connected. Ended cleanly, the bot sees the stream end and connects again (to this engine once it is back).
  // The socket goes with it (a keep-alive socket would keep the close waiting too), at once for a bot not reading.
  app.addHook("preClose", async () => {
    off();
    for (const s of streams) {
      const socket = s.socket;
      if (!socket || s.writableLength > 0) {
        s.destroy();
        continue;
      }
      s.end(() => socket.destroy());
    }
    streams.clear();
    // Made while no bot was connected, and now gone with this process: counted, so the operator knows.
    const undelivered = held.take().length;
    if (undelivered > 0) log.warn({ undelivered }, "notices kept for a bot that never connected are lost with this stop");
  });
  app.setErrorHandler((err: { statusCode?: number; message: string }, req, reply) => {
    if ((err.statusCode ?? 500) < 500) return reply.code(err.statusCode!).send({ error: err.message });
    // Which relay method failed (a known name only: never the arguments, which carry user keys and cheque codes).
    const method = (req.params as { method?: string } | undefined)?.method;
    log.error({ method: method !== undefined && Object.hasOwn(RELAY_METHODS, method) ? method : req.url.slice(0, 80), err: err.message }, "internal relay call failed");
    return reply.code(500).send({ error: "the engine failed this request; nothing was moved" });
  });
  return app;
}

export async function listenInternal(app: FastifyInstance, config: Config): Promise<number> {
  if (!bindAllowed(config.internal.host, config.admin.vpnCidrs)) {
    throw Object.assign(new Error(`internal.host ${config.internal.host} is not a local address`), { code: "config_invalid" });
  }
  await app.listen({ host: config.internal.host, port: config.internal.port });
  return (app.server.address() as { port: number }).port;
}
