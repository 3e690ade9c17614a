// The split shape, the link between a bot and the engine dropping (or the engine restarting) while the bot's Telegram
// edge still has notice sends queued behind the throttler: the engine gives every notice it had no acknowledgement for
// to the next stream, so the bot's queued copies must be dropped, not sent as well. Real TLS on 127.0.0.1 (internal
// edge and RemoteRelay); the engine's relay is its notice hub (Notices) alone; Telegram is a stand-in that sends one
// message at a time, as the throttler paces one chat, and drops a send whose signal was aborted before its turn.
import t from "tap";
import { EventEmitter, once } from "node:events";
import { randomBytes } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { RemoteRelay } from "../src/edges/internal/client.ts";
import { buildInternalEdge, listenInternal } from "../src/edges/internal/server.ts";
import { createCA, issue } from "../src/tls/certs.ts";
import { loadConfig } from "../src/config.ts";
import { Notices } from "../src/held.ts";
import { createLogger } from "../src/log.ts";
import { forwardNotifications } from "../src/edges/telegram/notifications.ts";
import { sealHandle } from "../src/store/sealed.ts";
import type { Notification, Relay } from "../src/relay.types.ts";

t.test("split: a link drop with sends queued: the bot drops its queued copies, so each notice reaches its user once", async (t) => {
  const ca = await createCA("review-link-drop");
  const server = await issue(ca, { name: "engine", kind: "server", hosts: ["127.0.0.1"] });
  const client = await issue(ca, { name: "bot", kind: "client" });
  const log = createLogger({ level: "silent" });
  // The engine's side: each notice's release is when the engine forgets it (its store record deleted).
  const notices = new Notices<Notification>(log);
  const engine = new EventEmitter();
  let released = 0;
  const relay = {
    info: () => ({ network: "regtest", confirmations: 1, draining: false }),
    onNotification: (l: Parameters<Relay["onNotification"]>[0], o?: { observer?: boolean; settles?: boolean }) => notices.subscribe(l as never, o),
  } as unknown as Relay;
  const app = await buildInternalEdge({ relay, log, tls: { key: server.key, cert: server.cert, ca: ca.cert } });
  const streams: IncomingMessage[] = [];
  app.server.on("request", (req: IncomingMessage) => {
    if (req.url !== "/relay/notifications") return;
    streams.push(req);
    engine.emit("stream");
  });
  const config = loadConfig({ env: {}, overrides: {} });
  const port = await listenInternal(app, { ...config, internal: { ...config.internal, host: "127.0.0.1", port: 0 } });
  t.teardown(() => app.close());
  const remote = await RemoteRelay.connect({ url: `https://127.0.0.1:${port}`, tls: { key: client.key, cert: client.cert, ca: ca.cert }, log });
  t.teardown(() => remote.close());

  // Telegram behind the throttler: one send at a time, each taking a moment. A send whose signal was aborted before its
  // turn is not made (grammY's fetch, given an aborted signal, sends nothing). `gate`: the turn after `gateAfter` sends
  // waits for it (the drop happens while that send is queued, not on the wire).
  const sent: string[] = [];
  const telegram = new EventEmitter();
  let gateAfter = 2;
  let openGate!: () => void;
  const gate = new Promise<void>((r) => (openGate = r));
  let chain: Promise<unknown> = Promise.resolve();
  const api = {
    sendMessage: (_chat: number, text: string, _other: unknown, signal?: AbortSignal) => {
      const turn = chain.then(async () => {
        if (sent.length === gateAfter) {
          telegram.emit("gated");
          await gate;
        }
        if (signal?.aborted) throw Object.assign(new Error("the request was aborted"), { name: "AbortError" });
        await new Promise((r) => setTimeout(r, 20));
        sent.push(text);
        telegram.emit("sent");
      });
      chain = turn.catch(() => undefined);
      return turn;
    },
  };
  const handleKey = randomBytes(32);
  const fwd = forwardNotifications({ relay: remote, api: api as never, handleKey, log });
  t.teardown(() => fwd.stop(0));
  if (streams.length === 0) await once(engine, "stream");

  const gated = once(telegram, "gated");
  const twoReleased = new Promise<void>((r) => engine.on("released", () => released === 2 && r()));
  const allReleased = new Promise<void>((r) => engine.on("released", () => released === 10 && r()));
  for (let i = 1; i <= 10; i++) {
    notices.publish({ userKey: "u_reviewlinkdrop", chatHandle: sealHandle(handleKey, { chatId: 42 }), notice: { kind: "deposit_seen", amount: BigInt(i) * 1000n, txid: "ab".repeat(32) } } as Notification, () => {
      released++;
      engine.emit("released");
    });
  }
  // Two sent and acknowledged (the engine forgot them); the third waits for its turn, the rest behind it.
  await gated;
  await twoReleased;
  // The link drops. The bot sees its stream close, and opens the next one, to which the engine gives the eight
  // it had no acknowledgement for.
  const next = once(engine, "stream");
  streams[0]!.socket.destroy();
  await next;
  gateAfter = -1;
  openGate();
  await allReleased;
  // What the stand-in still has queued runs out (each send a turn of the chain).
  await chain;
  const times = new Map<string, number>();
  for (const s of sent) times.set(s, (times.get(s) ?? 0) + 1);
  t.equal(times.size, 10, "every notice was sent");
  t.equal(sent.length, 10, "each once: the copies queued before the drop were dropped (before the fix: 18 sends)");
  t.same([...times.values()].filter((n) => n > 1), [], "none twice");
  t.equal(released, 10, "the engine forgot each, once acknowledged on the new stream");
  t.equal(await fwd.stop(0), 0, "nothing left unsent at the stop");
});

t.test("the notice hub: a notice taken back by its publisher is neither released nor owed nor held again", async (t) => {
  const notices = new Notices<string>({ warn: () => undefined });
  const taken = new AbortController();
  const told: string[] = [];
  const settles: (() => void)[] = [];
  let released = 0;
  const off = notices.subscribe((n, settled, cancelled) => {
    told.push(n);
    settles.push(settled);
    t.equal(cancelled, taken.signal, "the listener is given the publisher's signal");
  }, { settles: true });
  notices.publish("a", () => released++, taken.signal);
  notices.publish("b", () => released++, taken.signal);
  settles[0]!();
  t.equal(released, 1, "a settled notice is released");
  taken.abort();
  // Published after it was taken back: not told at all.
  notices.publish("c", () => released++, taken.signal);
  t.same(told, ["a", "b"]);
  off();
  t.equal(notices.held, 0, "the one taken back is not held again when its deliverer unsubscribes");
  // A late settle (its send answered after the stream closed) counts: the bot's acknowledgements are closed by then.
  settles[1]!();
  t.equal(released, 2);
  // Given up: never released.
  const off2 = notices.subscribe((_n, settled) => settled("given up"), { settles: true });
  notices.publish("d", () => released++);
  off2();
  t.equal(released, 2, "a notice given up by its deliverer is not released");
  t.equal(notices.held, 0, "nor held again");
});
