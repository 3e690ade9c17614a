// Drives the payout actor: submits reserved withdrawals, flushes them in batches after the batch window,
// and syncs (rebroadcast + confirmations) after every block. Pausing stops new batches, never tracking.
import { crashBudget } from "./crash-budget.ts";
import type { Logger } from "../log.ts";
import { isRefusal, refuse, type Refusal } from "../domain/refusals.ts";
import { ActorStopped, type ActorSystem, type Ref } from "./runtime.ts";
import { payoutBehaviour, type PayoutCommand, type PayoutHealth, type PayoutOptions, type PayoutState, type PayoutSummary, type ReleaseAnswer } from "./payout.ts";
import type { Withdrawal } from "./wallet.messages.ts";

export interface PayoutServiceOptions extends PayoutOptions {
  system: ActorSystem;
  batchWindowMs: number;
  askTimeoutMs?: number;
  /** After every batch that went out (the watchdog checks the books). */
  afterBatch?: () => Promise<unknown>;
  /** Whether the store's writes are failing now: a crash then is not counted against the actor (crash-budget.ts). */
  storeFailing?: () => boolean;
}

/**
 * What every ask of a payout actor that has stopped (its crash budget spent) fails with: an ActorStopped (nothing reached
 * the actor) that says what the operator can do about it, as the admin edge shows it.
 */
export const PAYOUT_ACTOR_STOPPED = "the payout actor has stopped after repeated crashes: restart the engine (runigun start, or runigun engine in the split shape); its book is replayed from its journal at start";

export class PayoutActorStopped extends ActorStopped {
  constructor() {
    super("payouts");
    this.message = PAYOUT_ACTOR_STOPPED;
  }
}

export class PayoutService {
  readonly #o: PayoutServiceOptions;
  readonly #ref: Ref<PayoutCommand>;
  #timer: NodeJS.Timeout | undefined;
  /** The flush the batch timer started last (settled: never rejects). */
  #flushing: Promise<void> = Promise.resolve();
  #closed = false;
  #paused: string | undefined;
  readonly stats = { batches: 0, outputs: 0, feePaid: 0n, feeQuoted: 0n, crashes: 0 };
  readonly #log: Logger;

