// The relay: the engine side of the edges' contract (relay.types.ts). It turns a user's request into
// wallet commands through the registry, asks the node actor for what only the chain knows (addresses,
// fees, address checks) and fans notifications out to the edges. It holds no balance of its own.
import { randomBytes } from "node:crypto";
import type { Config } from "./config.ts";
import type { Logger } from "./log.ts";
import { describeAmount, parseAmount } from "./domain/money.ts";
import { canonicalAddress } from "./domain/address.ts";
import { isRefusal, refuse, type Refusal } from "./domain/refusals.ts";
import type { WalletRegistry } from "./actors/registry.ts";
import type { BalanceView, Withdrawal } from "./actors/wallet.messages.ts";
import type {
  Cheque, ConfirmedWithdrawal, HistoryPage, MyChequeView, Notification, Relay, Result, WithdrawalQuote,
} from "./relay.types.ts";
import { HELD_NOTICES, KeptNotices, Notices, type KeptRecord, type NoticeListener, type NoticeListening } from "./held.ts";
import { USER_KEY } from "./store/identity.ts";

/** What the relay needs from the chain side (the node actor implements it). */
export interface ChainPort {
  takeDepositAddress(userKey: string): Promise<string>;
  /** Network and checksum check, then bitcoind's own (getaddressinfo): valid, and not one of the node wallet's own addresses. */
  checkWithdrawalAddress(address: string): Promise<true | Refusal>;
  /** sat/vB for the configured confirmation target. */
  feeRate(): Promise<bigint>;
  /**
   * The fee the node's wallet would pay to send this withdrawal alone now, from the coins it holds (a dry run):
   * `too_large` when those coins do not fit one transaction, undefined when it cannot fund it now.
   */
  soloFee(address: string, amount: bigint, feeRateSatVb: bigint): Promise<bigint | "too_large" | undefined>;
}

/** Where a handed-out address is recorded so deposits find their owner. */
export interface AddressIndexPort {
  record(address: string, userKey: string): Promise<void>;
  ownerOf(address: string): Promise<string | undefined>;
}

/** Addresses the node hands out that someone already owns, skipped in a row before /deposit gives up. */
const OWNED_SKIPS = 20;

/** Cheques live in their own actors (money-out issue); the relay only forwards. */
export interface ChequePort {
  create(userKey: string, id: string, amount: bigint): Promise<Result<Cheque>>;
  claim(userKey: string, code: string): Promise<Result<{ amount: bigint }>>;
  revoke(userKey: string, code: string): Promise<Result<{ amount: bigint }>>;
  mine(userKey: string): Promise<{ cheques: MyChequeView[]; more: number }>;
}

export interface RelayOptions {
  config: Config;
  log: Logger;
  registry: WalletRegistry;
  chain: ChainPort;
  addresses: AddressIndexPort;
  cheques?: ChequePort;
  /** Drain mode: no new wallets or deposit addresses; money can still go out. */
  isDraining?: () => boolean;
  now?: () => number;
  quoteTtlMs?: number;
  /** Where the identity settings' check value is pinned (Relay.identityPin): true when `check` is (now) the pinned one. */
  identityPins?: { pin(check: string): Promise<boolean> };
  /** Where notices are kept until delivered, across restarts (the engine's store); without it, in memory only. */
  kept?: KeptNotices<Notification>;
}

/**
 * vbytes one P2WPKH withdrawal adds to a transaction when it goes out alone: overhead, two inputs,
 * the destination and a change output. The least a quote covers; one whose coins take more inputs (many small deposits
 * in the node's wallet) is quoted what the node would pay to send it alone (ChainPort.soloFee). In a batch the user's
 * share is smaller and only the share is charged.
 */
export const SOLO_WITHDRAWAL_VBYTES = 11n + 2n * 68n + 43n + 31n;

/**
 * The smallest withdrawal, whatever withdrawals.dustSats says: bitcoind's dust limit for a P2PKH output at its default
 * dustrelayfee, the largest of the standard address types' (P2WPKH's is 294, P2TR's 330). Below its address's limit
 * bitcoind refuses to fund an output ("Transaction amount too small"): such a withdrawal would be quoted and reserved,
 * then refused by every flush for ever. dustSats may be set lower, since it is also the smallest deposit credited.
 */
export const MIN_WITHDRAWAL_SATS = 546n;

interface QuoteRecord extends WithdrawalQuote {
  userKey: string;
}

