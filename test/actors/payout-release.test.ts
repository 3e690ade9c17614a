// A stuck payout batch released by an operator, on a real regtest node: its transaction is made impossible to mine
// first (spent back to the node's wallet, or already spent in a block and waited for), then the users get their
// reservations back. Never paid, never released while it could still be mined.
import t from "tap";
import { startTestEngine, type TestEngine } from "../support/engine.ts";
import { isRefusal } from "../../src/domain/refusals.ts";
import { crashingEngine, fundedUser, received, sentBatch, withdraw, withdrawalOf } from "../support/payouts.ts";
import { enginePort } from "../../src/edges/admin/engine-port.ts";
import { createLogger, type Logger } from "../../src/log.ts";

/** An engine whose node refuses the fee rate (testmempoolaccept's maximum is 10,000 sat/vB): one withdrawal, stuck. */
async function stuckBatch(t: { teardown(f: () => unknown): void }, name: string, confirmations = 1, log?: Logger) {
  const { te, crash } = await crashingEngine({ deposits: { confirmations }, withdrawals: { fallbackFeeRateSatVb: 20_000, maxFeeRateSatVb: 50_000 } }, { log });
  t.teardown(() => te.stop());
  return { te, crash, ...(await sentBatch(te, name, "0.05", { confirmations })) };
}

/** Spends the first input of a transaction behind the engine's back, paying more than it (a replacement), to an outside address. */
async function spendFirstInput(te: TestEngine, hex: string): Promise<void> {
  const input = (await te.node.rpc<{ vin: Array<{ txid: string; vout: number }> }>("decoderawtransaction", [hex], "engine")).vin[0]!;
  const prev = await te.node.rpc<{ hex: string }>("gettransaction", [input.txid], "engine");
  const value = (await te.node.rpc<{ vout: Array<{ value: number }> }>("decoderawtransaction", [prev.hex], "engine")).vout[input.vout]!.value;
  const raw = await te.node.rpc<string>("createrawtransaction", [[input], [{ [await te.node.outsideAddress()]: (value - 0.001).toFixed(8) }]], "engine");
  await te.node.rpc("sendrawtransaction", [(await te.node.rpc<{ hex: string }>("signrawtransactionwithwallet", [raw], "engine")).hex], "engine");
}

