// A wallet that does not take its "broadcast" notice (busy, timed out), on a real regtest node: the payout actor marked
// it told before the send was known delivered, so it missed the notice for the rest of the run (its withdrawal stayed
// "reserved" until it was confirmed). Now it is told again at the next send of the batch (sync, at every block); one
// that took it is not told again.
import t from "tap";
import { refuse, type Refusal } from "../../src/domain/refusals.ts";
import { startTestEngine } from "../support/engine.ts";
import { fundedUser, withdraw, withdrawalOf } from "../support/payouts.ts";

t.test("a wallet busy when its batch went out is told at the next send; one that took it is not told again", async (t) => {
  const te = await startTestEngine({ deposits: { confirmations: 1 }, withdrawals: { batchWindowMs: 600_000 } });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const busy = await fundedUser(te, "busy", "0.01");
  const idle = await fundedUser(te, "idle", "0.01");
  await te.mine(1);
  const registry = te.engine.registry;
  type Send = (userKey: string, type: string, payload: unknown) => Promise<unknown>;
  const send = (registry.send as unknown as Send).bind(registry);
  const told: Array<{ userKey: string; answer: Promise<unknown> }> = [];
  let refuseBusy = true;
  (registry as { send: unknown }).send = (userKey: string, type: string, payload: unknown) => {
    if (type !== "withdrawal_broadcast") return send(userKey, type, payload);
    const answer: Promise<unknown> = userKey === busy && refuseBusy
      ? Promise.resolve<Refusal>(refuse("busy", "the wallet is busy; try again"))
      : send(userKey, type, payload);
    told.push({ userKey, answer });
    return answer;
  };
  const qb = (await withdraw(te.engine.relay, busy, await te.node.outsideAddress(), "0.001")).quote;
  const qi = (await withdraw(te.engine.relay, idle, await te.node.outsideAddress(), "0.002")).quote;
  t.same(await te.engine.payouts.flush(), { batches: 1 }, "one batch for both");
  await Promise.all(told.map((x) => x.answer));
  t.same(told.map((x) => x.userKey).sort(), [busy, idle].sort(), "both wallets were sent the notice");
  t.equal((await withdrawalOf(te, busy, qb.id)).w.status, "reserved", "the busy wallet did not take it");
  t.equal((await withdrawalOf(te, idle, qi.id)).w.status, "broadcast", "the other did");

  refuseBusy = false;
  told.length = 0;
  t.match(await te.engine.payouts.sync(), { rebroadcast: 1 }, "the next block's sync sends the batch again");
  await Promise.all(told.map((x) => x.answer));
  t.same(told.map((x) => x.userKey), [busy], "the busy wallet is told again, the other not");
  t.equal((await withdrawalOf(te, busy, qb.id)).w.status, "broadcast", "and takes it now");

  told.length = 0;
  await te.engine.payouts.sync();
  await Promise.all(told.map((x) => x.answer));
  t.same(told, [], "a later send tells nobody again");
});