export class EngineRelay implements Relay {
  readonly #o: RelayOptions;
  readonly #quotes = new Map<string, QuoteRecord>();
  /** Held while no edge listens: the start-up catch-up runs before the edges subscribe. */
  readonly #notices: Notices<Notification>;
  readonly #sweep: NodeJS.Timeout;

  constructor(o: RelayOptions) {
    this.#o = o;
    this.#notices = new Notices(o.log);
    this.#sweep = setInterval(() => this.#expireQuotes(), 60_000);
    this.#sweep.unref();
  }

  async identityPin(check: string): Promise<Result<{ pinned: true }>> {
    if (!/^[0-9a-f]{64}$/.test(check)) return refuse("bad_input", "An identity check value is 64 hex digits.");
    if (!this.#o.identityPins) return refuse("not_allowed", "This engine does not pin identity settings.");
    if (await this.#o.identityPins.pin(check)) return { pinned: true };
    return refuse("not_allowed", "This engine's wallets were made with other identity settings (the pepper, or identity.timeCost / memoryKiB / parallelism): every user would get a new, empty wallet. Start the bot with the settings the engine's wallets were made with.");
  }

  info() {
    return {
      network: this.#o.config.network, confirmations: this.#o.config.deposits.confirmations, draining: this.#draining(),
      minDepositSats: BigInt(this.#o.config.withdrawals.dustSats), maxTransferSats: BigInt(this.#o.config.transfers.maxTransferSats),
    };
  }

  async start(userKey: string, chatHandle?: string) {
    if (this.#draining()) {
      const b = await this.balance(userKey);
      if (isRefusal(b)) return refuse("draining", "This service is winding down and takes no new wallets. Existing users can still withdraw.");
    }
    return this.#o.registry.send(userKey, "open", chatHandle ? { chatHandle } : {});
  }

  balance(userKey: string) {
    return this.#o.registry.read(userKey, "balance", {});
  }

  history(userKey: string, page: number, pageSize = 5): Promise<Result<HistoryPage>> {
    return this.#o.registry.history(userKey, page, pageSize);
  }

  async depositAddress(userKey: string): Promise<Result<{ address: string }>> {
    if (this.#draining()) return refuse("draining", "This service is winding down: deposits are closed. You can still withdraw with /withdraw.");
    const current = await this.#o.registry.read(userKey, "current_address", {});
    if (isRefusal(current)) return current;
    if (current.address) return { address: current.address };
    let address: string | undefined;
    for (let i = 0; i < OWNED_SKIPS && address === undefined; i++) {
      let next: string;
      try {
        next = await this.#o.chain.takeDepositAddress(userKey);
      } catch (e) {
        this.#o.log.warn({ userKey, err: e }, "no deposit address available");
        return refuse("node_unavailable", "Deposit addresses are unavailable right now; try again in a minute.");
      }
      // Never one someone owns: a node wallet restored from an older backup hands out again the addresses given to
      // users since, and a deposit to one would be credited to its new owner.
      const owner = await this.#o.addresses.ownerOf(next);
      if (owner === undefined || owner === userKey) address = next;
      else this.#o.log.error({ alert: true, userKey, owner }, "the node handed out a deposit address a user already owns (its wallet restored from an older backup?); skipped");
    }
    if (address === undefined) return refuse("node_unavailable", "Deposit addresses are unavailable right now; operators have been told.");
    // Index first: a deposit to an address must always find its owner, even if the wallet write fails.
    await this.#o.addresses.record(address, userKey);
    return this.#o.registry.send(userKey, "add_address", { address });
  }

  async quoteWithdrawal(userKey: string, addressText: string, amountText: string): Promise<Result<WithdrawalQuote>> {
    const text = addressText.trim();
    const address = canonicalAddress(text);
    if (address.length === 0 || address.length > 100) return refuse("bad_address", "That is not a Bitcoin address.");
    // A bech32 address is all lower case, or all upper case (a QR code's): mixed case is a typo BIP 173 says to refuse,
    // not to mend (canonicalAddress lower-cases it for the checks below).
    if (address !== text && text !== text.toUpperCase()) return refuse("bad_address", "That address mixes upper and lower case letters; copy it again exactly as it was given to you.");
    const balance = await this.balance(userKey);
    if (isRefusal(balance)) return balance;
    if (balance.frozen) return refuse("frozen", "This wallet is frozen by an operator; withdrawals are paused. Contact support.");
    // The address before the amount: "/withdraw 0.001 bcrt1q…" was answered "That amount is too long" about the address.
    const checked = await this.#o.chain.checkWithdrawalAddress(address);
    if (checked !== true) return checked;
    const amount = parseAmount(amountText);
    if (isRefusal(amount)) return amount;
    let rate: bigint;
    try {
      rate = await this.#o.chain.feeRate();
    } catch {
      return refuse("node_unavailable", "Fees cannot be estimated right now; try again in a minute.");
    }
    let fee = rate * SOLO_WITHDRAWAL_VBYTES;
    const dust = this.#minWithdrawal();
    // Dust is below the limit, as for bitcoind (and for deposits, which are credited from the limit up).
    if (amount < dust) return refuse("below_dust", `The amount must be at least ${dust} sats (the network's dust limit).`);
    const short = () => refuse("insufficient_funds", `Not enough available: ${describeAmount(amount)} plus a fee of ${describeAmount(fee)} is more than your ${describeAmount(balance.available)}.`);
    if (amount + fee > balance.available) return short();
    // What sending it costs from the coins the node holds: a withdrawal that takes many small coins must not be quoted
    // two inputs' worth, with the service paying the rest (and the watchdog then pausing everyone's payouts for the hole).
    let solo: bigint | "too_large" | undefined;
    try {
      solo = await this.#o.chain.soloFee(address, amount, rate);
    } catch {
      return refuse("node_unavailable", "Fees cannot be estimated right now; try again in a minute.");
    }
    if (solo === "too_large") {
      return refuse("over_limit", "That amount needs more coins than fit in one Bitcoin transaction; withdraw a smaller amount (half, say), then the rest.");
    }
    // Undefined: the node cannot fund it now (its coins are short); it is quoted at least the usual, and waits in the queue.
    if (solo !== undefined && solo > fee) fee = solo;
    if (amount + fee > balance.available) return short();
    const quote: QuoteRecord = {
      id: `wd_${randomBytes(12).toString("base64url")}`, userKey, address, amount, fee, total: amount + fee, feeRateSatVb: rate,
      expiresAt: this.#now() + (this.#o.quoteTtlMs ?? 5 * 60_000),
    };
    this.#quotes.set(quote.id, quote);
    const { userKey: _owner, ...pub } = quote;
    return pub;
  }

  /** withdrawals.dustSats, never below what bitcoind sends (MIN_WITHDRAWAL_SATS). */
  #minWithdrawal(): bigint {
    const dust = BigInt(this.#o.config.withdrawals.dustSats);
    return dust > MIN_WITHDRAWAL_SATS ? dust : MIN_WITHDRAWAL_SATS;
  }

  async confirmWithdrawal(userKey: string, quoteId: string): Promise<Result<ConfirmedWithdrawal>> {
    const q = this.#quotes.get(quoteId);
    if (!q) {
      // Not in memory (expired, or the engine restarted): maybe it was confirmed already.
      const known = await this.#knownWithdrawal(userKey, quoteId);
      return known ?? refuse("stale", "This quote has expired. Send /withdraw again for a fresh one.");
    }
    if (q.userKey !== userKey) return refuse("not_allowed", "This button belongs to someone else's withdrawal.");
    if (q.expiresAt < this.#now()) {
      this.#quotes.delete(quoteId);
      // An earlier press whose answer timed out may have reserved it: the wallet says, before "send /withdraw again".
      return (await this.#knownWithdrawal(userKey, quoteId)) ?? refuse("stale", "This quote has expired. Send /withdraw again for a fresh one.");
    }
    const w = this.#o.config.withdrawals;
    const r = await this.#o.registry.send(userKey, "reserve_withdrawal", {
      request: { id: q.id, address: q.address, amount: q.amount, fee: q.fee, dustLimit: this.#minWithdrawal(), dailyLimit: BigInt(w.dailyLimitSats) },
    });
    if (isRefusal(r)) return r;
    // Confirmed: a press of either button from now on asks the wallet, which knows it.
    this.#quotes.delete(quoteId);
    return confirmed(q.id, r.repeated, r.withdrawal, r.balance);
  }

  /**
   * Cancelled only if the wallet has no withdrawal of this quote: a confirm whose answer timed out may still be
   * reserving it (its command is in the wallet's mailbox before this question), and a confirmed withdrawal is never
   * called cancelled. The quote leaves at once, so no confirm starts meanwhile; it comes back if the wallet cannot say.
   */
  async cancelQuote(userKey: string, quoteId: string): Promise<Result<{ cancelled: boolean }>> {
    const q = this.#quotes.get(quoteId);
    if (q && q.userKey !== userKey) return refuse("not_allowed", "This button belongs to someone else's withdrawal.");
    if (q) this.#quotes.delete(quoteId);
    const r = await this.#o.registry.send(userKey, "withdrawal", { id: quoteId });
    if (isRefusal(r)) {
      if (q) this.#quotes.set(quoteId, q);
      return r;
    }
    if (r.withdrawal) return refuse("not_allowed", "This withdrawal was already confirmed; it cannot be cancelled here.");
    return { cancelled: q !== undefined };
  }

  async transfer(userKey: string, id: string, toUserKey: string, amountText: string) {
    const amount = parseAmount(amountText);
    if (isRefusal(amount)) return amount;
    if (!/^[\w:.-]{1,128}$/.test(id)) return refuse("bad_input", "A transfer needs a valid id.");
    // Only a user key receives a transfer: a cheque's pseudo-user (`cheque:<hash>`) takes only its own funding, and
    // anything else would leave the amount in the sender's outbox for good (the courier's sink refuses it).
    if (!USER_KEY.test(toUserKey)) return refuse("bad_input", "A transfer goes to a user of this service; that is not one. Nothing was sent.");
    // Winding down: tips are closed, whoever the receiver. Refusing only those to someone without a wallet (a tip would
    // open one, and a liability nobody closes) told the tipper, and the group, who has a wallet here.
    if (this.#draining()) return refuse("draining", "This service is winding down: tips are closed. Nothing was sent; take your balance out with /withdraw.");
    return this.#o.registry.send(userKey, "send_transfer", { id, to: toUserKey, amount, maxAmount: BigInt(this.#o.config.transfers.maxTransferSats) });
  }

  async createCheque(userKey: string, id: string, amountText: string): Promise<Result<Cheque>> {
    const amount = parseAmount(amountText);
    if (isRefusal(amount)) return amount;
    if (!this.#o.cheques) return refuse("not_allowed", "Cheques are not available on this service yet.");
    return this.#o.cheques.create(userKey, id, amount);
  }

  async claimCheque(userKey: string, code: string) {
    if (!this.#o.cheques) return refuse("not_allowed", "Cheques are not available on this service yet.");
    // A claim pays the claimant's wallet, opening one if they have none: not while winding down.
    const closed = await this.#noNewWallet(userKey, "a cheque can be claimed only by someone who already has a wallet here; it goes back to its sender when it expires");
    if (closed) return closed;
    return this.#withBalance(userKey, await this.#o.cheques.claim(userKey, code));
  }

  async revokeCheque(userKey: string, code: string) {
    if (!this.#o.cheques) return refuse("not_allowed", "Cheques are not available on this service yet.");
    const frozen = await this.#chequesFrozen(userKey);
    if (frozen) return frozen;
    return this.#withBalance(userKey, await this.#o.cheques.revoke(userKey, code));
  }

  async myCheques(userKey: string): Promise<Result<{ cheques: MyChequeView[]; more: number }>> {
    if (!this.#o.cheques) return refuse("not_allowed", "Cheques are not available on this service yet.");
    // A frozen wallet (a takeover reported, say) gets no cheque links back: they are claimable by anyone it gives them.
    const frozen = await this.#chequesFrozen(userKey);
    if (frozen) return frozen;
    return this.#o.cheques.mine(userKey);
  }

  /** See Relay.onNotification: the first edge to subscribe releases the held notices, to every listener there is. */
  onNotification(listener: NoticeListener<Notification>, o: NoticeListening = {}): () => void {
    return this.#notices.subscribe(listener, o);
  }

  /**
   * Called by the wallets' notice hook (after the command is durable and answered) and the cheque book's. Kept in the
   * store until an edge settles it: `record`, a wallet's, was written with the command (`keep`); otherwise it is written
   * on the next turn (KeptNotices.add), never in the command's way.
   */
  notify(n: Notification, record?: KeptRecord): void {
    this.#notices.publish(n, record ? record.committed() : this.#o.kept?.add(n));
  }

  /**
   * A wallet's notice's record, to write with the wallet's own journal record (KeptNotices.reserve); `notify` it with
   * the notice once that is durable. Undefined when notices are not kept in a store.
   */
  keep(n: Notification): KeptRecord | undefined {
    return this.#o.kept?.reserve(n);
  }

  /**
   * The notices the last run kept and did not deliver, held (before anything new) for the first edge, in order. Called
   * by the engine's start before its catch-up makes new ones, and before any edge subscribes. Returns how many.
   */
  async restoreNotices(): Promise<number> {
    const kept = (await this.#o.kept?.load()) ?? [];
    // No more than are held for an edge (the store keeps more: those a bot had not acknowledged too): the oldest go.
    const over = kept.length - HELD_NOTICES;
    if (over > 0) {
      for (const { release } of kept.splice(0, over)) release();
      this.#o.log.warn({ dropped: over, kept: HELD_NOTICES }, "more notices were kept from the last run than are held for an edge: the oldest are deleted, not sent");
    }
    for (const { n, release } of kept) this.#notices.publish(n, release);
    return kept.length;
  }

  /** Settles once the kept notices' writes so far are on disk (tests, before a crash they mean to survive). */
  noticesWritten(): Promise<void> {
    return this.#o.kept?.flushed() ?? Promise.resolve();
  }

  /** Stops listeners and quote expiry; notices not delivered stay in the store for the next start (see closeNotices). */
  close(): void {
    clearInterval(this.#sweep);
    this.#notices.clear();
  }

  /** Writes what the kept notices still have to write, then nothing more (the engine's stop, before its store closes). */
  closeNotices(): Promise<void> {
    return this.#o.kept?.close() ?? Promise.resolve();
  }

  /** A crash: the kept notices write nothing more. */
  abandonNotices(): void {
    this.#o.kept?.abandon();
  }

  /**
   * In drain mode, the refusal for money that would open a wallet for `userKey` (who has none), or the wallet's own
   * refusal when it cannot say now; undefined otherwise.
   */
  async #noNewWallet(userKey: string, what: string): Promise<Refusal | undefined> {
    if (!this.#draining()) return undefined;
    const b = await this.#o.registry.read(userKey, "balance", {});
    if (!isRefusal(b)) return undefined;
    return b.code === "not_found" ? refuse("draining", `This service is winding down: ${what}.`) : b;
  }

  /**
   * The refusal for a creator's cheque command (list, revoke) when their wallet is frozen, or cannot say now; undefined
   * when it may go on. No wallet at all is not frozen: the book answers (no cheques).
   */
  async #chequesFrozen(userKey: string): Promise<Refusal | undefined> {
    const b = await this.balance(userKey);
    if (isRefusal(b)) return b.code === "not_found" ? undefined : b;
    if (b.frozen) return refuse("frozen", "This wallet is frozen by an operator; its cheques are on hold. Contact support.");
    return undefined;
  }

  /**
   * A claim's or revoke's answer with the balance after it. The book has recorded it: a balance read refused now (the
   * wallet busy, held off after errors) must not turn it into a refusal — "nothing was moved" to a user who was paid, a
   * creator told a revoke failed who then trusts a link that is dead. Answered without the balance then.
   */
  async #withBalance(userKey: string, r: Result<{ amount: bigint }>): Promise<Result<{ amount: bigint; balance?: BalanceView }>> {
    if (isRefusal(r)) return r;
    const balance = await this.balance(userKey);
    return isRefusal(balance) ? { amount: r.amount } : { amount: r.amount, balance };
  }

  /**
   * The wallet's withdrawal of this quote, if it has one; undefined if it has none. A wallet that cannot say (busy)
   * answers with its refusal: never "expired, send /withdraw again" while the withdrawal may be there.
   */
  async #knownWithdrawal(userKey: string, id: string): Promise<Result<ConfirmedWithdrawal> | undefined> {
    const r = await this.#o.registry.send(userKey, "withdrawal", { id });
    if (isRefusal(r)) return r.code === "not_found" ? undefined : r;
    if (!r.withdrawal) return undefined;
    return confirmed(id, true, r.withdrawal, r.balance);
  }

  #expireQuotes(): void {
    const now = this.#now();
    for (const [id, q] of this.#quotes) if (q.expiresAt < now) this.#quotes.delete(id);
  }

  #draining(): boolean {
    return this.#o.isDraining?.() ?? false;
  }

  #now(): number {
    return (this.#o.now ?? Date.now)();
  }
}

/** A confirmed withdrawal as the relay answers it: the fee charged once sent, the quoted fee until then. */
function confirmed(id: string, repeated: boolean, w: Withdrawal, balance: BalanceView): ConfirmedWithdrawal {
  return { id, repeated, amount: w.amount, fee: w.fee ?? w.quotedFee, status: w.status, ...(w.txid ? { txid: w.txid } : {}), balance };
}
