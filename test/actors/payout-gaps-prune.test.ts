// Released payouts leave the payout book beyond the retained number as confirmed ones do, on a real regtest node: one
// given back while queued at once, one of a released batch once its cancellation is 100 blocks deep (until then a deep
// reorg that mines the batch is still looked for). A late re-submission of either is answered "released", never paid.
import t from "tap";
import { startTestEngine } from "../support/engine.ts";
import { isRefusal } from "../../src/domain/refusals.ts";
import { FinishedPayouts } from "../../src/actors/payout.ts";
import { received, sentBatch, withdraw, withdrawalOf } from "../support/payouts.ts";

t.test("released payouts beyond the retained number leave the book (a released batch's once its cancellation is deep); a late re-submission is answered released, never paid", async (t) => {
  // The fallback fee rate is above what the node's mempool takes (10,000 sat/vB): the first batch is refused at build.
  // The release's cancellation fee is the service's: a difference the watchdog tolerates here (a service's float).
  const te = await startTestEngine({
    deposits: { confirmations: 1 }, withdrawals: { retainFinishedPayouts: 1, fallbackFeeRateSatVb: 20_000, maxFeeRateSatVb: 50_000 }, watchdog: { toleranceSats: "10000" },
  });
  t.teardown(() => te.stop());
  const { key, dest, quote, batch, b } = await sentBatch(te, "gone", "0.05");
  t.match(b, { status: "stuck", reason: /max-fee-exceeded/ });
  // Fees fall back to normal (regtest has no fee market to show that: the node's estimate is set here).
  const node = te.engine.node as unknown as { estimateFeeRate(target: number): Promise<bigint> };
  node.estimateFeeRate = async () => 20n;

  // A payout given back while queued (payouts paused meanwhile): released, in no batch.
  await te.engine.pausePayouts("a test holds the queue", "alice");
  const dest2 = await te.node.outsideAddress();
  const held = (await withdraw(te.engine.relay, key, dest2, "0.01")).quote;
  t.match(await te.engine.unqueuePayout(held.id, "alice"), { id: held.id, status: "released" });
  t.match(await te.engine.resumePayouts("alice"), { resumed: true });

  const r = await te.engine.payouts.release(batch, 5n, "refused by the node's mempool");
  if (isRefusal(r)) throw new Error(r.message);
  await te.mine(1);
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "released");
  t.equal((await withdrawalOf(te, key, quote.id)).w.status, "released");

  // A newer finished payout: a confirmed one. With one retained, both released ones are beyond the limit.
  const dest3 = await te.node.outsideAddress();
  const paid = (await withdraw(te.engine.relay, key, dest3, "0.02")).quote;
  await te.engine.payouts.flush();
  await te.mine(1);
  let book = await te.engine.payouts.state();
  t.equal(book.payouts[paid.id]?.status, "confirmed");
  t.notOk(book.payouts[held.id], "the one given back while queued has left the book");
  t.equal(book.payouts[quote.id]?.status, "released", "the released batch's payout stays while its cancellation is shallow (2 blocks)");
  t.ok(book.batches[batch], "and its batch, for the deep-reorg alert");

  await te.mine(99);
  book = await te.engine.payouts.state();
  t.notOk(book.payouts[quote.id], "its cancellation 100 blocks deep: the released payout has left the book");
  t.notOk(book.batches[batch], "with its batch");
  t.same(Object.keys(book.payouts), [paid.id], "the newest finished one stays");
  const finished = new FinishedPayouts(te.engine.storage.store);
  t.ok(finished.paidBy(r.txid!), "its cancellation is remembered as the book's own spend (a restore's reconciliation asks)");

  const late = async () => {
    for (const id of [quote.id, held.id]) {
      const { w } = await withdrawalOf(te, key, id);
      t.equal(w.status, "released");
      t.same(await te.engine.payouts.submit(key, id, { ...w, status: "reserved" }), { id, status: "released" }, "a late re-submission is answered from the store's record: released");
      t.notOk((await te.engine.payouts.state()).payouts[id], "not queued again");
    }
    t.same(await te.engine.payouts.flush(), { batches: 0 }, "nothing to pay");
  };
  await late();
  await te.restart();
  await late();
  await te.mine(1);
  t.equal(await received(te, dest), 0n, "the released batch's destination never paid");
  t.equal(await received(te, dest2), 0n, "nor the one given back");
  t.equal(await received(te, dest3), 2_000_000n, "the confirmed one paid once");
  const st = await withdrawalOf(te, key, paid.id);
  t.equal(st.available, 50_000_000n - 2_000_000n - st.w.fee!, "the user has all but the paid withdrawal and its fee");
  t.equal((await te.engine.solvency()).surplus, -r.fee!, "the books differ from the node by the cancellation's fee alone");
});
