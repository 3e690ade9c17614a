// The engine: assembles the actor system on the encrypted journal, the wallet registry, the node actor,
// the deposit watcher, payouts, cheques and the relay — and starts them in the order that keeps money
// safe: journals replayed, unfinished work (outboxes, signed payouts) resumed, then the chain followed.
import type { Config } from "./config.ts";
import { alerter, type Logger } from "./log.ts";
import { isRefusal, refuse, type Refusal } from "./domain/refusals.ts";
import { ActorSystem } from "./actors/runtime.ts";
import { WalletRegistry, type AnswerOf } from "./actors/registry.ts";
import { TransferCourier } from "./actors/transfers.ts";
import { PayoutService } from "./actors/payout.service.ts";
import { FinishedPayouts, strandedCoins, type PayoutState, type PayoutStep } from "./actors/payout.ts";
import type { PayoutSummary } from "./actors/payout.messages.ts";
import { ChequeService } from "./actors/cheque.service.ts";
import { FinishedCheques } from "./actors/cheques.ts";
import { EngineRelay } from "./relay.ts";
import { KeptNotices, type KeptRecord } from "./held.ts";
import type { Notification } from "./relay.types.ts";
import { STORE_FORMAT, upgradeWalletRecords, WalletRecords, walletSums } from "./actors/wallet.records.ts";
import { walletJournalKey } from "./actors/wallet.actor.ts";
import type { EngineStorage } from "./storage.ts";
import type { EncryptedStore, StoreOp } from "./store/db.ts";
import { NodeGateway } from "./actors/node.ts";
import { ownerLabel, resealLabels } from "./actors/owner-label.ts";
import { DepositWatcher } from "./actors/deposit-watcher.ts";
import { checkAddressFor } from "./domain/address.ts";
import { pace } from "./pace.ts";
import { assessSolvency, maturingDeposits, type SolvencyReport } from "./actors/solvency.ts";
import { BackupService } from "./backup/service.ts";
import { reconcileAfterRestore, stillAmbiguous, type Incident } from "./backup/reconcile.ts";
import { RESTORED_KEY, restoreLoss, type RestoredMark } from "./backup/restore.ts";
import { META } from "./store/db.ts";

/** Where the comparison of a restored store with the chain starts (META; deleted with the restore mark). */
const RECONCILE_FROM = "reconcile_from";
/** The last restore incident payouts were resumed after (ENGINE_NS): kept, resolved, for the record. */
const RESOLVED_INCIDENT = "restore_incident_resolved";
/**
 * The cheques held for review after a lossy restore (ENGINE_NS), until an operator releases them: those open (or waiting
 * for their funds) in the restored books, by hash. `restoredAt`: the restore that held them (its mark's `at`), so a start
 * that finds the same restore mark again adds none made since.
 */
const HELD_CHEQUES = "cheques_held";
interface HeldCheques {
  at: number;
  restoredAt: number;
  archive: string;
  hashes: string[];
}
/** Notices kept for a write whose outcome is unknown, at most (one group-commit batch's wallets). */
const MAX_UNSURE_NOTICES = 10_000;

export interface EngineOptions {
  config: Config;
  log: Logger;
  storage: EngineStorage;
  rpc: { url: string; user: string; password: string };
  now?: () => number;
  /** Tests: called at each payout pipeline step; a crash test stops the engine there. */
  payoutStep?: (step: PayoutStep) => void;
  /**
   * The identity settings' check value to pin in the store when none is (the all-in-one shape; the caller has checked
   * that a pinned one matches): written once backups ship, so the write is in the segments like any other.
   */
  identityPin?: string;
}

export interface Liabilities {
  available: bigint;
  pending: bigint;
  reserved: bigint;
  escrow: bigint;
  /** Sent from one user to another (or to a cheque) and not yet credited: in no balance, still owed. */
  transit: bigint;
  wallets: number;
}

export class Engine {
  readonly config: Config;
  readonly log: Logger;
  readonly storage: EngineStorage;
  readonly system: ActorSystem;
  readonly registry: WalletRegistry;
  readonly node: NodeGateway;
  readonly watcher: DepositWatcher;
  /** Settles once deposit address labels written in clear before labels were sealed are sealed (see #sealOwnerLabels). */
  labelsSealed: Promise<void> = Promise.resolve();
  readonly payouts: PayoutService;
  readonly cheques: ChequeService;
  readonly courier: TransferCourier;
  readonly relay: EngineRelay;
  readonly backup: BackupService;
  /** What the reconciliation after a restore found and could not settle alone (until an operator resumes). */
  restoreIncident: Incident | undefined;
  /** The last restore incident an operator resumed payouts after, marked resolved (when, by whom): kept for the record. */
  lastRestoreIncident: Incident | undefined;
  /** Cheques held for review after a lossy restore (see #holdCheques); undefined when none is. */
  #held: { record: HeldCheques; hashes: Set<string> } | undefined;
  #closed = false;
  /** Drain mode: no new wallets or deposit addresses; withdrawals keep working. Persisted. */
  #draining: { reason: string; at: number } | undefined;
  readonly #identityPin: string | undefined;
  #blockWork: Promise<void> = Promise.resolve();
  /** A comparison with the chain after a restore that waits for the node to catch up (see #reconcile). */
  #reconciling: { mark: RestoredMark; sinceBlock: string | undefined } | undefined;
  /** The last watchdog reading found a hole (and said so): not said again until a reading agrees. */
  #holeTold = false;
  #reconcileRun: Promise<void> | undefined;
  /** Payouts that left the payout book, remembered in the store. */
  readonly #finishedPayouts: FinishedPayouts;
  #announcing: Promise<void> = Promise.resolve();
  /** Waits (#nap) a close cuts short. */
  readonly #wakers = new Set<() => void>();
  /** The notices of the wallets' records in the batch whose write's outcome the store does not know yet. */
  readonly #unsureNotices: { n: Notification; record: KeptRecord | undefined }[] = [];
  /** The watchdog's last verdict, for operators. */
  lastSolvency: SolvencyReport | undefined;

