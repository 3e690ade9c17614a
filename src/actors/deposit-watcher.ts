// The deposit watcher: follows the chain from a persisted cursor with `listsinceblock`, tells each owning
// wallet about deposits (pending, then confirmed at the target) and about deposits a reorg removed. The
// cursor trails the tip by target−1 blocks, so a deposit is listed again until it is confirmed; it is
// saved only after every wallet has answered, so a crash replays a scan (wallets dedupe by outpoint)
// and never skips one. Addresses map to owners through an index whose record keys are HMACs.
import type { Config } from "../config.ts";
import type { Logger } from "../log.ts";
import { btcNumberToSats } from "../domain/money.ts";
import { isRefusal } from "../domain/refusals.ts";
import type { EncryptedStore } from "../store/db.ts";
import type { WalletRegistry } from "./registry.ts";
import type { Deposit } from "./wallet.messages.ts";
import { POOL_LABEL, type NodeGateway } from "./node.ts";
import { isSealedLabel, ownerOfLabel } from "./owner-label.ts";

export interface DepositRecord {
  userKey: string;
  txid: string;
  vout: number;
  amount: bigint;
  status: "pending" | "confirmed" | "dropped" | "reversed" | "ignored_dust";
  confirmations: number;
  seenAt: number;
}

/** The watcher's name for a wallet's deposit status (a wallet's "ignored" is the watcher's older "ignored_dust"). */
const recordStatus = (s: Deposit["status"]): DepositRecord["status"] => (s === "ignored" ? "ignored_dust" : s);

export interface WatcherOptions {
  config: Config;
  log: Logger;
  node: NodeGateway;
  registry: WalletRegistry;
  store: EncryptedStore;
  mac?: (purpose: string, data: string) => string;
  /**
   * After each scan that saw a new tip (payouts and the watchdog hook in here): also when the scan then failed or was
   * left incomplete, as long as the node answered getblockchaininfo and is not in initial block download.
   */
  onBlock?: (height: number) => void;
  /** Milliseconds on a monotonic clock (tests); performance.now() by default. */
  clock?: () => number;
}

/** How the deposit scans stand, for /health and the metrics (see DepositWatcher.health). */
export interface WatcherHealth {
  /** False while the scans are stalled (alerted once): deposits are not credited or confirmed. */
  ok: boolean;
  /** `cursor_unknown`: the node does not know the cursor's block; `failing`: scans fail; `stalled`: none completes. */
  cause: "cursor_unknown" | "failing" | "stalled" | null;
  reason: string | null;
  action: string | null;
  /** Scans that failed (the node answering) since the last complete one. */
  failedSinceComplete: number;
  /** Seconds since the last complete scan (since the start, before the first). */
  lastCompleteAgeS: number;
  /** The chain tip at the last scan, the cursor's height, and the difference (confirmations − 1 when all is well). */
  tipHeight: number;
  cursorHeight: number | null;
  lagBlocks: number | null;
  lastError: string | null;
}

interface Cursor {
  hash: string;
  height: number;
}

const NS_ADDR = "addr";
const NS_DEPOSITS = "deposits";
const NS_WATCHER = "watcher";
/** Deposits credited as pending and not yet confirmed or dropped: checked one by one on every scan. */
const NS_OPEN = "deposit_open";

interface OpenDeposit {
  owner: string;
  txid: string;
  vout: number;
  address: string;
  amount: bigint;
}

export class DepositWatcher {
  readonly #o: WatcherOptions;
  readonly #owners = new Map<string, string | null>();
  readonly #known = new Map<string, string>();
  readonly #open = new Map<string, OpenDeposit>();
  #cursor: Cursor | undefined;
  #timer: NodeJS.Timeout | undefined;
  #scanning: Promise<void> | undefined;
  #again = false;
  /** Where an operator's rescan starts (see rescanFrom). */
  #rescan: Cursor | undefined;
  /** Pending deposits found missing from the node's mempool, since when (see #missingFromMempool). */
  readonly #missing = new Map<string, number>();
  /** When each pending deposit was last looked for in the node's mempool. */
  readonly #mempoolChecked = new Map<string, number>();
  #tip = "";
  #running = false;
  /** The node was syncing at the last scan (said once until it has caught up). */
  #syncingSaid = false;
  /** Scans in a row that failed or were left incomplete; the next one comes sooner than the poll while > 0. */
  #setbacks = 0;
  /** Deposits a wallet refused for holding `deposits.maxPendingPerWallet` unconfirmed ones already: said once each (per run). */
  readonly #heldBack = new Set<string>();
  /**
   * `heldBack`: deposits (once each per run) a wallet did not take while unconfirmed, holding as many unconfirmed ones as
   * it may; each is credited once it has the confirmations.
   */
  /** Failed scans (the node answering: an unavailable node is the node actor's own alert) since the last complete one. */
  #failed = 0;
  /** When the last scan completed (or the watcher started), and since when no scan has made progress (see #checkStall). */
  #completeAt = 0;
  #stallFrom = 0;
  #lastError: { message: string; cursorUnknown: boolean } | undefined;
  /** When a failed scan was last logged, and how many failed the same way since, unlogged. */
  #failureLoggedAt = -Infinity;
  #failuresUnlogged = 0;
  /** The stall alerted (once), until a scan completes again. */
  #stall: { cause: NonNullable<WatcherHealth["cause"]>; reason: string; action: string; at: number } | undefined;
  readonly stats = { scans: 0, credited: 0, confirmed: 0, dropped: 0, deepReorgs: 0, remined: 0, ignoredDust: 0, unrelated: 0, heldBack: 0, failedScans: 0, incompleteScans: 0, lastScanMs: 0, height: -1 };