  constructor(o: PayoutServiceOptions) {
    this.#o = o;
    this.#log = o.log.child({ actor: "payouts" });
    const hooks = o.hooks;
    const afterCrash = crashBudget({
      log: this.#log, what: "payout actor", stopped: "payout actor stopped after repeated crashes; no payout is built, sent or settled until the engine is restarted (runigun start, or runigun engine in the split shape; /health says singletons.payouts: \"stopped\")", storeFailing: o.storeFailing,
    });
    this.#ref = o.system.spawnPersistent("payouts", payoutBehaviour({
      ...o,
      paused: () => this.#paused !== undefined,
      log: this.#log,
      hooks: {
        ...hooks,
        batchSent: (b) => {
          this.stats.batches++;
          this.stats.outputs += b.outputs;
          this.stats.feePaid += b.fee;
          this.stats.feeQuoted += b.quoted;
          hooks.batchSent?.(b);
        },
      },
    }), {
      onCrash: (r) => {
        this.stats.crashes++;
        const msg = r.message as { type?: PayoutCommand["type"]; reply?: (x: Refusal) => void } | undefined;
        // Flushes and syncs run again by themselves (the batch timer, every block); an operator's command does not.
        const retried = msg?.type === "submit" || msg?.type === "flush" || msg?.type === "sync";
        msg?.reply?.(refuse("internal", retried
          ? "The payout step failed; nothing was sent twice. It will be retried."
          : "The payout step failed; nothing was sent twice. Check GET /payouts and repeat the command if it did not happen."));
        return afterCrash(r.error);
      },
    });
  }

  /** A reservation is durable in the wallet: record it here (idempotent), then batch it. */
  async submit(userKey: string, id: string, w: Withdrawal): Promise<PayoutSummary | Refusal> {
    const r = await this.#ask<PayoutSummary | Refusal>((reply) => ({ type: "submit", id, userKey, address: w.address, amount: w.amount, quotedFee: w.quotedFee, reply }));
    if (!isRefusal(r) && r.status === "queued") this.#schedule();
    return r;
  }

  /** Builds and broadcasts what is queued now (also what the batch timer calls). */
  async flush(): Promise<{ batches: number } | Refusal> {
    if (this.#paused) return refuse("paused", `Payouts are paused: ${this.#paused}`);
    const r = await this.#ask<{ batches: number } | Refusal>((reply) => ({ type: "flush", reply }), 120_000);
    if (!isRefusal(r) && r.batches > 0) await this.#o.afterBatch?.();
    return r;
  }

  /** After a block or a restart: rebroadcast what is pending, settle what is confirmed. */
  sync(): Promise<{ confirmed: number; rebroadcast: number; settled: number } | Refusal> {
    return this.#ask((reply) => ({ type: "sync", reply }), 120_000);
  }

  bump(batch: string, feeRateSatVb: bigint): Promise<{ txid: string; fee: bigint } | Refusal> {
    return this.#ask((reply) => ({ type: "bump", batch, feeRateSatVb, reply }), 120_000);
  }

  /** Operator: give up a stuck batch (see PayoutCommand "release"); again while cancelling, a higher fee rate. */
  release(batch: string, feeRateSatVb: bigint, reason: string): Promise<ReleaseAnswer | Refusal> {
    return this.#ask((reply) => ({ type: "release", batch, feeRateSatVb, reason, reply }), 120_000);
  }

  /** Operator: give back a payout still queued (see PayoutCommand "unqueue"). */
  unqueue(id: string): Promise<PayoutSummary | Refusal> {
    return this.#ask((reply) => ({ type: "unqueue", id, reply }), 120_000);
  }

  /** The book as it stands; `timeoutMs` for a reader that would rather not wait behind a flush or a release. */
  state(timeoutMs?: number): Promise<PayoutState> {
    return this.#ask((reply) => ({ type: "state", reply }), timeoutMs);
  }

  /** How payouts are moving (queue age, failing flushes, a fee wait: PayoutHealth); `timeoutMs` as for state(). */
  status(timeoutMs?: number): Promise<PayoutHealth> {
    return this.#ask((reply) => ({ type: "status", reply }), timeoutMs);
  }

  /** After a restore: queued payouts a transaction made after the backup paid (see PayoutCommand "adopt"). */
  adopt(txid: string, ids: string[], outputs: number): Promise<{ batch: string } | Refusal> {
    return this.#ask((reply) => ({ type: "adopt", txid, ids, outputs, reply }), 120_000);
  }

  /**
   * Runs `read` with the payout book's state, and no payout moves (built, broadcast, confirmed, settled) until it
   * is done: for readings that must agree with the book. `read` must not wait on this service.
   */
  async hold<T>(read: (s: PayoutState) => Promise<T>): Promise<T> {
    const r = await this.#ask<{ value: unknown } | { error: unknown }>((reply) => ({ type: "hold", read, reply }), 120_000);
    if ("error" in r) throw r.error;
    return r.value as T;
  }

  pause(reason: string): void {
    this.#paused = reason;
  }

  resume(): void {
    this.#paused = undefined;
    this.#schedule();
  }

  get paused(): string | undefined {
    return this.#paused;
  }

  /** False once the actor stopped after repeated crashes (crash-budget.ts): only a restart brings it back. */
  get running(): boolean {
    return this.#o.system.isRunning(this.#ref);
  }

  /** No more flushes from the batch timer; resolves once the one it started (if any) is over. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#flushing;
  }

  /** Payouts held back may go now (a wallet unfrozen): a flush after the batch window. */
  schedule(): void {
    this.#schedule();
  }

  #schedule(): void {
    if (this.#timer || this.#paused || this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#flushing = this.flush().then((r) => {
        if (isRefusal(r) && r.code !== "paused") this.#log.warn({ refusal: r.code, why: r.message }, "payout flush failed; retrying at the next block");
      }, (e: unknown) => this.#log.warn({ err: e }, "payout flush did not run; retrying at the next block"));
    }, this.#o.batchWindowMs);
  }

  #ask<R>(make: (reply: (r: R) => void) => PayoutCommand, timeoutMs = this.#o.askTimeoutMs ?? 30_000): Promise<R> {
    // The runtime's own error names the actor only ("payouts is not running"); an operator reading it needs what to do.
    if (!this.running) return Promise.reject(new PayoutActorStopped());
    return this.#o.system.ask<PayoutCommand, R>(this.#ref, make, timeoutMs);
  }
}
