// The harness runs a real regtest bitcoind: these tests are the first contact with it.
import t from "tap";
import { SAFE_HEIGHT, startRegtest } from "../../src/regtest/harness.ts";

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

t.test("Knots refuses nLockTime 21 (a CAT-21 mint): the harness's chain starts above anti-fee-sniping's reach of it", async (t) => {
  const node = await startRegtest();
  t.teardown(() => node.stop());
  await node.ensureMatureCoins();
  t.ok((await node.rpc<number>("getblockcount")) >= SAFE_HEIGHT, "a wallet never picks 21 from here: at most 100 blocks below the tip");
  const to = await node.rpc<string>("getnewaddress", ["", "bech32"], "engine");
  const verdict = async (locktime: number) => {
    const { hex } = await node.rpc<{ hex: string }>("send", [{ [to]: 0.1 }, null, "unset", null, { locktime, add_to_wallet: false }], "outside");
    return (await node.rpc<Array<{ allowed: boolean; "reject-reason"?: string }>>("testmempoolaccept", [[hex]]))[0]!;
  };
  t.match(await verdict(21), { allowed: false, "reject-reason": "parasite-cat21" }, "what made a funding transaction miss its block");
  t.match(await verdict(22), { allowed: true });
});