t.test("a batch the node's mempool refuses: stuck; released by an operator, its inputs are spent back first, then the user has it back; never paid", async (t) => {
  const { te, key, dest, quote, batch, b } = await stuckBatch(t, "stuck");
  t.equal(b.status, "stuck", "the node refused it");
  t.match(b.reason, /max-fee-exceeded/);
  t.match(await te.engine.payouts.bump(batch, 5n), { code: "bad_input", message: new RegExp(`^Batch ${batch} cannot be bumped: the node's wallet does not have its transaction .*Release it instead\\.$`) }, "a fee bump cannot help: the node's wallet never had it; the answer says to release it");
  const admin = enginePort(te.engine);
  t.match(await admin.metrics(), /runigun_payout_batches_stuck 1\n[\s\S]*runigun_payout_batches_releasing 0\n/, "the metrics count it, for an alert");

  t.match(await te.engine.payouts.release("b999", 5n, "no such batch"), { code: "not_found" });
  // The block with the coins it spends taken away (a reorg): those coins are not spent, and may come back.
  const tip = await te.node.rpc<string>("getbestblockhash", []);
  await te.node.rpc("invalidateblock", [tip]);
  t.match(await te.engine.payouts.release(batch, 5n, "during a reorg"), { code: "not_allowed", message: /comes from a transaction in no block/ }, "not released while its coins are in no block");
  await te.node.rpc("reconsiderblock", [tip]);
  const r = await te.engine.payouts.release(batch, 5n, "refused by the node's mempool");
  if (isRefusal(r)) throw new Error(r.message);
  t.equal(r.status, "cancelling", "not released yet: the cancellation must be mined first");
  t.match(await admin.metrics(), /runigun_payout_batches_stuck 0\n[\s\S]*runigun_payout_batches_releasing 1\n/);
  const shown = await admin.payouts("cancelling") as { batches: Array<{ id: string; cancel: { txid: string; reason: string } }> };
  t.match(shown.batches, [{ id: batch, cancel: { txid: r.txid, reason: "refused by the node's mempool" } }], "the admin API shows the release");
  t.notMatch(JSON.stringify(shown), /"hex"/, "without the signed bytes");
  t.ok(r.fee! > 0n, `the cancellation pays ${r.fee} sats (the service's)`);
  const spent = await te.node.rpc<Array<{ allowed: boolean; "reject-reason"?: string }>>("testmempoolaccept", [[b.hex]], "engine");
  t.match(spent[0], { allowed: false }, "the batch's own transaction conflicts with the cancellation now");
  let st = await withdrawalOf(te, key, quote.id);
  t.equal(st.w.status, "reserved", "the user's reservation stays while the cancellation is unconfirmed");

  t.match(await te.engine.payouts.bump(batch, 50n), { code: "not_allowed", message: /being released/ }, "a batch being released is not bumped");
  // A higher fee rate while it is unconfirmed: the cancellation is replaced, and either one mined releases the batch.
  const again = await te.engine.payouts.release(batch, 12n, "faster");
  if (isRefusal(again)) throw new Error(again.message);
  t.not(again.txid, r.txid, "a replacement cancellation");
  t.ok(again.fee! > r.fee!, "with a higher fee");
  t.same((await te.engine.payouts.state()).batches[batch]!.cancel!.earlier, [r.txid], "the one it replaced is remembered");
  t.match(await te.engine.payouts.sync(), { settled: 0 }, "nothing released before a block");

  await te.mine(1);
  await te.engine.payouts.sync();
  const after = await te.engine.payouts.state();
  t.equal(after.batches[batch]!.status, "released");
  t.same([after.payouts[quote.id]!.status, after.payouts[quote.id]!.walletSettled], ["released", true], "the wallet journalled the release");
  st = await withdrawalOf(te, key, quote.id);
  t.equal(st.w.status, "released");
  t.same([st.available, st.reserved], [50_000_000n, 0n], "the whole reservation is back: amount and quoted fee");
  t.equal(await received(te, dest), 0n, "the destination was never paid");
  const s = await te.engine.solvency();
  t.equal(s.surplus, -again.fee!, "the books differ by exactly the cancellation's fee, which the service pays");
  // A restore's comparison with the chain reads the wallet's sends (backup/reconcile.ts): a cancellation, all change,
  // is none, so a restore from before it does not take it for money sent out.
  const since = await te.node.rpc<{ transactions: Array<{ txid: string; category: string }> }>("listsinceblock", [], "engine");
  t.same(since.transactions.filter((x) => x.txid === again.txid || x.txid === r.txid), [], "the cancellation is not listed as a send");

  await te.restart();
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "released", "after a restart too");
  t.match(await te.engine.payouts.release(batch, 5n, "again"), { status: "released" }, "releasing again changes nothing");
  st = await withdrawalOf(te, key, quote.id);
  t.same([st.w.status, st.available], ["released", 50_000_000n], "and nothing is paid or returned twice");
  const h = await te.engine.relay.history(key, 0);
  if (isRefusal(h)) throw new Error(h.message);
  t.same(h.entries.filter((e) => e.ref === quote.id).map((e) => [e.status, e.amount]), [["released", 0n]], "the history shows it released, costing nothing");
});

t.test("the engine crashes between journalling a cancellation and broadcasting it: the start-up sends it; released once, never paid", async (t) => {
  const { te, key, dest, quote, batch, crash } = await stuckBatch(t, "crash_cancel");
  crash.at = "cancel_recorded";
  await te.engine.payouts.release(batch, 5n, "refused by the node").catch(() => undefined);
  t.equal(crash.hits, 1, "crashed with the cancellation journalled");
  await te.restart();
  const b = (await te.engine.payouts.state()).batches[batch]!;
  t.equal(b.status, "cancelling");
  t.ok(await te.node.rpc("getmempoolentry", [b.cancel!.txid]), "the journalled cancellation was sent at the start-up");
  await te.mine(1);
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "released");
  const st = await withdrawalOf(te, key, quote.id);
  t.same([st.w.status, st.available, st.reserved], ["released", 50_000_000n, 0n], "the user has it all back, once");
  t.equal(await received(te, dest), 0n, "never paid");
  t.equal((await te.engine.solvency()).surplus, -b.cancel!.fee!, "the books differ by exactly the cancellation's fee");
});