  private constructor(o: EngineOptions) {
    const { config, log, storage } = o;
    this.config = config;
    this.log = log;
    this.storage = storage;
    this.#identityPin = o.identityPin;
    this.system = new ActorSystem(storage.journal);
    const w = config.wallet;
    let relay!: EngineRelay;
    this.registry = new WalletRegistry({
      system: this.system,
      log: log.child({ actor: "wallet" }),
      idleMs: w.idleMs, maxResident: w.maxResident, maxInFlight: w.maxInFlight, askTimeoutMs: w.askTimeoutMs,
      crashBudget: w.crashBudget, crashWindowMs: w.crashWindowMs, records: new WalletRecords(storage.store, w.historyLimit), snapshotEvery: w.snapshotEvery,
      hooks: {
        notice: (userKey, notice, chatHandle, record) => relay.notify({ userKey, chatHandle, notice }, record),
        // Written with the wallet's record: a crash leaves both or neither (held.ts, KeptNotices.reserve).
        keepNotice: (userKey, notice, chatHandle) => relay.keep({ userKey, chatHandle, notice }),
        deliverTransfer: (from, id, to, amount) => this.courier.deliver(from, id, to, amount),
        takeAcks: (userKey) => this.courier.takeAcks(userKey),
        unsureNotices: (userKey, notices, chatHandle) => {
          // One batch at most is unsure at a time (the store refuses writes until it knows): these are its notices.
          for (const { notice, record } of notices) if (this.#unsureNotices.length < MAX_UNSURE_NOTICES) this.#unsureNotices.push({ n: { userKey, chatHandle, notice }, record });
        },
        submitWithdrawal: (userKey, id, withdrawal) => {
          this.payouts.submit(userKey, id, withdrawal).then((r) => {
            if (isRefusal(r)) log.warn({ userKey, id, refusal: r.code }, "payout not recorded yet; the wallet re-submits it on its next activation");
          }, (e: unknown) => log.warn({ userKey, id, err: e }, "payout not recorded yet; the wallet re-submits it on its next activation"));
        },
      },
    });
    // The owner index (the deposit watcher's): the relay records deposit addresses in it and asks it, and so does the node
    // actor before it takes back an address an earlier run left in the pool.
    const addresses = {
      record: (address: string, userKey: string) => this.watcher.recordOwner(address, userKey),
      ownerOf: (address: string) => this.watcher.ownerOf(address),
    };
    this.node = new NodeGateway({
      config, log: log.child({ actor: "node" }), system: this.system, rpc: o.rpc, maxWaitMs: config.node.waitForNodeMs,
      ownerLabel: (address, userKey) => ownerLabel(storage.store, address, userKey),
      ownerOf: (address) => addresses.ownerOf(address),
      ...(config.secrets.walletPassphrase ? { walletPassphrase: config.secrets.walletPassphrase } : {}),
    });
    this.cheques = new ChequeService({
      system: this.system, registry: this.registry, log, ttlSec: config.transfers.chequeTtlSec,
      maxAmount: BigInt(config.transfers.maxTransferSats), mac: storage.mac,
      finished: new FinishedCheques(storage.store), retainFinished: config.transfers.retainFinishedCheques,
      maxOpenPerCreator: config.transfers.maxOpenChequesPerUser,
      storeFailing: () => storage.store.writeHealth.failing,
      held: (hash) => this.#held?.hashes.has(hash) === true,
      // A creator told their cheque was claimed goes out as the wallets' notices do.
      notify: (n) => relay.notify(n),
    });
    this.courier = new TransferCourier({ registry: this.registry, log: log.child({ actor: "courier" }), sinks: [this.cheques] });
    this.#finishedPayouts = new FinishedPayouts(storage.store);
    this.payouts = new PayoutService({
      system: this.system,
      log,
      storeFailing: () => storage.store.writeHealth.failing,
      node: { call: (method, params) => this.node.rawCall(method, params), signing: (sign) => this.node.signing(sign) },
      confirmations: config.deposits.confirmations,
      maxOutputsPerBatch: config.withdrawals.maxOutputsPerBatch,
      finished: this.#finishedPayouts,
      retainFinished: config.withdrawals.retainFinishedPayouts,
      batchWindowMs: config.withdrawals.batchWindowMs,
      afterBatch: () => this.watchdog(),
      feeRate: () => this.node.estimateFeeRate(config.withdrawals.confTarget),
      held: (userKeys) => this.#frozenOf(userKeys),
      ...(o.payoutStep ? { step: o.payoutStep } : {}),
      hooks: {
        // True once the wallet took it: a wallet busy or failing is told again (payout.ts, tellBroadcast).
        broadcast: (userKey, id, txid) => this.registry.send(userKey, "withdrawal_broadcast", { id, txid }).then((r) => !isRefusal(r), () => false),
        settled: async (userKey, id, txid, fee) => {
          const r = await this.registry.send(userKey, "withdrawal_settled", { id, txid, fee });
          return isRefusal(r) ? r : true;
        },
        released: async (userKey, id, reason) => {
          const r = await this.registry.send(userKey, "withdrawal_released", { id, reason });
          return isRefusal(r) ? r : true;
        },
        alert: alerter(log),
      },
    });
    this.watcher = new DepositWatcher({
      config, log: log.child({ actor: "deposits" }), node: this.node, registry: this.registry, store: storage.store, mac: storage.mac,
      // One block's work at a time, in order; `blockWorkDone()` lets callers wait for it.
      onBlock: () => {
        this.#blockWork = this.#blockWork.then(() => this.#afterBlock()).catch((e: unknown) => log.warn({ err: e }, "after-block work failed; it runs again after the next block"));
      },
    });
    relay = new EngineRelay({
      config, log: log.child({ actor: "relay" }), registry: this.registry, cheques: this.cheques, isDraining: () => this.#draining !== undefined,
      identityPins: { pin: (check) => pinIdentityInStore(this.storage.store, check) },
      // Notices survive a crash or a restart until an edge has delivered them (held.ts, KeptNotices).
      kept: new KeptNotices<Notification>(storage.store, log.child({ actor: "notices" })),
      addresses,
      chain: {
        takeDepositAddress: (userKey) => this.node.takeDepositAddress(userKey),
        feeRate: () => this.node.estimateFeeRate(config.withdrawals.confTarget),
        soloFee: (address, amount, rate) => this.node.soloFee(address, amount, rate),
        checkWithdrawalAddress: async (address) => {
          const local = checkAddressFor(config.network, address);
          if (local !== true) return local;
          const v = await this.node.addressInfo(address).catch(() => undefined);
          if (!v) return refuse("node_unavailable", "Addresses cannot be checked right now; try again in a minute.");
          if (!v.valid) return refuse("bad_address", "That address is not valid (its checksum or format is wrong).");
          // One of the service's own (a user's deposit address, or a change address seen on chain in an earlier payout):
          // paying it on chain only costs a fee, and a change address is credited to nobody.
          if (v.mine) return refuse("bad_address", "That address belongs to this service's own wallet, so a withdrawal there would only cost a fee. To pay someone who uses this bot, send it to them here instead.");
          return true;
        },
      },
      ...(o.now ? { now: o.now } : {}),
    });
    this.relay = relay;
    this.backup = new BackupService({
      config, store: storage.store, log,
      backupNodeWallet: async (path) => {
        await this.node.rawCall("backupwallet", [path]);
      },
    });
  }

  static async start(o: EngineOptions): Promise<Engine> {
    const e = new Engine(o);
    try {
      return await Engine.#boot(e);
    } catch (err) {
      // A start that fails part-way (the store failing, the node refusing) leaves no actor, timer or node call behind.
      await e.halt().catch(() => undefined);
      throw err;
    }
  }

  static async #boot(e: Engine): Promise<Engine> {
    const store = e.storage.store;
    // A write that does not reach the disk (a full disk, an I/O error) fails its commands — their callers are told
    // whether it may still be on disk (the store reopens LevelDB to learn it, db.ts #drain) — and operators are told
    // once, then again when writes succeed.
    store.onWriteHealth((h) => {
      if (h.failing) {
        e.log.error({ alert: true, err: h.lastError?.message }, "the store cannot write (disk full or I/O error?): commands are refused, nothing is lost; free space or fix the disk — writes resume by themselves");
        return;
      }
      e.log.warn({ failures: h.failures }, "the store writes again; re-sending what waits in outboxes");
      // Credits refused while the store failed wait in their senders' outboxes, cheque payouts in the cheque book: send
      // them now, not at the next start.
      if (!e.#closed) void e.#resumeOutboxes().catch((err: unknown) => e.log.warn({ err }, "re-sending outboxes after the store recovered failed; they go at the next start"));
      if (!e.#closed) e.#resumeCheques(false);
    });
    // A batch the store could not say was written turned out to be on disk when it reopened: wallets read meanwhile
    // (replays during the outage) lack it. Idle ones are passivated (their next use replays from disk); a busy one,
    // and the payout and cheque actors, replay at their next write, refused as a gap (journal.ts: numbers are read again from disk).
    store.onUnsureSettled((landed) => {
      // The notices of the wallets' records in that batch: sent if it landed (their repeats make none), else dropped
      // (a retry that is written tells its user then).
      const notices = e.#unsureNotices.splice(0);
      if (!landed) return;
      for (const { n, record } of notices) e.relay.notify(n, record);
      e.log.warn("a write that failed during the store's outage was found on disk when it reopened; wallets replay their journals");
      e.registry.passivateAll();
      // It may be a claim, revoke or expiry the cheque book replayed without: the book reads its journal again and pays.
      if (!e.#closed) e.#resumeCheques(true);
    });
    // Continuous backup ships from the first write of this run on.
    const { needsSnapshot } = await e.backup.start();
    // The notices the last run did not deliver (held for a bot, or on their way to one, when it stopped or died): held
    // for the first edge before anything the catch-up below makes. Their deletes and the new notices' records are
    // written from here on, after the backup ships.
    const kept = await e.relay.restoreNotices();
    if (kept > 0) e.log.info({ notices: kept }, "notices kept from the last run, not delivered then: sent first to the first edge");
    if (e.#identityPin !== undefined && !(await pinIdentityInStore(store, e.#identityPin))) {
      throw new Error("the identity settings differ from those this store's wallets were made with (pinned meanwhile by another start)");
    }
    // A store from before the current format is brought up to it once (wallet records rebuilt, running sums counted).
    const upgraded = await upgradeWalletRecords(e.storage.journal, e.registry.records, e.log, () => e.cheques.fundedNow());
    if (upgraded && (upgraded.from > 0 || upgraded.replayed > 0)) e.log.info({ ...upgraded, format: STORE_FORMAT }, "store upgraded: wallet records rebuilt from the journals where needed, balances summed");
    // A store just restored from a backup pays nothing until it has been compared with the chain.
    const restored = await store.get<RestoredMark>(META, RESTORED_KEY);
    if (restored && !(await store.get(ENGINE_NS, "payouts_paused"))) {
      await store.put(ENGINE_NS, "payouts_paused", { reason: RECONCILING, at: Date.now() });
    }
    // Before anything can claim, revoke or expire a cheque (the edges are not served yet; expiry runs below).
    await e.#holdCheques(restored);
    // Switches that must survive a restart: a paused payout queue stays paused, drain mode stays on.
    const paused = await store.get<{ reason: string }>(ENGINE_NS, "payouts_paused");
    if (paused) e.payouts.pause(paused.reason);
    e.#draining = await store.get<{ reason: string; at: number }>(ENGINE_NS, "draining");
    e.restoreIncident = await store.get<Incident>(ENGINE_NS, "restore_incident");
    e.lastRestoreIncident = await store.get<Incident>(ENGINE_NS, RESOLVED_INCIDENT);
    // Where the comparison with the chain starts: the watcher's cursor as the backup left it, kept at the first start
    // (the watcher moves its cursor on as soon as it scans; a start interrupted before the comparison finished must
    // compare from the same block, or the spends before the new cursor would go unseen).
    const cursor = await store.get<{ hash: string }>("watcher", "cursor");
    let cursorAtRestore: { hash?: string } | undefined;
    if (restored) {
      cursorAtRestore = await store.get<{ hash?: string }>(META, RECONCILE_FROM);
      if (!cursorAtRestore) {
        cursorAtRestore = cursor ? { hash: cursor.hash } : {};
        await store.put(META, RECONCILE_FROM, cursorAtRestore);
      }
    }
    // The books are new when no deposit scan has ever run on them: only then may a missing node wallet be created.
    await e.node.start({ mayCreate: cursor === undefined });
    // Unfinished work first: wallets with an outbox re-send their transfers and withdrawals on activation.
    await e.#resumeOutboxes();
    await e.cheques.resume();
    await e.#expireCheques();
    const synced = await e.payouts.sync();
    if (isRefusal(synced)) e.log.warn({ why: synced.message }, "payouts not synced at start; retrying after the next block");
    else if (synced.settled > 0) e.log.info({ payouts: synced.settled }, "confirmed payouts whose wallets had not acknowledged the settlement: told, and recorded");
    await e.watcher.start();
    if (restored) await e.#reconcileOnce(restored, cursorAtRestore?.hash);
    // An adoption recorded in the payout book just before a crash, its incident not updated yet: the incident follows.
    if (e.restoreIncident?.ambiguous?.length) await e.#settleIncident();
    // Drain mode switched on before a restart that came before everyone was told: carry on telling.
    if (e.#draining) e.#announcing = e.#announceDrain(e.#draining.at);
    if (needsSnapshot) {
      e.backup.snapshot().catch((err: unknown) => e.log.error({ err: (err as Error).message, alert: true }, "the start-up backup snapshot failed; continuous backup is not restorable until one succeeds"));
    }
    // In the background: a node wallet with many users' addresses takes a while, and nothing waits for it.
    e.labelsSealed = e.#sealOwnerLabels().catch((err: unknown) => e.log.warn({ err: (err as Error).message }, "deposit address labels in clear could not all be sealed now; tried again at the next start"));
    return e;
  }

  /**
   * Deposit addresses handed out before labels were sealed carry their owner's user key in clear in the node wallet,
   * and those sealed before a key rotation are sealed under the old key (owner-label.ts): each is labelled again.
   */
  async #sealOwnerLabels(): Promise<void> {
    const sealed = await resealLabels(this.storage.store, (method, params) => this.node.call(method, params));
    if (sealed > 0) this.log.info({ addresses: sealed }, "deposit address labels in clear or under an older key are sealed under the current one");
  }

  /** #reconcile, one at a time. */
  #reconcileOnce(mark: RestoredMark, sinceBlock: string | undefined): Promise<void> {
    this.#reconcileRun ??= this.#reconcile(mark, sinceBlock).finally(() => (this.#reconcileRun = undefined));
    return this.#reconcileRun;
  }

  /**
   * After a restore: find the deposits made since the backup (the watcher's restored cursor), then look for
   * spends the restored books do not know. None: payouts resume. Some: wallets frozen, payouts stay paused
   * with the reason, the incident is kept for operators.
   */
  async #reconcile(mark: RestoredMark, sinceBlock: string | undefined): Promise<void> {
    const store = this.storage.store;
    // Until it is done (and whatever fails on the way), it runs again after each block.
    this.#reconciling = { mark, sinceBlock };
    // A node still catching up with the chain (a new bitcoind, a wallet restored and rescanning) does not know the
    // spends made since the backup: compared now, it would show none, and payouts paid since would be paid again.
    // Payouts stay paused and the comparison waits, tried again after each block.
    const info = await this.node.blockchainInfo();
    const wallet = await this.node.call<{ scanning?: unknown }>("getwalletinfo");
    if (info.initialblockdownload || info.blocks < info.headers || wallet.scanning) {
      this.log.warn({ blocks: info.blocks, headers: info.headers, scanning: Boolean(wallet.scanning) }, "restored store: the node is still catching up with the chain; the comparison with it waits (payouts stay paused)");
      return;
    }
    // The deposits made since the backup first: the wallets to freeze are chosen by what they hold. A scan left
    // incomplete (a wallet busy, a node call failed) would leave some of them out: the comparison waits for a whole one.
    let whole = await this.watcher.poke();
    // A wallet busy for a moment (the start resumes every outbox) leaves a scan incomplete: a few tries first.
    for (let i = 0; i < 4 && !whole; i++) {
      await new Promise((res) => setTimeout(res, 100 * 2 ** i));
      whole = await this.watcher.poke();
    }
    if (!whole) {
      this.log.warn("restored store: the deposit scan before the comparison with the chain did not complete; the comparison waits for the next block (payouts stay paused)");
      return;
    }
    const incident = await reconcileAfterRestore({
      log: this.log,
      listSinceBlock: (hash) => this.node.listSinceBlock(hash, 1),
      payouts: () => this.payouts.state(),
      paidBy: (txid) => this.#finishedPayouts.paidBy(txid),
      freeze: async (userKey, reason) => {
        // Every wallet concerned must be frozen before payouts can resume: a refusal (busy, failing) is tried again, and
        // one that stays refused fails the comparison, which the next start repeats (payouts stay paused meanwhile).
        for (let i = 0; ; i++) {
          const r = await this.registry.send(userKey, "freeze", { reason, by: "restore" });
          if (!isRefusal(r)) return;
          if (i === 4) throw new Error(`wallet ${userKey} could not be frozen after the restore (${r.code}: ${r.message}); the comparison with the chain runs again at the next start`);
          await new Promise((res) => setTimeout(res, 200 * 2 ** i));
        }
      },
      holdings: () => this.#holdings(),
      adopt: async (txid, ids, outputs) => {
        const r = await this.payouts.adopt(txid, ids, outputs);
        if (isRefusal(r)) throw new Error(`queued payouts paid by ${txid} could not be recorded (${r.message}); the comparison with the chain runs again at the next start`);
      },
    }, { sinceBlock, archive: mark.archive });
    // A lossy restore (its segments do not reach the crash): a payout the engine sent after the backup and that is not
    // mined yet is in no chain, and a new node's mempool never had it — the comparison cannot see it, and the restored
    // queued payout it paid would be built again with other coins. So the comparison finding nothing proves nothing
    // here: payouts stay paused, as an incident, until an operator resumes them (refused while the books and the node
    // disagree: once that payout is mined, the node holds less than the books say).
    const lost = restoreLoss(mark);
    if (incident || lost) {
      const found: Incident = incident ?? { at: Date.now(), archive: mark.archive, unknownSpends: [], frozen: [] };
      if (lost) {
        found.lost = lost;
        if (this.#held?.hashes.size) found.heldCheques = this.#held.hashes.size;
      }
      const unsure = lost ? `; the backup may not reach the crash (${lost}): a payout sent after it and not mined yet is unknown to this node` : "";
      const reason = incident
        ? `restored from a backup: ${incident.unknownSpends.length} spend(s) not in the restored books (${incident.unknownSpends.map((u) => u.txid).join(", ")}); ${incident.frozen.length} wallet(s) frozen${unsure} — review, then resume payouts`
        : `restored from a backup that may not reach the crash (${lost}): a payout sent after it and not mined yet is unknown to this node, and a resume would pay it again — wait until the old engine's last payouts would be mined, check the books against the node, then resume payouts`;
      // An incident still open from an earlier restore is kept with this one: its spends are before this comparison's
      // block, and its findings must not leave the operators' view.
      const open = this.restoreIncident;
      if (open) found.earlier = [...(open.earlier ?? []), { ...open, earlier: undefined }];
      await store.batch([
        { type: "put", ns: ENGINE_NS, key: "restore_incident", value: found },
        { type: "put", ns: ENGINE_NS, key: "payouts_paused", value: { reason, at: Date.now() } },
        { type: "del", ns: META, key: RESTORED_KEY },
        { type: "del", ns: META, key: RECONCILE_FROM },
      ]);
      this.restoreIncident = found;
      this.payouts.pause(reason);
      this.#reconciling = undefined;
      if (!incident) {
        this.log.error({ alert: true, heldCheques: found.heldCheques ?? 0 }, `after the restore: nothing unknown was spent on the chain, but ${reason}`);
        // The books against the node now, for operators (a hole is said; the pause is the incident's).
        await this.watchdog();
      }
      return;
    }
    // Nothing unknown was spent; the books must still cover what they owe before payouts resume (a hole found now
    // replaces the reconciliation's pause with the watchdog's own).
    await this.watchdog();
    const ops: StoreOp[] = [{ type: "del", ns: META, key: RESTORED_KEY }, { type: "del", ns: META, key: RECONCILE_FROM }];
    if (this.payouts.paused === RECONCILING) ops.push({ type: "del", ns: ENGINE_NS, key: "payouts_paused" });
    await store.batch(ops);
    this.#reconciling = undefined;
    const resumed = this.payouts.paused === RECONCILING;
    if (resumed) this.payouts.resume();
    this.log.info({ archivePosition: mark.archivePosition, position: mark.position, paused: this.payouts.paused }, `restored store reconciled with the chain: nothing unknown was spent; ${resumed ? "payouts resume" : "payouts stay paused"}`);
  }

  /**
   * Every wallet's balance parts summed, as of the last durable write: the store's running sums (kept with each
   * journal record, in the same batch), the transfers between users in flight (the same sums), and the cheques' escrow.
   */
  async liabilities(): Promise<Liabilities> {
    const escrow = await this.cheques.escrow();
    const s = walletSums(this.storage.store.sums);
    return { available: s.available, pending: s.pending, reserved: s.reserved, escrow, transit: s.transit, wallets: Number(s.wallets) };
  }

  /** Resolves when the work triggered by the blocks seen so far (payout sync, watchdog, flush) is done. */
  blockWorkDone(): Promise<void> {
    return this.#blockWork;
  }

  /**
   * Liabilities against the node wallet's balances (see solvency.ts), taken while the payout book holds still (no
   * payout built, broadcast, confirmed or settled in a wallet meanwhile), the wallets before the node: a deposit
   * reaches the node's balances before any wallet's, so one arriving between the two readings cannot look like a
   * hole. The wallets' part is the store's running sums, so holding the book costs one node call (two with a
   * confirmation target above 1).
   *
   * The coins of deposits still pending (confirmed, below the target) are listed before the balances are read: a coin
   * listed is confirmed, so the balances read after count it as trusted (a block meanwhile only deepens it; nothing
   * spends it, payouts take coins as deep as the target only, and the book holds still), while a deposit mined meanwhile
   * is in the balances only, which hides nothing for longer than this reading and never shows a hole that is not there.
   * The other order would: a deposit mined between the two calls would be taken off a balance that did not count it.
   * (A reorg between the two calls could too, for one reading: the watchdog reads a hole twice before it acts.)
   * Which of them are pending is the deposit watcher's set of open deposits, written after their wallets credit them
   * and deleted after they confirm them: one credited after the liabilities were read is taken off coins that cover
   * nothing, one confirmed meanwhile is as deep as the target and not listed.
   */
  async solvency(toleranceSats = 0n): Promise<SolvencyReport> {
    return this.payouts.hold(async (payouts: PayoutState) => {
      const liabilities = await this.liabilities();
      const maturing = await maturingDeposits(this.config.deposits.confirmations, this.node, (outpoint) => this.watcher.isOpen(outpoint));
      const node = await this.node.balances();
      const stranded = await strandedCoins(payouts, this.node);
      return assessSolvency({ liabilities, node, stranded, maturingDeposits: maturing, payouts, toleranceSats });
    });
  }

  /**
   * The user keys of every wallet that has journalled anything, in order; those after `after` when given. One
   * LevelDB seek per wallet.
   */
  async *#walletKeys(after?: string): AsyncGenerator<string> {
    const prefix = walletJournalKey("");
    for await (const key of this.storage.journal.keys(prefix, after === undefined ? undefined : prefix + after)) yield key.slice(prefix.length);
  }

  /**
   * What each wallet holds that a payout could take (available + reserved), read from the wallets themselves, 64 at
   * a time (each is activated if it is not resident). A restore's reconciliation is its only reader: rare, and worth
   * the minutes a million wallets take more than a balance record written with every command. Undefined: the
   * wallet could not be read.
   */
  async *#holdings(): AsyncGenerator<[string, bigint | undefined]> {
    let batch: string[] = [];
    const read = async () => {
      const answers = await Promise.all(batch.map((k) => this.registry.read(k, "balance", {})));
      const out = batch.map((k, i): [string, bigint | undefined] => {
        const b = answers[i]!;
        return [k, isRefusal(b) ? undefined : b.available + b.reserved];
      });
      batch = [];
      return out;
    };
    for await (const k of this.#walletKeys()) {
      batch.push(k);
      if (batch.length === 64) yield* await read();
    }
    if (batch.length) yield* await read();
  }

