// Cheques seen from the relay: create (escrow funded by a transfer from the creator), claim, revoke.
// The claim code is derived from the creator's command id, so a repeated /cheque command yields the same
// cheque instead of a second, unfunded one; only an HMAC of the code is ever stored.
import { crashBudget, crashRefusal } from "./crash-budget.ts";
import type { Logger } from "../log.ts";
import { isRefusal, refuse, refuseUnsent, type Refusal } from "../domain/refusals.ts";
import type { Cheque, Notification } from "../relay.types.ts";
import type { ChequePayoutReason } from "./wallet.messages.ts";
import type { ChequePort } from "../relay.ts";
import { ActorStopped, AskTimeout, type ActorSystem, type Ref } from "./runtime.ts";
import type { WalletRegistry } from "./registry.ts";
import type { TransferSink } from "./transfers.ts";
import { Later } from "./later.ts";
import { BookReplay, chequeBehaviour, chequePayoutId, chequeUserKey, escrowOf, type ChequeBookOptions, type ChequeCommand, type ChequeState, type MyCheque } from "./cheques.ts";
import type { MyChequeView } from "../relay.types.ts";
import { describeAmount } from "../domain/money.ts";

export interface ChequeServiceOptions extends ChequeBookOptions {
  system: ActorSystem;
  registry: WalletRegistry;
  log: Logger;
  ttlSec: number;
  maxAmount: bigint;
  /** HMAC under a key derived from the master key: codes and their hashes. */
  mac: (purpose: string, data: string) => string;
  now?: () => number;
  /**
   * A payout its payee's wallet did not take (busy, failing) is sent again after this, doubling up to five minutes,
   * while the engine runs (default 5,000 ms); `resume` at the next start sends whatever is still unpaid.
   */
  retryLaterMs?: number;
  /** Whether the store's writes are failing now: a crash then is not counted against the book (crash-budget.ts). */
  storeFailing?: () => boolean;
  /** How long a command waits for the book (default 10,000 ms). */
  askTimeoutMs?: number;
  /**
   * Tells a user something (the engine's relay.notify, as the wallets' notices): a creator that their cheque was
   * claimed. Without it nobody is told.
   */
  notify?: (n: Notification) => void;
}

const CODE_RE = /^[A-Za-z0-9_-]{16,64}$/;
/** The most cheques a creator's list shows (the newest). */
const MINE_LIMIT = 20;

/** A wallet's refusals of a transfer, decided before anything is journalled (wallet.ts, decideSend): final. */
const FUNDING_REFUSED = new Set(["insufficient_funds", "frozen", "bad_amount", "over_limit", "self_transfer", "not_found"]);

export class ChequeService implements ChequePort, TransferSink {
  readonly #o: ChequeServiceOptions;
  readonly #ref: Ref<ChequeCommand>;
  readonly #paying = new Set<Promise<unknown>>();
  /** Creators being told their cheque was claimed (settled() waits for these too; payNow() does not). */
  readonly #telling = new Set<Promise<unknown>>();
  readonly stats = { payoutRetries: 0 };
  /** Payouts waiting to be sent again, by cheque. Not waited for by settled() (the watchdog waits for that). */
  readonly #later: Later;