t.test("a sent batch whose input is spent by another transaction in a block: stuck, and released once that spend is as deep as the confirmation target", async (t) => {
  const te = await startTestEngine({ deposits: { confirmations: 2 } });
  t.teardown(() => te.stop());
  const { key, dest, quote, batch, b } = await sentBatch(te, "spent", "0.05", { confirmations: 2 });
  t.equal(b.status, "broadcast");
  t.match(await te.engine.payouts.release(batch, 5n, "not stuck"), { code: "not_allowed", message: /broadcast, not stuck/ }, "a batch that may still be mined is not released");
  t.equal((await withdrawalOf(te, key, quote.id)).w.status, "broadcast");

  // Its input spent behind the engine's back by a transaction paying more (it replaces the batch), mined.
  await spendFirstInput(te, b.hex);
  await te.mine(1);
  await te.engine.payouts.sync();
  t.match((await te.engine.payouts.state()).batches[batch]!, { status: "stuck", reason: /conflicts with a transaction in a block: release it/ }, "its rebroadcast is refused: its input is spent");
  t.match(await te.engine.payouts.bump(batch, 50n), { code: "bad_input" }, "and it cannot be bumped");

  const r = await te.engine.payouts.release(batch, 5n, "input spent elsewhere");
  t.match(r, { status: "cancelling" }, "no cancellation needed, but the spend is one block deep of two");
  t.equal((r as { txid?: string }).txid, undefined, "the engine made no transaction");
  await te.engine.payouts.sync();
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "cancelling", "still one block deep");
  t.equal((await withdrawalOf(te, key, quote.id)).w.status, "broadcast", "the wallet still has it reserved");

  // A reorg takes the spend's block away and two blocks come in its place, the spend in the second, seen in one scan:
  // the spend is one block deep, though the tip is two above where the wait began.
  const before = (await te.engine.payouts.state()).batches[batch]!.cancel!;
  const spendBlock = await te.node.rpc<string>("getblockhash", [before.spentAt]);
  t.equal(before.spentIn, spendBlock, "the wait counts from the block the spend was seen in");
  await te.node.rpc("invalidateblock", [spendBlock]);
  await te.node.rpc("generateblock", [await te.node.outsideAddress(), []]);
  await te.node.mine(1);
  await te.poke();
  const moved = (await te.engine.payouts.state()).batches[batch]!;
  t.equal(moved.status, "cancelling", "not released: the block the wait counted from left the chain");
  t.equal(moved.cancel!.spentAt, before.spentAt! + 1, "the wait counts again from the new tip");
  t.not(moved.cancel!.spentIn, before.spentIn);
  t.equal((await withdrawalOf(te, key, quote.id)).w.status, "broadcast", "the wallet still has it reserved");

  await te.mine(1);
  await te.engine.payouts.sync();
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "released", "two blocks deep: released");
  const st = await withdrawalOf(te, key, quote.id);
  t.same([st.w.status, st.available, st.reserved], ["released", 50_000_000n, 0n], "the user has it all back, though the wallet had it as broadcast");
  t.equal(await received(te, dest), 0n, "never paid");
});

