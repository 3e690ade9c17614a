// A batch already recorded and broadcast that the node's mempool then refuses for its fee alone (the node restarted with
// a higher -minrelaytxfee: its mempool no longer holds it, and sending it again is refused), on a real regtest node.
// It was marked stuck ("the node's wallet has it: bump its fee"), never sent again, while the fee-wait alert for the
// next payout said "raise the cap or wait". Now it stays broadcast, under the fee wait (the status names it), is sent
// again at every block, and goes out by itself once the floor falls back: no operator, each user paid once. The books
// still match the node meanwhile (its change is counted as the node's: the wallet does not, out of the mempool).
import t from "tap";
import { startRegtest } from "../../src/regtest/harness.ts";
import { createLogger } from "../../src/log.ts";
import { isRefusal } from "../../src/domain/refusals.ts";
import { startTestEngine } from "../support/engine.ts";
import { fundedUser, received, withdraw, withdrawalOf } from "../support/payouts.ts";
import { payoutStatus } from "./payout-review-status.ts";

t.test("a broadcast batch the mempool refuses for its fee: kept broadcast, in the fee wait, sent at every block, out once the floor falls", async (t) => {
  const lines: Array<{ alert?: boolean; msg: string; why?: string; batch?: string }> = [];
  const log = createLogger({ level: "warn", destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
  const node = await startRegtest();
  const te = await startTestEngine({ deposits: { confirmations: 1 }, withdrawals: { maxFeeRateSatVb: 3, fallbackFeeRateSatVb: 2, batchWindowMs: 600_000 } }, { node, log });
  t.teardown(async () => {
    await te.stop();
    await node.stop();
  });
  await node.ensureMatureCoins();
  const a = await fundedUser(te, "evictA", "0.01");
  const b = await fundedUser(te, "evictB", "0.01");
  await te.mine(1);
  const destA = await node.outsideAddress();
  const qa = (await withdraw(te.engine.relay, a, destA, "0.001")).quote;
  t.same(await te.engine.payouts.flush(), { batches: 1 }, "A's batch goes out at 2 sat/vB");
  const [bid, sent] = Object.entries((await te.engine.payouts.state()).batches)[0]!;
  t.equal(sent.status, "broadcast");

  // The node comes back with a relay floor of 5 sat/vB: the batch is no longer in its mempool.
  await node.flush();
  await node.restart(["-minrelaytxfee=0.00005"]);
  await t.rejects(node.rpc("getmempoolentry", [sent.txid]), "the batch is not in the node's mempool");
  let sends = 0;
  const raw = te.engine.node.rawCall.bind(te.engine.node);
  (te.engine.node as { rawCall: typeof raw }).rawCall = <T>(method: string, params: unknown[]) => {
    if (method === "sendrawtransaction" && params[0] === sent.hex) sends++;
    return raw<T>(method, params);
  };
  const mark = lines.length;
  t.match(await te.engine.payouts.sync(), { rebroadcast: 0 }, "sync: sent again, refused");
  let batch = (await te.engine.payouts.state()).batches[bid]!;
  t.equal(batch.status, "broadcast", "not marked stuck: it stays broadcast");
  t.match(await payoutStatus(te), { feeWait: { batches: [bid], why: /min relay fee not met/ } }, "the status names it under the fee wait");
  t.equal((await withdrawalOf(te, a, qa.id)).w.status, "broadcast", "A's withdrawal is still broadcast");
  t.ok((await te.engine.watchdog())?.ok, "the books match the node (the batch's change, which the node's wallet does not count, is counted)");

  // B's payout meanwhile: the floor is above the cap, it waits queued.
  const destB = await node.outsideAddress();
  const qb = (await withdraw(te.engine.relay, b, destB, "0.001")).quote;
  t.same(await te.engine.payouts.flush(), { batches: 0 }, "B's payout is not built");
  let s = await te.engine.payouts.state();
  t.equal(s.payouts[qb.id]!.status, "queued", "B's payout waits queued");
  t.same(Object.keys(s.batches), [bid], "no batch for it");
  const alerts = lines.slice(mark).filter((l) => l.alert);
  t.equal(alerts.filter((l) => /payout batch stuck/.test(l.msg)).length, 0, "no stuck alert");
  t.match(alerts, [
    { msg: /^a payout batch already signed is refused by the node's mempool for its fee alone: .*sent again at every block/, batch: bid, why: /min relay fee not met/ },
    { msg: /^payouts wait: /, why: /min relay fee not met/ },
  ], "one alert for the batch, one for the queue");
  t.equal(alerts.length, 2, "and no other");

  // Blocks while the floor stays: the batch is sent at each, nothing more is alerted.
  const m2 = lines.length;
  const before = sends;
  for (let i = 0; i < 3; i++) await te.engine.payouts.sync();
  t.equal(sends - before, 3, "sent again at each of three syncs");
  t.equal(lines.slice(m2).filter((l) => l.alert).length, 0, "no new alert");
  t.equal((await te.engine.payouts.state()).batches[bid]!.status, "broadcast", "still broadcast");

  // The floor falls back: the same batch goes out, then B's.
  await node.flush();
  await node.restart();
  t.match(await te.engine.payouts.sync(), { rebroadcast: 1 }, "the batch is taken again");
  t.ok(await node.rpc("getmempoolentry", [sent.txid]), "in the node's mempool");
  const r = await te.engine.payouts.flush();
  if (isRefusal(r)) throw new Error(r.message);
  t.equal(r.batches, 1, "B's payout is built");
  t.equal((await payoutStatus(te)).feeWait, null, "nothing waits for fees");
  await te.mine(1);
  await te.engine.payouts.sync();
  s = await te.engine.payouts.state();
  batch = s.batches[bid]!;
  t.same([batch.status, batch.txid], ["confirmed", sent.txid], "A's batch is confirmed, the very transaction first sent");
  t.equal((await withdrawalOf(te, a, qa.id)).w.status, "sent");
  t.equal((await withdrawalOf(te, b, qb.id)).w.status, "sent");
  t.equal(await received(te, destA), 100_000n, "A paid once");
  t.equal(await received(te, destB), 100_000n, "B paid once");
  t.ok((await te.engine.watchdog())?.ok, "the books match the node");
});