  async #resumeOutboxes(): Promise<void> {
    const keys: string[] = [];
    for await (const userKey of this.registry.records.flagged()) keys.push(userKey);
    // 256 at a time: a start with a large outbox must not activate every such wallet at once.
    await inTurns(keys, 256, (k) => this.registry.send(k, "resume", {}));
    if (keys.length) this.log.info({ wallets: keys.length }, "resumed wallets with unfinished transfers or withdrawals");
  }

  /** Cheque payouts not acknowledged yet, sent again after a store outage (see ChequeService.resume); else at the next start. */
  #resumeCheques(replay: boolean): void {
    void this.cheques.resume({ replay }).then(
      ({ resent }) => {
        if (resent > 0) this.log.info({ cheques: resent }, "cheque payouts not acknowledged yet sent again after the store's outage");
      },
      (err: unknown) => this.log.warn({ err }, "re-sending cheque payouts after the store recovered failed; they go at the next start"),
    );
  }

  /** Cheques past their expiry go back to their creators; a failure is logged, and tried again at the next block. */
  async #expireCheques(): Promise<void> {
    try {
      const { expired } = await this.cheques.expire();
      if (expired > 0) this.log.info({ cheques: expired }, "expired cheques returned to their creators");
    } catch (err) {
      this.log.warn({ err }, "expired cheques not returned yet; the next block tries again");
    }
  }

  async #afterBlock(): Promise<void> {
    // One that waits (for the node, for a whole scan) or failed: again now, unless one is under way (the start's own
    // scan brings the first block here while it runs).
    if (this.#reconciling && !this.#reconcileRun) await this.#reconcileOnce(this.#reconciling.mark, this.#reconciling.sinceBlock);
    await this.#expireCheques();
    const r = await this.payouts.sync();
    if (isRefusal(r)) this.log.warn({ why: r.message }, "payout sync after block failed");
    await this.watchdog();
    // flush() runs the watchdog again after any batch it sends.
    if (!this.payouts.paused) await this.payouts.flush();
  }

  /**
   * The watchdog: compares the books with the node (after every block and every payout batch). A hole beyond
   * the tolerance pauses payouts — persisted, so a restart does not resume them — and alerts operators. Deposits
   * and reads keep working. Only an operator's `resumePayouts` lifts it, and only once the hole is covered.
   *
   * A reading is not one atomic cut: sats on their way between two journals can be counted twice for a moment (a
   * cheque's payee credited before the cheque book records it paid), and an unconfirmed deposit that leaves the
   * node's mempool leaves its wallet only at the next scan. So a hole is read again, once the cheque payouts under
   * way, and those waiting to be tried again, have been sent, and only a hole seen both times pauses payouts: a real
   * one does not go away by itself.
   */
  async watchdog(): Promise<SolvencyReport | undefined> {
    const read = async () => {
      try {
        return await this.solvency(BigInt(this.config.watchdog.toleranceSats));
      } catch (e) {
        this.log.warn({ err: e }, "the watchdog could not compare the books with the node; it tries again after the next block");
        return undefined;
      }
    };
    // The reconciliation after a restore pauses payouts until it is done; a hole found meanwhile is the watchdog's own.
    const mayPause = () => !this.payouts.paused || this.payouts.paused === RECONCILING;
    // Paused for another reason (an operator, a restore incident): a new hole is still said, once (below).
    const mayTell = () => !this.#holeTold && !this.payouts.paused?.startsWith("watchdog: ");
    let report = await read();
    // Read twice before acting on a hole, pausing or alerting: sats between two journals look like one for a moment.
    if (report && !report.ok && (mayPause() || mayTell())) {
      const first = report.reason;
      await this.cheques.payNow();
      report = await read();
      if (report?.ok) this.log.info({ first }, "the watchdog saw a difference that was gone at the second reading (sats between two journals)");
    }
    if (!report) return undefined;
    this.lastSolvency = report;
    if (report.warning) this.log.warn({ surplus: report.surplus.toString() }, `the watchdog: ${report.warning}`);
    if (!report.ok && mayPause()) {
      const reason = `watchdog: ${report.reason}`;
      await this.storage.store.put(ENGINE_NS, "payouts_paused", { reason, at: Date.now() });
      this.payouts.pause(reason);
      this.log.error({ alert: true, firm: report.firm.toString(), trusted: report.node.trusted.toString(), maturingDeposits: report.node.maturingDeposits.toString() }, "payouts paused: the books and the node wallet disagree");
    } else if (!report.ok && mayTell()) {
      // Paused already for another reason (an operator, a restore incident): the pause stays as it is, but a hole is
      // news to whoever paused, and resuming will be refused until it is covered.
      this.log.error({ alert: true, firm: report.firm.toString(), trusted: report.node.trusted.toString(), maturingDeposits: report.node.maturingDeposits.toString(), paused: this.payouts.paused }, "the books and the node wallet disagree (payouts were already paused)");
    }
    // Said once per hole: again only after a reading that agreed.
    this.#holeTold = !report.ok;
    return report;
  }

  /**
   * The users among `userKeys` whose queued payouts must wait: their wallets are frozen, or cannot say now (asked again
   * at the next flush). Read from each wallet's committed state.
   */
  async #frozenOf(userKeys: string[]): Promise<Set<string>> {
    const held = new Set<string>();
    // 32 wallets asked at a time: thousands queued (a drain) must not activate thousands of wallets at once.
    await inTurns(userKeys, 32, async (userKey) => {
      const r = await this.registry.read(userKey, "balance", {}).catch(() => undefined);
      if (r === undefined || isRefusal(r) || r.frozen !== undefined) held.add(userKey);
    });
    return held;
  }

  /**
   * Operator action: pause payouts now (a hot wallet being drained, a suspicious withdrawal, a node to be checked).
   * Persisted, so a restart keeps them paused, and lifted only by `resumePayouts`. No new batch is built; a batch
   * already signed still goes out, and tracking, fee bumps and deposits go on. Already paused (by the watchdog, a
   * restore, another operator): that pause and its reason stay, and the answer says so. A pause while a restored store
   * is still being compared with the chain outlasts the comparison: it then says "payouts stay paused".
   */
  async pausePayouts(reason: string, operator: string): Promise<{ paused: string; already: boolean }> {
    const current = this.payouts.paused;
    if (current !== undefined && current !== RECONCILING) return { paused: current, already: true };
    const why = `paused by operator ${operator}: ${reason}`;
    await this.storage.store.put(ENGINE_NS, "payouts_paused", { reason: why, at: Date.now() });
    this.payouts.pause(why);
    this.log.warn({ operator }, "payouts paused by an operator");
    return { paused: why, already: false };
  }

  /**
   * Operator action: give back a payout that is still queued (one the node cannot fund, or one that must not go): its
   * wallet gets the amount and the quoted fee back, and its user is told the withdrawal could not be sent. Never one
   * in a batch. Refused after a restore until the comparison with the chain is done and its incident reviewed: a
   * payout queued in the restored book may have been paid after the backup.
   */
  async unqueuePayout(id: string, operator: string): Promise<PayoutSummary | Refusal> {
    if (this.#reconciling || this.payouts.paused === RECONCILING || this.restoreIncident) {
      return refuse("not_allowed", "After a restore, a queued payout may have been paid since the backup: none is given back until the comparison with the chain is done and its incident reviewed (payouts resumed).");
    }
    const r = await this.payouts.unqueue(id);
    if (!isRefusal(r)) this.log.warn({ operator, payout: id }, "a queued payout was given back to its wallet by an operator");
    return r;
  }

  /**
   * Operator action: correct a wallet's books (wallet.ts, `adjust`) — book out a confirmed deposit a deep reorg took
   * back (`outpoint`: its record then counts what was booked, so it is never booked twice; if its transaction is mined
   * again, the wallet credits back what was booked: `deposit_rebooked`, so booking one still in the mempool is safe), a payout a lossy restore
   * left out of the restored books, or credit what is owed. Once per id: the same adjustment sent again is answered
   * `repeated`. A debit takes at most what is available: what is beyond it (the user spent the coins before the hole was
   * seen) is the house's loss, covered by sending coins to the node wallet. Frozen wallets take it and stay frozen.
   * A change is followed by a watchdog reading, so GET /solvency shows the books as they are now (a credit the node
   * does not cover pauses payouts as any hole does; a closed hole leaves a pause to `resumePayouts`).
   */
  async adjustWallet(userKey: string, a: { id: string; amount: bigint; reason: string; outpoint?: string }, operator: string): Promise<AnswerOf<"adjust"> | Refusal> {
    const r = await this.registry.send(userKey, "adjust", { id: a.id, amount: a.amount, reason: a.reason, by: operator, ...(a.outpoint !== undefined ? { outpoint: a.outpoint } : {}) });
    if (isRefusal(r) || r.repeated) return r;
    // The user key alone beside who and which id: the amount (and the audit's outpoint) would point at the chain.
    this.log.warn({ operator, userKey, id: a.id }, "a wallet's books were adjusted by an operator");
    await this.watchdog().catch((err: unknown) => this.log.warn({ err }, "the watchdog reading after an adjustment failed; it runs again after the next block"));
    return r;
  }

  /** Operator action: resume payouts after a watchdog pause, if the books and the node agree again. */
  async resumePayouts(operator: string): Promise<{ resumed: boolean } | Refusal> {
    // After a restore the books may owe a payout the node has already paid since the backup: only the comparison with
    // the chain can tell (it waits while the node catches up), and it resumes payouts itself when nothing is amiss.
    if (this.#reconciling || this.payouts.paused === RECONCILING) {
      return refuse("not_allowed", "Payouts stay paused: the restored books have not been compared with the chain yet (the node may still be catching up; it is tried again after each block). They resume on their own when nothing unknown was spent; see the log and GET /solvency.");
    }
    const ambiguous = (await this.#settleIncident())?.ambiguous ?? [];
    if (ambiguous.length > 0) {
      return refuse("not_allowed", `Payouts stay paused: queued payouts ${ambiguous.join(", ")} are alike to a spend the restored books do not know, and one of them was paid by it. Record which (POST /payouts/adopt) first.`);
    }
    const report = await this.solvency(BigInt(this.config.watchdog.toleranceSats));
    this.lastSolvency = report;
    if (!report.ok) return refuse("not_allowed", `Payouts stay paused: ${report.reason}. Cover the hole first.`);
    // The incident leaves the open view, and stays on record as resolved: when, and by whom.
    const incident = this.restoreIncident;
    const resolved: Incident | undefined = incident && { ...incident, resolved: { at: Date.now(), by: operator } };
    await this.storage.store.batch([
      { type: "del", ns: ENGINE_NS, key: "payouts_paused" }, { type: "del", ns: ENGINE_NS, key: "restore_incident" },
      ...(resolved ? [{ type: "put" as const, ns: ENGINE_NS, key: RESOLVED_INCIDENT, value: resolved }] : []),
    ]);
    this.restoreIncident = undefined;
    if (resolved) this.lastRestoreIncident = resolved;
    this.payouts.resume();
    this.log.warn({ operator }, "payouts resumed by an operator");
    return { resumed: true };
  }

  /**
   * A restore that may not reach the crash (restoreLoss): the cheques open (or waiting for their funds) in its books
   * may have been claimed, paid out and withdrawn in the history it lost — nothing on the chain says by whom, so no
   * wallet is frozen for it, and the same link would be paid again. They are held (see ChequeBookOptions.held: no
   * claim, revoke or expiry) until an operator releases them (releaseHeldCheques). Recorded once per restore; a start
   * that finds the record loads it.
   */
  async #holdCheques(restored: RestoredMark | undefined): Promise<void> {
    const store = this.storage.store;
    let record = await store.get<HeldCheques>(ENGINE_NS, HELD_CHEQUES);
    const lost = restored && restoreLoss(restored);
    if (restored && lost && record?.restoredAt !== restored.at) {
      // Cheques still held from an earlier restore stay held.
      const hashes = new Set(record?.hashes ?? []);
      for (const [hash, c] of (await this.cheques.state()).entries()) if (c.status === "open" || c.status === "awaiting_funds") hashes.add(hash);
      record = { at: Date.now(), restoredAt: restored.at, archive: restored.archive, hashes: [...hashes] };
      await store.put(ENGINE_NS, HELD_CHEQUES, record);
      if (hashes.size > 0) this.log.error({ alert: true, cheques: hashes.size }, `restored from a backup that may not reach the crash (${lost}): the cheques open in it may have been claimed and paid out since, so they are held — claims, revokes and expiry wait — until an operator releases them (POST /cheques/release-held)`);
    }
    this.#held = record && record.hashes.length > 0 ? { record, hashes: new Set(record.hashes) } : undefined;
  }

  /** The cheques held for review after a lossy restore: how many, since when, and from which restore. */
  get heldCheques(): { count: number; at: number; archive: string } | undefined {
    const h = this.#held;
    return h && { count: h.hashes.size, at: h.record.at, archive: h.record.archive };
  }

  /**
   * Operator, after a lossy restore: releases the cheques held for review (#holdCheques) — claims and revokes are taken
   * again, and those past their expiry go back to their creators at the next block. Refused while the restored books
   * are still being compared with the chain.
   */
  async releaseHeldCheques(operator: string): Promise<{ released: number } | Refusal> {
    if (this.#reconciling || this.payouts.paused === RECONCILING) {
      return refuse("not_allowed", "The held cheques stay held: the restored books have not been compared with the chain yet (see the log and GET /health).");
    }
    const held = this.#held;
    // Stored first: a write that fails changes nothing.
    await this.storage.store.del(ENGINE_NS, HELD_CHEQUES);
    this.#held = undefined;
    const released = held?.hashes.size ?? 0;
    if (released > 0) this.log.warn({ operator, cheques: released }, "cheques held after a restore released by an operator: they can be claimed, revoked and expire again");
    return { released };
  }

  /**
   * Operator, after a restore: which of the queued payouts the incident names as ambiguous (payouts of several wallets
   * alike to an output of an unknown spend: the chain cannot say which it paid) that spend paid. The payout becomes
   * the spend's batch, settled with it as any other; the others alike leave the list once no output alike is left
   * unexplained (they were not paid, and go out once payouts resume and an operator unfreezes their wallets).
   */
  async adoptPayout(id: string, txid: string, operator: string): Promise<{ batch: string; ambiguous: string[] } | Refusal> {
    // An adoption the book recorded before a crash (or a failed write) kept the incident from being updated: it is
    // brought up to date first, and the operator's repeat of the same adoption is answered as done.
    const incident = await this.#settleIncident();
    const before = await this.payouts.state();
    const done = incident?.adopted?.find((a) => a.txid === txid && a.ids.includes(id));
    if (incident && done) {
      const batch = before.payouts[id]?.batch;
      if (batch !== undefined) return { batch, ambiguous: incident.ambiguous ?? [] };
    }
    if (!incident?.ambiguous?.includes(id)) return refuse("not_allowed", `Payout ${id} is not one the open restore incident names as ambiguous.`);
    const spend = incident.unknownSpends.find((u) => u.txid === txid);
    if (!spend) return refuse("not_found", `${txid} is not one of the restore incident's unknown spends.`);
    const p = before.payouts[id];
    if (!p || p.status !== "queued") return refuse("not_allowed", `Payout ${id} is not queued.`);
    const pays = (o: { address: string; sats: string }) => o.address === p.address && BigInt(o.sats) === p.amount;
    if (!spend.outputs.some(pays)) return refuse("not_allowed", `${txid} pays no output to that payout's address and amount.`);
    const r = await this.payouts.adopt(txid, [id], spend.outputs.length);
    if (isRefusal(r)) return r;
    const after = await this.payouts.state();
    if (after.batches[r.batch]?.ids.includes(id) !== true) {
      return refuse("not_allowed", `${txid} is already recorded as batch ${r.batch} for other payouts; payout ${id} could not be added to it.`);
    }
    const updated = await this.#settleIncident(after);
    const ambiguous = updated?.ambiguous ?? [];
    this.log.warn({ operator, id, txid, batch: r.batch, ambiguous: ambiguous.length }, "after the restore: an operator recorded which ambiguous queued payout an unknown spend paid");
    return { batch: r.batch, ambiguous };
  }

  /**
   * Brings the open restore incident up to date with the payout book: an ambiguous payout the book now holds in a
   * batch adopted from one of the incident's unknown spends is recorded as adopted, and the payouts alike to it leave
   * the list once no output alike is left unexplained (they were not paid, and go out once payouts resume and an operator unfreezes their wallets). Stored
   * when it changed. The book is the truth: its adoption and this record are two writes, and a crash between them
   * must not leave payouts paused for good.
   */
  async #settleIncident(state?: PayoutState): Promise<Incident | undefined> {
    const incident = this.restoreIncident;
    if (!incident?.ambiguous?.length) return incident;
    const book = state ?? (await this.payouts.state());
    const adopted = [...(incident.adopted ?? [])];
    for (const id of incident.ambiguous) {
      const batchId = book.payouts[id]?.batch;
      const batch = batchId === undefined ? undefined : book.batches[batchId];
      if (!batch?.adopted || !incident.unknownSpends.some((u) => u.txid === batch.txid)) continue;
      if (!adopted.some((a) => a.txid === batch.txid && a.ids.includes(id))) adopted.push({ txid: batch.txid, ids: [id] });
    }
    const ambiguous = stillAmbiguous(incident, book);
    if (ambiguous.length === incident.ambiguous.length && adopted.length === (incident.adopted ?? []).length) return incident;
    const updated: Incident = { ...incident, ambiguous, adopted };
    await this.storage.store.put(ENGINE_NS, "restore_incident", updated);
    // Another settling may have run meanwhile (the book only moves forward): the newer of the two stays.
    if (this.restoreIncident === incident) this.restoreIncident = updated;
    return this.restoreIncident;
  }

  /** Operator switch: drain mode on or off (persisted). */
  async setDraining(on: boolean, reason: string, operator: string): Promise<{ draining: boolean }> {
    // Stored first: a write that fails changes nothing, here or after a restart.
    if (on) {
      if (this.#draining) return { draining: true };
      const draining = { reason, at: Date.now() };
      await this.storage.store.put(ENGINE_NS, "draining", draining);
      this.#draining = draining;
      this.#announcing = this.#announceDrain(draining.at);
    } else {
      await this.storage.store.del(ENGINE_NS, "draining");
      this.#draining = undefined;
    }
    this.log.warn({ operator, draining: on }, "drain mode changed");
    return { draining: on };
  }

  /** Resolves when every existing user has been told about drain mode (tests; the admin edge shows progress). */
  drainAnnounced(): Promise<void> {
    return this.#announcing;
  }

  /**
   * Tells every existing user, once, that the service is winding down and how to take their money out. Each
   * wallet records the announcement's id (told once, whatever the restarts); a cursor lets a restart carry on.
   */
  async #announceDrain(at: number): Promise<void> {
    const id = `drain-${at}`;
    const store = this.storage.store;
    const saved = await store.get<{ id: string; after: string; retry?: string[] }>(ENGINE_NS, "drain_told");
    let after = saved?.id === id ? saved.after : "";
    // Wallets that could not take the announcement when their turn came (busy, blocked for a while after errors): the
    // cursor goes on past them, and they are asked again after the pass, with the cursor's record, until each is told.
    const retry = new Set(saved?.id === id ? (saved.retry ?? []) : []);
    let told = 0;
    // Below Telegram's 30 messages a second, leaving room for the others (see pace.ts).
    const paced = pace(20);
    const going = () => !this.#closed && this.#draining?.at === at;
    const tell = async (keys: string[]) => {
      const results = await Promise.all(keys.map((k) => this.registry.send(k, "announce", { id, text: DRAIN_TEXT })));
      let toldNow = 0;
      results.forEach((r, i) => {
        if (isRefusal(r)) retry.add(keys[i]!);
        else {
          retry.delete(keys[i]!);
          if (r.told) toldNow++;
        }
      });
      told += toldNow;
      return toldNow;
    };
    const save = () => store.put(ENGINE_NS, "drain_told", { id, after, retry: [...retry] });
    try {
      for (;;) {
        if (!going()) return;
        const keys: string[] = [];
        for await (const k of this.#walletKeys(after || undefined)) if (keys.push(k) === 64) break;
        if (keys.length === 0) break;
        const toldNow = await tell(keys);
        // Refusals from a stopping engine are not the wallets': nothing of this page is recorded, it is asked again.
        if (!going()) return;
        after = keys.at(-1)!;
        await save();
        await paced(toldNow);
      }
      after = "\uffff";
      for (let wait = 1000; retry.size > 0; wait = Math.min(wait * 2, 60_000)) {
        await save();
        if (!going() || !(await this.#nap(wait)) || !going()) return;
        const keys = [...retry];
        for (let i = 0; i < keys.length && going(); i += 64) await paced(await tell(keys.slice(i, i + 64)));
        if (!going()) return;
      }
      await save();
      this.log.info({ told }, "drain mode: existing users told");
    } catch (e) {
      if (!this.#closed) this.log.warn({ err: e }, "drain mode: telling users stopped; it carries on at the next start");
    }
  }

  /** Waits `ms`, or less when the engine closes: false then. */
  #nap(ms: number): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#wakers.delete(wake);
        resolve(true);
      }, ms);
      const wake = () => {
        clearTimeout(timer);
        resolve(false);
      };
      this.#wakers.add(wake);
    });
  }

  get draining(): { reason: string; at: number } | undefined {
    return this.#draining;
  }

  /** False once the engine is closing or halted (timers that sample it stop then). */
  get running(): boolean {
    return !this.#closed;
  }

  /**
   * A crash, for scripts and tests: timers and actors die where they stand, nothing is flushed or finished
   * (unshipped backup frames and acknowledgements not journalled yet are lost too); only what reached the disk
   * survives. `close()` is the clean stop.
   */
  async halt(): Promise<void> {
    this.#closed = true;
    this.watcher.stop();
    this.backup.abandon();
    this.courier.abandon();
    this.cheques.stopRetrying();
    void this.payouts.close();
    this.registry.close();
    this.relay.abandonNotices();
    this.system.shutdown();
    await this.node.stop();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const wake of this.#wakers) wake();
    this.#wakers.clear();
    this.watcher.stop();
    // What is under way writes: the work after the last block (payout sync, the watchdog, expired cheques), a deposit
    // scan, a payout flush (whose signing unlocks the node's wallet: it locks it again before the node stops), the
    // drain announcement's page. It finishes before the backup closes, or the store would end ahead of it.
    await this.#blockWork;
    await this.watcher.idle();
    await this.payouts.close();
    await this.#announcing;
    this.relay.close();
    // Deliveries waiting to be tried again stay in their senders' outboxes for the next start; cheque payouts, in the book.
    this.courier.stopRetrying();
    this.cheques.stopRetrying();
    await this.courier.settled();
    this.registry.close();
    // The kept notices' last records (those made and delivered until now), before the store and the backup close.
    await this.relay.closeNotices();
    // Everything written so far reaches the backup disk before it closes (a snapshot in progress finishes).
    await this.storage.journal.flushed();
    await this.backup.close();
    await this.node.stop();
    this.system.shutdown();
  }
}

