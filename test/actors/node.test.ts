// The node actor against a real regtest bitcoind: batching, the allowlist, and the unavailable state.
import t from "tap";
import { ActorSystem } from "../../src/actors/runtime.ts";
import { NodeGateway } from "../../src/actors/node.ts";
import { loadConfig } from "../../src/config.ts";
import { silentLogger } from "../../src/log.ts";
import { startRegtest } from "../../src/regtest/harness.ts";

t.test("one mailbox: concurrent calls go out as JSON-RPC batches; only allowlisted methods pass", async (t) => {
  const node = await startRegtest();
  const system = new ActorSystem();
  const config = loadConfig({ env: {}, overrides: { node: { addressPoolSize: 10, timeoutMs: 5000 } } });
  const gw = new NodeGateway({ config, log: silentLogger, system, rpc: { url: node.rpcUrl, user: node.user, password: node.password } });
  t.teardown(async () => (await gw.stop(), system.shutdown(), await node.stop()));
  await gw.start();
  const before = gw.snapshot();
  const addrs = await gw.newAddresses(200, "test");
  t.equal(new Set(addrs).size, 200, "200 distinct addresses");
  const after = gw.snapshot();
  t.ok(after.roundTrips - before.roundTrips < 20, `200 calls in ${after.roundTrips - before.roundTrips} round trips`);
  await t.rejects(gw.call("sendtoaddress", ["x", 1]), { code: "not_allowed" }, "a non-idempotent send is refused outright");
  await t.rejects(gw.call("stop", []), { code: "not_allowed" });
  await t.rejects(gw.call("getblockhash", [999_999]), { code: -8 }, "RPC errors keep bitcoind's code");
  t.equal(await gw.estimateFeeRate(6), BigInt(config.withdrawals.fallbackFeeRateSatVb), "regtest has no estimate: the configured fallback");
  const a = await gw.takeDepositAddress("u_label");
  await gw.blockchainInfo(); // the mailbox is ordered: the label was set before this answer came back
  const info = await node.rpc<{ labels: string[] }>("getaddressinfo", [a], "engine");
  t.same(info.labels, ["u_label"], "labelled with the user key");
  await node.flush();
  await node.kill();
  const waiting = gw.blockchainInfo();
  await t.resolves((async () => {
    await node.restart();
    return waiting;
  })(), "a call made while bitcoind was down completes once it is back");
  t.equal(gw.state, "ready");
  t.ok(gw.snapshot().retries > 0, "it was retried, not failed");
});

t.test("the fee rate is never below the node's mempool minimum (a full mempool raises it), nor above the configured cap", async (t) => {
  // The floor that a full mempool raises, set here as the node's relay minimum: 50 sat/vB, over the fallback of 20.
  const node = await startRegtest({ extraArgs: ["-minrelaytxfee=0.0005"] });
  const system = new ActorSystem();
  const config = loadConfig({ env: {}, overrides: { withdrawals: { fallbackFeeRateSatVb: 20 } } });
  const gw = new NodeGateway({ config, log: silentLogger, system, rpc: { url: node.rpcUrl, user: node.user, password: node.password } });
  t.teardown(async () => (await gw.stop(), system.shutdown(), await node.stop()));
  await gw.start();
  t.equal(await gw.estimateFeeRate(6), 50n, "no estimate: the fallback, raised to the mempool's minimum");
  const other = new ActorSystem();
  const capped = new NodeGateway({ config: loadConfig({ env: {}, overrides: { withdrawals: { maxFeeRateSatVb: 30 } } }), log: silentLogger, system: other, rpc: { url: node.rpcUrl, user: node.user, password: node.password } });
  t.teardown(async () => (await capped.stop(), other.shutdown()));
  await capped.start();
  t.equal(await capped.estimateFeeRate(6), 30n, "capped at withdrawals.maxFeeRateSatVb (a batch then waits, stuck, for the operator)");
});

t.test("an engine with books never replaces a node wallet it cannot load with a new, empty one", async (t) => {
  const { startTestEngine } = await import("../support/engine.ts");
  const { openStorage } = await import("../../src/storage.ts");
  const { Engine } = await import("../../src/engine.ts");
  const te = await startTestEngine();
  t.teardown(() => te.stop());
  t.ok(await te.engine.storage.store.get("watcher", "cursor"), "the books have been kept (a deposit scan ran)");
  await te.engine.close();
  await te.engine.storage.close();
  // As after a typo in node.wallet, or bitcoind started with another -walletdir: the wallet is not there.
  const config = { ...te.config, node: { ...te.config.node, wallet: "runigun-typo" } };
  const storage = await openStorage({ dataPath: te.dataPath, keyring: te.keyring, sync: false, log: silentLogger });
  t.teardown(() => storage.close().catch(() => undefined));
  await t.rejects(Engine.start({ config, log: silentLogger, storage, rpc: { url: te.node.rpcUrl, user: te.node.user, password: te.node.password } }),
    /could not load the engine's wallet "runigun-typo".*no new wallet is created/, "the start is refused, naming the wallet and what to check");
  t.notOk((await te.node.rpc<string[]>("listwallets")).includes("runigun-typo"), "and no wallet was created");
});
