// Acknowledged notices on the internal link (split shape): the engine keeps what it wrote to a bot's notice stream
// until the bot says it handed it over, and a stream that ends first leaves those to the next bot. Real TLS on
// 127.0.0.1 with certificates from a test CA; the relay behind the edge is the engine's notice hub (Notices) alone.
import t from "tap";
import { EventEmitter, once } from "node:events";
import { request } from "node:https";
import type { IncomingMessage } from "node:http";
import { RemoteRelay } from "../../../src/edges/internal/client.ts";
import { buildInternalEdge, listenInternal } from "../../../src/edges/internal/server.ts";
import { NOTICE_ACK_PATH, NOTICE_ACKS_HEADER, NOTICE_STREAM_HEADER } from "../../../src/edges/internal/protocol.ts";
import { createCA, issue } from "../../../src/tls/certs.ts";
import { loadConfig } from "../../../src/config.ts";
import { Held, Notices } from "../../../src/held.ts";
import { decode } from "../../../src/store/codec.ts";
import { createLogger } from "../../../src/log.ts";
import type { Notification, Relay } from "../../../src/relay.types.ts";

type Line = { msg: string; kept?: number; dropped?: number; undelivered?: number; unacknowledged?: number };

const notice = (i: number): Notification => ({ userKey: "u_abcdefghijkl", chatHandle: "a sealed handle", notice: { kind: "deposit_seen", amount: BigInt(i), txid: "ab".repeat(32) } });
const amount = (n: Notification) => (n.notice as { amount: bigint }).amount;

async function pki() {
  const ca = await createCA("internal-test");
  const server = await issue(ca, { name: "engine", kind: "server", hosts: ["127.0.0.1", "localhost"] });
  const client = await issue(ca, { name: "bot", kind: "client" });
  return { ca, server, client };
}

/**
 * An internal edge on 127.0.0.1 over the engine's notice hub, logging to `lines`. `holdAcks`: each acknowledgement
 * reaches the edge's handler only once the promise it returns settles (an acknowledgement still on its way).
 */
async function engineEdge(t: { teardown(f: () => unknown): void }, p: Awaited<ReturnType<typeof pki>>, o: { maxUnackedNotices?: number; holdAcks?: () => Promise<void> } = {}) {
  const lines: Line[] = [];
  const log = createLogger({ level: "warn", destination: { write: (l: string) => void lines.push(JSON.parse(l) as Line) } });
  const notices = new Notices<Notification>(log);
  const relay = {
    info: () => ({ network: "regtest", confirmations: 1, draining: false }),
    onNotification: (l: (n: Notification) => void, opts?: { observer?: boolean }) => notices.subscribe(l, opts),
  } as unknown as Relay;
  const app = await buildInternalEdge({ relay, log, tls: { key: p.server.key, cert: p.server.cert, ca: p.ca.cert }, ...(o.maxUnackedNotices ? { maxUnackedNotices: o.maxUnackedNotices } : {}) });
  // Acknowledgements answered, with how far each went.
  const acked = new EventEmitter();
  app.addHook("preHandler", async (req) => {
    if (req.url === NOTICE_ACK_PATH && o.holdAcks) await o.holdAcks();
  });
  app.addHook("onResponse", async (req) => {
    if (req.url === NOTICE_ACK_PATH) acked.emit("ack", (req.body as { upTo?: number } | undefined)?.upTo ?? -1);
  });
  // Every notice stream the engine serves, as the server sees it (its socket's close is when the engine knows).
  const streams: IncomingMessage[] = [];
  app.server.on("request", (req: IncomingMessage) => void (req.url === "/relay/notifications" && streams.push(req)));
  const config = loadConfig({ env: {}, overrides: {} });
  const port = await listenInternal(app, { ...config, internal: { ...config.internal, host: "127.0.0.1", port: 0 } });
  t.teardown(() => app.close().catch(() => undefined));
  /** Resolves once an acknowledgement up to `id` (or further) has been answered. */
  const ackedUpTo = (id: number) => new Promise<void>((resolve) => {
    const on = (upTo: number) => upTo >= id && (acked.off("ack", on), resolve());
    acked.on("ack", on);
  });
  return { app, port, lines, streams, ackedUpTo, publish: (n: Notification) => notices.publish(n) };
}