/** Engine-wide switches in the store. */
const ENGINE_NS = "engine";

/** `f` for each item, `size` at a time: work over many wallets that must not activate them all at once. */
async function inTurns<T>(items: readonly T[], size: number, f: (item: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(f));
}

/** The identity settings' check value pinned in the engine's store, if any (see pinIdentityInStore). */
export function storedIdentityPin(store: EncryptedStore): Promise<string | undefined> {
  return store.get<string>(ENGINE_NS, "identity_pin");
}

/**
 * Pins the identity settings' check value (store/identity.ts, identityCheck) to the engine's store: the first caller's
 * is recorded; true when `check` is (now) the pinned one. The store travels in backups, so a restore into a new data
 * directory keeps the pin, where the data directory's own (pinIdentity) would start afresh.
 */
export function pinIdentityInStore(store: EncryptedStore, check: string): Promise<boolean> {
  // One at a time per store: the read and the write are two steps, and in the split shape bots pin while the engine
  // serves (it holds no pepper of its own). Two bots with different peppers racing a fresh store were both told
  // "pinned", and the pin was whichever write landed last.
  const turn = (pinning.get(store) ?? Promise.resolve()).then(async () => {
    const pinned = await storedIdentityPin(store);
    if (pinned !== undefined) return pinned === check;
    await store.put(ENGINE_NS, "identity_pin", check);
    return true;
  });
  pinning.set(store, turn.catch(() => undefined));
  return turn;
}
/** The pin in progress per store (pinIdentityInStore). */
const pinning = new WeakMap<EncryptedStore, Promise<unknown>>();
const DRAIN_TEXT = "This service is winding down: deposits are closed and no new wallets are opened. Your balance is safe — take it out with /withdraw.";
const RECONCILING = "restored from a backup: reconciling with the chain before paying anything";

export type { Refusal };
