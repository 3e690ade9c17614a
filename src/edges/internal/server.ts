// The internal API edge (split shape): the engine's relay over HTTPS with client certificates from the internal
// CA, on a local address only. It relays; it decides nothing.
import { randomUUID } from "node:crypto";
import type { ServerResponse } from "node:http";
import Fastify, { type FastifyInstance } from "fastify";
import type { Config } from "../../config.ts";
import { bindAllowed } from "../../config.ts";
import type { Logger } from "../../log.ts";
import type { Relay } from "../../relay.types.ts";
import { decode, encode } from "../../store/codec.ts";
import { NOTICE_ACK_PATH, NOTICE_ACKS_HEADER, NOTICE_STREAM_HEADER, RELAY_METHODS, checkAck, checkArgs, type RelayMethod } from "./protocol.ts";
import { HELD_NOTICES, Held } from "../../held.ts";
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
  /** Notices written to one bot's stream and not yet acknowledged, at most (default 10,000, as held); more wait in the engine. */
  maxUnackedNotices?: number;
}

/** A notice for the bots, and how to tell the engine's relay it is done with (its store record deleted). */
interface Pending {
  data: string;
  settle: () => void;
}

/** A notice written to bots that acknowledge, until one of them does. */
interface Written extends Pending {
  /** A bot it was written to acknowledged it: never sent again. */
  acked: boolean;
  /** Streams it was written to that have neither acknowledged it nor ended. */
  owed: number;
}