  constructor(o: ChequeServiceOptions) {
    this.#o = o;
    this.#later = new Later(o.retryLaterMs ?? 5000);
    const afterCrash = crashBudget({
      log: o.log.child({ actor: "cheques" }), what: "cheque book", stopped: "cheque book stopped after repeated crashes; it needs an operator and a restart", storeFailing: o.storeFailing,
    });
    const hooks = {
      pay: (hash: string, payee: string, amount: bigint, why: ChequePayoutReason) => this.#track(this.#pay(hash, payee, amount, why, 0)),
      claimed: (creator: string, amount: bigint) => this.#tellClaimed(creator, amount),
    };
    this.#ref = o.system.spawnPersistent("cheques", chequeBehaviour(hooks, o), {
      onCrash: (r) => {
        // Asked for (resume after a store outage): not a crash, nothing to count or log.
        if (r.error instanceof BookReplay) {
          (r.message as { reply?: (x: { ok: true }) => void } | undefined)?.reply?.({ ok: true });
          return "reset";
        }
        (r.message as { reply?: (x: Refusal) => void } | undefined)?.reply?.(crashRefusal(r.error));
        return afterCrash(r.error);
      },
    });
  }

  async create(userKey: string, id: string, amount: bigint): Promise<Cheque | Refusal> {
    if (amount > this.#o.maxAmount) return refuse("over_limit", `A single cheque can carry at most ${describeAmount(this.#o.maxAmount)}; make one for less.`);
    const code = this.#code(userKey, id);
    const hash = this.#hash(code);
    const now = this.#now();
    const expiresAt = now + this.#o.ttlSec * 1000;
    const created = await this.#askUser<{ amount: bigint; expiresAt: number } | Refusal>((reply) => ({ type: "create", hash, creator: userKey, id, amount, expiresAt, now, reply }));
    if (isRefusal(created)) return created;
    // The amount the book has: a repeated command with another amount must not send a funding the book refuses.
    const funded = await this.#o.registry.send(userKey, "send_transfer", { id: `chqfund:${hash}`, to: chequeUserKey(hash), amount: created.amount, maxAmount: this.#o.maxAmount });
    if (isRefusal(funded)) {
      // Refused by the wallet itself, or before the command reached it (too many in flight, shutting down): nothing was
      // sent, and the cheque would wait for funds forever. A wallet that answered late or failed may still send them (a
      // timeout, a crash after the journal): that cheque stays, to be funded (or dropped at its expiry if never).
      if (FUNDING_REFUSED.has(funded.code)) {
        await this.#ask<{ ok: true }>((reply) => ({ type: "drop", hash, creator: userKey, reply }));
        return funded;
      }
      if (funded.unsent) {
        // This request moved nothing, but another with the same id may be funding the cheque now: it is dropped only if
        // its funding is not in the creator's outbox (asked through the wallet's mailbox, after any send already there);
        // when that cannot be told, it is left to its expiry. A repeat of the command gives back the cheque if it is made.
        await this.#dropUnlessFunding(hash, userKey);
        return refuseUnsent(funded.code, `Nothing was moved by this request: ${funded.message} Send the same /cheque again in a moment.`);
      }
      // What to look at first: an edge shows one line of bounded length (the reason after it may be cut).
      return refuse(funded.code, `The cheque may still be made: once the amount leaves your balance, /cheque list shows it and its link. ${funded.message}`);
    }
    // A repeat of a command whose funding was given back (refused by the book, it came back to the creator: see
    // transfers.ts) made the cheque again, waiting for funds the wallet will never send (its transfer index answers the
    // same funding "repeated"): a link that could never be claimed, counted against the creator's open cheques.
    if (funded.repeated && (await this.#fundingGivenBack(hash, userKey))) {
      return refuse("not_allowed", "This cheque's funds were given back to you earlier, so it cannot be made again: make a new cheque. Nothing was moved.");
    }
    // The cheque as the book has it: a repeated command, a day later, gets the expiry it was made with.
    return { code, amount: created.amount, expiresAt: created.expiresAt };
  }

  /**
   * After a funding answered "repeated": whether the cheque waits for funds that are no longer on their way, and was
   * dropped for it. The creator's outbox is read first, through the wallet's mailbox (after the funding, which that
   * answer proves was sent): a funding not in it then was either taken by the book (funded by then, for good) or given
   * back. So a cheque found waiting after that is dropped — the book drops only one still waiting, never one funded
   * meanwhile — and it is gone if it was dropped. A funding still in the outbox is on its way (delivered, or given back
   * later: the book drops that cheque at its expiry). A wallet that cannot say now: false, the cheque kept as before.
   */
  async #fundingGivenBack(hash: string, creator: string): Promise<boolean> {
    if ((await this.state()).get(hash)?.status !== "awaiting_funds") return false;
    const w = await this.#o.registry.send(creator, "state", {});
    if (isRefusal(w) || Object.hasOwn(w.outgoing, `chqfund:${hash}`)) return false;
    await this.#ask<{ ok: true }>((reply) => ({ type: "drop", hash, creator, reply }));
    // Gone from the book and from the records of cheques that left it (one funded, claimed and pruned meanwhile).
    return ((await this.state()).get(hash) ?? this.#o.finished.get(hash)) === undefined;
  }

  /**
   * The creator's cheques that can still be claimed (or are waiting for their funds), newest first, with their codes:
   * at most `MINE_LIMIT` (one chat message), and how many older ones are not shown.
   */
  async mine(userKey: string): Promise<{ cheques: MyChequeView[]; more: number }> {
    const mine = await this.#ask<{ cheques: MyCheque[]; total: number }>((reply) => ({ type: "mine", creator: userKey, now: this.#now(), limit: MINE_LIMIT, reply }));
    const cheques = mine.cheques.map((c) => ({ amount: c.amount, expiresAt: c.expiresAt, funded: c.funded, code: c.id === undefined ? undefined : this.#code(userKey, c.id) }));
    return { cheques, more: mine.total - cheques.length };
  }

  async claim(userKey: string, code: string) {
    if (!CODE_RE.test(code)) return refuse("not_found", "That is not a cheque code.");
    const hash = this.#hash(code);
    // A cheque whose creator's wallet is frozen (a takeover reported, say) is not paid out: the claimant is told it is on
    // hold, nothing about the creator's wallet. A claim the book refuses anyway (claimed, expired…) is answered below.
    let open: { creator: string } | undefined;
    try {
      open = await this.#ask<{ creator: string } | undefined>((reply) => ({ type: "creator", hash, now: this.#now(), reply }));
    } catch (e) {
      if (e instanceof AskTimeout || e instanceof ActorStopped) return refuse("busy", "The cheque book is busy; nothing was moved. Try the link again in a moment.");
      throw e;
    }
    if (open) {
      const held = await this.#creatorFrozen(open.creator);
      if (held === undefined) return refuse("busy", "This cheque cannot be checked right now; nothing was moved. Try the link again in a moment.");
      if (held) return refuse("not_allowed", "This cheque is on hold; ask the person who sent it.");
    }
    return this.#askUser<{ amount: bigint } | Refusal>((reply) => ({ type: "claim", hash, by: userKey, now: this.#now(), reply }));
  }

  /** Whether a creator's wallet is frozen; undefined when it cannot say now (busy, unavailable). */
  async #creatorFrozen(creator: string): Promise<boolean | undefined> {
    const b = await this.#o.registry.read(creator, "balance", {});
    if (isRefusal(b)) return undefined;
    return b.frozen !== undefined;
  }

  async revoke(userKey: string, code: string) {
    if (!CODE_RE.test(code)) return refuse("not_found", "That is not a cheque code.");
    return this.#askUser<{ amount: bigint } | Refusal>((reply) => ({ type: "revoke", hash: this.#hash(code), by: userKey, reply }));
  }

  /**
   * Whether a cheque's funding has reached the book, from one reading of it (and the records of cheques that left it):
   * for a store upgrade counting the transfers in flight, before anything else runs.
   */
  async fundedNow(): Promise<(hash: string) => boolean> {
    const book = await this.#ask<ChequeState>((reply) => ({ type: "state", reply }));
    return (hash) => {
      const c = book.get(hash) ?? this.#o.finished.get(hash);
      return c !== undefined && c.status !== "awaiting_funds";
    };
  }

  /** TransferSink: funding transfers addressed to "cheque:<hash>". */
  accepts(to: string): boolean {
    return to.startsWith("cheque:");
  }

  receive(from: string, _id: string, to: string, amount: bigint) {
    return this.#ask<{ ok: true } | Refusal>((reply) => ({ type: "fund", hash: to.slice("cheque:".length), from, amount, reply }));
  }

  /**
   * Returns the funded cheques past their expiry to their creators (the engine asks at start and at every block), and
   * drops those past their expiry still waiting for funds that are not on their way: no funding transfer for them in
   * their creator's outbox (journalled, it would have been delivered or be waiting there). A creator's wallet that
   * cannot say now is asked again at the next block.
   */
  async expire(): Promise<{ expired: number }> {
    const r = await this.#ask<{ expired: number; stale: Array<{ hash: string; creator: string }> }>((reply) => ({ type: "expire", now: this.#now(), reply }));
    let dropped = 0;
    for (const { hash, creator } of r.stale) if (await this.#dropUnlessFunding(hash, creator)) dropped++;
    if (dropped > 0) this.#o.log.info({ dropped }, "cheques never funded by their expiry left the book");
    return { expired: r.expired };
  }

  /**
   * Drops a cheque still waiting for its funds unless its funding transfer is in its creator's outbox (on its way):
   * asked through the wallet's mailbox, so a funding command still waiting there is answered first. A wallet that
   * cannot say now keeps the cheque (false). The book drops only a cheque still waiting for funds.
   */
  async #dropUnlessFunding(hash: string, creator: string): Promise<boolean> {
    const w = await this.#o.registry.send(creator, "state", {});
    if (isRefusal(w) || Object.hasOwn(w.outgoing, `chqfund:${hash}`)) return false;
    await this.#ask<{ ok: true }>((reply) => ({ type: "drop", hash, creator, reply }));
    return true;
  }

  /**
   * Re-sends payouts of claimed or revoked cheques not acknowledged yet: at start, and when the store writes again
   * after an outage. `replay`: the book first reads its journal again — a write the store could not confirm, found on
   * disk when it reopened, may be a claim or revoke the book as it stands does not have (it replayed without it).
   * A payout sent twice is credited once: its payee's wallet knows its id (the transfer index, wallet.ts).
   */
  async resume(o: { replay?: boolean } = {}): Promise<{ resent: number }> {
    if (o.replay) await this.#ask<{ ok: true }>((reply) => ({ type: "replay", reply }));
    return this.#ask<{ resent: number }>((reply) => ({ type: "resume", reply }));
  }

  /** Resolves when no cheque payout is being delivered and no creator is being told of a claim (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.#paying.size > 0 || this.#telling.size > 0) await Promise.all([...this.#paying, ...this.#telling]);
  }

  /**
   * Sends every payout waiting to be tried again now, and resolves when none is being delivered: for the watchdog's
   * second reading. A payout whose credit landed after its answer timed out counts twice until it is recorded paid
   * (in its payee's balance and in the escrow), and its retry may be minutes away. Not the creators being told of
   * claims: no money there.
   */
  async payNow(): Promise<void> {
    this.#later.runNow();
    while (this.#paying.size > 0) await Promise.all([...this.#paying]);
  }

  async escrow(): Promise<bigint> {
    return escrowOf(await this.state());
  }

  /** The cheque book as it stands (by hash of the code; no codes). Its `cheques` is a flat copy, built on first use. */
  state(): Promise<ChequeState> {
    return this.#ask<ChequeState>((reply) => ({ type: "state", reply }));
  }

  /** False once the book's actor stopped after repeated crashes (crash-budget.ts): only a restart brings it back. */
  get running(): boolean {
    return this.#o.system.isRunning(this.#ref);
  }

  #track(p: Promise<unknown>): void {
    this.#paying.add(p);
    void p.finally(() => this.#paying.delete(p));
  }

  /**
   * Tells a cheque's creator it was claimed: the book calls this once, as it commits the claim (never on replay, nor
   * when the payout is sent again). The chat to tell is known to the creator's wallet only (its sealed handle), so it is
   * read there; a wallet that cannot answer now means this one notice is not sent (the claim and payout are not held
   * up for it). Nothing about the cheque but its amount: never its code.
   */
  #tellClaimed(creator: string, amount: bigint): void {
    const notify = this.#o.notify;
    if (!notify) return;
    const p = this.#o.registry.send(creator, "state", {}).then((w) => {
      if (isRefusal(w)) {
        this.#o.log.warn({ refusal: w.code }, "a cheque's creator was not told it was claimed: their wallet did not answer");
        return;
      }
      notify({ userKey: creator, chatHandle: w.chatHandle, notice: { kind: "cheque_claimed", amount } });
    }, (e: unknown) => this.#o.log.warn({ err: e }, "a cheque's creator was not told it was claimed: their wallet did not answer"));
    this.#telling.add(p);
    void p.finally(() => this.#telling.delete(p));
  }

  /** Credits the payee (who dedupes by the payout's id) and records the cheque paid; tried again later if not. */
  async #pay(hash: string, payee: string, amount: bigint, why: ChequePayoutReason, round: number): Promise<void> {
    try {
      // `why` is what the payee is told (nothing after their own claim or revoke); the id alone makes a repeat.
      const r = await this.#o.registry.send(payee, "receive_transfer", { id: chequePayoutId(hash), from: chequeUserKey(hash), amount, cheque: why });
      if (!isRefusal(r)) {
        await this.#ask((reply) => ({ type: "paid", hash, reply }));
        return;
      }
      this.#o.log.warn({ refusal: r.code }, "cheque payout not credited yet; it will be sent again");
    } catch (e) {
      this.#o.log.warn({ err: e }, "cheque payout not delivered yet; it will be sent again");
    }
    this.stats.payoutRetries++;
    this.#later.schedule(hash, round, () => this.#track(this.#pay(hash, payee, amount, why, round + 1)));
  }

  /** For a stop: payouts waiting to be sent again stay owed in the book (`resume` sends them at the next start). */
  stopRetrying(): void {
    this.#later.stop();
  }

  /** A cheque's claim code: derived from its creator and command id, so a repeated command makes the same cheque. */
  #code(userKey: string, id: string): string {
    return this.#o.mac("cheque-code", `${userKey}\u0000${id}`).slice(0, 22);
  }

  #hash(code: string): string {
    return this.#o.mac("cheque-hash", code).slice(0, 32);
  }

  /**
   * A user's command to the book: one that times out or meets a stopping engine is still in the book's mailbox and
   * may yet be done (a claim then credits its claimant), so its caller is told so, never "nothing was moved".
   */
  async #askUser<R>(make: (reply: (r: R) => void) => ChequeCommand): Promise<R | Refusal> {
    try {
      return await this.#ask(make);
    } catch (e) {
      if (e instanceof AskTimeout) return refuse("busy", "The cheque book did not answer in time; this may still be done. Check /balance and /cheque list in a moment before trying again.");
      if (e instanceof ActorStopped) return refuse("busy", "The engine is restarting; this may still have been done. Check /balance in a minute before trying again.");
      throw e;
    }
  }

  #ask<R>(make: (reply: (r: R) => void) => ChequeCommand): Promise<R> {
    return this.#o.system.ask<ChequeCommand, R>(this.#ref, make as never, this.#o.askTimeoutMs ?? 10_000);
  }

  #now(): number {
    return (this.#o.now ?? Date.now)();
  }
}
