// The watchdog with a confirmation target above 1, on a real regtest node: bitcoind trusts a deposit's coin from its
// first confirmation, its wallet counts it as available only at the target. In between the coin backs a pending
// balance only, and must not cover a hole in the firm ones.
import t from "tap";
import { startTestEngine } from "../support/engine.ts";
import { fundedUser } from "../support/payouts.ts";
import { isRefusal } from "../../src/domain/refusals.ts";

const balance = async (te: Awaited<ReturnType<typeof startTestEngine>>, key: string) => {
  const b = await te.engine.relay.balance(key);
  if (isRefusal(b)) throw new Error(b.message);
  return b;
};

t.test("a hole the size of the deposits below the target is seen at once, not when they reach it", async (t) => {
  const te = await startTestEngine({ deposits: { confirmations: 3 } });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  // 1 BTC credited (three blocks deep); 0.4 BTC one block deep: the node trusts it, its wallet holds it pending.
  const old = await fundedUser(te, "old", "1");
  await te.mine(3);
  t.equal((await balance(te, old)).available, 100_000_000n);
  const young = await fundedUser(te, "young", "0.4");
  await te.poke();
  let r = await te.engine.solvency();
  t.equal(r.node.maturingDeposits, 0n, "unconfirmed: the node does not trust it yet, nothing to take off");
  t.ok(r.ok, r.reason ?? "ok");
  await te.mine(1);
  t.match(await balance(te, young), { available: 0n, pending: 40_000_000n });
  r = await te.engine.solvency();
  t.ok(r.ok, `no hole: ${r.reason ?? "ok"}`);
  t.equal(r.node.maturingDeposits, 40_000_000n, "the young deposit's coin is reported apart");
  t.equal(r.firm, 100_000_000n);
  t.equal(r.surplus, 0n);

  // Someone with the node's keys takes 0.3 BTC of the credited user's coin: the node still trusts 1.0999… BTC, more
  // than the 1 BTC firm, but only thanks to the young deposit, which backs its own pending balance.
  const coin = (await te.node.rpc<Array<{ txid: string; vout: number; amount: number; confirmations: number }>>("listunspent", [3], "engine")).find((c) => c.amount === 1);
  t.ok(coin, "the credited deposit's coin");
  const change = await te.node.rpc<string>("getrawchangeaddress", ["bech32"], "engine");
  await te.node.rpc("send", [[{ [await te.node.outsideAddress()]: 0.3 }, { [change]: 0.6999 }], null, "unset", null, { inputs: [{ txid: coin!.txid, vout: coin!.vout }], add_inputs: false }], "engine");
  // Mined: its change is one block deep too, and is no deposit (not taken off); the young deposit is two deep of three.
  await te.mine(1);
  t.match(await balance(te, young), { pending: 40_000_000n }, "still pending");
  r = await te.engine.solvency();
  t.ok(r.node.trusted >= r.firm, `the node's trusted balance (${r.node.trusted}) still exceeds the firm balances (${r.firm})`);
  t.notOk(r.ok, "but the hole is seen");
  t.equal(r.node.maturingDeposits, 40_000_000n);
  t.match(r.reason, /less 40000000 sats of deposits not yet at the confirmation target, which back only pending balances\) by 30\d{6} sats$/);
  t.match(te.engine.payouts.paused, /^watchdog: the wallets' firm balances/, "the watchdog after the block paused payouts");
  t.equal(te.engine.lastSolvency?.ok, false);

  // A house float (an address of the node's wallet, labelled, that no user owns) counts from its first confirmation:
  // it backs no pending balance. The hole covered, payouts may resume.
  await te.node.fund(await te.node.rpc<string>("getnewaddress", ["float", "bech32"], "engine"), "0.31");
  await te.mine(1);
  t.match(await balance(te, young), { available: 40_000_000n, pending: 0n }, "the young deposit reached the target");
  r = await te.engine.solvency();
  t.ok(r.ok, `covered: ${r.reason ?? "ok"}`);
  t.equal(r.node.maturingDeposits, 0n, "neither the float nor the credited deposit is taken off");
  t.same(await te.engine.resumePayouts("alice"), { resumed: true });
});

t.test("a deposit mined between the engine's two node calls is no hole", async (t) => {
  const te = await startTestEngine({ deposits: { confirmations: 3 } });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  await fundedUser(te, "firm", "1");
  await te.mine(3);
  // Credited pending while unconfirmed: it is mined after the first of the two readings of the node, before the second.
  const key = await fundedUser(te, "between", "0.4");
  await te.poke();
  t.match(await balance(te, key), { pending: 40_000_000n });
  const node = te.engine.node as unknown as { call: (method: string, params?: unknown[]) => Promise<unknown> };
  const call = node.call.bind(node);
  const order: string[] = [];
  node.call = async (method, params) => {
    const answer = await call(method, params);
    if (method === "listunspent" || method === "getbalances") {
      order.push(method);
      // The wallet RPCs wait for the node's wallet to catch up with the chain, so the next one sees this block.
      if (order.length === 1) await te.node.mine(1);
    }
    return answer;
  };
  const r = await te.engine.solvency();
  node.call = call;
  t.same(order, ["listunspent", "getbalances"], "the coins of pending deposits are listed before the balances are read");
  t.ok(r.ok, `no false hole: ${r.reason ?? "ok"}`);
  t.equal(r.node.maturingDeposits, 0n, "the deposit mined meanwhile is in the balances only");
  t.equal(r.surplus, 0n);
  // The next reading sees it in both.
  const again = await te.engine.solvency();
  t.ok(again.ok);
  t.equal(again.node.maturingDeposits, 40_000_000n);
});
