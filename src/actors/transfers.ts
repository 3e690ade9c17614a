// Delivers durable debits to their receivers: a wallet journals a transfer, then this courier credits the
// receiver (which dedupes by transfer id) and acknowledges to the sender, which clears its outbox. Every
// step is a tell-and-answer through the registry, never a query from inside a handler, so two wallets
// paying each other at once cannot deadlock. Undelivered transfers stay in the sender's outbox and are
// re-sent when the sender is next activated (the engine activates every wallet with an outbox at start).
// An acknowledgement waits up to `ackDelayMs` for the sender's next journal record, which carries it (the wallet
// takes it through `takeAcks`); only a sender that journals nothing meanwhile gets a record of its own. One lost
// with a crash is harmless: the transfer is re-sent, the receiver answers "repeated", the sender is acknowledged.
// One the sender's wallet did not record (busy, blocked after repeated errors, an ask that timed out) is tried again
// later, as a delivery is; meanwhile the sender's next record still carries it. A repeat is harmless: the wallet
// acknowledges only what is still in its outbox. A credit its receiver refuses for good (REFUSED_FOR_GOOD) is given
// back: the sender's wallet journals its return (`return_transfer`), which takes it out of the outbox and makes its
// amount available again, once; left in the outbox it was refused again at every start, and owed for ever.
import type { Logger } from "../log.ts";
import { isRefusal, refuse, type Refusal } from "../domain/refusals.ts";
import type { WalletRegistry } from "./registry.ts";
import { Later } from "./later.ts";
import type { CarriedAcks } from "./wallet.actor.ts";

/** Somewhere other than a wallet that can receive a transfer (the cheque book's escrow). */
export interface TransferSink {
  accepts(to: string): boolean;
  receive(from: string, id: string, to: string, amount: bigint): Promise<{ ok: true } | Refusal>;
}

export interface CourierOptions {
  registry: WalletRegistry;
  log: Logger;
  sinks?: TransferSink[];
  /** Retries for a busy receiver before leaving the transfer in the outbox for the next activation. */
  retries?: number;
  /** How long an acknowledgement waits for the sender's next record before it is sent on its own (default 250). */
  ackDelayMs?: number;
  /**
   * A delivery that found its receiver busy through every retry (or failed) is tried again after this, doubling up
   * to five minutes, for as long as the engine runs (default 5,000 ms): a sender that stays resident is not
   * activated again, and its transfer would wait in the outbox for the next start. So is an acknowledgement record
   * its sender's wallet did not take.
   */
  retryLaterMs?: number;
}

/**
 * Refusals of a credit that another try cannot change, on which the transfer is given back to its sender. Any other
 * (busy, internal, unavailable) is a passing state of the receiver, and the credit is tried again. Where each comes from:
 * - bad_amount: a wallet's, for an amount of zero or less (which no debit has: decideSend refuses it). The courier says
 *   it itself for such a transfer, never gathering it with others (`#run`): a wallet refuses a gathered batch as a
 *   whole, and a good credit must not be refused, and returned, for another's amount.
 * - not_found: the cheque book's, for a funding it has no cheque awaiting from this creator with this amount: the
 *   cheque was dropped (its /cheque was answered as failed, or it expired unfunded). Only the same /cheque command
 *   again (same creator and id: the same cheque) makes it again; returned by then, its funding is not sent twice (the
 *   wallet answers the repeated transfer id as sent), and the new cheque, never funded, is dropped at its expiry: no
 *   money moves twice. A wallet never refuses a credit with it (an unopened wallet takes it, and opens).
 * - bad_input: no receiver refuses a credit with it now; a sink that did would be saying the transfer is malformed.
 * A receiver that has taken a credit answers its repeat as taken, never with one of these: a wallet looks its transfer
 * index up before anything else but the amount; the cheque book answers a funding it took "ok" (a funded cheque never
 * waits for funds again, and one that left the book is answered from its record).
 */
