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
