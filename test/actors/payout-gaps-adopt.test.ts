// A fee bump an operator makes on the node itself (bitcoind's bumpfee, outside the engine), on a real regtest node:
// a replacement that pays every payout of the batch exactly is adopted as the batch's new version (no hole for the
// watchdog, no pause, confirmed and settled with it); one that does not is not adopted, and operators are told its txid.
import t from "tap";
import { startTestEngine } from "../support/engine.ts";
import { received, sentBatch, withdrawalOf } from "../support/payouts.ts";
import { createLogger } from "../../src/log.ts";

type Line = { alert?: boolean; msg: string; batch?: string; txid?: string; why?: string };

function capture() {
  const lines: Line[] = [];
  const log = createLogger({ level: "warn", destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
  return { lines, log };
}

t.test("an operator's bumpfee on the node of a batch in the mempool: adopted as the batch's new version; no hole, not paused; confirmed with it, paid once", async (t) => {
  const { lines, log } = capture();
  // A bump's fee beyond the users' quotes is the service's (as with the engine's own bump): a small difference the
  // watchdog tolerates here, as a service's float covers it; the batch's whole amount would not be.
  const te = await startTestEngine({ watchdog: { toleranceSats: "10000" } }, { log });
  t.teardown(() => te.stop());
  const { key, dest, quote, batch, b: sent } = await sentBatch(te, "byhand", "0.05");
  t.equal(sent.status, "broadcast");
  const bumped = await te.node.rpc<{ txid: string; fee: number }>("bumpfee", [sent.txid, { fee_rate: 40 }], "engine");
  t.not(bumped.txid, sent.txid);
  await te.engine.payouts.sync();
  const now = (await te.engine.payouts.state()).batches[batch]!;
  t.same([now.status, now.txid, now.replaced], ["broadcast", bumped.txid, [sent.txid]], "the node's replacement is the batch's transaction now; the one it replaced is kept");
  t.equal(now.fee, BigInt(Math.round(bumped.fee * 1e8)), "with its fee");
  const adopted = lines.filter((l) => l.batch === batch && /adopted/.test(l.msg));
  t.equal(adopted.length, 1);
  t.match(adopted[0], { txid: bumped.txid, msg: /fee bump made on the node outside the engine .* adopted/ }, "a log line says so");
  t.same(lines.filter((l) => l.alert && l.batch === batch), [], "no alert: it is not stuck");
  await te.restart();
  t.same((await te.engine.payouts.state()).batches[batch], now, "the journal replays to the same batch");
  const report = await te.engine.watchdog();
  t.ok(report?.ok, `no hole: ${report?.reason ?? "ok"}`);
  t.equal(te.engine.payouts.paused, undefined, "payouts are not paused");
  const charged = (await te.engine.payouts.state()).payouts[quote.id]!.fee!;
  t.equal((await te.engine.solvency()).surplus, -(now.fee - charged), "the books differ from the node by the bump's fee beyond what the user was charged, no more");
  await te.mine(1);
  await te.engine.payouts.sync();
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "confirmed");
  const { w } = await withdrawalOf(te, key, quote.id);
  t.same([w.status, w.txid], ["sent", bumped.txid], "the user's withdrawal is sent, with the node's replacement");
  t.ok(w.fee! <= quote.fee, `charged ${w.fee}, within the quote (${quote.fee}); the rest of the bump is the service's`);
  t.equal(await received(te, dest), 5_000_000n, "paid once");
  t.equal((await te.engine.solvency()).surplus, -(now.fee - w.fee!), "confirmed: the same difference, the service's part of the fee");
});

t.test("a replacement made on the node that does not pay the batch's payouts: not adopted, operators told its txid once; the batch stays stuck", async (t) => {
  const { lines, log } = capture();
  const te = await startTestEngine({}, { log });
  t.teardown(() => te.stop());
  const { batch, b: sent } = await sentBatch(te, "other", "0.05");
  // bumpfee with other outputs: the payout's amount to somebody else.
  const elsewhere = await te.node.outsideAddress();
  const bumped = await te.node.rpc<{ txid: string }>("bumpfee", [sent.txid, { fee_rate: 40, outputs: [{ [elsewhere]: 0.05 }] }], "engine");
  await te.engine.payouts.sync();
  await te.engine.payouts.sync();
  const now = (await te.engine.payouts.state()).batches[batch]!;
  t.same([now.status, now.txid], ["stuck", sent.txid], "not adopted: the batch is as it was (stuck: the node refuses to send it again)");
  const told = lines.filter((l) => l.alert && l.batch === batch && /not adopted/.test(l.msg));
  t.equal(told.length, 1, "one alert");
  t.match(told[0], { txid: bumped.txid, why: /does not pay each of the batch's payouts exactly/ }, "it names the replacement");
  t.same(lines.filter((l) => l.batch === batch && /not adopted.*still so/.test(l.msg)), [], "not repeated at the next sync");
});

t.test("an operator's bumpfee on the node of a batch dropped from the mempool (waiting for the fee floor), mined before the engine looks: adopted and confirmed; paid once", async (t) => {
  const { lines, log } = capture();
  const te = await startTestEngine({ watchdog: { toleranceSats: "20000" } }, { log });
  t.teardown(() => te.stop());
  const { key, dest, quote, batch, b: sent } = await sentBatch(te, "dropped", "0.05");
  // Dropped: the node restarts with a fee floor above the batch's and without its mempool (as payout-stuck.test.ts does).
  await te.node.flush();
  await te.node.restart(["-minrelaytxfee=0.0003", "-persistmempool=0"]);
  await te.engine.payouts.sync();
  // Refused for its fee alone: it waits, broadcast (payout-rereview-evict.test.ts).
  t.match((await te.engine.payouts.state()).batches[batch], { status: "broadcast" });
  const bumped = await te.node.rpc<{ txid: string }>("bumpfee", [sent.txid, { fee_rate: 60 }], "engine");
  await te.mine(1);
  const now = (await te.engine.payouts.state()).batches[batch]!;
  // The block's sync sends the original again, refused (its coin is spent in the block), adopts the replacement, and
  // confirms the batch with it (one confirmation is the target here).
  t.same([now.status, now.txid, now.replaced], ["confirmed", bumped.txid, [sent.txid]], "the replacement in a block is the batch's transaction now");
  t.match(lines.filter((l) => l.batch === batch && /adopted/.test(l.msg)), [{ txid: bumped.txid }], "a log line says it was adopted");
  await te.engine.payouts.sync();
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "confirmed");
  const { w } = await withdrawalOf(te, key, quote.id);
  t.same([w.status, w.txid], ["sent", bumped.txid]);
  t.equal(await received(te, dest), 5_000_000n, "paid once");
  const report = await te.engine.watchdog();
  t.ok(report?.ok, `no hole: ${report?.reason ?? "ok"}`);
  t.equal(report?.surplus, -(now.fee - w.fee!), "the books differ by the service's part of the bump's fee, no more");
  t.equal(te.engine.payouts.paused, undefined, "payouts are not paused");
});

t.test("a version made by hand that pays the payout and someone else too: not adopted, operators told; mined, the batch is never released", async (t) => {
  const { lines, log } = capture();
  const te = await startTestEngine({}, { log });
  t.teardown(() => te.stop());
  const { key, dest, quote, batch, b } = await sentBatch(te, "extra", "0.05");
  // The same coins, the payout's output as it was, an output to somebody else, the rest to the node's wallet.
  const vin = (await te.node.rpc<{ vin: Array<{ txid: string; vout: number }> }>("decoderawtransaction", [b.hex], "engine")).vin;
  let total = 0;
  for (const i of vin) {
    const prev = await te.node.rpc<{ hex: string }>("gettransaction", [i.txid], "engine");
    total += (await te.node.rpc<{ vout: Array<{ value: number }> }>("decoderawtransaction", [prev.hex], "engine")).vout[i.vout]!.value;
  }
  const change = await te.node.rpc<string>("getrawchangeaddress", [], "engine");
  const outputs = [{ [dest]: "0.05000000" }, { [await te.node.outsideAddress()]: "0.00100000" }, { [change]: (total - 0.05 - 0.001 - 0.0002).toFixed(8) }];
  const raw = await te.node.rpc<string>("createrawtransaction", [vin, outputs], "engine");
  const { hex } = await te.node.rpc<{ hex: string }>("signrawtransactionwithwallet", [raw], "engine");
  const byHand = await te.node.rpc<string>("sendrawtransaction", [hex], "engine");
  await te.mine(1);
  await te.engine.payouts.sync();
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "stuck", "not adopted: its own transaction cannot be sent any more");
  const told = lines.filter((l) => l.alert && l.batch === batch && /not adopted/.test(l.msg));
  t.equal(told.length, 1, "one alert");
  t.match(told[0], { txid: byHand, why: /does not pay each of the batch's payouts exactly/ }, "operators are told which transaction");
  const r = await te.engine.payouts.release(batch, 5n, "looks dead");
  t.match(r, { code: "not_allowed", message: new RegExp(`looks paid by ${byHand}`) }, "refused: the payout is paid by that transaction");
  const st = await withdrawalOf(te, key, quote.id);
  t.same([st.w.status, st.reserved > 0n], ["broadcast", true], "the user's withdrawal is not given back");
  t.equal(await received(te, dest), 5_000_000n, "paid once, by the hand-made version");
});
