// The harness runs a real regtest bitcoind: these tests are the first contact with it.
import t from "tap";
import { startRegtest } from "../../src/regtest/harness.ts";

t.test("a real regtest node: mine, fund, restart, stop", async (t) => {
  const node = await startRegtest();
  t.teardown(() => node.stop());
  await node.mine(101);
  const outside = await node.rpc<{ mine: { trusted: number } }>("getbalances", [], "outside");
  t.ok(outside.mine.trusted >= 50, "the outside wallet has a matured coinbase");
  const addr = await node.rpc<string>("getnewaddress", ["", "bech32"], "engine");
  t.match(addr, /^bcrt1q/);
  await node.fund(addr, "1.5");
  await node.mine(1);
  const engine = await node.rpc<{ mine: { trusted: number } }>("getbalances", [], "engine");
  t.equal(engine.mine.trusted, 1.5, "the engine wallet holds exactly what was sent");
  const height = await node.rpc<number>("getblockcount");
  await node.flush();
  await node.kill();
  t.notOk(node.running);
  await node.restart();
  t.equal(await node.rpc<number>("getblockcount"), height, "a flushed chain survives a crash of the node");
  const pid = node.pid!;
  await node.stop();
  t.throws(() => process.kill(pid, 0), "no bitcoind left behind");
  await t.rejects(node.fund(addr, "1e5"), /not a BTC amount/);
});