  constructor(o: WatcherOptions) {
    this.#o = o;
    this.#completeAt = this.#stallFrom = this.#now();
  }

  #now(): number {
    return this.#o.clock?.() ?? performance.now();
  }

  /**
   * How the scans stand. Not ok once they are stalled: STALL_FAILURES scans in a row failed with the node answering,
   * or none completed for STALL_MS (see #checkStall); ok again after the next complete scan.
   */
  health(): WatcherHealth {
    const tip = this.stats.height, cursor = this.#cursor?.height ?? null;
    return {
      ok: this.#stall === undefined, cause: this.#stall?.cause ?? null, reason: this.#stall?.reason ?? null, action: this.#stall?.action ?? null,
      failedSinceComplete: this.#failed, lastCompleteAgeS: Math.max(0, Math.round((this.#now() - this.#completeAt) / 1000)),
      tipHeight: tip, cursorHeight: cursor, lagBlocks: cursor === null || tip < 0 ? null : Math.max(0, tip - cursor),
      lastError: this.#lastError?.message ?? null,
    };
  }

  /** Entries the watcher keeps in memory for pending deposits (tests: they follow the open deposits). */
  get tracked(): { open: number; mempoolChecked: number; missing: number } {
    return { open: this.#open.size, mempoolChecked: this.#mempoolChecked.size, missing: this.#missing.size };
  }

  /**
   * Whether the deposit paid to this outpoint (txid:vout) is open: credited to its wallet as pending, not yet confirmed
   * there (the watchdog takes such coins off what covers the firm balances). Kept with the store's open records.
   */
  isOpen(outpoint: string): boolean {
    return this.#open.has(outpoint);
  }

  get cursor(): Cursor | undefined {
    return this.#cursor;
  }

  async start(): Promise<void> {
    this.#cursor = await this.#o.store.get<Cursor>(NS_WATCHER, "cursor");
    for await (const [, d] of this.#o.store.iterate<OpenDeposit>(NS_OPEN)) this.#open.set(`${d.txid}:${d.vout}`, d);
    if (!this.#cursor) {
      // A new engine has issued no addresses yet: start at the tip, never rescan from genesis.
      const info = await this.#o.node.blockchainInfo().catch(() => undefined);
      if (info) await this.#saveCursor({ hash: info.bestblockhash, height: info.blocks });
    }
    this.#running = true;
    this.#completeAt = this.#stallFrom = this.#now();
    this.#schedule();
  }

  stop(): void {
    this.#running = false;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Resolves once no scan is running (after `stop`, none starts again): its writes are done. */
  async idle(): Promise<void> {
    while (this.#scanning) await this.#scanning.catch(() => undefined);
  }

  /**
   * Scan now; resolves when a full scan that started after this call has finished: true if it completed (every
   * wallet took its deposits), false if it was left incomplete or failed (it is tried again on its own).
   */
  async poke(): Promise<boolean> {
    if (this.#scanning) {
      this.#again = true;
      await this.#scanning;
    }
    if (!this.#scanning) this.#scanning = this.#scan().finally(() => (this.#scanning = undefined));
    await this.#scanning;
    return this.#setbacks === 0;
  }

  /**
   * Re-runs the scan from a height (operators): wallets dedupe what they already have. Only back (or from the cursor's
   * next block): a rescan from above the cursor would move it forward past blocks never scanned, and their deposits would
   * never be credited. The admin edge refuses that with the cursor's height (engine-port.ts); one asked anyway is not
   * taken (see #scanOnce).
   */
  async rescanFrom(height: number): Promise<void> {
    const hash = await this.#o.node.blockHash(Math.max(0, height - 1));
    // Taken by the next scan, before it reads anything: a scan under way would save its own cursor over this one. Two
    // rescans asked before that scan: the lower one stands (the higher one's blocks are in it).
    if (!this.#rescan || height - 1 < this.#rescan.height) this.#rescan = { hash, height: height - 1 };
    await this.poke();
  }

  async recordOwner(address: string, userKey: string): Promise<void> {
    await this.#o.store.put(NS_ADDR, this.#mac("address", address), { userKey });
    this.#owners.set(address, userKey);
  }

  async ownerOf(address: string): Promise<string | undefined> {
    const cached = this.#owners.get(address);
    if (cached !== undefined) return cached ?? undefined;
    const rec = await this.#o.store.get<{ userKey: string }>(NS_ADDR, this.#mac("address", address));
    if (this.#owners.size > 200_000) this.#owners.clear();
    this.#owners.set(address, rec?.userKey ?? null);
    return rec?.userKey;
  }

  /**
   * The deposit records matching every filter given, newest first (by when the watcher saw them), at most `limit`, and
   * how many matched. Records are keyed by a MAC of their outpoint, in no useful order: every record is read.
   */
  async findDeposits(q: { status?: DepositRecord["status"]; userKey?: string; txid?: string }, limit: number): Promise<{ deposits: DepositRecord[]; matched: number }> {
    let kept: DepositRecord[] = [], matched = 0;
    const newestFirst = (a: DepositRecord, b: DepositRecord) => b.seenAt - a.seenAt || a.txid.localeCompare(b.txid) || a.vout - b.vout;
    for await (const [, d] of this.#o.store.iterate<DepositRecord>(NS_DEPOSITS)) {
      if ((q.status && d.status !== q.status) || (q.userKey && d.userKey !== q.userKey) || (q.txid && d.txid !== q.txid)) continue;
      matched++;
      kept.push(d);
      // Memory bounded by the limit, not by the number of records.
      if (kept.length >= 2 * limit + 1000) kept = kept.sort(newestFirst).slice(0, limit);
    }
    return { deposits: kept.sort(newestFirst).slice(0, limit), matched };
  }

  async listDeposits(status?: DepositRecord["status"], limit = 100): Promise<DepositRecord[]> {
    const out: DepositRecord[] = [];
    for await (const [, d] of this.#o.store.iterate<DepositRecord>(NS_DEPOSITS)) {
      if (!status || d.status === status) out.push(d);
      if (out.length >= limit) break;
    }
    return out;
  }

  /**
   * The next timed scan: after the poll interval, or — while scans fail or are left incomplete — after a
   * short backoff (0.25 s, doubling, never longer than the poll), so a passing fault delays a deposit by
   * about as long as the fault lasts, not by a poll interval. Set again at the end of every scan, however started.
   */
  #schedule(): void {
    if (!this.#running) return;
    if (this.#timer) clearTimeout(this.#timer);
    const pollMs = this.#o.config.deposits.pollMs;
    const delay = this.#setbacks === 0 ? pollMs : Math.min(pollMs, 250 * 2 ** Math.min(this.#setbacks - 1, 10));
    this.#timer = setTimeout(() => void this.poke(), delay);
    this.#timer.unref();
  }

  async #scan(): Promise<void> {
    try {
      do {
        this.#again = false;
        const started = performance.now();
        let complete = false;
        try {
          complete = await this.#scanOnce();
          if (!complete) this.stats.incompleteScans++;
        } catch (e) {
          this.stats.failedScans++;
          // Counted only while the node answers: an unavailable bitcoind has its own alert (the time limit still applies).
          if (this.#o.node.state === "ready") this.#failed++;
          const message = errorText(e), at = this.#now();
          // Retried within a second while the poll is short (regtest): the same failure is logged once a minute, with
          // how many were not, not twice a second with its stack (the stall has its own alert).
          // (A clock stepped back logs at once.)
          if (message !== this.#lastError?.message || at - this.#failureLoggedAt >= FAILURE_LOG_MS || at < this.#failureLoggedAt) {
            this.#o.log.warn({ err: e, ...(this.#failuresUnlogged ? { failuresNotLoggedSinceLastLine: this.#failuresUnlogged } : {}) }, "deposit scan failed; it will run again");
            this.#failureLoggedAt = at;
            this.#failuresUnlogged = 0;
          } else this.#failuresUnlogged++;
          this.#lastError = { message, cursorUnknown: isUnknownBlock(e) };
        } finally {
          this.stats.lastScanMs = performance.now() - started;
        }
        if (!complete) {
          this.#setbacks++;
          this.#checkStall();
          return;
        }
        this.#completed();
      } while (this.#again);
    } finally {
      this.#schedule();
    }
  }

  /**
   * After a scan that failed or was left incomplete: once STALL_FAILURES of them in a row have failed with the node
   * answering, or none has completed for STALL_MS, one alert line (no user key or outpoint: the cause, counts and
   * heights) and /health is not ok until a scan completes again.
   */
  #checkStall(): void {
    if (this.#stall) return;
    const now = this.#now();
    const stalledMs = now - this.#stallFrom;
    if (this.#failed < STALL_FAILURES && stalledMs < STALL_MS) return;
    const cursorHeight = this.#cursor?.height ?? null;
    const fields = { failedScans: this.#failed, sinceLastCompleteS: Math.round((now - this.#completeAt) / 1000), cursorHeight, tipHeight: this.stats.height };
    if (this.#failed >= STALL_FAILURES && this.#lastError?.cursorUnknown) {
      this.#stall = {
        cause: "cursor_unknown", at: now,
        reason: `the node does not know the block the deposit cursor is on (height ${cursorHeight ?? "?"}): its chain was rebuilt (a reindex) or it is another node. No deposit is credited or confirmed until the cursor moves.`,
        action: `Rescan from a height at or a few blocks below ${cursorHeight ?? "the last height scanned"} (and at or below the node's tip): POST /deposits/rescan {"height": H, "reason": "..."}. Deposits already credited are not credited twice.`,
      };
      this.#o.log.error({ alert: true, ...fields }, "deposit scans stalled: the node does not know the deposit cursor's block (a reindex, another node?); no deposit is credited until an operator rescans (POST /deposits/rescan with a height at or below the cursor's; see /health)");
    } else if (this.#failed >= STALL_FAILURES) {
      this.#stall = {
        cause: "failing", at: now,
        reason: `${this.#failed} deposit scans in a row failed (last: ${this.#lastError?.message ?? "?"}): no deposit is credited or confirmed meanwhile.`,
        action: "See lastError and /node; the scans go on by themselves and /health is ok again after the next complete one.",
      };
      this.#o.log.error({ alert: true, ...fields, lastError: this.#lastError?.message }, "deposit scans stalled: they keep failing; no deposit is credited or confirmed until one completes (see /health and lastError)");
    } else {
      this.#stall = {
        cause: "stalled", at: now,
        reason: `no deposit scan has completed for ${Math.round(stalledMs / 60_000)} minutes (${this.#lastError ? `last error: ${this.#lastError.message}` : "a wallet keeps refusing its deposits, or the node is unavailable"}): the cursor does not move.`,
        action: "See the warnings of the deposits actor (a wallet that does not take a deposit, a failing scan) and /node.",
      };
      this.#o.log.error({ alert: true, ...fields, lastError: this.#lastError?.message }, "deposit scans stalled: none has completed for a long time; the deposit cursor does not move (see /health)");
    }
  }

  #completed(): void {
    const now = this.#now();
    if (this.#stall) this.#o.log.warn({ stalledS: Math.round((now - this.#stall.at) / 1000), failedScans: this.#failed, cause: this.#stall.cause }, "deposit scans complete again after the stall alerted earlier: deposits are credited again");
    else if (this.#setbacks > 0) this.#o.log.info({ setbacks: this.#setbacks }, "deposit scans complete again");
    this.#setbacks = 0;
    this.#failed = 0;
    this.#lastError = undefined;
    // A failure after this one is logged as new (the count of the earlier ones not logged ends with them).
    this.#failuresUnlogged = 0;
    this.#failureLoggedAt = -Infinity;
    this.#stall = undefined;
    this.#completeAt = this.#stallFrom = now;
  }

  /** One pass; false when some wallet did not answer or the node failed a check (the cursor then stays). */
  async #scanOnce(): Promise<boolean> {
    const { node, registry } = this.#o;
    const target = this.#o.config.deposits.confirmations;
    const maxPending = this.#o.config.deposits.maxPendingPerWallet;
    const dust = BigInt(this.#o.config.withdrawals.dustSats);
    const rescan = this.#rescan;
    if (rescan) {
      this.#rescan = undefined;
      // Never forward: the blocks between would be skipped for good. (A cursor that moved back since the rescan was
      // asked, after a reorg, may stand above it now.)
      if (this.#cursor && rescan.height > this.#cursor.height) {
        this.#o.log.warn({ rescanFrom: rescan.height + 1, cursorHeight: this.#cursor.height }, "a deposit rescan from above the cursor was not taken: it would skip blocks never scanned");
      } else {
        await this.#saveCursor(rescan);
        this.#known.clear();
      }
    }
    const info = await node.blockchainInfo();
    // A node in initial block download (catching up after downtime, rebuilding its chain with -reindex) lists what it
    // has not connected yet as if it had left the chain: a confirmed deposit would read as reorged out and freeze its
    // wallet. No scan until it has caught up; the watcher tries again soon (and /health says why).
    if (info.initialblockdownload) {
      if (!this.#syncingSaid) this.#o.log.warn({ blocks: info.blocks, headers: info.headers }, "the node is still syncing (initial block download): deposit scans wait until it has caught up");
      this.#syncingSaid = true;
      // Not a stall of the scans: /health says the node is behind (chain.initialBlockDownload).
      this.#stallFrom = this.#now();
      return false;
    }
    this.#syncingSaid = false;
    this.stats.height = info.blocks;
    try {
      return await this.#scanFrom(info, target, maxPending, dust);
    } finally {
      // A new tip, by its hash (a reorg can replace the tip with another block at the same height). The work after a
      // block (payouts, the watchdog, expired cheques) waits neither for every wallet to take its deposits (a wallet
      // that keeps refusing must not hold up everyone's payouts) nor for the scan to succeed (a cursor the node does not
      // know fails every scan: withdrawals would never settle). None of it needs the deposits of the block credited.
      if (info.bestblockhash !== this.#tip) {
        this.#tip = info.bestblockhash;
        this.#o.onBlock?.(info.blocks);
      }
    }
  }

  async #scanFrom(info: { blocks: number; bestblockhash: string }, target: number, maxPending: number, dust: bigint): Promise<boolean> {
    const { node, registry } = this.#o;
    const r = await node.listSinceBlock(this.#cursor?.hash, target);
    this.stats.scans++;
    let complete = true;
    // Each work item is a thunk, run SCAN_CONCURRENCY at a time; the scan's own node calls (mempool checks, the open
    // deposits' gettransaction) take at most a quarter of the node's queue: a scan of many pending deposits must
    // neither overflow it (the node refuses calls beyond node.maxQueue: the scan would fail, and every payout, deposit
    // address and quote meanwhile be refused) nor crowd everyone else out of it.
    const work: Array<() => Promise<void>> = [];
    const inLane = oneAtATimePerWallet();
    const nodeSlots = limiter(Math.max(1, Math.min(NODE_CALLS_AT_ONCE, Math.floor(this.#o.config.node.maxQueue / 4))));
    const listed = new Set<string>();
    /** Unconfirmed transactions listed by this scan: their mempool check times are kept (see #prune). */
    const unconfirmed = new Set<string>();
    // One getmempoolentry per transaction per scan, however many of its outputs are deposits. undefined: the node
    // could not say (the deposit is left as it is, and the scan repeats).
    const checks = new Map<string, Promise<boolean | undefined>>();
    let checkFailed: unknown;
    const lookInMempool = (txid: string): Promise<boolean | undefined> | undefined => {
      let check = checks.get(txid);
      if (!check && this.#mempoolCheckDue(txid)) {
        check = nodeSlots(() => this.#inMempool(txid)).catch((e: unknown) => {
          checkFailed ??= e;
          this.#mempoolChecked.delete(txid);
          return undefined;
        });
        checks.set(txid, check);
      }
      return check;
    };
    for (const tx of r.transactions) {
      if ((tx.category === "immature" || tx.category === "generate") && tx.address) work.push(() => this.#coinbase(tx.txid, tx.vout, tx.address!, tx.amount));
      if (tx.category !== "receive" || !tx.address) continue;
      const outpoint = `${tx.txid}:${tx.vout}`;
      if (tx.confirmations === 0) unconfirmed.add(tx.txid);
      work.push(async () => {
        const owner = (await this.ownerOf(tx.address!)) ?? (await this.#ownerFromLabel(outpoint, tx.address!, tx.label, inLane));
        if (owner === RETRY) {
          complete = false;
          return;
        }
        if (!owner) {
          this.stats.unrelated++;
          return;
        }
        const amount = btcNumberToSats(tx.amount);
        if (tx.confirmations < 0) {
          // Conflicted (double-spent or replaced): it is not coming.
          if (!(await inLane(owner, () => this.#removed(owner, outpoint, tx.txid, tx.vout, amount, tx.confirmations)))) complete = false;
          return;
        }
        // Zero too, whatever the limit (withdrawals.dustSats may be "0"): a wallet refuses a deposit of nothing, and a
        // refusal leaves the scan to repeat for ever. Not one its wallet already took (credited while the minimum was
        // lower, then listed again, pending or on a rescan): that one goes on as any deposit (confirmed, dropped from
        // the mempool), and is never recorded as dust (an operator reading that would pay it a second time).
        const was = this.#known.get(outpoint);
        if ((amount <= 0n || amount < dust) && (was === undefined || was === "ignored_dust")) {
          if (was === "ignored_dust") return;
          // Its user is told, and it has an entry in their history (a zero-value output, nobody's payment, has
          // neither): coins sent to their address never vanish without a word. Once per outpoint, in the wallet.
          const res = amount > 0n
            ? await inLane(owner, () => registry.send(owner, "deposit_ignored", { deposit: { txid: tx.txid, vout: tx.vout, address: tx.address!, amount, confirmations: tx.confirmations }, minimum: dust }))
            : undefined;
          if (res && isRefusal(res)) {
            complete = false;
            this.#o.log.warn({ userKey: owner, refusal: res.code }, "a wallet did not take a deposit below the dust limit yet; the scan repeats");
            return;
          }
          if (!res || res.status === "ignored") {
            this.stats.ignoredDust++;
            // No amount beside the user key: with the line's time, it would point at the output on chain (GET /deposits has it).
            this.#o.log.warn({ userKey: owner }, "deposit below the dust limit not credited (GET /deposits?status=ignored_dust)");
            await this.#record(outpoint, { userKey: owner, txid: tx.txid, vout: tx.vout, amount, status: "ignored_dust", confirmations: tx.confirmations, seenAt: Date.now() });
            return;
          }
          // Its wallet has it already (this process had not met it yet): as any deposit, below (which records it).
        }
        if (tx.confirmations === 0) {
          // Still in the node's mempool? Asked for a pending deposit (to drop one that left it) and for a dropped one
          // listed again (credited again only if it came back), at most every MEMPOOL_CHECK_MS each: a scan runs every
          // poll, and there may be many.
          const open = this.#open.has(outpoint);
          // A drop is remembered on disk too (a restart, or a full memory, would otherwise credit it as pending again).
          // One held back by the cap was never credited, so never dropped: no read of the disk at every scan for it.
          const known = this.#known.get(outpoint) ?? (open || this.#heldBack.has(outpoint) ? undefined : (await this.#recorded(outpoint))?.status);
          const dropped = known === "dropped";
          if (open || dropped) {
            const check = lookInMempool(tx.txid);
            const due = check !== undefined;
            const present = due ? await check : undefined;
            // Between two checks a deposit missing from the mempool stays missing: its time counts on (mempoolGraceMs),
            // and its wallet, which holds it pending, is not asked again.
            if (open && !due && this.#missing.has(outpoint)) {
              listed.add(outpoint);
              return;
            }
            if (due && present === undefined) {
              // Left as it is (not asked about again below); the scan repeats soon.
              listed.add(outpoint);
              complete = false;
              return;
            }
            const gone = due && present === false;
            if (dropped && !gone && !due) return;
            if (gone) {
              listed.add(outpoint);
              if (open && !(await this.#missingFromMempool(owner, outpoint, tx.txid, tx.vout, amount, inLane))) complete = false;
              return;
            }
          }
        }
        this.#missing.delete(outpoint);
        const res = await inLane(owner, () => registry.send(owner, "deposit", { deposit: { txid: tx.txid, vout: tx.vout, address: tx.address!, amount, confirmations: tx.confirmations }, target, maxPending }));
        if (isRefusal(res) && res.code === "too_many_pending") {
          // Not a failed scan: the cursor trails the tip by target−1 blocks, so it is listed again until it has `target`
          // confirmations, and then credited confirmed in one go (a wallet always takes those).
          this.#heldBackOnce(owner, outpoint);
          return;
        }
        if (isRefusal(res)) {
          complete = false;
          this.#o.log.warn({ userKey: owner, refusal: res.code }, "a wallet did not take a deposit yet; the scan repeats");
          return;
        }
        this.#heldBack.delete(outpoint);
        const before = this.#known.get(outpoint);
        listed.add(outpoint);
        await this.#track(outpoint, { owner, txid: tx.txid, vout: tx.vout, address: tx.address!, amount }, res.status);
        if (before !== res.status) {
          if (res.status === "pending" && before === undefined) this.stats.credited++;
          if (res.status === "confirmed") this.stats.confirmed++;
          await this.#record(outpoint, { userKey: owner, txid: tx.txid, vout: tx.vout, amount, status: recordStatus(res.status), confirmations: tx.confirmations, seenAt: Date.now() });
        }
      });
    }
    for (const tx of r.removed ?? []) {
      if (tx.category !== "receive" || !tx.address) continue;
      // The node lists here every transaction of the blocks that left the chain, also those mined again in the
      // blocks that replaced them, with their confirmations now (listsinceblock's help): those did not leave, and
      // `transactions` lists them as they are. Only one that is in no block any more (confirmations 0 or less) left.
      if (tx.confirmations > 0) {
        this.stats.remined++;
        continue;
      }
      work.push(async () => {
        const owner = await this.ownerOf(tx.address!);
        if (owner && !(await inLane(owner, () => this.#removed(owner, `${tx.txid}:${tx.vout}`, tx.txid, tx.vout, btcNumberToSats(tx.amount), tx.confirmations)))) complete = false;
      });
    }
    await eachAtMost(work, SCAN_CONCURRENCY, (job) => job());
    // listsinceblock does not list every way a deposit can vanish (a double spend confirmed after the cursor,
    // an RBF replacement in the mempool): every open deposit it did not list is asked about directly, once per
    // transaction.
    const looked = new Map<string, Promise<TxLookup>>();
    const lookUp = (txid: string) => {
      let l = looked.get(txid);
      if (!l) looked.set(txid, (l = nodeSlots(() => this.#transaction(txid))));
      return l;
    };
    await eachAtMost([...this.#open].filter(([op]) => !listed.has(op)), SCAN_CONCURRENCY, async ([outpoint, d]) => {
      if (!(await inLane(d.owner, async () => this.#checkOpen(outpoint, d, await lookUp(d.txid), target, maxPending)))) complete = false;
    });
    if (checkFailed !== undefined) this.#o.log.warn({ err: checkFailed }, "the node could not say whether pending deposits are still in its mempool; the scan repeats");
    this.#prune(unconfirmed);
    if (!complete) return false;
    if (r.lastblock !== this.#cursor?.hash) await this.#saveCursor({ hash: r.lastblock, height: Math.max(0, info.blocks - target + 1) });
    return true;
  }

  /**
   * A payment to an address of the node's wallet that the owner index does not know. Deposit addresses are labelled
   * with their owner in the node's wallet when handed out: an owner record lost with the store (a restore from before
   * it was backed up) is taken back from that label, with an alert, so the deposit is credited. Otherwise (a house
   * float, an operator's address) it is no one's: said once per payment. RETRY: the label names an owner whose wallet
   * cannot answer now (busy, restarting): the scan is left incomplete and repeated, never the deposit written off.
   */
  async #ownerFromLabel(outpoint: string, address: string, label: string | undefined, inLane: Lane): Promise<string | typeof RETRY | undefined> {
    const owner = label && label !== POOL_LABEL ? ownerOfLabel(this.#o.store, address, label) : undefined;
    if (label && !owner && isSealedLabel(label) && this.#known.get(outpoint) !== "unowned") {
      // Sealed by this engine and not opened: the key it was sealed with has left the key ring (or the label was altered).
      this.#o.log.error({ alert: true, outpoint }, "a deposit to an address whose owner label cannot be opened (its key is no longer in the key ring?): not credited; put the key back in the ring, or find the owner through the audit");
    }
    if (owner) {
      // The label was sealed by this engine for a user it gave the address to. A wallet opened after the backup the store
      // was restored from is not in the store: it is opened again, so that the deposit is credited (its user finds it at
      // /start). In the wallet's lane, as the scan's other commands to it.
      let opened: unknown = await inLane(owner, () => this.#o.registry.read(owner, "balance", {}));
      if (isRefusal(opened) && opened.code === "not_found") opened = await inLane(owner, () => this.#o.registry.send(owner, "open", {}));
      if (isRefusal(opened)) {
        this.#o.log.warn({ userKey: owner, refusal: opened.code }, "a deposit to an address whose owner record was lost: its owner's wallet cannot answer now; the scan repeats");
        return RETRY;
      }
      await this.recordOwner(address, owner);
      this.#o.log.error({ alert: true, userKey: owner }, "a deposit to an address with no owner record (lost with a restored store?); its owner taken back from the node wallet's label (the deposit: /wallets/<userKey>)");
      return owner;
    }
    if (this.#known.get(outpoint) !== "unowned") {
      this.#known.set(outpoint, "unowned");
      this.#o.log.warn({ outpoint }, "a payment to an address of the node's wallet that no user owns (a house float, an operator's address): not credited to anyone");
    }
    return undefined;
  }

  /**
   * A block's coinbase paying a user's deposit address (a solo miner, a pool that pays in the coinbase): not credited,
   * since it cannot be spent for 100 blocks and vanishes with its block in a reorg. The coins stay in the node's wallet,
   * owned by no one: operators are told once (per run), to settle it with the user.
   */
  async #coinbase(txid: string, vout: number, address: string, btc: number): Promise<void> {
    const outpoint = `${txid}:${vout}`;
    if (this.#known.get(outpoint) === "coinbase") return;
    const owner = await this.ownerOf(address);
    if (!owner) return;
    this.#known.set(outpoint, "coinbase");
    this.#o.log.error({ alert: true, userKey: owner }, "a coinbase output pays a user's deposit address; it is not credited (mined coins are not taken as deposits): settle it with the user (the output: listsinceblock, category immature, for the wallet's addresses)");
  }

  /**
   * A deposit the node's wallet lists in no block that is not in the node's mempool either: evicted (too low a fee,
   * expired), or a transaction it spends was replaced (the wallet does not know that one, so it never marks the deposit
   * conflicted). One never credited is not credited now (mined later, it is listed in its block). One pending is
   * dropped once it has been missing for `deposits.mempoolGraceMs` (if it comes back, it is pending again). False if
   * the wallet did not answer.
   */
  async #missingFromMempool(owner: string, outpoint: string, txid: string, vout: number, amount: bigint, inLane: Lane): Promise<boolean> {
    // Durations on a monotonic clock: a wall clock set back would keep a vanished deposit pending for as long.
    const now = this.#now();
    const since = this.#missing.get(outpoint) ?? now;
    this.#missing.set(outpoint, since);
    if (now - since < this.#o.config.deposits.mempoolGraceMs) return true;
    this.#o.log.warn({ outpoint, missingMs: now - since }, "a pending deposit left the node's mempool without being mined; dropped (it is pending again if it comes back)");
    const answered = await inLane(owner, () => this.#removed(owner, outpoint, txid, vout, amount, 0));
    if (answered) this.#missing.delete(outpoint);
    return answered;
  }

  /** Whether a transaction is due to be looked for in the node's mempool (at most every MEMPOOL_CHECK_MS): now marked. */
  #mempoolCheckDue(txid: string): boolean {
    const now = this.#now(), last = this.#mempoolChecked.get(txid);
    if (last !== undefined && now - last < MEMPOOL_CHECK_MS) return false;
    this.#mempoolChecked.set(txid, now);
    return true;
  }

  /**
   * The in-memory marks of deposits no longer pending go: the mempool check times of transactions neither open nor
   * listed unconfirmed (a dropped one listed again keeps its own), and the missing-since times of deposits not open.
   */
  #prune(unconfirmed: Set<string>): void {
    const open = new Set<string>();
    for (const d of this.#open.values()) open.add(d.txid);
    for (const txid of this.#mempoolChecked.keys()) if (!open.has(txid) && !unconfirmed.has(txid)) this.#mempoolChecked.delete(txid);
    for (const outpoint of this.#missing.keys()) if (!this.#open.has(outpoint)) this.#missing.delete(outpoint);
  }

  async #inMempool(txid: string): Promise<boolean> {
    try {
      await this.#o.node.call("getmempoolentry", [txid]);
      return true;
    } catch (e) {
      if ((e as { code?: number }).code === -5) return false;
      throw e;
    }
  }

  /** The node wallet's view of a transaction: undefined if it does not know it, "failed" if it could not say. */
  async #transaction(txid: string): Promise<TxLookup> {
    try {
      return await this.#o.node.call<{ confirmations: number }>("gettransaction", [txid]);
    } catch (e) {
      return (e as { code?: number }).code === -5 ? undefined : "failed";
    }
  }

  async #checkOpen(outpoint: string, d: OpenDeposit, tx: TxLookup, target: number, maxPending: number): Promise<boolean> {
    if (tx === "failed") return false;
    // Listed by listsinceblock unless conflicted (or unknown to the wallet): a pending one in no mempool is handled in
    // the scan (#missingFromMempool).
    const gone = !tx || tx.confirmations < 0;
    if (gone) return this.#removed(d.owner, outpoint, d.txid, d.vout, d.amount, tx?.confirmations ?? 0);
    if (tx!.confirmations < target) return true;
    // The wallet holds it (pending): confirming it is never refused for the cap.
    const res = await this.#o.registry.send(d.owner, "deposit", { deposit: { txid: d.txid, vout: d.vout, address: d.address, amount: d.amount, confirmations: tx!.confirmations }, target, maxPending });
    if (isRefusal(res)) return false;
    await this.#track(outpoint, d, res.status);
    return true;
  }

  /**
   * A wallet holding `deposits.maxPendingPerWallet` unconfirmed deposits did not take another: said once per outpoint.
   * The user key alone: no amount, address or txid beside it (with the line's time, they would point at the output on
   * chain, as for dust).
   */
  #heldBackOnce(owner: string, outpoint: string): void {
    if (this.#heldBack.has(outpoint)) return;
    if (this.#heldBack.size >= 200_000) this.#heldBack.clear();
    this.#heldBack.add(outpoint);
    this.stats.heldBack++;
    this.#o.log.warn({ userKey: owner }, "a wallet holds as many unconfirmed deposits as it may (deposits.maxPendingPerWallet): a new one is credited once it is confirmed");
  }

  /** Keeps the open-deposit set (memory and disk) in step with the wallet's answer. */
  async #track(outpoint: string, d: OpenDeposit, status: string): Promise<void> {
    const key = this.#mac("outpoint", outpoint);
    if (status === "pending") {
      if (!this.#open.has(outpoint)) {
        await this.#o.store.put(NS_OPEN, key, d);
        this.#open.set(outpoint, d);
      }
    } else if (this.#open.delete(outpoint)) {
      // Its mempool check time goes with the scan's #prune (another output of its transaction may still be open).
      this.#missing.delete(outpoint);
      await this.#o.store.del(NS_OPEN, key);
    }
  }

  /** A deposit left the chain or was double-spent. Returns false if the wallet did not answer. */
  async #removed(owner: string, outpoint: string, txid: string, vout: number, amount: bigint, confirmations: number): Promise<boolean> {
    const known = this.#known.get(outpoint);
    if (known === "dropped" || known === "reversed") {
      // Its record written, and a crash before it left the open set (below): it leaves it now.
      const open = this.#open.get(outpoint);
      if (open) await this.#track(outpoint, open, known);
      return true;
    }
    const res = await this.#o.registry.send(owner, "deposit_removed", { outpoint });
    if (isRefusal(res)) return false;
    if (res.status === "unknown") return true;
    if (res.status === "dropped") this.stats.dropped++;
    if (res.status === "reversed") {
      this.stats.deepReorgs++;
      this.#o.log.error({ alert: true, userKey: owner }, "a confirmed deposit left the chain (reorg deeper than the confirmation target); wallet frozen for review (its deposits: /wallets/<userKey>)");
    }
    // The record first, then out of the open set: the other way round, a crash between the two left a deposit neither
    // open nor recorded as gone, and the next scan credited it as pending again (a "seen" notice, then a second "dropped").
    await this.#record(outpoint, { userKey: owner, txid, vout, amount, status: recordStatus(res.status), confirmations, seenAt: Date.now() });
    const open = this.#open.get(outpoint);
    if (open) await this.#track(outpoint, open, res.status);
    return true;
  }

  /** The deposit's record, if the watcher wrote one; its status is remembered (`#known`). */
  async #recorded(outpoint: string): Promise<DepositRecord | undefined> {
    const d = await this.#o.store.get<DepositRecord>(NS_DEPOSITS, this.#mac("outpoint", outpoint));
    if (d && !this.#known.has(outpoint)) this.#known.set(outpoint, d.status);
    return d;
  }

  async #record(outpoint: string, d: DepositRecord): Promise<void> {
    await this.#o.store.put(NS_DEPOSITS, this.#mac("outpoint", outpoint), d);
    // Known once on disk: a status known but not written (the put failed) would let #removed take the deposit out of
    // the open set with nothing on disk saying it is gone.
    if (this.#known.size >= 200_000) this.#known.clear();
    this.#known.set(outpoint, d.status);
  }

  async #saveCursor(c: Cursor): Promise<void> {
    await this.#o.store.put(NS_WATCHER, "cursor", c);
    this.#cursor = c;
  }

  #mac(purpose: string, data: string): string {
    return (this.#o.mac ?? ((p, d) => this.#o.store.mac(p, d)))(purpose, data);
  }
}

/**
 * Per wallet, one command at a time. A block can pay one wallet hundreds of outputs: sent at once they would pass the
 * registry's in-flight limit per wallet, be refused as busy, and the scan would never complete. A wallet handles its
 * commands one at a time anyway.
 */
type Lane = <T>(owner: string, f: () => Promise<T>) => Promise<T>;

/** A deposit's owner cannot be settled now: the scan is repeated (see #ownerFromLabel). */
const RETRY = Symbol("retry");

/** How often a pending deposit's transaction is looked for in the node's mempool, at most. */
const MEMPOOL_CHECK_MS = 30_000;

/** Work items (a listed output, an open deposit asked about) a scan runs at once. */
const SCAN_CONCURRENCY = 32;

/** The scan's node calls in flight at most (and never more than a quarter of node.maxQueue). */
const NODE_CALLS_AT_ONCE = 16;

/**
 * Scans stalled: this many in a row failed with the node answering (with the retry backoff, 250 ms doubling, the
 * fifth comes ≥ 4 s after the first, and a passing fault — a wallet reloading, a full queue — is over by then; one that
 * fails five times at once, such as a cursor on a block the node does not know, fails for ever), or none completed
 * for STALL_MS (any cause: a wallet that keeps refusing, a node that answers too slowly) — 10 minutes, one mainnet
 * block on average, longer than any deposit should wait for its credit.
 */
const STALL_FAILURES = 5;
/** A scan failing the same way again is logged at most this often. */
const FAILURE_LOG_MS = 60_000;
const STALL_MS = 10 * 60_000;

type TxLookup = { confirmations: number } | undefined | "failed";

/** listsinceblock refused the cursor's block: the node does not know it (RPC_INVALID_ADDRESS_OR_KEY, "Block not found"). */
function isUnknownBlock(e: unknown): boolean {
  const n = e as { code?: unknown; method?: unknown };
  return n.method === "listsinceblock" && n.code === -5;
}

/** An error's message for /health and the alert, without a stack (bitcoind's messages name no user, address or txid). */
function errorText(e: unknown): string {
  return String((e as Error)?.message ?? e).slice(0, 300);
}

/** At most n of the calls run at once; the others wait their turn. */
function limiter(n: number): <T>(f: () => Promise<T>) => Promise<T> {
  let running = 0;
  const waiting: Array<() => void> = [];
  return async <T>(f: () => Promise<T>): Promise<T> => {
    if (running >= n) await new Promise<void>((r) => waiting.push(r));
    else running++;
    try {
      return await f();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else running--;
    }
  };
}

/**
 * f over every item, at most n at once (limiter); resolves once all have finished (none left running behind a failed
 * scan), rejecting with the first error, if any.
 */
async function eachAtMost<T>(items: readonly T[], n: number, f: (item: T) => Promise<unknown>): Promise<void> {
  const turn = limiter(n);
  const failed = (await Promise.allSettled(items.map((item) => turn(() => f(item))))).find((r) => r.status === "rejected");
  if (failed) throw failed.reason;
}

function oneAtATimePerWallet(): Lane {
  const tails = new Map<string, Promise<unknown>>();
  return (owner, f) => {
    const run = (tails.get(owner) ?? Promise.resolve()).then(f);
    tails.set(owner, run.catch(() => undefined));
    return run;
  };
}
