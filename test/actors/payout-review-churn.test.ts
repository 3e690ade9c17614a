// What a flush with nothing queued costs while batches wait for their confirmations, on a real regtest node: nothing.
// Before, every flush (the batch timer's, each block's) sent every broadcast batch again and told each of its payouts'
// wallets again, waking every one. Now a batch's wallets are told once, at its first broadcast (and again only with a
// new transaction); sync sends the batches again once a block; and a wallet still learns its payout went out when the
// engine died before telling it.
import t from "tap";
import { isRefusal } from "../../src/domain/refusals.ts";
import { startTestEngine, type TestEngine } from "../support/engine.ts";
import { fundedUser, withdraw, withdrawalOf } from "../support/payouts.ts";

/** Counts the engine's withdrawal_broadcast messages to wallets (`drop`: lost, as in a crash) and its sendrawtransaction calls. */
function spy(te: TestEngine, o: { drop?: boolean } = {}) {
  const seen = { told: 0, sent: 0 };
  const registry = te.engine.registry as unknown as { send: (...a: unknown[]) => Promise<unknown> };
  const send = registry.send.bind(registry);
  registry.send = (k: unknown, type: unknown, ...rest: unknown[]) => {
    if (type !== "withdrawal_broadcast") return send(k, type, ...rest);
    seen.told++;
    return o.drop ? Promise.resolve({ ok: true }) : send(k, type, ...rest);
  };
  const node = te.engine.node;
  const rawCall = node.rawCall.bind(node);
  node.rawCall = ((method: string, params: unknown[]) => ((method === "sendrawtransaction" && seen.sent++), rawCall(method, params))) as typeof node.rawCall;
  return seen;
}

t.test("empty flushes send nothing and tell no wallet; a block sends each batch again without telling; a crash before the telling is made good", async (t) => {
  const te = await startTestEngine({ deposits: { confirmations: 3 }, withdrawals: { batchWindowMs: 600_000 } });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const users: string[] = [];
  for (let i = 0; i < 8; i++) users.push(await fundedUser(te, `churn${i}`, "0.01"));
  await te.mine(3);
  const ids: string[] = [];
  for (const u of users) ids.push((await withdraw(te.engine.relay, u, await te.node.outsideAddress(), "0.001")).quote.id);
  // The wallets are not told of the first broadcast: the engine dies before the messages reach them.
  let seen = spy(te, { drop: true });
  const r = await te.engine.payouts.flush();
  if (isRefusal(r)) throw new Error(r.message);
  t.ok(r.batches >= 1, "the payouts go out");
  t.equal(seen.told, 8, "each wallet told once at the first broadcast");
  for (let i = 0; i < 3; i++) {
    seen = spy(te);
    t.same(await te.engine.payouts.flush(), { batches: 0 }, `empty flush ${i + 1}`);
    t.same(seen, { told: 0, sent: 0 }, `empty flush ${i + 1}: nothing sent again, no wallet told again`);
  }
  seen = spy(te);
  await te.mine(1);
  t.equal(seen.sent, r.batches, "a block's sync sends each batch again, once");
  t.equal(seen.told, 0, "without telling its wallets again");
  for (let i = 0; i < users.length; i++) t.equal((await withdrawalOf(te, users[i]!, ids[i]!)).w.status, "reserved", "the lost message: the wallet does not know yet");

  await te.restart({ crash: true });
  const batches = Object.values((await te.engine.payouts.state()).batches);
  for (let i = 0; i < users.length; i++) {
    const { w } = await withdrawalOf(te, users[i]!, ids[i]!);
    const b = batches.find((x) => x.ids.includes(ids[i]!))!;
    t.same([w.status, w.txid], ["broadcast", b.txid], `after the restart ${users[i]}'s wallet knows its payout is out, with its transaction`);
  }
});
