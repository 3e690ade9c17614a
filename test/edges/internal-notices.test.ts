// The engine's notice stream to a bot process: notices made while no bot is connected (it connects after the engine
// is up, or reconnects after a restart) are kept and sent to the next one that connects, over the real TLS link.
import t from "tap";
import { request } from "node:https";
import { RemoteRelay } from "../../src/edges/internal/client.ts";
import { buildInternalEdge, listenInternal } from "../../src/edges/internal/server.ts";
import { createCA, issue } from "../../src/tls/certs.ts";
import { loadConfig } from "../../src/config.ts";
import { silentLogger } from "../../src/log.ts";
import type { Notification, Relay } from "../../src/relay.types.ts";

/** The internal edge over real TLS on a relay that only emits notices (`emit`); the bot's client certificate. */
async function noticeEdge(t: { teardown(f: () => unknown): void }, o: { maxStreamBufferBytes?: number } = {}) {
  const ca = await createCA("internal-test");
  const server = await issue(ca, { name: "engine", kind: "server", hosts: ["localhost", "127.0.0.1"] });
  const client = await issue(ca, { name: "bot", kind: "client" });
  const listeners = new Set<(n: Notification) => void>();
  const relay = {
    info: () => ({ network: "regtest", confirmations: 1, draining: false }),
    onNotification: (l: (n: Notification) => void) => (listeners.add(l), () => listeners.delete(l)),
  } as unknown as Relay;
  const app = await buildInternalEdge({ relay, log: silentLogger, tls: { key: server.key, cert: server.cert, ca: ca.cert }, ...o });
  const config = loadConfig({ env: {}, overrides: {} });
  const port = await listenInternal(app, { ...config, internal: { ...config.internal, host: "127.0.0.1", port: 0 } });
  t.teardown(() => app.close());
  const emit = (n: Notification) => {
    for (const l of listeners) l(n);
  };
  return { ca, client, port, emit };
}

t.test("a notice made before the bot connects reaches it once it does", async (t) => {
  const { ca, client, port, emit } = await noticeEdge(t);
  const notice: Notification = { userKey: "u_aaaaaaaaaaaa", chatHandle: "a sealed handle", notice: { kind: "deposit_confirmed", amount: 150_000n, txid: "ab".repeat(32) } };
  emit(notice);
  const connect = () => RemoteRelay.connect({ url: `https://127.0.0.1:${port}`, tls: { key: client.key, cert: client.cert, ca: ca.cert }, log: silentLogger });
  // A bot whose start fails before its edge subscribes (a refused token): it must not take the held notices with it
  // (found by a review: its stream, opened at connect, had them).
  const failing = await connect();
  // Had its stream opened at connect, the notice would reach it now: given half a second to (it must not).
  for (let i = 0; i < 50 && failing.heldNotices === 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(failing.heldNotices, 0, "a bot with no edge subscribed takes nothing from the engine");
  failing.close();
  const remote = await connect();
  t.teardown(() => remote.close());
  const later: Notification = { ...notice, notice: { kind: "deposit_seen", amount: 1n, txid: "cd".repeat(32) } };
  const observed: Notification[] = [];
  remote.onNotification((n) => void observed.push(n), { observer: true });
  const got: Notification[] = [];
  const both = new Promise<void>((resolve) => remote.onNotification((n) => void (got.push(n) === 2 && resolve())));
  emit(later);
  await both;
  t.same(got, [notice, later], "delivered in order, amounts as bigints");
  t.same(observed, [notice, later], "an observer sees them too, once");
});

t.test("a bot that stops reading its notice stream: the stream is closed once too much waits for it, and later notices are held for the next connection", async (t) => {
  const { ca, client, port, emit } = await noticeEdge(t, { maxStreamBufferBytes: 64 * 1024 });
  // A reader that connects, reads the greeting, and then reads nothing more.
  let greeted!: () => void;
  const connected = new Promise<void>((r) => (greeted = r));
  const closed = new Promise<void>((resolve) => {
    const req = request({ host: "127.0.0.1", port, path: "/relay/notifications", key: client.key, cert: client.cert, ca: ca.cert, servername: "localhost" }, (res) => {
      res.once("data", () => {
        res.pause();
        greeted();
      });
      res.on("close", resolve);
      res.on("error", () => resolve());
    });
    req.on("error", () => resolve());
    req.end();
  });
  await connected;
  const notice: Notification = { userKey: "u_aaaaaaaaaaaa", chatHandle: "a sealed handle", notice: { kind: "deposit_confirmed", amount: 150_000n, txid: "ab".repeat(32) } };
  let ended = false;
  void closed.then(() => (ended = true));
  // Bounded: 100,000 notices of ~250 bytes are far more than the socket buffers and the 64 KB allowed.
  for (let i = 0; i < 100 && !ended; i++) {
    for (let j = 0; j < 1000; j++) emit(notice);
    await new Promise((r) => setTimeout(r, 5));
  }
  t.ok(ended, "the stalled stream was closed");
  const later: Notification = { ...notice, notice: { kind: "deposit_seen", amount: 1n, txid: "cd".repeat(32) } };
  emit(later);
  const remote = await RemoteRelay.connect({ url: `https://127.0.0.1:${port}`, tls: { key: client.key, cert: client.cert, ca: ca.cert }, log: silentLogger });
  t.teardown(() => remote.close());
  // What came after the close (the rest of that burst, then `later`) was held for it, oldest first.
  const got: Notification[] = [];
  await new Promise<void>((resolve) => remote.onNotification((n) => void (got.push(n), n.notice.kind === "deposit_seen" && resolve())));
  t.same(got.at(-1), later, "the next bot to connect gets what came after, in order");
});

t.test("the bot's own stream closed by the engine (it fell behind): the bot connects again and gets what came after", async (t) => {
  const { ca, client, port, emit } = await noticeEdge(t, { maxStreamBufferBytes: 64 * 1024 });
  const remote = await RemoteRelay.connect({ url: `https://127.0.0.1:${port}`, tls: { key: client.key, cert: client.cert, ca: ca.cert }, log: silentLogger });
  t.teardown(() => remote.close());
  const notice: Notification = { userKey: "u_aaaaaaaaaaaa", chatHandle: "a sealed handle", notice: { kind: "deposit_confirmed", amount: 150_000n, txid: "ab".repeat(32) } };
  const later: Notification = { ...notice, notice: { kind: "deposit_seen", amount: 1n, txid: "cd".repeat(32) } };
  let connected!: () => void;
  const first = new Promise<void>((r) => (connected = r));
  const gotLater = new Promise<void>((resolve) => remote.onNotification((n) => {
    if (n.notice.kind === "deposit_seen") resolve();
    else connected();
  }));
  emit(notice);
  await first;
  // A burst the bot cannot read while it happens (this thread emits it without a pause): far past the 64 KB allowed.
  for (let i = 0; i < 200_000; i++) emit(notice);
  emit(later);
  await gotLater;
  t.pass("the same bot got the notice that came after its stream was closed");
});
