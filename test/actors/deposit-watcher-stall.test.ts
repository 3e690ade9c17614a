// Deposit scans that keep failing must not go unnoticed, nor hold up the work after each block: one alert, /health
// not ok with the reason and what to do, the lag in the metrics, and payouts settled all the same.
import t from "tap";
import { startTestEngine } from "../support/engine.ts";
import { isRefusal } from "../../src/domain/refusals.ts";
import { enginePort } from "../../src/edges/admin/engine-port.ts";
import { createLogger } from "../../src/log.ts";
import { DepositWatcher } from "../../src/actors/deposit-watcher.ts";
import { sentBatch } from "../support/payouts.ts";
import type { Config } from "../../src/config.ts";

type Line = { alert?: boolean; msg: string; level: number; [k: string]: unknown };

t.test("a cursor on a block the node does not know (a reindexed node): one alert saying so, /health not ok, payouts still settle; a rescan recovers", async (t) => {
  const lines: Line[] = [];
  const te = await startTestEngine({ deposits: { confirmations: 1 } }, { log: createLogger({ level: "info", destination: { write: (l: string) => void lines.push(JSON.parse(l)) } }) });
  t.teardown(() => te.stop());
  // A withdrawal broadcast, waiting for its block.
  const { batch } = await sentBatch(te, "w", "0.1");
  const key = "u_h";
  await te.engine.relay.start(key);
  const a = await te.engine.relay.depositAddress(key);
  if (isRefusal(a)) throw new Error(a.message);
  const cursorHeight = te.engine.watcher.cursor!.height;
  // The cursor on a block the node does not know (lost with a reindex, or another node).
  await te.engine.storage.store.put("watcher", "cursor", { hash: "11".repeat(32), height: cursorHeight });
  await te.restart();
  await te.node.fund(a.address, "0.1");
  await te.node.mine(2);
  const tip = await te.node.rpc<number>("getblockcount");
  const port = enginePort(te.engine);
  for (let i = 0; i < 4; i++) t.equal(await te.engine.watcher.poke(), false, `scan ${i + 1} fails`);
  t.equal(lines.filter((l) => l.alert && /deposit scans stalled/.test(l.msg)).length, 0, "four failures: no alert yet");
  t.match(await port.health(), { ok: true, watcher: { ok: true, failedSinceComplete: 4 } }, "nor /health");

  // The work after a block does not wait for the deposit scans: the withdrawal's block settles it.
  await te.engine.blockWorkDone();
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "confirmed", "the payout batch is settled though every deposit scan failed");
  t.match(await port.metrics(), new RegExp(`\\nrunigun_chain_height ${tip}\\n`), "the chain height gauge follows the tip");

  for (let i = 0; i < 3; i++) await te.engine.watcher.poke();
  const alerts = lines.filter((l) => l.alert && /deposit scans stalled/.test(l.msg));
  t.equal(alerts.length, 1, "one alert, however many scans fail");
  t.equal(alerts[0]!.level, 50, "at error level");
  t.match(alerts[0]!.msg, /does not know the deposit cursor's block.*POST \/deposits\/rescan/, "it says the node does not know the block, and what to do");
  t.match(alerts[0], { cursorHeight, tipHeight: tip });
  t.notOk(["userKey", "owner", "outpoint", "address", "txid", "amount"].some((k) => k in alerts[0]!), "no user key, outpoint, address or amount in it");
  const h = (await port.health()) as { ok: boolean; watcher: Record<string, unknown> };
  t.equal(h.ok, false, "/health is not ok");
  t.match(h.watcher, { ok: false, cause: "cursor_unknown", reason: /does not know the block the deposit cursor is on/, action: /POST \/deposits\/rescan/, cursorHeight, tipHeight: tip, lagBlocks: tip - cursorHeight });
  const m = await port.metrics();
  t.match(m, new RegExp(`\\nrunigun_deposit_scan_lag_blocks ${tip - cursorHeight}\\n`), "the lag in blocks");
  t.match(m, /\nrunigun_deposit_scan_age_seconds \d+\n/, "the age of the last complete scan");
  t.match(m, /\nrunigun_deposit_scans_stalled 1\n/, "stalled");
  const b0 = await te.engine.relay.balance(key);
  t.ok(!isRefusal(b0) && b0.available === 0n && b0.pending === 0n, "the deposit is not credited meanwhile");

  // The operator's way out: a rescan from below the lost cursor.
  await port.rescanFrom(cursorHeight - 2);
  await te.poke();
  const b = await te.engine.relay.balance(key);
  t.ok(!isRefusal(b) && b.available === 10_000_000n, "credited after the rescan");
  t.match(await port.health(), { ok: true, watcher: { ok: true, cause: null, failedSinceComplete: 0, lagBlocks: 0 } }, "/health is ok again");
  t.match(await port.metrics(), /\nrunigun_deposit_scans_stalled 0\n/);
  t.equal(lines.filter((l) => /deposit scans complete again after the stall/.test(l.msg)).length, 1, "the recovery is said");
});