/**
 * A RemoteRelay bot with an edge subscribed; `got` fills as notices are handed to it; `until(n)` waits for n of them,
 * `upTo(a)` for the notice of amount `a` (the last one made, in a test: what should have come before it has).
 */
async function bot(t: { teardown(f: () => unknown): void }, p: Awaited<ReturnType<typeof pki>>, port: number) {
  const relay = await RemoteRelay.connect({ url: `https://127.0.0.1:${port}`, tls: { key: p.client.key, cert: p.client.cert, ca: p.ca.cert }, log: createLogger({ level: "silent" }) });
  t.teardown(() => relay.close());
  const got: bigint[] = [];
  const more = new EventEmitter();
  const off = relay.onNotification((n) => void (got.push(amount(n)), more.emit("n")));
  const until = async (count: number) => {
    while (got.length < count) await once(more, "n");
  };
  const upTo = async (a: bigint) => {
    while (!got.includes(a)) await once(more, "n");
  };
  return { relay, got, until, upTo, off };
}

/**
 * A bot reduced to its stream: asks for acknowledgements (or not, as an older bot), reads what comes, and never
 * acknowledges (it drops its stream before it does); `drop()` is it failing.
 */
async function rawStream(p: Awaited<ReturnType<typeof pki>>, port: number, o: { acks: boolean }) {
  const events: { id?: number; amount: bigint }[] = [];
  const more = new EventEmitter();
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path: "/relay/notifications", key: p.client.key, cert: p.client.cert, ca: p.ca.cert, servername: "localhost", headers: o.acks ? { [NOTICE_ACKS_HEADER]: "1" } : {} }, resolve);
    req.on("error", reject);
    req.end();
  });
  res.on("error", () => undefined);
  let buffer = "";
  res.setEncoding("utf8");
  res.on("data", (chunk: string) => {
    buffer += chunk;
    let i;
    while ((i = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, i).split("\n");
      buffer = buffer.slice(i + 2);
      const data = event.find((l) => l.startsWith("data: "));
      if (!data) continue;
      const id = event.find((l) => l.startsWith("id: "));
      events.push({ ...(id ? { id: Number(id.slice(4)) } : {}), amount: amount(decode<Notification>(Buffer.from(data.slice(6)))) });
      more.emit("n");
    }
  });
  return {
    name: res.headers[NOTICE_STREAM_HEADER],
    events,
    until: async (count: number) => {
      while (events.length < count) await once(more, "n");
    },
    drop: () => res.destroy(),
    pause: () => res.pause(),
  };
}

t.test("a bot that drops its stream after the engine wrote notices, before acknowledging them, gets them again when it connects again", { timeout: 20_000 }, async (t) => {
  const p = await pki();
  const engine = await engineEdge(t, p);
  const first = await rawStream(p, engine.port, { acks: true });
  t.type(first.name, "string", "the engine names the stream to a bot that acknowledges");
  for (let i = 1; i <= 3; i++) engine.publish(notice(i));
  await first.until(3);
  t.same(first.events, [{ id: 1, amount: 1n }, { id: 2, amount: 2n }, { id: 3, amount: 3n }], "written to it, numbered");
  // Found by a review: the engine counted them delivered once written, and they were lost with the stream.
  first.drop();
  await once(engine.streams[0]!.socket, "close");
  engine.publish(notice(4));
  const next = await bot(t, p, engine.port);
  await next.upTo(4n);
  t.same(next.got, [1n, 2n, 3n, 4n], "the next bot gets the unacknowledged ones first, in order, then what came after");
});

