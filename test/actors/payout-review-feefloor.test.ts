// A full mempool whose minimum fee is above withdrawals.maxFeeRateSatVb, on a real regtest node (a small -maxmempool
// filled): a flush builds nothing that the mempool refuses. Before, each batch was journalled, marked stuck and never
// sent again, the next built from the same coins, and so on through the queue (each needing an operator's release, paid
// by the house). Now nothing is journalled, the node's wallet holds nothing of it, operators are alerted once, the
// payouts stay queued, and they go out, each paid once, when the mempool takes the rate again.
import t from "tap";
import { randomBytes } from "node:crypto";
import { bech32 } from "@scure/base";
import { startRegtest } from "../../src/regtest/harness.ts";
import { createLogger } from "../../src/log.ts";
import { isRefusal } from "../../src/domain/refusals.ts";
import { startTestEngine } from "../support/engine.ts";
import { fundedUser, received, withdraw, withdrawalOf } from "../support/payouts.ts";
import { payoutStatus } from "./payout-review-status.ts";

t.test("the mempool's minimum fee above the fee cap: nothing journalled or kept by the node, one alert, payouts queued; paid once when the mempool takes them", async (t) => {
  const lines: Array<{ alert?: boolean; msg: string; why?: string }> = [];
  const log = createLogger({ level: "warn", destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
  const node = await startRegtest({ extraArgs: ["-maxmempool=5"] });
  const te = await startTestEngine({
    deposits: { confirmations: 1 },
    withdrawals: { maxFeeRateSatVb: 3, fallbackFeeRateSatVb: 2, batchWindowMs: 600_000, maxOutputsPerBatch: 2 },
  }, { node, log });
  t.teardown(async () => {
    await te.stop();
    await node.stop();
  });
  await node.ensureMatureCoins();
  const users: string[] = [];
  for (let i = 0; i < 5; i++) users.push(await fundedUser(te, `floor${i}`, "0.01"));
  // Many confirmed coins in a wallet of their own for the fillers.
  await node.rpc("createwallet", ["filler", false, false, "", false, true, false]);
  const split: Record<string, number> = {};
  for (let i = 0; i < 120; i++) split[await node.rpc<string>("getnewaddress", ["", "bech32"], "filler")] = 1;
  await node.rpc("send", [split, null, "unset", 5], "outside");
  await te.mine(1);
  // Fill the 5 MB mempool at 10 sat/vB (2,000 outputs each, to addresses nobody has) until its minimum fee rises.
  const nobody = () => bech32.encode("bcrt", [0, ...bech32.toWords(randomBytes(20))]);
  let info = await node.rpc<{ mempoolminfee: number }>("getmempoolinfo");
  for (let n = 0; info.mempoolminfee <= 0.00001 && n < 150; n++) {
    const outs: Record<string, number> = {};
    for (let i = 0; i < 2000; i++) outs[nobody()] = 0.00001;
    await node.rpc("send", [outs, null, "unset", 10, { minconf: 1 }], "filler");
    info = await node.rpc("getmempoolinfo");
  }
  t.ok(info.mempoolminfee > 0.00003, `the mempool's minimum fee (${info.mempoolminfee} BTC/kvB) is above the 3 sat/vB cap`);

  const dests: string[] = [];
  const ids: string[] = [];
  for (const u of users) {
    dests.push(await node.outsideAddress());
    ids.push((await withdraw(te.engine.relay, u, dests.at(-1)!, "0.001")).quote.id);
  }
  const before = (await te.engine.payouts.state()).seq;
  for (let i = 0; i < 2; i++) t.same(await te.engine.payouts.flush(), { batches: 0 }, `flush ${i + 1}: nothing built`);
  const s = await te.engine.payouts.state();
  t.same(Object.keys(s.batches), [], "no batch journalled (none stuck)");
  t.equal(s.seq, before, "no batch number taken");
  t.same(ids.map((id) => s.payouts[id]!.status), ids.map(() => "queued"), "every payout still queued");
  t.same(await node.rpc("listlockunspent", [], "engine"), [], "the node's wallet locked no coin");
  const sends = (await node.rpc<Array<{ category: string }>>("listtransactions", ["*", 1000], "engine")).filter((x) => x.category === "send");
  t.same(sends, [], "and has no transaction of the dropped batches");
  for (const u of users) t.equal((await withdrawalOf(te, u, ids[users.indexOf(u)]!)).w.status, "reserved", "the user's withdrawal is still reserved");
  const alerts = lines.filter((l) => l.alert);
  t.equal(alerts.length, 1, "one alert line");
  t.match(alerts, [{ msg: /^payouts wait: the node's mempool refuses a batch at the highest fee rate allowed .*Raise withdrawals\.maxFeeRateSatVb/, why: /mempool min fee not met/ }], "one alert, over two flushes: what and what to do");
  const status = await payoutStatus(te);
  t.match(status, { queued: 5, failedFlushes: 0, feeWait: { why: /mempool min fee not met/, since: Number } }, "the status says what the payouts wait for");
  t.ok((status.oldestQueuedAgeS ?? -1) >= 0, "and how long the oldest has waited");

  // The spike passes: the node starts again with an empty mempool, its minimum fee back to the relay floor.
  await node.flush();
  await node.restart(["-persistmempool=0"]);
  const r = await te.engine.payouts.flush();
  if (isRefusal(r)) throw new Error(r.message);
  t.equal(r.batches, 3, "the five payouts go out, two outputs a batch");
  t.same(Object.values((await te.engine.payouts.state()).batches).map((b) => b.status), ["broadcast", "broadcast", "broadcast"], "all three in the mempool");
  t.equal((await payoutStatus(te)).feeWait, null, "no longer waiting");
  await te.mine(1);
  await te.engine.payouts.sync();
  for (let i = 0; i < users.length; i++) {
    t.equal((await withdrawalOf(te, users[i]!, ids[i]!)).w.status, "sent", `${users[i]}'s withdrawal is sent`);
    t.equal(await received(te, dests[i]!), 100_000n, `${users[i]} paid once`);
  }
  t.ok((await te.engine.watchdog())?.ok, "the books match the node");
});