/** A watcher on a node and wallets made up for the test: a clock it is told, scans that fail or are left incomplete at will. */
function madeUp() {
  const lines: Line[] = [];
  const log = createLogger({ level: "info", destination: { write: (l: string) => void lines.push(JSON.parse(l)) } });
  let clock = 0, height = 200;
  const state: { listFails?: Error; refuse: boolean; blocks: number[] } = { refuse: false, blocks: [] };
  const node = {
    state: "ready",
    blockchainInfo: async () => ({ chain: "regtest", blocks: height, headers: height, bestblockhash: `h${height}`, mediantime: 0, initialblockdownload: false }),
    listSinceBlock: async () => {
      if (state.listFails) throw state.listFails;
      return { transactions: [{ category: "receive", address: "a1", txid: "t1", vout: 0, amount: 0.1, confirmations: 1 }], removed: [], lastblock: `h${height}` };
    },
    call: async () => ({ confirmations: 1 }),
  };
  const records = new Map<string, unknown>();
  const store = {
    get: async (ns: string, k: string) => records.get(`${ns}/${k}`),
    put: async (ns: string, k: string, v: unknown) => void records.set(`${ns}/${k}`, v),
    del: async (ns: string, k: string) => void records.delete(`${ns}/${k}`),
    async *iterate() {},
    mac: (_p: string, d: string) => d,
  };
  const registry = {
    send: async () => (state.refuse ? { refused: true, code: "busy", message: "busy" } : { status: "confirmed" }),
    read: async () => ({}),
  };
  const config = { deposits: { confirmations: 1, pollMs: 3_600_000, maxPendingPerWallet: 10, mempoolGraceMs: 0 }, withdrawals: { dustSats: "546" }, node: { maxQueue: 100 } } as unknown as Config;
  const w = new DepositWatcher({ config, log, node: node as never, registry: registry as never, store: store as never, clock: () => clock, onBlock: (h) => state.blocks.push(h) });
  return { w, lines, state, tick: (ms: number) => (clock += ms), mine: () => height++, recordOwner: () => w.recordOwner("a1", "u_1") };
}

t.test("scans failing with an error (the node answering): the fifth in a row alerts, once; the next complete one clears it", async (t) => {
  const m = madeUp();
  await m.recordOwner();
  await m.w.start();
  t.teardown(() => m.w.stop());
  t.equal(await m.w.poke(), true);
  m.state.listFails = Object.assign(new Error("listsinceblock failed: Work queue depth exceeded"), { code: -1, method: "listsinceblock" });
  for (let i = 0; i < 4; i++) await m.w.poke();
  t.equal(m.lines.filter((l) => l.alert).length, 0, "four: not yet");
  t.ok(m.w.health().ok);
  m.mine();
  await m.w.poke();
  t.same(m.state.blocks, [200, 201], "the new tip's work ran though the scan failed");
  const alerts = m.lines.filter((l) => l.alert);
  t.equal(alerts.length, 1, "the fifth alerts");
  t.match(alerts[0], { level: 50, msg: /deposit scans stalled: they keep failing/, lastError: /Work queue depth exceeded/, failedScans: 5 });
  t.match(m.w.health(), { ok: false, cause: "failing", reason: /5 deposit scans in a row failed/, lastError: /Work queue depth exceeded/ });
  for (let i = 0; i < 3; i++) await m.w.poke();
  t.equal(m.lines.filter((l) => l.alert).length, 1, "said once");
  // Retried at once (250 ms doubling) while the poll is short: the same failure is one line a minute, not one a retry.
  const failedLines = () => m.lines.filter((l) => /deposit scan failed/.test(l.msg));
  t.equal(failedLines().length, 1, "eight failures within the minute, the same error: one line");
  m.tick(60_000);
  await m.w.poke();
  t.match(failedLines(), [{}, { failuresNotLoggedSinceLastLine: 7 }], "a minute on: one more, counting those not logged");
  m.state.listFails = Object.assign(new Error("listsinceblock failed: another error"), { code: -1, method: "listsinceblock" });
  await m.w.poke();
  t.equal(failedLines().length, 3, "another error is logged at once");
  await m.w.poke();
  await m.w.poke();
  t.equal(failedLines().length, 3, "and not again within the minute");
  delete m.state.listFails;
  t.equal(await m.w.poke(), true);
  t.match(m.w.health(), { ok: true, cause: null, failedSinceComplete: 0, lastError: null });
  t.equal(m.lines.filter((l) => /complete again after the stall/.test(l.msg)).length, 1, "the recovery is said");
  // A failure after a complete scan is new: logged at once, with no count of the failures before the recovery.
  const logged = failedLines().length;
  m.state.listFails = Object.assign(new Error("listsinceblock failed: another error"), { code: -1, method: "listsinceblock" });
  await m.w.poke();
  t.equal(failedLines().length, logged + 1, "logged at once after a complete scan");
  t.notOk("failuresNotLoggedSinceLastLine" in failedLines().at(-1)!, "no count carried over from before the recovery");
  delete m.state.listFails;
});

t.test("scans left incomplete (a wallet that keeps refusing): an alert once none has completed for 10 minutes", async (t) => {
  const m = madeUp();
  await m.recordOwner();
  await m.w.start();
  t.teardown(() => m.w.stop());
  m.state.refuse = true;
  for (let i = 0; i < 8; i++) {
    m.tick(60_000);
    t.equal(await m.w.poke(), false);
  }
  t.equal(m.lines.filter((l) => l.alert).length, 0, "8 minutes: no alert");
  t.match(m.w.health(), { ok: true, lastCompleteAgeS: 480 });
  m.tick(2 * 60_000);
  await m.w.poke();
  t.match(m.lines.filter((l) => l.alert), [{ msg: /none has completed for a long time/ }], "10 minutes: one alert");
  t.match(m.w.health(), { ok: false, cause: "stalled", lastCompleteAgeS: 600 });
  m.state.refuse = false;
  t.equal(await m.w.poke(), true);
  t.match(m.w.health(), { ok: true, lastCompleteAgeS: 0 });
});