t.test("a real bot killed after handing notices over and before its acknowledgement arrived: the next bot gets them again (told twice: the accepted cost)", { timeout: 20_000 }, async (t) => {
  const p = await pki();
  // Acknowledgements wait at the engine until the test lets them through (a slow link): never, here.
  let releaseAcks!: () => void;
  const acksHeld = new Promise<void>((r) => (releaseAcks = r));
  t.teardown(() => releaseAcks());
  const engine = await engineEdge(t, p, { holdAcks: () => acksHeld });
  const first = await bot(t, p, engine.port);
  for (let i = 1; i <= 3; i++) engine.publish(notice(i));
  await first.until(3);
  t.same(first.got, [1n, 2n, 3n], "handed over to the first bot's edge");
  // The bot's process dies: its stream and its acknowledgement on the way go with it.
  first.relay.close();
  await once(engine.streams[0]!.socket, "close");
  engine.publish(notice(4));
  const second = await bot(t, p, engine.port);
  await second.upTo(4n);
  t.same(second.got, [1n, 2n, 3n, 4n], "at least once: the next bot gets them again");
});

t.test("acknowledged notices are not sent again: a bot killed after its acknowledgement, and one stopping at once after handing them over", { timeout: 20_000 }, async (t) => {
  const p = await pki();
  // Every acknowledgement takes a while to arrive (a slow link), so a bot stopping closes its stream while one is on
  // its way: the bot closes it only once the acknowledgement is answered.
  let slow = false;
  const engine = await engineEdge(t, p, { holdAcks: () => (slow ? new Promise((r) => setTimeout(r, 300)) : Promise.resolve()) });
  const first = await bot(t, p, engine.port);
  const firstAcked = engine.ackedUpTo(2);
  engine.publish(notice(1));
  engine.publish(notice(2));
  await first.until(2);
  await firstAcked;
  // Killed, its acknowledgement in: nothing of it comes back.
  first.relay.close();
  await once(engine.streams[0]!.socket, "close");
  engine.publish(notice(3));
  const second = await bot(t, p, engine.port);
  await second.upTo(3n);
  t.same(second.got, [3n], "only what the killed bot had not acknowledged: nothing of 1 and 2");
  slow = true;
  engine.publish(notice(4));
  await second.upTo(4n);
  // Stopping gracefully at once (its edge unsubscribes, then the process closes the relay once the stream is down).
  second.off();
  await once(engine.streams[1]!.socket, "close");
  second.relay.close();
  engine.publish(notice(5));
  const third = await bot(t, p, engine.port);
  await third.upTo(5n);
  t.same(third.got, [5n], "the acknowledgement of 4 arrived before the stream's end: 4 is not sent again");
  t.same(second.got, [3n, 4n]);
});

t.test("a stream has at most maxUnackedNotices unacknowledged: the rest wait in the engine, in order, and go out as acknowledgements make room or to the next stream; none is lost", { timeout: 20_000 }, async (t) => {
  const p = await pki();
  const engine = await engineEdge(t, p, { maxUnackedNotices: 5 });
  const first = await rawStream(p, engine.port, { acks: true });
  for (let i = 1; i <= 8; i++) engine.publish(notice(i));
  await first.until(5);
  // Written on: a bot that cannot deliver (Telegram down) would be handed notices without end, and the engine dropped
  // (forgot) the oldest it had not acknowledged. Now the sixth waits.
  engine.publish(notice(9));
  const more = await bot(t, p, engine.port);
  await more.upTo(9n);
  t.same(first.events.map((e) => e.amount), [1n, 2n, 3n, 4n, 5n], "the first stream was written five, no more");
  t.same(more.got, [6n, 7n, 8n, 9n], "the rest went to the stream that had room, in order");
  first.drop();
  await once(engine.streams[0]!.socket, "close");
  engine.publish(notice(10));
  await more.upTo(10n);
  t.same(more.got, [6n, 7n, 8n, 9n, 1n, 2n, 3n, 4n, 5n, 10n], "the dropped stream's five go to the open one before what came after");
  t.same(engine.lines.filter((l) => /dropped/.test(l.msg)), [], "nothing dropped");
});

t.test("Held.putBack: before what is kept, in order; past the bound the oldest go, counted once", async (t) => {
  const held = new Held<number>(4);
  held.hold(5);
  t.notOk(held.putBack([3, 4]));
  t.same([...held.take()], [3, 4, 5]);
  held.hold(6);
  held.hold(7);
  t.ok(held.putBack([1, 2, 3, 4, 5]), "the first drop is worth a line");
  t.equal(held.dropped, 3);
  t.notOk(held.putBack([0]), "the next is not");
  t.same(held.take(), [4, 5, 6, 7], "the newest four");
});

