// A flush that fails for good (the node wallet's passphrase changed on the node: nothing can be signed), on a real
// regtest node: operators are alerted at the first failure (a warning per block was all they had), not again at every
// flush; the payout actor's status says how many flushes failed, since when, with the node's error, and how long the
// oldest payout has waited; once a flush runs again, all of that clears and the payout goes out, once.
import t from "tap";
import { createLogger } from "../../src/log.ts";
import { isRefusal } from "../../src/domain/refusals.ts";
import { startTestEngine } from "../support/engine.ts";
import { fundedUser, received, withdraw, withdrawalOf } from "../support/payouts.ts";
import { payoutStatus } from "./payout-review-status.ts";

t.test("signing fails at every flush: one alert naming the node's error, then warnings; the status counts them; cleared once a flush runs", async (t) => {
  const lines: Array<{ alert?: boolean; msg: string; why?: string; failedFlushes?: number; queued?: number }> = [];
  const log = createLogger({ level: "warn", destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
  const te = await startTestEngine({ deposits: { confirmations: 1 }, withdrawals: { batchWindowMs: 600_000 } }, { log, walletPassphrase: "old-pass" });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const key = await fundedUser(te, "signfail", "0.01");
  await te.mine(1);
  await te.node.rpc("walletpassphrasechange", ["old-pass", "new-pass"], "engine");
  const dest = await te.node.outsideAddress();
  const { quote } = await withdraw(te.engine.relay, key, dest, "0.001");
  const mark = lines.length;
  for (let i = 0; i < 3; i++) t.match(await te.engine.payouts.flush(), { code: "node_unavailable" }, `flush ${i + 1} fails`);
  const after = lines.slice(mark);
  const alerts = after.filter((l) => l.alert);
  t.equal(alerts.length, 1, "one alert for three failed flushes");
  t.match(alerts[0], { msg: /^payouts are not being built: the flush failed/, why: /passphrase/i, failedFlushes: 1, queued: 1 }, "at the first, naming the node's error");
  t.equal(after.filter((l) => /payout flush failed again/.test(l.msg)).length, 2, "the others are warnings");
  const status = await payoutStatus(te);
  t.match(status, { queued: 1, failedFlushes: 3, failingSince: Number, lastFlushError: /passphrase/i, feeWait: null }, "the status counts the failures, with the node's error");
  t.ok(status.oldestQueuedAt !== null && status.oldestQueuedAgeS !== null && status.oldestQueuedAgeS >= 0, "and says since when the payout waits");
  t.equal((await withdrawalOf(te, key, quote.id)).w.status, "reserved", "nothing went out");

  // The passphrase the engine has is the wallet's again: the next flush runs.
  await te.node.rpc("walletpassphrasechange", ["new-pass", "old-pass"], "engine");
  const r = await te.engine.payouts.flush();
  if (isRefusal(r)) throw new Error(r.message);
  t.equal(r.batches, 1, "the payout is built");
  t.match(await payoutStatus(te), { queued: 0, oldestQueuedAt: null, failedFlushes: 0, failingSince: null, lastFlushError: null }, "the failures are over");
  t.ok(lines.some((l) => /payout flushes run again after failing/.test(l.msg)), "and the log says so");
  await te.mine(1);
  await te.engine.payouts.sync();
  t.equal((await withdrawalOf(te, key, quote.id)).w.status, "sent", "the withdrawal is sent");
  t.equal(await received(te, dest), 100_000n, "paid once");
});
