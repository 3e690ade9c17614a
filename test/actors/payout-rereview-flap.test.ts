// Failed flushes, on a real regtest node and a real store. A node that fails one flush in two (a funding call timing
// out) paged operators at every failure (4 alerts in 225 ms): a flush that ran cleared the alert's throttle. Now the
// last alert's time outlives a recovery: at most one failure alert per hour, the rest warnings. And a flush that fails
// because the store cannot write (a full disk) no longer tells operators to fix the node's wallet.
import t from "tap";
import { createLogger } from "../../src/log.ts";
import { isRefusal } from "../../src/domain/refusals.ts";
import { startTestEngine } from "../support/engine.ts";
import { fillDisk } from "../support/store.ts";
import { fundedUser, received, withdraw, withdrawalOf } from "../support/payouts.ts";
import { payoutStatus } from "./payout-review-status.ts";

type Line = { alert?: boolean; msg: string; why?: string; failedFlushes?: number };

t.test("one flush in two fails: one alert for the lot, the others warnings; every payout goes out once", async (t) => {
  const lines: Line[] = [];
  const log = createLogger({ level: "warn", destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
  const te = await startTestEngine({ deposits: { confirmations: 1 }, withdrawals: { batchWindowMs: 600_000 } }, { log });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const users: string[] = [];
  for (let i = 0; i < 4; i++) users.push(await fundedUser(te, `flap${i}`, "0.01"));
  await te.mine(1);
  let failNext = false;
  const raw = te.engine.node.rawCall.bind(te.engine.node);
  (te.engine.node as { rawCall: typeof raw }).rawCall = <T>(method: string, params: unknown[]) => {
    if (method === "walletcreatefundedpsbt" && failNext) {
      failNext = false;
      return Promise.reject(Object.assign(new Error("walletcreatefundedpsbt failed: timed out after 5000 ms"), { code: "ETIMEDOUT" }));
    }
    return raw<T>(method, params);
  };
  const mark = lines.length;
  const paid: Array<{ key: string; id: string; dest: string }> = [];
  for (const key of users) {
    const dest = await te.node.outsideAddress();
    paid.push({ key, dest, id: (await withdraw(te.engine.relay, key, dest, "0.001")).quote.id });
    failNext = true;
    t.match(await te.engine.payouts.flush(), { code: "node_unavailable" }, "a flush fails");
    t.same(await te.engine.payouts.flush(), { batches: 1 }, "the next runs");
  }
  const after = lines.slice(mark);
  const alerts = after.filter((l) => l.alert);
  t.equal(alerts.length, 1, "one alert for four failures");
  t.match(alerts[0], { msg: /^payouts are not being built: the flush failed \(the node's error/, why: /timed out/ });
  t.equal(after.filter((l) => /payout flush failed again/.test(l.msg)).length, 3, "the other three are warnings");
  t.equal(after.filter((l) => /payout flushes run again after failing/.test(l.msg)).length, 4, "each recovery is logged");
  t.match(await payoutStatus(te), { failedFlushes: 0, lastFlushError: null }, "nothing failing now");
  await te.mine(1);
  await te.engine.payouts.sync();
  for (const p of paid) {
    t.equal((await withdrawalOf(te, p.key, p.id)).w.status, "sent");
    t.equal(await received(te, p.dest), 100_000n, "paid once");
  }
});

t.test("a flush the store cannot record (a full disk): the alert names the store, not the node's wallet; the payout goes once the disk has room", async (t) => {
  const lines: Line[] = [];
  const log = createLogger({ level: "warn", destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
  const te = await startTestEngine({ deposits: { confirmations: 1 }, withdrawals: { batchWindowMs: 600_000 } }, { log });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const key = await fundedUser(te, "fulldisk", "0.01");
  await te.mine(1);
  const dest = await te.node.outsideAddress();
  const { quote } = await withdraw(te.engine.relay, key, dest, "0.001");
  // The wallet's submission reached the payout actor before this ask (its mailbox is in order): the payout is queued.
  t.equal((await te.engine.payouts.state()).payouts[quote.id]?.status, "queued", "the payout is queued");
  const mark = lines.length;
  const disk = fillDisk(te.engine.storage.store);
  t.match(await te.engine.payouts.flush(), { code: "node_unavailable" }, "the flush fails: its batch cannot be recorded");
  disk.free();
  const alerts = lines.slice(mark).filter((l) => l.alert && /^payouts are not being built/.test(l.msg));
  t.equal(alerts.length, 1, "one payout alert");
  t.match(alerts[0], { msg: /could not write to the store \(the store's error is `why`\); nothing was sent.*Free space or fix the disk/, why: /No space left on device/ }, "it names the store");
  t.notMatch(alerts[0]!.msg, /node|wallet|passphrase/, "and not the node or its wallet");
  t.equal(await received(te, dest), 0n, "nothing was sent");
  const r = await te.engine.payouts.flush();
  if (isRefusal(r)) throw new Error(r.message);
  t.equal(r.batches, 1, "the payout is built once the store can write");
  await te.mine(1);
  await te.engine.payouts.sync();
  t.equal((await withdrawalOf(te, key, quote.id)).w.status, "sent");
  t.equal(await received(te, dest), 100_000n, "paid once");
});
