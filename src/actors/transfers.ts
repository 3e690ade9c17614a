// Delivers durable debits to their receivers: a wallet journals a transfer, then this courier credits the
// receiver (which dedupes by transfer id) and acknowledges to the sender, which clears its outbox. Every
// step is a tell-and-answer through the registry, never a query from inside a handler, so two wallets
// paying each other at once cannot deadlock. Undelivered transfers stay in the sender's outbox and are
// re-sent when the sender is next activated (the engine activates every wallet with an outbox at start).
import type { Logger } from "../log.ts";
import { isRefusal, type Refusal } from "../domain/refusals.ts";
import type { WalletRegistry } from "./registry.ts";

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
}

export class TransferCourier {
  readonly #o: CourierOptions;
  readonly #inFlight = new Set<string>();
  /**
   * Credits to one receiver, and acknowledgements to one sender, gather while a command for that wallet is being
   * journalled and go together as the next: one journal record for many, however busy the wallet.
   */
  readonly #credit = gathered(async (to: string, transfers: Array<{ id: string; from: string; amount: bigint }>): Promise<Array<{ repeated: boolean } | Refusal>> => {
    const r = await this.#o.registry.send(to, "receive_transfers", { transfers });
    return isRefusal(r) ? transfers.map(() => r) : r.repeated.map((repeated) => ({ repeated }));
  });
  readonly #ack = gathered(async (from: string, ids: string[]) => {
    const r = await this.#o.registry.send(from, "transfer_acked", { ids });
    if (isRefusal(r)) this.#o.log.warn({ from, transfers: ids.length, refusal: r.code }, "transfer acknowledgements not recorded; they will be re-sent");
    return ids.map(() => undefined);
  });
  readonly stats = { delivered: 0, refused: 0, deferred: 0 };
  #idle: Array<() => void> = [];

  constructor(o: CourierOptions) {
    this.#o = o;
  }

  /** Fire and forget: the outbox makes delivery durable, this makes it prompt. */
  deliver(from: string, id: string, to: string, amount: bigint): void {
    if (this.#inFlight.has(id)) return;
    this.#inFlight.add(id);
    void this.#run(from, id, to, amount).finally(() => {
      this.#inFlight.delete(id);
      if (this.#inFlight.size === 0) for (const f of this.#idle.splice(0)) f();
    });
  }

  /** Resolves when no delivery is in flight (tests, shutdown). */
  settled(): Promise<void> {
    return this.#inFlight.size === 0 ? Promise.resolve() : new Promise((r) => this.#idle.push(r));
  }

  async #run(from: string, id: string, to: string, amount: bigint): Promise<void> {
    const sink = this.#o.sinks?.find((s) => s.accepts(to));
    const attempts = (this.#o.retries ?? 3) + 1;
    for (let i = 0; i < attempts; i++) {
      try {
        const r = sink
          ? await sink.receive(from, id, to, amount)
          : await this.#credit(to, { id, from, amount });
        if (isRefusal(r)) {
          if (r.code === "busy" && i + 1 < attempts) {
            await new Promise((res) => setTimeout(res, 50 * 2 ** i));
            continue;
          }
          // A refused credit stays in the sender's outbox: operators see it, nothing is lost.
          this.stats.refused++;
          this.#o.log.error({ from, to, id, refusal: r.code }, "transfer credit refused; it stays in the sender's outbox");
          return;
        }
        await this.#ack(from, id);
        this.stats.delivered++;
        return;
      } catch (e) {
        this.#o.log.warn({ from, to, id, err: e }, "transfer delivery failed; it will be re-sent");
      }
    }
    this.stats.deferred++;
  }
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