interface NoticeStream {
  /** Random: what the bot names in its acknowledgements (NOTICE_STREAM_HEADER). */
  name: string;
  res: ServerResponse;
  /** The last SSE id written on it. */
  lastId: number;
  /** Written and not acknowledged, oldest first (bounded); undefined for a bot that does not acknowledge. */
  unacked: { id: number; notice: Written }[] | undefined;
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
  // Notices are at least once to a bot that acknowledges them (protocol.ts, NOTICE_ACKS_HEADER): each is kept from
  // its write until the bot says its Telegram send settled (sent, or refused for good), and one written to a stream
  // that ends first (the bot stopping or failing, the link dropping, the stream closed below for not being read) is
  // held for the next stream, before what came after it. Before, a notice counted as delivered once written, and one
  // written in the instant a bot dropped its stream, or still buffered in a stream closed for not reading, was lost.
  // Only once acknowledged is it settled with the relay, which deletes its record in the engine's store: until then a
  // crash or restart of the engine leaves it there, for the first bot after the next start. The cost: a notice sent
  // whose acknowledgement did not arrive before its stream ended (or the engine died) reaches the user twice; the bot
  // acknowledges as its sends settle, one request at a time, and before it closes its stream, so only a bot, link or
  // engine failing in that instant makes one (and a bot that stops with sends of uncertain fate: client.ts).
  const streams = new Map<string, NoticeStream>();
  // Notices made while no bot is connected (it connects after the engine is up, or reconnects): kept for the next.
  // One dropped here for room is settled: lost (counted), its record deleted, so the store holds no more than this.
  const held = new Held<Pending>(HELD_NOTICES, (dropped) => {
    for (const p of dropped) p.settle();
  });
  const maxBuffered = o.maxStreamBufferBytes ?? 8 * 1024 * 1024;
  const maxUnacked = o.maxUnackedNotices ?? 10_000;
  let stopping = false;
  let unackedAtStop = 0;
  const write = (s: NoticeStream, notice: Written): void => {
    const id = ++s.lastId;
    s.res.write(`id: ${id}\ndata: ${notice.data}\n\n`);
    if (!s.unacked) return;
    notice.owed++;
    s.unacked.push({ id, notice });
  };
  /**
   * Whether a stream may be written another notice: a bot that acknowledges has at most `maxUnacked` unacknowledged.
   * Past that the engine holds what comes (below) until acknowledgements make room, instead of writing on: a bot that
   * cannot deliver (Telegram down) would otherwise be handed notices without end, keep a failing send for each, and have
   * to give the oldest up while the engine had forgotten them (lost), or leave a gap no acknowledgement gets past (a
   * whole tail sent twice after the next reconnect); and a bot that reads and never acknowledges (a fault in it)
   * would make the engine keep every notice.
   */
  const hasRoom = (s: NoticeStream) => !s.unacked || s.unacked.length < maxUnacked;
  /** Said at the first drop for room since the held notices were last taken (Held counts them). */
  const warnHeldDropped = () => log.warn({ kept: held.max }, "notices are waiting for a bot to connect or to acknowledge those it has: the oldest kept ones are dropped");
  const holdAll = (pending: Pending[]) => {
    for (const p of pending) if (held.hold(p)) warnHeldDropped();
  };
  /** Writes to every open stream with room; holds when there is none, or when older ones are held (kept in order). */
  const deliver = (pending: Pending[]): void => {
    if (held.size > 0 || ![...streams.values()].some(hasRoom)) return holdAll(pending);
    for (let i = 0; i < pending.length; i++) {
      const open = [...streams.values()].filter(hasRoom);
      if (open.length === 0) return holdAll(pending.slice(i));
      const p = pending[i]!;
      const notice: Written = { data: p.data, settle: p.settle, acked: false, owed: 0 };
      for (const s of open) write(s, notice);
      // Written only to bots that do not acknowledge (older than this engine): at most once, as before.
      if (notice.owed === 0) notice.settle();
    }
  };
  /** What is held goes out, oldest first, as far as the open streams have room (a stream opened, acknowledgements came). */
  const drain = (): void => {
    if (held.size === 0 || ![...streams.values()].some(hasRoom)) return;
    deliver(held.take());
  };
  /** Once per stream, however it ended: what it was written and did not acknowledge goes to the next. */
  const endStream = (s: NoticeStream): void => {
    if (!streams.delete(s.name)) return;
    const unacked = s.unacked ?? [];
    s.unacked = [];
    // Not those another open stream still owes an acknowledgement for (two bots connected, or a bot reconnected before
    // the engine saw its old stream end): they come back when that one ends unacknowledged.
    const back: Pending[] = unacked.filter((u) => --u.notice.owed === 0 && !u.notice.acked).map((u) => ({ data: u.notice.data, settle: u.notice.settle }));
    if (back.length === 0) return;
    if (stopping) {
      unackedAtStop += back.length;
      return;
    }
    // Held before anything made since, and to another bot's stream now if one is open and has room (after what it
    // already has).
    if (held.putBack(back)) warnHeldDropped();
    drain();
  };
  const off = o.relay.onNotification((n, settle) => {
    for (const s of [...streams.values()]) {
      if (s.res.writableLength <= maxBuffered) continue;
      // Without this, every notice would wait in memory for a reader that is not reading, without end.
      log.warn({ bufferedBytes: s.res.writableLength }, s.unacked
        ? "a bot is not reading its notice stream: closed (what it did not acknowledge is held until it reconnects)"
        : "a bot is not reading its notice stream: closed (notices are held until it reconnects; this bot does not acknowledge notices, and those still buffered for it are lost)");
      endStream(s);
      s.res.destroy();
    }
    deliver([{ data: encode(n).toString("utf8"), settle: settle ?? (() => undefined) }]);
  }, { settles: true });
  app.get("/relay/notifications", (req, reply) => {
    reply.hijack();
    // Quiet for as long as no notice is made: not an idle connection to be closed.
    req.raw.socket.setTimeout(0);
    const acks = req.headers[NOTICE_ACKS_HEADER] === "1";
    const s: NoticeStream = { name: randomUUID(), res: reply.raw, lastId: 0, unacked: acks ? [] : undefined };
    reply.raw.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store", connection: "keep-alive", ...(acks ? { [NOTICE_STREAM_HEADER]: s.name } : {}) });
    reply.raw.write(": connected\n\n");
    // Held while no stream was open, or none had room: this one has.
    streams.set(s.name, s);
    drain();
    req.raw.on("close", () => endStream(s));
  });
  app.post(NOTICE_ACK_PATH, async (req, reply) => {
    const ack = checkAck(req.body);
    if (!ack) return reply.code(400).send({ error: "an acknowledgement is { stream, upTo }" });
    // A stream that ended meanwhile (or one of an engine before a restart): what it had not acknowledged went on.
    const s = streams.get(ack.stream);
    let acked = 0;
    if (s?.unacked) {
      const after = s.unacked.findIndex((u) => u.id > ack.upTo);
      const done = s.unacked.splice(0, after < 0 ? s.unacked.length : after);
      for (const u of done) {
        u.notice.acked = true;
        u.notice.owed--;
        // Delivered: the relay forgets it (its record in the engine's store is deleted).
        u.notice.settle();
      }
      acked = done.length;
      // Room again: what waited for it goes out.
      if (acked > 0) drain();
    }
    return reply.type("application/json").send(encode({ result: { acked } }));
  });
  // In preClose, not onClose: Fastify's close waits for every open connection before its onClose hooks run, and a
  // bot's notice stream stays open until it is ended here, so `runigun engine` never finished a SIGTERM while a bot
  // was connected. Ended cleanly, the bot sees the stream end and connects again (to this engine once it is back).
  // The socket goes with it (a keep-alive socket would keep the close waiting too), at once for a bot not reading.
  app.addHook("preClose", async () => {
    off();
    stopping = true;
    for (const s of [...streams.values()]) {
      endStream(s);
      const socket = s.res.socket;
      if (!socket || s.res.writableLength > 0) {
        s.res.destroy();
        continue;
      }
      s.res.end(() => socket.destroy());
    }
    // Made while no bot was connected, or written to one that had not acknowledged them (it may have delivered those):
    // not settled, so the engine's store keeps them, and the first bot after the next start gets them. Counted.
    const undelivered = held.take().length;
    if (undelivered > 0 || unackedAtStop > 0) log.warn({ undelivered, unacknowledged: unackedAtStop }, "notices kept for a bot, or sent to one and not acknowledged, are not delivered by this run: the engine's store keeps them for the next start");
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