t.test("a batch being released whose own transaction is mined after all (it beat its cancellation): in flight below the target, then paid and settled, never released", async (t) => {
  const { te, key, dest, quote, batch, b } = await stuckBatch(t, "race", 2);
  t.equal(b.status, "stuck");
  const r = await te.engine.payouts.release(batch, 5n, "refused by the node");
  if (isRefusal(r)) throw new Error(r.message);
  t.equal(r.status, "cancelling");
  // A miner with the batch's own bytes (mempool policy is not consensus): its block leaves the cancellation out.
  await te.node.rpc("generateblock", [await te.node.outsideAddress(), [b.hex]]);
  await te.poke();
  await te.engine.payouts.sync();
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "broadcast", "in a block, one of two: in flight for the watchdog");
  t.match(await te.engine.payouts.release(batch, 10n, "again"), { code: "not_allowed" }, "no release once it is mined");
  await te.mine(1);
  await te.engine.payouts.sync();
  const after = await te.engine.payouts.state();
  t.same([after.batches[batch]!.status, after.payouts[quote.id]!.status, after.payouts[quote.id]!.walletSettled], ["confirmed", "confirmed", true], "confirmed and settled");
  const st = await withdrawalOf(te, key, quote.id);
  t.equal(st.w.status, "sent", "the wallet has it sent, not released");
  t.ok(st.w.fee! <= quote.fee, `charged ${st.w.fee} ≤ quoted ${quote.fee}`);
  t.same([st.available, st.reserved], [50_000_000n - 5_000_000n - st.w.fee!, 0n], "debited once");
  t.equal(await received(te, dest), 5_000_000n, "paid once");
  const cancel = await te.node.rpc<{ confirmations: number }>("gettransaction", [r.txid], "engine");
  t.ok(cancel.confirmations < 0, "the cancellation lost: it conflicts with a transaction in a block");
});

t.test("a batch mined after all, then reorged out for its cancellation: stuck again, its cancellation followed, released once that is deep enough", async (t) => {
  const { te, key, dest, quote, batch, b } = await stuckBatch(t, "reorged", 2);
  const r = await te.engine.payouts.release(batch, 5n, "refused by the node");
  if (isRefusal(r)) throw new Error(r.message);
  const cancel = (await te.engine.payouts.state()).batches[batch]!.cancel!;
  const mined = (await te.node.rpc<{ hash: string }>("generateblock", [await te.node.outsideAddress(), [b.hex]])).hash;
  await te.poke();
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "broadcast", "the batch's own transaction is in a block, one of two");
  // A reorg: that block is replaced by one with the cancellation, which the batch's transaction conflicts with.
  await te.node.rpc("invalidateblock", [mined]);
  await te.node.rpc("generateblock", [await te.node.outsideAddress(), [cancel.hex]]);
  await te.poke();
  let now = (await te.engine.payouts.state()).batches[batch]!;
  t.equal(now.status, "stuck", "its rebroadcast is refused: its inputs are spent by the cancellation");
  t.equal(now.cancel!.txid, r.txid, "the cancellation is still the book's");
  t.equal((await withdrawalOf(te, key, quote.id)).w.status, "broadcast", "the wallet holds it as sent out (it was in a block): one block deep of two, not released");
  t.match(await te.engine.payouts.release(batch, 5n, "again"), { status: "cancelling", txid: r.txid }, "releasing again follows the cancellation in its block, nothing new is signed");
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "cancelling");
  await te.mine(1);
  now = (await te.engine.payouts.state()).batches[batch]!;
  t.equal(now.status, "released", "the cancellation two blocks deep: released");
  const st = await withdrawalOf(te, key, quote.id);
  t.same([st.w.status, st.available, st.reserved], ["released", 50_000_000n, 0n], "the user has it all back");
  t.equal(await received(te, dest), 0n, "never paid: the block that paid it left the chain");
  t.equal((await te.engine.solvency()).surplus, -r.fee!, "the books differ by exactly the cancellation's fee");
});

