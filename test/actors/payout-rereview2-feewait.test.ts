// The fee wait of recorded batches, re-reviewed, on a real regtest node and a real store.
// 1. A batch recorded but never sent (a crash between recording and sending), refused by the mempool for its fee
//    after the restart, waited "signed" though the node's wallet never took it: its coin looked free to the wallet, the
//    next flush spent it in another batch, the waiting one could never go out, and the watchdog counted its payout as
//    in flight while its coin still stood in the wallet. Now it is stuck, "release it", as before the fee wait existed.
// 2. A fee bump below the node's minimum failed with psbtbumpfee's own words (a total in BTC); now a refusal names the
//    node's minimum fee rate, and nothing changes.
// 3. Failed flushes alerted once an hour across recoveries: a new lasting failure just after a blip went unpaged.
//    A failure for another reason than the one last alerted is alerted at once.
import t from "tap";
import { startRegtest } from "../../src/regtest/harness.ts";
import { createLogger } from "../../src/log.ts";
import { startTestEngine } from "../support/engine.ts";
import { crashingEngine, fundedUser, withdraw } from "../support/payouts.ts";
import { payoutStatus } from "./payout-review-status.ts";

type Line = { alert?: boolean; msg: string; why?: string; batch?: string; reason?: string };

t.test("a batch recorded, never sent, then refused for its fee: stuck, release it; not a wait its coins are free for", async (t) => {
  const lines: Line[] = [];
  const log = createLogger({ level: "warn", destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
  const node = await startRegtest();
  const { te, crash } = await crashingEngine({ deposits: { confirmations: 1 }, withdrawals: { maxFeeRateSatVb: 10, fallbackFeeRateSatVb: 2, batchWindowMs: 600_000 } }, { node, log });
  t.teardown(async () => {
    await te.stop();
    await node.stop();
  });
  await node.ensureMatureCoins();
  const a = await fundedUser(te, "neverSent", "0.01");
  await te.mine(1);
  const dest = await node.outsideAddress();
  crash.at = "recorded";
  const q = (await withdraw(te.engine.relay, a, dest, "0.001")).quote;
  await te.engine.payouts.flush().catch(() => undefined);
  t.equal(crash.hits, 1, "the engine crashed between recording the batch and sending it");
  // The node comes back with a relay floor (3 sat/vB) above the batch's 2 sat/vB.
  await node.flush();
  await node.restart(["-minrelaytxfee=0.00003"]);
  await te.restart();
  await te.engine.payouts.sync();
  const [bid, b] = Object.entries((await te.engine.payouts.state()).batches)[0]!;
  await t.rejects(node.rpc("gettransaction", [b.txid]), "the node's wallet never took it");
  t.equal(b.status, "stuck", "stuck, not waiting signed");
  t.match(b.reason, /min relay fee not met.*the node's wallet never had this version: release it/, "the reason says release it");
  t.notOk((await payoutStatus(te)).feeWait?.batches.includes(bid), "not under the fee wait");
  t.equal((await te.engine.payouts.state()).payouts[q.id]!.status, "stuck", "its payout is not in flight");
  const wd = await te.engine.watchdog();
  t.equal(wd?.liabilities.inFlightPayouts, 0n, "the watchdog counts nothing in flight for it");
  t.ok(wd?.ok, "the books match the node");
  t.match(lines.filter((l) => l.alert && l.batch === bid), [{ msg: /payout batch stuck/ }], "operators are told it is stuck");
  t.notOk(lines.some((l) => l.alert && /refused by the node's mempool for its fee alone/.test(l.msg)), "no fee-wait alert for it");
  t.match(await te.engine.payouts.release(bid, 3n, "never sent"), { batch: bid }, "it can be released");
});

t.test("a fee bump below the node's minimum: refused naming the minimum fee rate, nothing changed", async (t) => {
  const node = await startRegtest();
  const te = await startTestEngine({ deposits: { confirmations: 1 }, withdrawals: { maxFeeRateSatVb: 3, fallbackFeeRateSatVb: 2, batchWindowMs: 600_000 } }, { node });
  t.teardown(async () => {
    await te.stop();
    await node.stop();
  });
  await node.ensureMatureCoins();
  const a = await fundedUser(te, "bumpLow", "0.01");
  await te.mine(1);
  await withdraw(te.engine.relay, a, await node.outsideAddress(), "0.001");
  t.same(await te.engine.payouts.flush(), { batches: 1 });
  const [bid, sent] = Object.entries((await te.engine.payouts.state()).batches)[0]!;
  await node.flush();
  await node.restart(["-minrelaytxfee=0.00005"]);
  await te.engine.payouts.sync();
  const r = await te.engine.payouts.bump(bid, 4n);
  t.match(r, { refused: true, code: "bad_input", message: /too low to replace it \(Insufficient total fee.*the node's minimum fee rate, 5 sat\/vB now \(getmempoolinfo: minrelaytxfee\)\. Nothing was changed/ }, "the refusal names the node's minimum");
  const after = (await te.engine.payouts.state()).batches[bid]!;
  t.same([after.status, after.txid, after.replaced.length], ["broadcast", sent.txid, 0], "nothing changed");
});

t.test("a blip, then a failure for another reason: both paged; the same reason again within the hour is a warning", async (t) => {
  const lines: Line[] = [];
  const log = createLogger({ level: "warn", destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
  const te = await startTestEngine({ deposits: { confirmations: 1 }, withdrawals: { batchWindowMs: 600_000 } }, { log });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const key = await fundedUser(te, "blip", "0.01");
  await te.mine(1);
  let fail: string | undefined;
  const raw = te.engine.node.rawCall.bind(te.engine.node);
  (te.engine.node as { rawCall: typeof raw }).rawCall = <T>(method: string, params: unknown[]) => {
    if (method === "walletcreatefundedpsbt" && fail) return Promise.reject(Object.assign(new Error(fail), { code: -13 }));
    return raw<T>(method, params);
  };
  await withdraw(te.engine.relay, key, await te.node.outsideAddress(), "0.001");
  const mark = lines.length;
  fail = "walletcreatefundedpsbt failed: timed out after 5000 ms";
  t.match(await te.engine.payouts.flush(), { code: "node_unavailable" }, "a blip");
  fail = undefined;
  t.same(await te.engine.payouts.flush(), { batches: 1 }, "the next flush runs: the blip is over");
  t.match(await payoutStatus(te), { failedFlushes: 0 });
  await withdraw(te.engine.relay, key, await te.node.outsideAddress(), "0.001");
  fail = "Error: Please enter the wallet passphrase with walletpassphrase first.";
  for (let i = 0; i < 3; i++) t.match(await te.engine.payouts.flush(), { code: "node_unavailable" }, "a lasting failure");
  const alerts = lines.slice(mark).filter((l) => l.alert && /^payouts are not being built/.test(l.msg));
  t.match(alerts, [{ why: /timed out/ }, { why: /passphrase/ }], "the blip and the new failure are both alerted");
  t.equal(alerts.length, 2, "the lasting failure's repeats are not");
  t.equal(lines.slice(mark).filter((l) => /payout flush failed again/.test(l.msg)).length, 2, "they are warnings");
  // A node flapping between the two reasons: each has its own hour, so neither pages again (a re-review: alerting any
  // reason other than the last one paged at every failure of a node alternating between two).
  for (const why of ["walletcreatefundedpsbt failed: timed out after 5000 ms", "Error: Please enter the wallet passphrase with walletpassphrase first."]) {
    fail = why;
    t.match(await te.engine.payouts.flush(), { code: "node_unavailable" }, "a flapping failure");
  }
  t.equal(lines.slice(mark).filter((l) => l.alert && /^payouts are not being built/.test(l.msg)).length, 2, "no page for either again within its hour");
});
