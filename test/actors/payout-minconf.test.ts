// Payouts are funded only from coins as deep as a deposit must be to be credited, on a real regtest node: a deposit
// one block deep (nobody's yet; a reorg may double-spend it) never pays someone else's withdrawal.
import t from "tap";
import { startTestEngine } from "../support/engine.ts";
import { isRefusal } from "../../src/domain/refusals.ts";
import { fundedUser, received, withdraw, withdrawalOf } from "../support/payouts.ts";

t.test("a deposit below the confirmation target never funds a payout; the payout waits until a coin is deep enough", async (t) => {
  const te = await startTestEngine({ deposits: { confirmations: 2 } });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const u1 = await fundedUser(te, "deep", "0.5");
  await te.mine(2);
  const dest1 = await te.node.outsideAddress();
  await withdraw(te.engine.relay, u1, dest1, "0.1");
  await te.engine.payouts.flush();
  const [b1] = Object.values((await te.engine.payouts.state()).batches);
  t.equal(b1?.status, "broadcast", "the first payout went out, from u1's deposit (its change unconfirmed)");

  // Another user's deposit, mined alone: one block deep of two, not credited. The first batch stays unconfirmed.
  const u2 = "u_young";
  await te.engine.relay.start(u2);
  const addr2 = await te.engine.relay.depositAddress(u2);
  if (isRefusal(addr2)) throw new Error(addr2.message);
  const ftx = await te.node.fund(addr2.address, "0.5");
  await te.node.rpc("generateblock", [await te.node.outsideAddress(), [ftx]]);
  await te.poke();
  t.equal((await te.node.rpc<{ confirmations: number }>("gettransaction", [b1!.txid], "engine")).confirmations, 0, "the first batch is still unconfirmed");
  t.equal((await te.engine.relay.balance(u2) as { available: bigint }).available, 0n, "u2's deposit is not credited yet");

  // u1 withdraws again: the only coin with a confirmation is u2's young deposit. It must not pay u1's withdrawal.
  const dest2 = await te.node.outsideAddress();
  const second = await withdraw(te.engine.relay, u1, dest2, "0.1");
  await te.engine.payouts.flush();
  let st = await te.engine.payouts.state();
  t.equal(st.payouts[second.quote.id]!.status, "queued", "not funded: no coin is deep enough");
  t.equal(Object.keys(st.batches).length, 1, "no second batch");

  // A block later u2's deposit is two deep (credited), the first batch's change one: the payout goes, from coins two deep.
  await te.mine(1);
  await te.engine.payouts.flush();
  st = await te.engine.payouts.state();
  const p = st.payouts[second.quote.id]!;
  t.not(p.status, "queued", "funded now");
  const b2 = st.batches[p.batch!]!;
  const vin = (await te.node.rpc<{ vin: Array<{ txid: string }> }>("decoderawtransaction", [b2.hex], "engine")).vin;
  for (const i of vin) {
    const c = (await te.node.rpc<{ confirmations: number }>("gettransaction", [i.txid], "engine")).confirmations;
    t.ok(c >= 2, `its coin from ${i.txid.slice(0, 8)}… is ${c} deep`);
  }
  await te.mine(2);
  t.equal((await withdrawalOf(te, u1, second.quote.id)).w.status, "sent");
  t.equal(await received(te, dest2), 10_000_000n, "paid");
  t.equal((await te.engine.solvency()).surplus, 0n, "the books equal the node's");
});