t.test("a released batch whose own transaction is mined after a reorg deeper than the target: operators are alerted", async (t) => {
  const lines: Array<{ alert?: boolean; msg: string; batch?: string; txid?: string }> = [];
  const log = createLogger({ level: "warn", destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
  const { te, key, dest, quote, batch, b } = await stuckBatch(t, "deep", 1, log);
  const r = await te.engine.payouts.release(batch, 5n, "refused by the node");
  if (isRefusal(r)) throw new Error(r.message);
  await te.mine(1);
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "released");
  t.equal((await withdrawalOf(te, key, quote.id)).w.status, "released");
  // The block with the cancellation is replaced by one with the batch's own bytes.
  await te.node.rpc("invalidateblock", [await te.node.rpc<string>("getbestblockhash")]);
  await te.node.rpc("generateblock", [await te.node.outsideAddress(), [b.hex]]);
  await te.poke();
  t.match(lines.filter((l) => l.alert && /released payout batch/.test(l.msg)), [{ msg: /a released payout batch is in a block after a deep reorg/, batch, txid: b.txid }], "an alert names the batch and its transaction");
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "released", "the book does not pretend otherwise: released, and paid");
  t.equal(await received(te, dest), 5_000_000n, "the destination was paid");
  t.equal((await te.engine.solvency()).surplus, -(5_000_000n + b.fee), "the loss is the payout and its fee, which the watchdog sees");
  t.ok(te.engine.payouts.paused, "and payouts are paused");
});

t.test("a stuck batch whose coin a reorg double-spent: waited for from the conflicting block, then released; the deposit's wallet frozen for review", async (t) => {
  const { te, key, quote, batch, b } = await stuckBatch(t, "gone", 2);
  // The batch spends the user's deposit. Its block is taken away and the outside wallet spends the deposit's own coins
  // elsewhere, mined: the deposit, and the coin the batch spends, can never be in the chain again.
  const input = (await te.node.rpc<{ vin: Array<{ txid: string }> }>("decoderawtransaction", [b.hex], "engine")).vin[0]!;
  const deposit = await te.node.rpc<{ blockhash: string; hex: string }>("gettransaction", [input.txid], "outside");
  await te.node.rpc("invalidateblock", [deposit.blockhash]);
  const coins = (await te.node.rpc<{ vin: Array<{ txid: string; vout: number }> }>("decoderawtransaction", [deposit.hex], "outside")).vin;
  const spent = await Promise.all(coins.map(async (c) => (await te.node.rpc<{ vout: Array<{ value: number }> }>("decoderawtransaction", [(await te.node.rpc<{ hex: string }>("gettransaction", [c.txid], "outside")).hex], "outside")).vout[c.vout]!.value));
  const total = spent.reduce((a, v) => a + v, 0);
  const raw = await te.node.rpc<string>("createrawtransaction", [coins, [{ [await te.node.outsideAddress()]: (total - 0.01).toFixed(8) }]], "outside");
  await te.node.rpc("sendrawtransaction", [(await te.node.rpc<{ hex: string }>("signrawtransactionwithwallet", [raw], "outside")).hex], "outside");
  await te.mine(1);
  t.ok((await te.node.rpc<{ confirmations: number }>("gettransaction", [input.txid], "engine")).confirmations < 0, "the deposit conflicts with a block");
  const frozen = await te.engine.relay.balance(key);
  t.match(frozen, { frozen: /left the chain after it was confirmed/ }, "the user's wallet is frozen for review (its deposit was confirmed)");

  const r = await te.engine.payouts.release(batch, 5n, "its coin is gone");
  t.match(r, { status: "cancelling" }, "nothing to spend: the batch's coin is gone");
  t.equal((r as { txid?: string }).txid, undefined, "the engine made no transaction");
  const c = (await te.engine.payouts.state()).batches[batch]!.cancel!;
  t.equal(c.spentAt, await te.node.rpc<number>("getblockcount", []), "the wait counts from the conflicting block");
  await te.engine.payouts.sync();
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "cancelling", "one block deep of two");
  await te.mine(1);
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "released", "two deep: released");
  const st = await withdrawalOf(te, key, quote.id);
  t.same([st.w.status, st.reserved], ["released", 0n], "the reservation is back in the wallet, which stays frozen until an operator looks");
});

