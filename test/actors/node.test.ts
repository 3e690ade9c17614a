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
