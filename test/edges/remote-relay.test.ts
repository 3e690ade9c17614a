// The bot's side of the internal link (RemoteRelay) when the engine does not answer: a request that never reached
// it says nothing was moved; one that may have reached it never says so (the user must not be told to do it again).
import t from "tap";
import { createServer, type Server } from "node:https";
import type { Socket } from "node:net";
import { RemoteRelay } from "../../src/edges/internal/client.ts";
import { createCA, issue } from "../../src/tls/certs.ts";
import { encode } from "../../src/store/codec.ts";
import { silentLogger } from "../../src/log.ts";

t.test("no answer in time: 'busy', it may still go through; the engine gone: 'unreachable', nothing was moved", async (t) => {
  const ca = await createCA("internal-test");
  const server = await issue(ca, { name: "engine", kind: "server", hosts: ["localhost", "127.0.0.1"] });
  const client = await issue(ca, { name: "bot", kind: "client" });
  const sockets = new Set<Socket>();
  const https: Server = createServer({ key: server.key, cert: server.cert, ca: ca.cert, requestCert: true, rejectUnauthorized: true }, (req, res) => {
    if (req.url === "/relay/info") return res.end(encode({ result: { network: "regtest", confirmations: 1, draining: false } }));
    if (req.url === "/relay/notifications") return res.writeHead(200, { "content-type": "text/event-stream" }).flushHeaders();
    // Every command: taken, and never answered (a wallet that is slow, an engine that hangs).
  });
  https.on("connection", (s: Socket) => (sockets.add(s), s.on("close", () => sockets.delete(s))));
  await new Promise<void>((r) => https.listen(0, "127.0.0.1", r));
  const { port } = https.address() as { port: number };
  const relay = await RemoteRelay.connect({ url: `https://127.0.0.1:${port}`, tls: { key: client.key, cert: client.cert, ca: ca.cert }, log: silentLogger, timeoutMs: 200 });
  t.teardown(() => relay.close());

  const late = await relay.transfer("u_a", "t1", "u_b", "0.001");
  t.match(late, { code: "busy", message: /may still go through[\s\S]*Check \/balance/ }, "no answer: it may have happened");
  t.notMatch((late as { message: string }).message, /nothing was moved/i);

  await new Promise<void>((r) => {
    https.close(() => r());
    for (const s of sockets) s.destroy();
  });
  t.match(await relay.balance("u_a"), { code: "node_unavailable", message: /nothing was moved/ }, "refused at the door: nothing reached the engine");
});

t.test("the engine's certificate is checked against the host in the URL (internal.host), not a fixed name", async (t) => {
  const ca = await createCA("internal-test");
  const client = await issue(ca, { name: "bot", kind: "client" });
  /** An engine stand-in on 127.0.0.1 whose certificate names `hosts`; what RemoteRelay.connect makes of it. */
  const connectTo = async (hosts: string[]) => {
    const server = await issue(ca, { name: "engine", kind: "server", hosts });
    const https: Server = createServer({ key: server.key, cert: server.cert, ca: ca.cert, requestCert: true, rejectUnauthorized: true }, (_req, res) => {
      res.end(encode({ result: { network: "regtest", confirmations: 1, draining: false } }));
    });
    await new Promise<void>((r) => https.listen(0, "127.0.0.1", r));
    t.teardown(() => new Promise<void>((r) => https.close(() => r())));
    const { port } = https.address() as { port: number };
    return RemoteRelay.connect({ url: `https://127.0.0.1:${port}`, tls: { key: client.key, cert: client.cert, ca: ca.cert }, log: silentLogger }).then(
      (relay) => (relay.close(), "connected"),
      (e: NodeJS.ErrnoException) => e.code ?? e.message,
    );
  };
  t.equal(await connectTo(["127.0.0.1"]), "connected", "a certificate naming the URL's host");
  t.equal(await connectTo(["localhost"]), "ERR_TLS_CERT_ALTNAME_INVALID", "one naming only another host (localhost) is refused");
  t.equal(await connectTo(["engine.internal", "10.8.0.1"]), "ERR_TLS_CERT_ALTNAME_INVALID");
});

t.test("a bot outliving an engine restart reads the engine's facts again when its stream reopens", async (t) => {
  const ca = await createCA("internal-test");
  const server = await issue(ca, { name: "engine", kind: "server", hosts: ["127.0.0.1"] });
  const client = await issue(ca, { name: "bot", kind: "client" });
  // Found by a review: the bot kept the facts read at connect (the per-transfer limit, drain mode) for good.
  let facts = { network: "regtest", confirmations: 1, draining: false, maxTransferSats: 1000n };
  let streams = 0;
  let reopened!: () => void;
  const reopen = new Promise<void>((r) => (reopened = r));
  const https: Server = createServer({ key: server.key, cert: server.cert, ca: ca.cert, requestCert: true, rejectUnauthorized: true }, (req, res) => {
    if (req.url === "/relay/info") return res.end(encode({ result: facts }));
    if (req.url === "/relay/notifications") {
      res.writeHead(200, { "content-type": "text/event-stream" }).flushHeaders();
      // The first stream ends, as an engine's restart ends it, and the engine comes back with other facts.
      if (++streams === 1) {
        facts = { ...facts, draining: true, maxTransferSats: 5000n };
        res.end();
      } else reopened();
    }
  });
  await new Promise<void>((r) => https.listen(0, "127.0.0.1", r));
  t.teardown(() => new Promise<void>((r) => https.close(() => r())));
  const { port } = https.address() as { port: number };
  const relay = await RemoteRelay.connect({ url: `https://127.0.0.1:${port}`, tls: { key: client.key, cert: client.cert, ca: ca.cert }, log: silentLogger });
  t.teardown(() => relay.close());
  t.match(relay.info(), { draining: false, maxTransferSats: 1000n }, "the facts at connect");
  relay.onNotification(() => undefined);
  await reopen;
  // The second stream asked for the facts as it opened; their answer is on its way. Polled, bounded: RemoteRelay tells
  // nobody when it has read its facts again (#refreshInfo is private and silent when it succeeds).
  for (let i = 0; i < 1000 && !relay.info().draining; i++) await new Promise((r) => setTimeout(r, 5));
  t.match(relay.info(), { draining: true, maxTransferSats: 5000n }, "the engine's facts now");
});