t.test("a cancellation that loses to another spend of the batch's inputs: the release waits for that spend instead, then completes", async (t) => {
  const { te, key, dest, quote, batch, b } = await stuckBatch(t, "lost", 2);
  const r = await te.engine.payouts.release(batch, 2n, "refused by the node");
  if (isRefusal(r)) throw new Error(r.message);
  // The same input spent by a transaction paying more (it replaces the cancellation), mined.
  await spendFirstInput(te, b.hex);
  await te.mine(1);
  await te.engine.payouts.sync();
  const waiting = (await te.engine.payouts.state()).batches[batch]!;
  t.equal(waiting.status, "cancelling");
  t.match(waiting.cancel, { txid: undefined, earlier: [r.txid], spentAt: Number }, "the lost cancellation is remembered; the release waits for the spend that won");
  t.match(await te.engine.payouts.release(batch, 5n, "again"), { status: "cancelling" }, "releasing again just waits");
  t.equal((await withdrawalOf(te, key, quote.id)).w.status, "reserved", "one block deep of two: still reserved");
  await te.mine(1);
  await te.engine.payouts.sync();
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "released");
  const st = await withdrawalOf(te, key, quote.id);
  t.same([st.w.status, st.available, st.reserved], ["released", 50_000_000n, 0n], "the user has it all back");
  t.equal(await received(te, dest), 0n, "never paid");
});

t.test("a stuck batch whose payout another batch paid again (the same user, amount and address) is released: that payment spends none of its coins", async (t) => {
  const te = await startTestEngine();
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  // A house float in the node's wallet, owned by no user.
  await te.node.fund(await te.node.rpc<string>("getnewaddress", ["", "bech32"], "engine"), "1");
  const key = await fundedUser(te, "again", "0.5");
  await te.mine(1);
  const dest = await te.node.outsideAddress();
  const first = await withdraw(te.engine.relay, key, dest, "0.05");
  await te.engine.payouts.flush();
  const [batch, b] = Object.entries((await te.engine.payouts.state()).batches)[0]!;
  await spendFirstInput(te, b.hex);
  await te.mine(1);
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "stuck");
  // The user withdraws the same amount to the same address again; that batch is mined.
  const second = await withdraw(te.engine.relay, key, dest, "0.05");
  await te.engine.payouts.flush();
  await te.mine(1);
  t.equal(await received(te, dest), 5_000_000n, "the second withdrawal is paid");
  const r = await te.engine.payouts.release(batch, 5n, "input spent elsewhere");
  t.match(r, { status: "cancelling" }, "not mistaken for a payment of the stuck batch");
  await te.mine(1);
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "released");
  const st = await withdrawalOf(te, key, first.quote.id);
  t.equal(st.w.status, "released", "the first withdrawal is given back");
  t.equal((await withdrawalOf(te, key, second.quote.id)).w.status, "sent", "the second stays paid");
  t.equal(await received(te, dest), 5_000_000n, "paid once in all");
});

t.test("a batch paid by a version the book did not make (a fee bump made on the node by hand) is adopted, never released", async (t) => {
  const te = await startTestEngine();
  t.teardown(() => te.stop());
  const { key, dest, quote, batch, b } = await sentBatch(te, "byhand", "0.05");
  // An operator bumps the fee with bitcoin-cli, behind the engine's back, and that version is mined.
  const byHand = await te.node.rpc<{ txid: string }>("bumpfee", [b.txid, { fee_rate: 40 }], "engine");
  await te.mine(1);
  await te.engine.payouts.sync();
  // It pays the batch's payout exactly: adopted as the batch's version, and confirmed with it (one that pays anything
  // else is not adopted, and a release is refused as "looks paid by": payout-gaps-adopt.test.ts).
  const now = (await te.engine.payouts.state()).batches[batch]!;
  t.same([now.status, now.txid], ["confirmed", byHand.txid], "the hand-made version pays its payout exactly: adopted, and confirmed with it");
  const r = await te.engine.payouts.release(batch, 5n, "looks dead");
  t.match(r, { code: "not_allowed", message: /is confirmed, not stuck/ }, "refused: the payout is paid by that transaction");
  const st = await withdrawalOf(te, key, quote.id);
  t.same([st.w.status, st.w.txid, st.reserved], ["sent", byHand.txid, 0n], "sent with that transaction: not given back");
  t.equal(await received(te, dest), 5_000_000n, "paid once, by the hand-made version");
});