const REFUSED_FOR_GOOD = new Set(["bad_amount", "bad_input", "not_found"]);

export class TransferCourier {
  readonly #o: CourierOptions;
  /** Deliveries under way, by sender and transfer id. */
  readonly #inFlight = new Map<string, Promise<void>>();
  /**
   * Credits to one receiver gather while a command for that wallet is being journalled and go together as the next:
   * one journal record for many, however busy the wallet.
   */
  readonly #credit = gathered(async (to: string, transfers: Array<{ id: string; from: string; amount: bigint }>): Promise<Array<{ repeated: boolean } | Refusal>> => {
    const r = await this.#o.registry.send(to, "receive_transfers", { transfers });
    return isRefusal(r) ? transfers.map(() => r) : r.repeated.map((repeated) => ({ repeated }));
  });
  readonly stats = { delivered: 0, refused: 0, returned: 0, deferred: 0, acksCarried: 0, acksSent: 0 };
  #idle: Array<() => void> = [];
  /** Acknowledgements not journalled yet, per sender. */
  readonly #acks = new Map<string, string[]>();
  #ackTimer: NodeJS.Timeout | undefined;
  /** Acknowledgement records being sent on their own. */
  #acking = 0;
  /** Acknowledgements a sender's wallet did not record, per sender: tried again later (`#later`), or carried sooner. */
  readonly #ackRetry = new Map<string, { ids: string[]; round: number }>();
  /** After `stopRetrying`: nothing is scheduled again; an acknowledgement not recorded is left to the outbox. */
  #stopped = false;
  /** Deliveries to try again later (busy receivers), by transfer; acknowledgements not recorded, by sender. */
  readonly #later: Later;
  /**
   * Transfers refused for good whose return their sender's wallet has not answered yet (or answered that it could not
   * take now), with the refusal's code, by transfer: from the refusal on, this courier only tries to give them back,
   * never to credit them again (see `#giveBack`).
   */
  readonly #returning = new Map<string, string>();

  constructor(o: CourierOptions) {
    this.#o = o;
    this.#later = new Later(o.retryLaterMs ?? 5000);
  }

  /**
   * The sender's acknowledgements waiting for a record: the wallet journals them with the one it is writing. A record
   * that is not written (the store refused it, an invariant check threw) gives them back (`giveBack`): nothing else
   * would send them again while the sender stays resident, and its transfers would wait in the outbox for the next
   * activation.
   */
  takeAcks(from: string): CarriedAcks | undefined {
    const fresh = this.#acks.get(from);
    const retry = this.#ackRetry.get(from);
    if (!fresh && !retry) return undefined;
    this.#acks.delete(from);
    let ids = fresh ?? [];
    let round = 0;
    if (retry) {
      // Carried by this record instead of one of their own later.
      this.#ackRetry.delete(from);
      this.#later.cancel(ackKey(from));
      ids = [...retry.ids, ...ids];
      round = retry.round;
      // Called from the wallet's handler: a settled() waiting on these is told afterwards, not from inside it.
      queueMicrotask(() => this.#maybeIdle());
    }
    this.stats.acksCarried += ids.length;
    let given = false;
    return {
      ids,
      giveBack: (err) => {
        if (given) return;
        given = true;
        this.stats.acksCarried -= ids.length;
        this.#notRecorded(from, ids, round, { err });
        // Also called from the wallet's handler (its failed turn).
        queueMicrotask(() => this.#maybeIdle());
      },
    };
  }

  /**
   * Fire and forget: the outbox makes delivery durable, this makes it prompt. The promise (never rejected) settles
   * when this delivery is over: credited (its acknowledgement waiting for a record), refused, or left in the outbox.
   */
  deliver(from: string, id: string, to: string, amount: bigint, round = 0): Promise<void> {
    // A transfer is its sender and id: ids are each sender's own, and two senders may use the same one at once.
    const transfer = from + "\u0000" + id;
    const running = this.#inFlight.get(transfer);
    if (running) return running;
    this.#later.cancel(transfer);
    const delivery = this.#run(from, id, to, amount, round).finally(() => {
      this.#inFlight.delete(transfer);
      this.#maybeIdle();
    });
    this.#inFlight.set(transfer, delivery);
    return delivery;
  }

  /**
   * Drops the acknowledgements not journalled yet, as a crash would (they are re-sent with their transfers at the
   * senders' next activation): for an engine that stops without settling.
   */
  abandon(): void {
    this.stopRetrying();
    if (this.#ackTimer) clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    this.#acks.clear();
    this.#maybeIdle();
  }

  /**
   * Drops the deliveries waiting to be tried again (they stay in their senders' outboxes, re-sent at the next
   * start): for a stop, before `settled`. Acknowledgements waiting to be tried again get one last try with the
   * others (the stop's `settled`); one not recorded from now on is left to the outbox.
   */
  stopRetrying(): void {
    this.#stopped = true;
    this.#later.stop();
    for (const [from, { ids }] of this.#ackRetry) this.#queueAcks(from, ids);
    this.#ackRetry.clear();
    this.#maybeIdle();
  }

  /**
   * Resolves when no delivery is in flight or waiting to be tried again, and every acknowledgement is journalled
   * (tests, shutdown).
   */
  settled(): Promise<void> {
    this.#flushAcks();
    // Someone waits for them now: the retries keep the process alive.
    this.#later.keepAlive();
    return this.#busy() ? new Promise((r) => this.#idle.push(r)) : Promise.resolve();
  }

  #busy(): boolean {
    return this.#inFlight.size > 0 || this.#acking > 0 || this.#acks.size > 0 || this.#ackRetry.size > 0 || this.#later.size > 0;
  }

  #maybeIdle(): void {
    // Someone waits for settled(): acknowledgements that arrived meanwhile are not held back for a record.
    if (this.#idle.length > 0 && this.#inFlight.size === 0 && this.#acks.size > 0) this.#flushAcks();
    if (this.#busy()) return;
    for (const f of this.#idle.splice(0)) f();
  }

  #acknowledge(from: string, id: string): void {
    this.#queueAcks(from, [id]);
  }

  /** Acknowledgements waiting for the sender's next record, or for one of their own after `ackDelayMs`. */
  #queueAcks(from: string, add: string[]): void {
    if (add.length === 0) return;
    const ids = this.#acks.get(from);
    if (ids) ids.push(...add);
    else this.#acks.set(from, [...add]);
    this.#ackTimer ??= setTimeout(() => {
      this.#ackTimer = undefined;
      this.#flushAcks();
    }, this.#o.ackDelayMs ?? 250);
  }

  /** Sends every waiting acknowledgement as a record of its own (one per sender). */
  #flushAcks(): void {
    if (this.#ackTimer) clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    for (const [from, ids] of this.#acks) {
      this.#acks.delete(from);
      this.#sendAcks(from, ids, 0);
    }
  }

  #sendAcks(from: string, ids: string[], round: number): void {
    this.#acking++;
    this.stats.acksSent += ids.length;
    void this.#ack(from, ids, round).finally(() => {
      this.#acking--;
      this.#maybeIdle();
    });
  }

  /**
   * One acknowledgement record. One not recorded (refused, or no answer in time: it may have been recorded, and a
   * repeat then changes nothing) is tried again after a while, doubling up to five minutes, unless the sender's next
   * record carries it first (`takeAcks`); after a stop, or refused for good, it is left to the outbox (re-sent at the
   * sender's next activation, and acknowledged then).
   */
  async #ack(from: string, ids: string[], round: number): Promise<void> {
    let why: { refusal: string } | { err: unknown } | undefined;
    try {
      const r = await this.#o.registry.send(from, "transfer_acked", { ids });
      if (isRefusal(r)) why = { refusal: r.code };
    } catch (e) {
      why = { err: e };
    }
    if (!why) return;
    this.#notRecorded(from, ids, round, why);
  }

  /**
   * Acknowledgements the sender's wallet did not record (a record of their own, or the sender's record that carried
   * them): tried again later, unless the sender's next record carries them first. Not once the courier is stopped or
   * the registry closed (the engine stopping): nothing records them any more, and a retry's timer would keep a
   * process alive whose settled() was waited for once. Then, or refused for good, they are left to the outbox.
   */
  #notRecorded(from: string, ids: string[], round: number, why: { refusal: string } | { err: unknown }): void {
    const again = !this.#stopped && !this.#o.registry.closed && !("refusal" in why && REFUSED_FOR_GOOD.has(why.refusal));
    this.#o.log.warn({ sender: from, transfers: ids.length, round, ...why },
      again ? "transfer acknowledgements not recorded; tried again later" : "transfer acknowledgements not recorded; their transfers are re-sent at the sender's next activation");
    if (!again) return;
    // Acknowledgements of this sender already waiting to be tried again (another record that failed meanwhile) go with these.
    const waiting = this.#ackRetry.get(from);
    const retry = { ids: waiting ? [...waiting.ids, ...ids] : ids, round: Math.max(round, waiting?.round ?? 0) };
    this.#ackRetry.set(from, retry);
    this.#later.schedule(ackKey(from), retry.round, () => {
      const due = this.#ackRetry.get(from);
      if (!due) return;
      this.#ackRetry.delete(from);
      this.#sendAcks(from, due.ids, due.round + 1);
    });
  }

  async #run(from: string, id: string, to: string, amount: bigint, round: number): Promise<void> {
    // Refused for good already, its return not answered: never credited again, only given back.
    const refused = this.#returning.get(from + "\u0000" + id);
    if (refused !== undefined) return this.#giveBack(from, id, to, amount, refused, round);
    const sink = this.#o.sinks?.find((s) => s.accepts(to));
    const attempts = (this.#o.retries ?? 3) + 1;
    for (let i = 0; i < attempts; i++) {
      try {
        const r = sink
          ? await sink.receive(from, id, to, amount)
          // Never gathered with others: a wallet refuses a batch with a bad amount in it as a whole (REFUSED_FOR_GOOD).
          : amount <= 0n ? refuse("bad_amount", "A transfer must move more than zero.")
          : await this.#credit(to, { id, from, amount });
        if (isRefusal(r)) {
          if (r.code === "busy") {
            if (i + 1 < attempts) await new Promise((res) => setTimeout(res, 50 * 2 ** i));
            continue;
          }
          if (REFUSED_FOR_GOOD.has(r.code)) {
            this.stats.refused++;
            return this.#giveBack(from, id, to, amount, r.code, round);
          }
          // A passing fault (a wallet blocked for a while after repeated errors, a write that failed): tried later.
          this.#o.log.warn({ sender: from, receiver: to, id, refusal: r.code }, "transfer credit not taken yet; it will be re-sent");
          break;
        }
        this.#acknowledge(from, id);
        this.stats.delivered++;
        return;
      } catch (e) {
        this.#o.log.warn({ sender: from, receiver: to, id, err: e }, "transfer delivery failed; it will be re-sent");
      }
    }
    this.stats.deferred++;
    // The engine stopping: it stays in the sender's outbox for the next start.
    if (this.#o.registry.closed) return;
    this.#later.schedule(from + "\u0000" + id, round, () => void this.deliver(from, id, to, amount, round + 1));
  }

  /**
   * Gives a transfer refused for good back to its sender: its wallet journals the return (out of the outbox, the amount
   * available again, out of the transfers in flight), once — a repeat, or a transfer no longer in the outbox, changes
   * nothing. Why no credit of it can land after its return:
   * - only this courier credits a transfer, from its sender's outbox (as it is debited, at each activation) or from
   *   its own retries; one delivery of a transfer at a time (`#inFlight`, which this runs inside);
   * - from the refusal on, every delivery of it in this process comes here (`#returning`), also when the return's
   *   answer was lost (an ask that timed out: the wallet may still journal it) — so no credit can race a return
   *   that may yet be journalled;
   * - once journalled, the return has taken it out of the outbox: nothing sends it again, after a restart either;
   * - a crash before it is journalled leaves it in the outbox: re-sent at the next start as any other, the receiver is
   *   asked again (no return is pending any more), and it is credited (then acknowledged) or refused and given back.
   * A return the sender's wallet did not record now (busy, blocked for a while after errors, an ask that timed out) is
   * tried again later, as a delivery is; after a stop it is left to the outbox (refused again, and returned, at the
   * next start). A warning, once, when it is returned: nothing is left for an operator to do.
   */
  async #giveBack(from: string, id: string, to: string, amount: bigint, reason: string, round: number): Promise<void> {
    const transfer = from + "\u0000" + id;
    // Asked for before, without an answer that said it was done: not in the outbox now means that ask journalled it.
    const again = this.#returning.has(transfer);
    this.#returning.set(transfer, reason);
    let why: { refusal: string } | { err: unknown };
    try {
      const r = await this.#o.registry.send(from, "return_transfer", { id, reason });
      if (!isRefusal(r)) {
        this.#returning.delete(transfer);
        if (r.returned || again) {
          this.stats.returned++;
          this.#o.log.warn({ sender: from, receiver: to, id, refusal: reason }, "transfer credit refused for good; given back to its sender");
        }
        return;
      }
      // Only the registry's refusals (busy, a wallet blocked after errors) or a crash's: the wallet never refuses a return.
      if (r.code !== "busy" && r.code !== "internal") {
        this.#returning.delete(transfer);
        this.#o.log.error({ alert: true, sender: from, receiver: to, id, refusal: reason, returnRefused: r.code }, "transfer credit refused; it stays in the sender's outbox, and its return was refused too");
        return;
      }
      why = { refusal: r.code };
    } catch (e) {
      why = { err: e };
    }
    this.stats.deferred++;
    this.#o.log.warn({ sender: from, receiver: to, id, refusal: reason, round, ...why }, "transfer credit refused for good; its return is not recorded yet, tried again later");
    if (this.#o.registry.closed) return;
    this.#later.schedule(transfer, round, () => void this.deliver(from, id, to, amount, round + 1));
  }
}

/** The `Later` key of a sender's acknowledgements waiting to be tried again (a delivery's key starts with its sender). */
function ackKey(from: string): string {
  return "\u0000acks\u0000" + from;
}

/**
 * Per key, items that arrive while a call for that key is running wait and go together as the next call (at most
 * `most` per call, so one journal record stays small); each caller gets its own item's result (or the call's error).
 */
export function gathered<I, R>(call: (key: string, items: I[]) => Promise<R[]>, most = 256): (key: string, item: I) => Promise<R> {
  const waiting = new Map<string, Array<{ item: I; resolve: (r: R) => void; reject: (e: unknown) => void }>>();
  return (key, item) => new Promise<R>((resolve, reject) => {
    const queued = waiting.get(key);
    if (queued) {
      queued.push({ item, resolve, reject });
      return;
    }
    const queue = [{ item, resolve, reject }];
    waiting.set(key, queue);
    void (async () => {
      while (queue.length > 0) {
        const batch = queue.splice(0, most);
        try {
          const results = await call(key, batch.map((b) => b.item));
          batch.forEach((b, i) => b.resolve(results[i]!));
        } catch (e) {
          for (const b of batch) b.reject(e);
        }
      }
      waiting.delete(key);
    })();
  });
}
