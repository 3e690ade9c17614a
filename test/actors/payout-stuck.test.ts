// Stuck payout batches that are not dead, on a real regtest node: one back in the node's mempool is followed again
// (never a hole that pauses every payout with no way out), and one whose coin a later batch reused is released
// (that batch's payment of the same user's same amount is not mistaken for a version of it).
import t from "tap";
import { startTestEngine, type TestEngine } from "../support/engine.ts";
import { isRefusal } from "../../src/domain/refusals.ts";
import { crashingEngine, received, sentBatch, withdraw, withdrawalOf } from "../support/payouts.ts";

/** Whether the node's mempool holds the transaction. */
const pooled = (te: TestEngine, txid: string) => te.node.rpc("getmempoolentry", [txid]).then(() => true, () => false);

t.test("a dropped batch (refused for its fee: it waits, broadcast) that the node's wallet puts back in the mempool: still broadcast, no hole, payouts not paused; then confirmed, paid once", async (t) => {
  const te = await startTestEngine();
  t.teardown(() => te.stop());
  const { key, dest, quote, batch, b: sent } = await sentBatch(te, "back", "0.05");
  // Dropped: the node restarts with a fee floor above the batch's and without its mempool (as payouts.test.ts does).
  await te.node.flush();
  await te.node.restart(["-minrelaytxfee=0.0003", "-persistmempool=0"]);
  await te.engine.payouts.sync();
  t.match((await te.engine.payouts.state()).batches[batch], { status: "broadcast" });
  t.same((await te.engine.watchdog())?.node.strandedBatches, [batch], "its change is counted as stranded meanwhile");
  // The fee floor back to normal: at load, the node's wallet resubmits its own transactions, this one among them.
  await te.node.flush();
  await te.node.restart(["-persistmempool=0"]);
  t.ok(await pooled(te, sent.txid), "the batch's transaction is back in the node's mempool");
  t.notMatch(await te.engine.payouts.sync(), { refused: true }, "the node answers");
  const back = (await te.engine.payouts.state()).batches[batch]!;
  t.same([back.status, back.txid, back.replaced], ["broadcast", sent.txid, []], "broadcast again, the same transaction");
  const report = await te.engine.watchdog();
  t.ok(report?.ok, `no hole: ${report?.reason ?? "ok"}`);
  t.same(report?.node.strandedBatches, [], "nothing stranded: the mempool holds its coins");
  t.equal(te.engine.payouts.paused, undefined, "payouts are not paused");
  t.equal((await withdrawalOf(te, key, quote.id)).w.status, "broadcast");
  await te.mine(1);
  await te.engine.payouts.sync();
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "confirmed");
  const { w } = await withdrawalOf(te, key, quote.id);
  t.same([w.status, w.txid], ["sent", sent.txid], "the user's withdrawal is sent, with that transaction");
  t.equal(await received(te, dest), 5_000_000n, "paid once");
  t.ok((await te.engine.watchdog())?.ok, "the books still match the node");
});

