// The node actor when bitcoind restarts under it, as a service manager restarts it: nobody but the engine loads the
// engine's wallet, and a step of the wall clock does not fail what waits for bitcoind.
import t from "tap";
import { renameSync } from "node:fs";
import { join } from "node:path";
import { ActorSystem } from "../../src/actors/runtime.ts";
import { NodeGateway } from "../../src/actors/node.ts";
import { loadConfig } from "../../src/config.ts";
import { createLogger, silentLogger } from "../../src/log.ts";
import { isRefusal } from "../../src/domain/refusals.ts";
import { enginePort } from "../../src/edges/admin/engine-port.ts";
import { startRegtest, type RegtestNode } from "../../src/regtest/harness.ts";
import { startTestEngine, type TestEngine } from "../support/engine.ts";

type Line = { msg: string; alert?: boolean };
const capture = (lines: Line[]) => createLogger({ level: "warn", destination: { write: (l: string) => void lines.push(JSON.parse(l) as Line) } });

async function depositAddress(te: TestEngine, key: string): Promise<string> {
  const opened = await te.engine.relay.start(key);
  if (isRefusal(opened)) throw new Error(opened.message);
  const a = await te.engine.relay.depositAddress(key);
  if (isRefusal(a)) throw new Error(a.message);
  return a.address;
}

async function balance(te: TestEngine, key: string) {
  const b = await te.engine.relay.balance(key);
  if (isRefusal(b)) throw new Error(b.message);
  return [b.available, b.pending, b.reserved];
}

/** A crash of bitcoind and its start again with the same arguments: it loads only the wallets flagged load_on_startup. */
async function serviceRestart(node: RegtestNode): Promise<string[]> {
  await node.flush();
  await node.kill();
  await node.restart();
  return node.rpc<string[]>("listwallets");
}

function gateway(node: RegtestNode, overrides: object = {}) {
  const system = new ActorSystem();
  const config = loadConfig({ env: {}, overrides: { node: { addressPoolSize: 2, timeoutMs: 5000, ...overrides } } });
  const gw = new NodeGateway({ config, log: silentLogger, system, rpc: { url: node.rpcUrl, user: node.user, password: node.password } });
  return { gw, close: async () => (await gw.stop(), system.shutdown()) };
}

t.test("a wallet the engine creates or loads is flagged load_on_startup: bitcoind has it loaded when it starts again", async (t) => {
  const node = await startRegtest();
  let g = gateway(node, { wallet: "made_here" });
  t.teardown(async () => (await g.close(), await node.stop()));
  await g.gw.start();
  t.ok((await serviceRestart(node)).includes("made_here"), "created by the engine: loaded by bitcoind after its restart");
  // Unloaded and unflagged (as a wallet of an earlier release): the engine loads it at its next start, flagged.
  await node.rpc("unloadwallet", ["made_here", false]);
  await g.close();
  g = gateway(node, { wallet: "made_here" });
  await g.gw.start();
  t.ok((await serviceRestart(node)).includes("made_here"), "loaded by the engine: loaded by bitcoind after its restart");
});

t.test("bitcoind restarted without the engine's wallet: the node actor loads it and the call goes again; a deposit is credited without restarting the engine", async (t) => {
  const node = await startRegtest();
  // Loaded by hand, or by a release before this one: not flagged to load when bitcoind starts.
  await node.rpc("unloadwallet", [node.walletName, false]);
  await node.rpc("loadwallet", [node.walletName, false]);
  const lines: Line[] = [];
  const te = await startTestEngine({ deposits: { confirmations: 1 } }, { node, log: capture(lines) });
  t.teardown(async () => (await te.stop(), await node.stop()));
  await node.ensureMatureCoins();
  const address = await depositAddress(te, "u_restarted");
  t.notOk((await serviceRestart(node)).includes(node.walletName), "bitcoind came back without the engine's wallet");
  await node.fund(address, "0.3");
  await te.mine(1);
  t.same(await balance(te, "u_restarted"), [30_000_000n, 0n, 0n], "the deposit is credited");
  t.equal(te.engine.node.state, "ready");
  t.match(await te.engine.node.call("getwalletinfo"), { walletname: node.walletName }, "a call on the wallet works");
  t.equal(lines.filter((l) => /had not loaded the engine's wallet/.test(l.msg)).length, 1, "said once");
  t.notOk(lines.some((l) => l.alert), "no alert: nothing waits for an operator");
  t.ok((await serviceRestart(node)).includes(node.walletName), "loaded again with load_on_startup: bitcoind loads it itself next time");
});

t.test("bitcoind cannot load the engine's wallet: the node is unavailable, /health says so, operators are alerted once; it recovers once the wallet loads", async (t) => {
  const lines: Line[] = [];
  const te = await startTestEngine({}, { log: capture(lines) });
  t.teardown(() => te.stop());
  const port = enginePort(te.engine);
  const dir = join(te.node.dataDir, "regtest", "wallets", te.node.walletName);
  await te.node.flush();
  await te.node.kill();
  // As after a wrong -walletdir, or a disk not mounted yet.
  renameSync(dir, `${dir}.away`);
  await te.node.restart();
  await t.rejects(te.engine.node.call("getwalletinfo"), { code: -18, message: /the engine's wallet "engine" and could not load it/ }, "the call fails, saying why");
  await t.rejects(te.engine.node.call("getbalances"), { code: -18 }, "and so does the next");
  t.equal(te.engine.node.state, "unavailable");
  t.match(await port.health(), { ok: false, node: "unavailable" });
  t.equal(lines.filter((l) => l.alert && /could not load it/.test(l.msg)).length, 1, "operators are alerted, once");
  renameSync(`${dir}.away`, dir);
  t.match(await te.engine.node.call("getwalletinfo"), { walletname: te.node.walletName }, "the next call loads it");
  t.equal(te.engine.node.state, "ready");
  t.match(await port.health(), { node: "ready" });
});

t.test("a step of the wall clock does not fail the calls waiting for bitcoind", async (t) => {
  const node = await startRegtest();
  const g = gateway(node);
  t.teardown(async () => (await g.close(), await node.stop()));
  await g.gw.start();
  await node.flush();
  await node.kill();
  const waiting = g.gw.blockchainInfo().then((i) => i.chain, (e: Error) => e.message);
  const realNow = Date.now;
  // NTP steps the clock an hour forward while the call waits (a minute at most) for bitcoind.
  Date.now = () => realNow() + 3_600_000;
  t.teardown(() => void (Date.now = realNow));
  await node.restart();
  t.equal(await waiting, "regtest", "answered once bitcoind is back");
  // The harness flags its wallets as the engine flags its own: a test that reads the engine's wallet right after a
  // restart finds it loaded by bitcoind, not by the harness.
  t.same((await node.rpc<string[]>("listwallets")).sort(), [node.walletName, "outside"].sort(), "both wallets loaded by bitcoind itself");
});
