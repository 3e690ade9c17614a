// The node actor and an encrypted wallet: whatever stops the engine, and whatever answer is lost on the way, the
// wallet does not stay unlocked past the signing, and no lock lands in the middle of another signing. A proxy on
// 127.0.0.1 between the actor and a real regtest bitcoind holds a chosen call on its way.
import t, { type Test } from "tap";
import { createServer, type Server } from "node:http";
import { ActorSystem } from "../../src/actors/runtime.ts";
import { NodeGateway } from "../../src/actors/node.ts";
import { loadConfig } from "../../src/config.ts";
import { silentLogger } from "../../src/log.ts";
import { startRegtest, type RegtestNode } from "../../src/regtest/harness.ts";

const PASSPHRASE = "correct horse battery staple";

interface Held {
  /** The held call has reached the proxy. */
  arrived: Promise<void>;
  /** Sends it on to bitcoind now (its caller may have given up on it by then). */
  release(): void;
  /** bitcoind has answered it. */
  answered: Promise<void>;
}

/** Forwards every JSON-RPC request to bitcoind, noting methods in arrival order; `hold` keeps the next call of a method back. */
async function rpcProxy(target: string) {
  const seen: string[] = [];
  let held: { method: string; arrived: () => void; release: Promise<void>; answered: () => void } | undefined;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", async () => {
      const body = Buffer.concat(chunks).toString();
      const calls = [JSON.parse(body) as { method: string } | Array<{ method: string }>].flat();
      seen.push(...calls.map((c) => c.method));
      const h = held?.method === calls[0]?.method && calls.length === 1 ? held : undefined;
      if (h) {
        held = undefined;
        h.arrived();
        await h.release;
      }
      const answer = await fetch(target + (req.url ?? "/"), { method: "POST", headers: { "content-type": "application/json", authorization: req.headers.authorization ?? "" }, body });
      const text = await answer.text();
      h?.answered();
      res.on("error", () => undefined);
      if (!res.destroyed) res.writeHead(answer.status, { "content-type": "application/json" }).end(text);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    seen,
    hold(method: string): Held {
      let arrived!: () => void, release!: () => void, answered!: () => void;
      const h: Held = { arrived: new Promise((r) => (arrived = r)), release: () => release(), answered: new Promise((r) => (answered = r)) };
      held = { method, arrived, release: new Promise((r) => (release = r)), answered };
      return h;
    },
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}

async function lockedNode(t: Test, timeoutMs: number) {
  const node = await startRegtest();
  await node.rpc("encryptwallet", [PASSPHRASE], node.walletName);
  const proxy = await rpcProxy(node.rpcUrl);
  const systems: ActorSystem[] = [];
  const gateways: NodeGateway[] = [];
  t.teardown(async () => {
    for (const gw of gateways) await gw.stop();
    for (const s of systems) s.shutdown();
    await proxy.close();
    await node.stop();
  });
  /** A node actor through the proxy, started (the wallet is encrypted and locked already). */
  const gateway = async () => {
    const system = new ActorSystem();
    const config = loadConfig({ env: {}, overrides: { node: { addressPoolSize: 1, timeoutMs } } });
    const gw = new NodeGateway({ config, log: silentLogger, system, rpc: { url: proxy.url, user: node.user, password: node.password }, walletPassphrase: PASSPHRASE });
    systems.push(system);
    gateways.push(gw);
    await gw.start();
    return gw;
  };
  const unlockedUntil = async () => (await node.rpc<{ unlocked_until: number }>("getwalletinfo", [], node.walletName)).unlocked_until;
  return { node, proxy, gateway, unlockedUntil };
}

t.test("stopped while a payout is being signed: the wallet is locked again, not left unlocked for the rest of the window", async (t) => {
  const { proxy, gateway, unlockedUntil } = await lockedNode(t, 5000);
  t.equal(await unlockedUntil(), 0, "encrypted and locked");

  // SIGTERM right after the unlock: the node actor stops before the signing's own lock is sent.
  const first = await gateway();
  let during = 0;
  const signed = await first.signing(async () => {
    during = await unlockedUntil();
    await first.stop();
    return "signed";
  });
  t.equal(signed, "signed");
  t.ok(during > 0, "unlocked while signing");
  t.equal(await unlockedUntil(), 0, "locked once the node actor stopped");

  // SIGTERM while walletprocesspsbt is on its way to bitcoind: it is answered after stop() was called.
  const second = await gateway();
  const held = proxy.hold("walletprocesspsbt");
  // An empty PSBT: nothing to sign, but bitcoind takes the wallet's turn for it all the same.
  const signing = second.signing(() => second.call("walletprocesspsbt", ["cHNidP8BAAoCAAAAAAAAAAAAAA=="])).then(() => "signed", (e: { code?: unknown }) => e.code);
  await held.arrived;
  t.ok((await unlockedUntil()) > 0, "unlocked while walletprocesspsbt runs");
  const stopping = second.stop();
  held.release();
  await stopping;
  t.equal(await signing, "signed", "its answer came back after stop()");
  t.equal(await unlockedUntil(), 0, "locked once the node actor stopped");
  await t.rejects(second.call("getwalletinfo"), { code: "node_unavailable" }, "other calls are refused after stop");
});

t.test("an unlock whose answer is lost and that lands late: locked again, and that lock comes before the next signing's unlock", async (t) => {
  const { proxy, gateway, unlockedUntil } = await lockedNode(t, 1000);
  const gw = await gateway();
  const from = proxy.seen.length;
  const held = proxy.hold("walletpassphrase");
  const lost = await gw.signing(async () => "signed").then(() => "signed", (e: { code?: unknown }) => String(e.code));
  t.not(lost, "signed", `the unlock got no answer in time (${lost})`);
  // bitcoind carries the unlock out only now, after the signing's own lock.
  held.release();
  await held.answered;
  const during = await gw.signing(async () => (await gw.call<{ unlocked_until: number }>("getwalletinfo")).unlocked_until);
  t.ok(during > 0, "the next signing had the wallet unlocked");
  const locks = proxy.seen.slice(from).filter((m) => m === "walletpassphrase" || m === "walletlock");
  t.same(locks, ["walletpassphrase", "walletlock", "walletlock", "walletpassphrase", "walletlock"], "the late re-lock went before the next unlock, not in the middle of that signing");
  t.equal(await unlockedUntil(), 0, "locked");
});
