// A fee bump that would add a coin younger than deposits must be to be credited, on a real regtest node: psbtbumpfee
// adds coins of the node's wallet when the batch's change cannot pay the higher fee, any confirmed one. The bump is
// refused with a clear answer and nothing changes; once the coin is deep enough, the same bump goes.
import t from "tap";
import { startTestEngine } from "../support/engine.ts";
import { isRefusal } from "../../src/domain/refusals.ts";
import { fundedUser, received, withdraw, withdrawalOf } from "../support/payouts.ts";

t.test("a fee bump that would add a coin one block deep (two required): refused, nothing changed; two deep, bumped", async (t) => {
  const te = await startTestEngine({ deposits: { confirmations: 2 } });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const u1 = await fundedUser(te, "all", "0.5");
  await te.mine(2);
  const dest = await te.node.outsideAddress();
  // u1 withdraws everything: the batch has one input and no change, so a fee bump must add an input.
  const q0 = await te.engine.relay.quoteWithdrawal(u1, dest, "0.1");
  if (isRefusal(q0)) throw new Error(q0.message);
  const { quote } = await withdraw(te.engine.relay, u1, dest, `${50_000_000n - q0.fee} sats`);
  await te.engine.payouts.flush();
  const [batch, a] = Object.entries((await te.engine.payouts.state()).batches)[0]!;
  t.equal(a.status, "broadcast");
  // A coin of the node's wallet mined alone, one block deep (the batch stays in the mempool): the only one a bump can add.
  const young = await te.node.fund(await te.node.rpc<string>("getnewaddress", [], "engine"), "0.5");
  await te.node.rpc("generateblock", [await te.node.outsideAddress(), [young]]);
  await te.poke();

  const r = await te.engine.payouts.bump(batch, 60n);
  t.match(r, { code: "not_allowed", message: new RegExp(`^The fee bump of batch ${batch} would add coin ${young}:\\d+, 1 block\\(s\\) deep: payouts spend only coins 2 deep.*Nothing was changed; bump again in 1 block\\(s\\)`) }, "refused: the answer names the coin and when to try again");
  const same = (await te.engine.payouts.state()).batches[batch]!;
  t.same([same.status, same.txid, same.replaced], ["broadcast", a.txid, []], "nothing journalled");
  t.ok(await te.node.rpc("getmempoolentry", [a.txid]), "the batch's transaction is still the one in the mempool");

  // An empty block: the coin two deep, the batch still unmined.
  await te.node.rpc("generateblock", [await te.node.outsideAddress(), []]);
  await te.poke();
  const bumped = await te.engine.payouts.bump(batch, 60n);
  if (isRefusal(bumped)) throw new Error(bumped.message);
  const after = (await te.engine.payouts.state()).batches[batch]!;
  t.same([after.txid, after.replaced], [bumped.txid, [a.txid]], "bumped once the coin is as deep as a deposit must be");
  t.ok(after.inputs?.[bumped.txid]?.some((i) => i.startsWith(`${young}:`)), "with that coin");
  await te.mine(2);
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "confirmed");
  t.equal((await withdrawalOf(te, u1, quote.id)).w.txid, bumped.txid);
  t.equal(await received(te, dest), 50_000_000n - q0.fee, "paid once");
});