t.test("two streams open (a bot reconnected before the engine saw its old stream end): what one acknowledged does not come back when the other ends", { timeout: 20_000 }, async (t) => {
  const p = await pki();
  const engine = await engineEdge(t, p);
  const live = await bot(t, p, engine.port);
  // Its stream is open once a notice reaches it; then the other (the engine has not seen it end: it reads, and never
  // acknowledges).
  engine.publish(notice(0));
  await live.until(1);
  const stale = await rawStream(p, engine.port, { acks: true });
  const acked = engine.ackedUpTo(3);
  engine.publish(notice(1));
  engine.publish(notice(2));
  await stale.until(2);
  await live.until(3);
  await acked;
  stale.drop();
  await once(engine.streams[1]!.socket, "close");
  engine.publish(notice(3));
  await live.upTo(3n);
  t.same(live.got, [0n, 1n, 2n, 3n], "the live bot got each once");
  live.off();
  await once(engine.streams[0]!.socket, "close");
  engine.publish(notice(4));
  const next = await bot(t, p, engine.port);
  await next.upTo(4n);
  t.same(next.got, [4n], "nothing acknowledged by one stream came back from the other");
});

t.test("a bot that does not ask for acknowledgements (one older than the engine) has the stream as before", { timeout: 20_000 }, async (t) => {
  const p = await pki();
  const engine = await engineEdge(t, p, { maxUnackedNotices: 2 });
  const old = await rawStream(p, engine.port, { acks: false });
  t.equal(old.name, undefined, "no stream name");
  for (let i = 1; i <= 3; i++) engine.publish(notice(i));
  await old.until(3);
  t.same(old.events.map((e) => e.amount), [1n, 2n, 3n]);
  old.drop();
  await once(engine.streams[0]!.socket, "close");
  engine.publish(notice(4));
  const next = await bot(t, p, engine.port);
  await next.upTo(4n);
  t.same(next.got, [4n], "at most once, as before: nothing kept for it");
  t.same(engine.lines, [], "and nothing kept, so nothing dropped for room");
});

t.test("the engine stops promptly with a stream that does not acknowledge and one that does not read; what was not acknowledged is counted (a real bot's stream: link-stop.test.ts)", { timeout: 20_000 }, async (t) => {
  const p = await pki();
  const engine = await engineEdge(t, p);
  const reader = await rawStream(p, engine.port, { acks: true });
  const stalled = await rawStream(p, engine.port, { acks: true });
  stalled.pause();
  for (let i = 1; i <= 3; i++) engine.publish(notice(i));
  await reader.until(3);
  // The test's timeout bounds this.
  await engine.app.close();
  t.pass("closed");
  t.ok(engine.streams.every((s) => s.socket.destroyed), "every stream's socket is gone");
  const last = engine.lines.at(-1)!;
  t.match(last, { msg: /not delivered by this run: the engine.s store keeps them/, undelivered: 0 }, "counted");
  // Each notice once, however many streams it was written to.
  t.equal(last.unacknowledged, 3, "the unacknowledged ones counted");
});

t.test("a bot stops promptly while its acknowledgement is held by the engine: close() ends the stream at once", { timeout: 20_000 }, async (t) => {
  const p = await pki();
  let releaseAcks!: () => void;
  const acksHeld = new Promise<void>((r) => (releaseAcks = r));
  const engine = await engineEdge(t, p, { holdAcks: () => acksHeld });
  t.teardown(() => releaseAcks());
  const first = await bot(t, p, engine.port);
  engine.publish(notice(1));
  await first.until(1);
  // Its edge unsubscribes: the stream waits for the acknowledgement, which does not come; the process then closes.
  first.off();
  first.relay.close();
  await once(engine.streams[0]!.socket, "close");
  t.pass("the stream ended with the bot's close, not with the acknowledgement");
  // Release the held acknowledgement before the engine closes (Fastify's close waits for requests in progress).
  releaseAcks();
});
