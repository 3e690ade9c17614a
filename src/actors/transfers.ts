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
  /** Acknowledgements waiting for their sender, per sender: while one is being journalled, the next ones gather. */
  readonly #acks = new Map<string, { ids: string[]; done: Array<() => void> }>();
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

  /**
   * Acknowledges a delivered transfer to its sender. Acknowledgements that arrive while the sender is journalling
   * one are sent together as the next command — one journal record for all of them, however busy the sender.
   */
  #ack(from: string, id: string): Promise<void> {
    return new Promise((resolve) => {
      const waiting = this.#acks.get(from);
      if (waiting) {
        waiting.ids.push(id);
        waiting.done.push(resolve);
        return;
      }
      const q = { ids: [id], done: [resolve] };
      this.#acks.set(from, q);
      void (async () => {
        while (q.ids.length > 0) {
          const ids = q.ids.splice(0), done = q.done.splice(0);
          try {
            const ack = await this.#o.registry.send(from, "transfer_acked", { ids });
            if (isRefusal(ack)) this.#o.log.warn({ from, transfers: ids.length, code: ack.code }, "transfer acknowledgements not recorded; they will be re-sent");
          } catch (e) {
            this.#o.log.warn({ from, err: e }, "transfer acknowledgements failed; they will be re-sent");
          }
          for (const f of done) f();
        }
        this.#acks.delete(from);
      })();
    });
  }

  async #run(from: string, id: string, to: string, amount: bigint): Promise<void> {
    const sink = this.#o.sinks?.find((s) => s.accepts(to));
    const attempts = (this.#o.retries ?? 3) + 1;
    for (let i = 0; i < attempts; i++) {
      try {
        const r = sink
          ? await sink.receive(from, id, to, amount)
          : await this.#o.registry.send(to, "receive_transfer", { id, from, amount });
        if (isRefusal(r)) {
          if (r.code === "busy" && i + 1 < attempts) {
            await new Promise((res) => setTimeout(res, 50 * 2 ** i));
            continue;
          }
          // A refused credit stays in the sender's outbox: operators see it, nothing is lost.
          this.stats.refused++;
          this.#o.log.error({ from, to, id, code: r.code }, "transfer credit refused; it stays in the sender's outbox");
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
