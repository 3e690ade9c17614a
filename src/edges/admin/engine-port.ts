// The engine behind the admin edge: read views (bigints as decimal strings, chat handles removed) and the
// operator actions, each a message to the actor that owns the state — the admin edge adds no rule.
import type { Engine } from "../../engine.ts";
import { isRefusal, refuse, type Refusal } from "../../domain/refusals.ts";
import type { AdminPort, EngineSample, Json } from "./port.ts";
import { vsizeOf } from "../../domain/tx.ts";
import type { PayoutHealth } from "../../actors/payout.ts";
import { PAYOUT_ACTOR_STOPPED } from "../../actors/payout.service.ts";
import { NO_WALLET } from "../../actors/wallet.ts";

/** A batch's vsize for the console, or nothing (bytes that do not parse must not take the payouts page down). */
const sizeOf = (hex: string): number | undefined => {
  try {
    return vsizeOf(hex);
  } catch {
    return undefined;
  }
};

/** bigint → decimal string, recursively; drops undefined. */
export function toJson(v: unknown): Json {
  if (typeof v === "bigint") return v.toString();
  if (Array.isArray(v)) return v.map(toJson);
  if (v && typeof v === "object") {
    const out: Record<string, Json> = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = toJson(x);
    return out;
  }
  return (v ?? null) as Json;
}

/**
 * A bounded ring of engine samples (registry and journal counters), for the console's charts: the engine keeps
 * counters, not history, so the port samples them on a timer (unref'd, ended once the engine stops) and on every read.
 */
export class SampleRing {
  readonly #items: EngineSample[] = [];
  #lastBatches = -1;
  constructor(private readonly e: Engine, readonly capacity = 1440) {}