t.test("a fee bump the node refuses while the version it replaced is in the mempool: that version is followed again; confirmed with it, charged its fee", async (t) => {
  const te = await startTestEngine();
  t.teardown(() => te.stop());
  const { key, dest, quote, batch, b: sent } = await sentBatch(te, "overbid", "0.05");
  t.equal(sent.status, "broadcast");
  // A rate above what sendrawtransaction takes (0.1 BTC/kvB): the replacement is signed and journalled, then refused.
  const r = await te.engine.payouts.bump(batch, 20_000n);
  t.match(r, { code: "not_allowed", message: /refused the replacement/ });
  const stuck = (await te.engine.payouts.state()).batches[batch]!;
  t.equal(stuck.status, "stuck");
  const refused = stuck.txid;
  t.not(refused, sent.txid, "the book follows the refused replacement");
  t.ok(await pooled(te, sent.txid), "while the original is still in the node's mempool");
  t.notMatch(await te.engine.payouts.sync(), { refused: true }, "the node answers");
  const back = (await te.engine.payouts.state()).batches[batch]!;
  t.same([back.status, back.txid, back.fee, back.replaced], ["broadcast", sent.txid, sent.fee, [refused]], "the original followed again, its fee; the refused one kept among the versions");
  t.equal(back.hex, sent.hex, "its bytes, as the node has them");
  await te.restart();
  t.same((await te.engine.payouts.state()).batches[batch], back, "the journal replays to the same batch");
  const report = await te.engine.watchdog();
  t.ok(report?.ok, `no hole: ${report?.reason ?? "ok"}`);
  t.equal(te.engine.payouts.paused, undefined, "payouts are not paused");
  await te.mine(1);
  await te.engine.payouts.sync();
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "confirmed");
  const { w } = await withdrawalOf(te, key, quote.id);
  t.same([w.status, w.txid], ["sent", sent.txid]);
  t.ok(w.fee! <= quote.fee && w.fee! <= sent.fee, `charged ${w.fee}: the original's fee (${sent.fee}), within the quote (${quote.fee})`);
  t.equal(await received(te, dest), 5_000_000n, "paid once");
  t.ok((await te.engine.watchdog())?.ok, "the books still match the node");
});

t.test("a stuck batch the node never took, whose coin the same user's next withdrawal (same address, same amount) reused and got mined: released, that payment untouched", async (t) => {
  // The fallback fee rate is above what the node's mempool takes (10,000 sat/vB): the first batch is refused at build.
  const { te } = await crashingEngine({ deposits: { confirmations: 1 }, withdrawals: { fallbackFeeRateSatVb: 20_000, maxFeeRateSatVb: 50_000 } });
  t.teardown(() => te.stop());
  const { key, dest, quote, batch, b: first } = await sentBatch(te, "reused", "0.05");
  t.match(first, { status: "stuck", reason: /max-fee-exceeded/ }, "refused at build: its coin stays free");
  // Fees fall back to normal (regtest has no fee market to show that: the node's estimate is set here).
  const node = te.engine.node as unknown as { estimateFeeRate(target: number): Promise<bigint> };
  node.estimateFeeRate = async () => 20n;
  const second = await withdraw(te.engine.relay, key, dest, "0.05");
  await te.engine.payouts.flush();
  const [later, b2] = Object.entries((await te.engine.payouts.state()).batches).find(([id]) => id !== batch)!;
  const spends = async (hex: string) => (await te.node.rpc<{ vin: Array<{ txid: string; vout: number }> }>("decoderawtransaction", [hex], "engine")).vin.map((i) => `${i.txid}:${i.vout}`);
  const reused = (await spends(b2.hex)).filter((i) => first.inputs?.[first.txid]?.includes(i));
  t.ok(reused.length > 0, "the later batch spends a coin of the stuck one");
  await te.mine(1);
  await te.engine.payouts.sync();
  t.equal((await te.engine.payouts.state()).batches[later]!.status, "confirmed");
  const r = await te.engine.payouts.release(batch, 5n, "refused at build; its coin went to a later batch");
  if (isRefusal(r)) throw new Error(`the release was refused: ${r.message}`);
  t.match(r, { status: "cancelling" }, "not mistaken for a payment of the stuck batch");
  await te.mine(1);
  await te.engine.payouts.sync();
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "released");
  const st = await withdrawalOf(te, key, quote.id);
  const w2 = (await withdrawalOf(te, key, second.quote.id)).w;
  t.same([w2.status, w2.txid], ["sent", b2.txid], "the second withdrawal stays paid");
  t.same([st.w.status, st.reserved], ["released", 0n], "the first withdrawal is given back: nothing reserved any more");
  t.equal(st.available, 50_000_000n - 5_000_000n - w2.fee!, "available again: all but the second withdrawal and its fee");
  t.equal((await te.engine.payouts.state()).batches[later]!.status, "confirmed", "its batch untouched");
  t.equal(await received(te, dest), 5_000_000n, "paid once in all");
});