  take(now = Date.now()): void {
    const r = this.e.registry.stats, j = this.e.storage.journal.stats;
    const committed = j.batches !== this.#lastBatches && j.batches > 0;
    this.#lastBatches = j.batches;
    this.#items.push({ at: now, resident: r.resident, activations: r.activations, passivations: r.passivations, journalBatches: j.batches, commitMs: committed ? Math.round(j.lastCommitMs * 1000) / 1000 : null });
    if (this.#items.length > this.capacity) this.#items.splice(0, this.#items.length - this.capacity);
  }

  get items(): EngineSample[] {
    return [...this.#items];
  }
}

/** Headers the node may know ahead of its blocks before /health says it is behind (a block being fetched is one). */
const BEHIND_BLOCKS = 2;

const RESTART = "restart the engine (runigun start, or runigun engine in the split shape)";

/** A wallet's refusal as an operator reads it: its "no wallet yet" (the user's "Send /start") names the key instead. */
function operatorsRefusal(r: Refusal, userKey: string): Refusal {
  return r.code === "not_found" && r.message === NO_WALLET ? refuse("not_found", `no wallet ${userKey}`) : r;
}

/** The singleton actors, which stop for good after repeated crashes (crash-budget.ts): "stopped" until a restart. */
function singletons(e: Engine): { payouts: "running" | "stopped"; cheques: "running" | "stopped"; action: string | null } {
  const payouts = e.payouts.running ? "running" : "stopped";
  const cheques = e.cheques.running ? "running" : "stopped";
  const action = payouts === "stopped" ? PAYOUT_ACTOR_STOPPED
    : cheques === "stopped" ? `the cheque book has stopped after repeated crashes (no cheque is created, claimed or expired): ${RESTART}` : null;
  return { payouts, cheques, action };
}

export function enginePort(e: Engine, o: { sampleMs?: number; capacity?: number } = {}): AdminPort {
  const sampleMs = o.sampleMs ?? 60_000;
  const ring = new SampleRing(e, o.capacity);
  ring.take();
  let batchCounts = { stuck: 0, releasing: 0 };
  let payoutHealth: PayoutHealth | undefined;
  const sampling = setInterval(() => (e.running ? ring.take() : clearInterval(sampling)), sampleMs);
  sampling.unref();
  /**
   * Where the node stands: its blocks against the headers it knows, and how old its tip is (its block time; on
   * mainnet a tip an hour old or more says the node has stopped hearing of blocks). null when the node cannot say.
   */
  const chainState = async () => {
    // Asked only of a node that answers, and for a second at most: a probe must answer while the node is down (a call
    // to it then waits up to a minute in the node's queue).
    if (e.node.state !== "ready") return null;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), 1000)));
    const info = await Promise.race([e.node.blockchainInfo().catch(() => undefined), late]).finally(() => clearTimeout(timer));
    if (!info) return null;
    return {
      blocks: info.blocks, headersBehind: Math.max(0, info.headers - info.blocks), initialBlockDownload: info.initialblockdownload,
      tipAgeS: info.time === undefined ? null : Math.max(0, Math.round(Date.now() / 1000 - info.time)),
    };
  };
  return {
    async health() {
      const b = e.backup.status();
      const store = e.storage.store.writeHealth;
      const chain = await chainState();
      // A node that is behind the chain it knows of (syncing, or its blocks not arriving) sees deposits and spends late.
      const behind = chain !== null && (chain.initialBlockDownload || chain.headersBehind > BEHIND_BLOCKS);
      // Deposit scans stalled (failing, or none complete): deposits are not credited; `watcher.reason` and `.action` say why and what to do.
      const watcher = e.watcher.health();
      // A singleton actor stopped after repeated crashes: nothing it owns moves until a restart (`action` says so).
      const actors = singletons(e);
      // Flushes failing (the node will not sign) or waiting for the mempool's fee floor: nothing is paid out. Not waited
      // for behind a flush: null when the actor is busy (or stopped: `singletons` says so).
      const payouts = actors.payouts === "running" ? await e.payouts.status(2000).catch(() => null) : null;
      const payoutsMoving = payouts === null || (payouts.failedFlushes === 0 && payouts.feeWait === null);
      return toJson({
        ok: e.node.state === "ready" && !e.payouts.paused && payoutsMoving && !store.failing && !behind && watcher.ok && actors.action === null, node: e.node.state, network: e.config.network, chain, watcher, payoutsPaused: e.payouts.paused ?? null, draining: e.draining?.reason ?? null,
        singletons: actors, payouts,
        store, lastBackupAgeS: b.lastBackupAgeS ?? null, backup: b, restoreIncident: e.restoreIncident ?? null,
        // After a restore: the last incident resumed (kept, resolved), and the cheques held for review until released.
        lastRestoreIncident: e.lastRestoreIncident ?? null, chequesHeld: e.heldCheques ?? null,
      });
    },
    async node() {
      const info = await e.node.blockchainInfo().catch(() => undefined);
      const balances = await e.node.balances().catch(() => undefined);
      return toJson({ chain: info?.chain, tip: info?.blocks, tipHash: info?.bestblockhash, medianTime: info?.mediantime, balances, actor: e.node.snapshot(), watcher: { ...e.watcher.stats, cursor: e.watcher.cursor } });
    },
    actors() {
      return toJson({ wallets: e.registry.stats, busiest: e.registry.busiest(), journal: e.storage.journal.stats, courier: e.courier.stats, payouts: e.payouts.stats });
    },
    async wallet(userKey, page) {
      const st = await e.registry.send(userKey, "state", {});
      if (isRefusal(st)) return st;
      if (!st.opened) return refuse("not_found", `no wallet ${userKey}`);
      const { chatHandle: _never, ...rest } = st;
      const history = await e.registry.records.page(userKey, st.historyTotal, page, 20);
      return toJson({ ...rest, history });
    },
    async solvency() {
      return toJson({ ...(await e.solvency(BigInt(e.config.watchdog.toleranceSats))), payoutsPaused: e.payouts.paused ?? null, draining: e.draining ?? null });
    },
    async deposits(q = {}) {
      const { deposits, matched } = await e.watcher.findDeposits({ ...(q.status ? { status: q.status as never } : {}), ...(q.userKey ? { userKey: q.userKey } : {}), ...(q.txid ? { txid: q.txid } : {}) }, q.limit ?? 100);
      // Newest first; `truncated` when more matched than were listed (narrow it by userKey, txid or status).
      return toJson({ deposits, matched, truncated: matched > deposits.length });
    },
    async payouts(status) {
      const s = await e.payouts.state();
      // Without the signed bytes (a cancellation's too): the txids name them. A batch still to be mined has its size
      // (vsize, vB), what a fee bump's review needs to show the fee it comes to.
      const batches = Object.entries(s.batches).filter(([, b]) => !status || b.status === status)
        .map(([id, b]) => ({
          id, ...b, hex: undefined, ...(b.cancel ? { cancel: { ...b.cancel, hex: undefined } } : {}),
          ...(b.status === "signed" || b.status === "broadcast" || b.status === "stuck" ? { vsize: sizeOf(b.hex) } : {}),
        }));
      const payouts = Object.entries(s.payouts).filter(([, p]) => !status || p.status === status).map(([id, p]) => ({ id, ...p }));
      return toJson({ batches, payouts });
    },
    async metrics() {
      const r = e.registry.stats, j = e.storage.journal.stats, n = e.node.snapshot(), w = e.watcher.stats, p = e.payouts.stats;
      // Batches that need an operator (stuck: bump or release it) or are being released: worth an alert when above 0.
      // A scrape does not wait behind a flush or a release (the book answers between commands): the last count then.
      try {
        let stuck = 0, releasing = 0;
        for (const b of Object.values((await e.payouts.state(2000)).batches)) {
          if (b.status === "stuck") stuck++;
          else if (b.status === "cancelling") releasing++;
        }
        batchCounts = { stuck, releasing };
      } catch {
        // The last count stands.
      }
      const { stuck, releasing } = batchCounts;
      if (e.payouts.running) {
        try {
          payoutHealth = await e.payouts.status(2000);
        } catch {
          // The last reading stands.
        }
      }
      const chain = await chainState();
      const wh = e.watcher.health();
      const actors = singletons(e);
      const lines: Array<[string, string, number | bigint]> = [
        ["runigun_wallets_resident", "gauge", r.resident], ["runigun_wallet_activations_total", "counter", r.activations],
        ["runigun_wallet_passivations_total", "counter", r.passivations], ["runigun_wallet_crashes_total", "counter", r.crashes],
        ["runigun_wallets_stopped_after_crashes_total", "counter", r.stoppedAfterCrashes], ["runigun_wallet_commands_in_flight", "gauge", r.inFlight],
        ["runigun_journal_batches_total", "counter", j.batches], ["runigun_journal_events_total", "counter", j.events],
        ["runigun_journal_last_commit_ms", "gauge", j.lastCommitMs], ["runigun_journal_snapshot_failures_total", "counter", j.snapshotFailures],
        ["runigun_node_ready", "gauge", n.state === "ready" ? 1 : 0], ["runigun_node_queue", "gauge", n.queue], ["runigun_node_calls_total", "counter", n.calls],
        ["runigun_node_errors_total", "counter", n.errors], ["runigun_deposit_pool_addresses", "gauge", n.addressPool],
        ["runigun_chain_height", "gauge", w.height],
        ...(chain ? [["runigun_chain_headers_behind", "gauge", chain.headersBehind], ["runigun_chain_tip_age_seconds", "gauge", chain.tipAgeS ?? -1]] as Array<[string, string, number]> : []), ["runigun_deposits_credited_total", "counter", w.credited], ["runigun_deposits_confirmed_total", "counter", w.confirmed],
        ["runigun_deep_reorgs_total", "counter", w.deepReorgs], ["runigun_deposits_remined_total", "counter", w.remined], ["runigun_deposits_held_back_total", "counter", w.heldBack],
        ["runigun_deposit_scans_failed_total", "counter", w.failedScans], ["runigun_deposit_scans_incomplete_total", "counter", w.incompleteScans],
        // The deposit cursor behind the tip (confirmations − 1 when all is well; −1 unknown), the age of the last complete scan, and whether the scans are stalled (alerted).
        ["runigun_deposit_scan_lag_blocks", "gauge", wh.lagBlocks ?? -1], ["runigun_deposit_scan_age_seconds", "gauge", wh.lastCompleteAgeS],
        ["runigun_deposit_scans_stalled", "gauge", wh.ok ? 0 : 1], ["runigun_payout_batches_total", "counter", p.batches],
        ["runigun_payout_fee_paid_sats_total", "counter", p.feePaid], ["runigun_payout_fee_saved_sats_total", "counter", p.feeQuoted - p.feePaid],
        ["runigun_payouts_paused", "gauge", e.payouts.paused ? 1 : 0],
        // Flushes failed in a row (alerted at the first), the oldest queued payout's wait, and 1 while flushes build nothing
        // because the mempool's minimum fee is above withdrawals.maxFeeRateSatVb (alerted once).
        ["runigun_payout_flushes_failing", "gauge", payoutHealth?.failedFlushes ?? 0], ["runigun_payout_oldest_queued_seconds", "gauge", payoutHealth?.oldestQueuedAgeS ?? 0],
        ["runigun_payouts_waiting_for_fee_floor", "gauge", payoutHealth?.feeWait ? 1 : 0],
        ["runigun_cheques_held", "gauge", e.heldCheques?.count ?? 0],
        // 1 once the actor stopped after repeated crashes (alerted): nothing is paid out until a restart.
        ["runigun_payout_actor_stopped", "gauge", actors.payouts === "stopped" ? 1 : 0],
        ["runigun_cheque_book_stopped", "gauge", actors.cheques === "stopped" ? 1 : 0],
        ["runigun_payout_batches_stuck", "gauge", stuck], ["runigun_payout_batches_releasing", "gauge", releasing],
        ["runigun_store_write_failing", "gauge", e.storage.store.writeHealth.failing ? 1 : 0], ["runigun_store_write_failures_total", "counter", e.storage.store.writeHealth.failures],
        ...backupMetrics(e),
      ];
      return lines.map(([name, type, v]) => `# TYPE ${name} ${type}\n${name} ${typeof v === "number" ? Math.round(v * 1000) / 1000 : v}`).join("\n") + "\n";
    },
    // A mistyped key must not read as done (the wallet's own refusal is the user's "Send /start"), and a second freeze
    // keeps the first one's reason: the answer says which reason stands (`already`), as a second pause does.
    async freeze(userKey, reason, operator) {
      const before = await e.registry.send(userKey, "state", {});
      if (isRefusal(before)) return before;
      if (!before.opened) return refuse("not_found", `no wallet ${userKey}`);
      if (before.frozen) return toJson({ frozen: true, already: true, ...before.frozen });
      const r = await e.registry.send(userKey, "freeze", { reason, by: operator });
      if (isRefusal(r)) return operatorsRefusal(r, userKey);
      // Another freeze may have come between the read and this one: the wallet kept whichever came first.
      const after = await e.registry.send(userKey, "state", {});
      const kept = isRefusal(after) ? undefined : after.frozen;
      if (kept && (kept.reason !== reason || kept.by !== operator)) return toJson({ frozen: true, already: true, ...kept });
      return toJson({ frozen: true, reason, by: operator });
    },
    async unfreeze(userKey, operator) {
      const before = await e.registry.send(userKey, "state", {});
      if (isRefusal(before)) return before;
      if (!before.opened) return refuse("not_found", `no wallet ${userKey}`);
      if (!before.frozen) return toJson({ frozen: false, already: true });
      const r = await e.registry.send(userKey, "unfreeze", { by: operator });
      if (isRefusal(r)) return operatorsRefusal(r, userKey);
      // Its queued withdrawals were held while it was frozen: they go with the next batch.
      e.payouts.schedule();
      return toJson(r);
    },
    async adjustWallet(userKey, a, operator) {
      const r = await e.adjustWallet(userKey, a, operator);
      if (isRefusal(r)) return operatorsRefusal(r, userKey);
      return toJson(r);
    },
    async bumpPayout(batch, feeRate) {
      const r = await e.payouts.bump(batch, feeRate);
      return isRefusal(r) ? r : toJson(r);
    },
    async releasePayout(batch, feeRate, reason) {
      // After a restore, a batch stuck in the restored book may have been released (and its amounts withdrawn again)
      // after the backup: nothing is given back until the incident is reviewed and payouts resumed.
      if (e.restoreIncident) return refuse("not_allowed", "A restore incident is open: review its unknown spends and resume payouts before releasing a batch.");
      const r = await e.payouts.release(batch, feeRate, reason);
      return isRefusal(r) ? r : toJson(r);
    },
    async adoptPayout(id, txid, operator) {
      const r = await e.adoptPayout(id, txid, operator);
      return isRefusal(r) ? r : toJson(r);
    },
    async pausePayouts(reason, operator) {
      return toJson(await e.pausePayouts(reason, operator));
    },
    async unqueuePayout(id, operator) {
      const r = await e.unqueuePayout(id, operator);
      return isRefusal(r) ? r : toJson(r);
    },
    async resumePayouts(operator) {
      const r = await e.resumePayouts(operator);
      return isRefusal(r) ? r : toJson(r);
    },
    async releaseHeldCheques(operator) {
      const r = await e.releaseHeldCheques(operator);
      return isRefusal(r) ? r : toJson(r);
    },
    async setDraining(on, reason, operator) {
      return toJson(await e.setDraining(on, reason, operator));
    },
    async backup() {
      if (!e.backup.dir) return refuse("not_allowed", "Backups are off: set backup.dir (RUNIGUN_BACKUP_DIR) and restart.");
      const info = await e.backup.snapshot();
      return toJson({ path: info.path, bytes: info.bytes, ms: Math.round(info.ms), manifest: info.manifest });
    },
    async tip() {
      const info = (await e.node.blockchainInfo().catch(() => undefined)) as { blocks: number; bestblockhash: string; mediantime: number; time?: number } | undefined;
      if (!info) return { height: null, hash: null, ageS: null, from: null };
      const t = info.time ?? info.mediantime;
      return { height: info.blocks, hash: info.bestblockhash, ageS: Math.max(0, Math.round(Date.now() / 1000 - t)), from: info.time !== undefined ? "block time" : "median time past" };
    },
    async series() {
      ring.take();
      const hour = 3600_000, now = Date.now(), first = Math.floor(now / hour) * hour - 23 * hour;
      const hours = Array.from({ length: 24 }, (_, i) => ({ start: first + i * hour, deposits: 0, payouts: 0 }));
      const bucket = (at: number) => hours[Math.floor((at - first) / hour)];
      for (const d of await e.watcher.listDeposits(undefined, 100_000)) if (d.seenAt >= first) bucket(d.seenAt)!.deposits++;
      for (const p of Object.values((await e.payouts.state()).payouts)) if (p.at >= first) bucket(p.at)!.payouts++;
      return { hours, samples: ring.items, sampleMs };
    },
    async rescanFrom(height) {
      const info = await e.node.blockchainInfo().catch(() => undefined);
      if (!info) return refuse("node_unavailable", "bitcoind is not answering; rescan when it is back (see /node).");
      if (height > info.blocks) return refuse("bad_input", `Height ${height} is above the chain tip (${info.blocks}); rescan from a height at or below it.`);
      // A rescan moves the cursor to the block before `height`: from above the cursor's next block it would skip blocks
      // never scanned, and their deposits would never be credited (with /health still ok).
      const cursor = e.watcher.cursor;
      if (!cursor) return refuse("not_allowed", "The deposit scan has no cursor yet (the node did not answer when it started): its next scan reads the node wallet's whole history. Nothing to rescan.");
      if (height > cursor.height + 1) {
        return refuse("not_allowed", `Height ${height} is above the deposit cursor's next block (${cursor.height + 1}; the cursor is at ${cursor.height}): a rescan from there would skip blocks ${cursor.height + 1} to ${height - 1}, and their deposits would never be credited. Nothing was done. Rescan from ${cursor.height + 1} or below (deposits already credited are not credited twice); blocks above the cursor are scanned anyway.`);
      }
      await e.watcher.rescanFrom(height);
      return toJson({ rescannedFrom: height, cursor: e.watcher.cursor });
    },
  };
}

/** Continuous backup for alerting: age of the last good snapshot (−1: none yet), shipping lag, broken shipping. */
function backupMetrics(e: Engine): Array<[string, string, number]> {
  const b = e.backup.status();
  if (!b.enabled) return [["runigun_backup_enabled", "gauge", 0]];
  return [
    ["runigun_backup_enabled", "gauge", 1],
    ["runigun_backup_last_success_age_seconds", "gauge", b.lastBackupAgeS ?? -1],
    ["runigun_backup_segment_lag_commits", "gauge", b.shippingLag ?? 0],
    ["runigun_backup_segments_broken", "gauge", b.shippingBroken ? 1 : 0],
    ["runigun_restore_incident", "gauge", e.restoreIncident ? 1 : 0],
  ];
}
