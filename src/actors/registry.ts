// The wallet registry: the only way to reach a wallet. It spawns a wallet actor on first use, passivates it
// when idle or when too many are resident (LRU), bounds in-flight commands per wallet, and owns
// supervision: a crash answers the crashing command, replays the wallet from its journal, and a wallet
// that keeps crashing is stopped and reported instead of looping. Wallet refs never leave this file, so
// nothing can send to a passivated actor (nact would drop the message silently).
import type { Logger } from "../log.ts";
import { isRefusal, refuse, refuseUnsent, type Refusal } from "../domain/refusals.ts";
import { ActorStopped, ActorSystem, AskTimeout, type Ref, type Reply } from "./runtime.ts";
import { crashRefusal } from "./crash-budget.ts";
import { StoreError } from "../store/errors.ts";
import { walletBehaviour, type WalletHooks, type WalletOptions } from "./wallet.actor.ts";
import type { WalletCommand, WalletCommandType, WalletState } from "./wallet.messages.ts";
import { decide } from "./wallet.ts";
import type { WalletRecords } from "./wallet.records.ts";
import type { HistoryPage } from "../relay.types.ts";

/** Commands that only read: answered from the wallet's committed state when it is resident. */
export type ReadCommandType = "balance" | "history" | "current_address";

type CommandOf<T extends WalletCommandType> = Extract<WalletCommand, { type: T }>;
/** The fields of a command besides its type and reply channel. */
export type ArgsOf<T extends WalletCommandType> = Omit<CommandOf<T>, "type" | "reply">;
/**
 * Read answers are kept per committed state and command type, which is right only while read commands take no
 * arguments: this fails to compile if one ever does.
 */
export type ReadsTakeNoArguments = AssertTrue<{ [K in ReadCommandType]: keyof ArgsOf<K> extends never ? true : false }[ReadCommandType]>;
type AssertTrue<T extends true> = T;
/** What a command's reply channel carries. */
export type AnswerOf<T extends WalletCommandType> = CommandOf<T>["reply"] extends Reply<infer R> ? R : never;

export interface RegistryOptions {
  system: ActorSystem;
  hooks: WalletHooks;
  log: Logger;
  idleMs: number;
  maxResident: number;
  maxInFlight: number;
  askTimeoutMs: number;
  crashBudget: number;
  crashWindowMs: number;
  /** The wallets' records beside their journals (history, transfer index, balances). */
  records: WalletRecords;
  snapshotEvery: number;
  /**
   * A test's clock, which moves only as the test says: then the one clock of the registry. Without it, a read is decided
   * at Date.now(), as the wallet decides its commands (the time is compared with times the wallet keeps), while
   * idleness, crash windows and blocks go by performance.now(): monotonic, so a step of the wall clock (NTP setting a
   * skewed clock right) neither lifts a wallet's block or forgets its crashes, nor keeps them for hours.
   */
  now?: () => number;
}

interface Entry {
  ref: Ref<WalletCommand>;
  inFlight: number;
  /** Commands in `pending` whose caller stopped waiting (its ask timed out): the wallet may still carry them out. */
  gaveUp: number;
  /** When it was last used, by the monotonic clock (#clock), as movedAt. */
  lastUsed: number;
  /** When the entry last moved to the recent end of the LRU order (see #touch). */
  movedAt: number;
  /** Replies of commands sent and not yet answered, so a stop can answer them instead of dropping them. */
  pending: Set<Reply<never>> | undefined;
  /** The wallet's last committed state (published by the actor), for reads without a message. */
  state: WalletState | undefined;
}

export interface RegistryStats {
  resident: number;
  inFlight: number;
  activations: number;
  passivations: number;
  crashes: number;
  stoppedAfterCrashes: number;
  refusedBusy: number;
  /** Reads answered from committed state without a message. */
  reads: number;
}

/** A message constructor: the registry supplies the reply channel. */
export type WalletMessage<R> = (reply: Reply<R>) => WalletCommand;

/**
 * Whether a wallet's actor has work: commands in flight, or commands whose caller stopped waiting (an ask that timed
 * out) that the actor has not answered yet, which it may still be journalling. Such a wallet is not passivated or
 * evicted (a second actor would replay a journal the first is still writing) and its reads go through its mailbox.
 */
const busy = (e: Entry) => e.inFlight > 0 || e.pending !== undefined;

export class WalletRegistry {
  readonly #o: RegistryOptions;
  /** Insertion order is recency: a touched entry is moved to the end, so the first entries are the LRU. */
  readonly #entries = new Map<string, Entry>();
  readonly #crashes = new Map<string, number[]>();
  readonly #failedUntil = new Map<string, number>();
  /** Answers to reads, per committed state (read commands take no arguments). */
  readonly #answers = new WeakMap<WalletState, Partial<Record<ReadCommandType, Promise<unknown>>>>();
  readonly #sweep: NodeJS.Timeout;
  #generation = 0;
  readonly #recencyMs: number;
  #closed = false;
  readonly stats: RegistryStats = { resident: 0, inFlight: 0, activations: 0, passivations: 0, crashes: 0, stoppedAfterCrashes: 0, refusedBusy: 0, reads: 0 };

  /** One options object for every wallet actor (per-wallet closures cost memory at 100k wallets). */
  readonly #walletOptions: WalletOptions;

  constructor(o: RegistryOptions) {
    this.#o = o;
    this.#recencyMs = Math.min(1000, o.idleMs / 10);
    this.#walletOptions = {
      records: o.records, snapshotEvery: o.snapshotEvery, hooks: o.hooks, log: o.log,
      // Only the current actor of a wallet handles messages (a passivated one gets none), so the entry is its own.
      publish: (userKey, s) => {
        const e = this.#entries.get(userKey);
        if (e) e.state = s;
      },
    };
    this.#sweep = setInterval(() => this.passivateIdle(), Math.max(10, Math.min(o.idleMs, 1000)));
    this.#sweep.unref();
  }

  /** Sends a typed command to a wallet and waits for its answer (or a refusal). */
  send<T extends WalletCommandType>(userKey: string, type: T, args: ArgsOf<T>, timeoutMs?: number): Promise<AnswerOf<T> | Refusal> {
    // A debit the user starts, while a command whose caller was told "did not answer in time; nothing may have happened
    // yet" is still in the wallet: that caller may be sending it again with a new id, and the first may still be
    // carried out, so both would be. Refused unsent (nothing done, for certain) until the wallet has answered it: the
    // first is then seen in /balance. Only these two: credits, settlements and the courier's commands are each repeated
    // with their own id, and a read must still reach a slow wallet.
    if ((type === "send_transfer" || type === "reserve_withdrawal") && (this.#entries.get(userKey)?.gaveUp ?? 0) > 0) {
      this.stats.refusedBusy++;
      return Promise.resolve(refuseUnsent("busy", "An earlier request to this wallet is still being carried out; nothing was done by this one. Check /balance in a moment before you try again."));
    }
    // Not `{ ...args, type, reply }`: a spread that adds fields its source lacks gives each object a hidden class of its
    // own in V8 (~2 µs, and every reader of the command megamorphic); assigning onto a literal follows shared ones.
    return this.ask<AnswerOf<T>>(userKey, (reply) => Object.assign({ type, reply }, args) as unknown as WalletCommand, timeoutMs);
  }

  /**
   * A read (balance, history, current address): answered from the resident wallet's committed state — the
   * state every acknowledged command has reached — with the same pure `decide` the actor runs, so the answer
   * is the one a message would get, without the mailbox round trip. A wallet that is not resident, still
   * replaying, or has commands in flight is asked as usual (reads stay ordered after what was sent before).
   */
  read<T extends ReadCommandType>(userKey: string, type: T, args: ArgsOf<T>): Promise<AnswerOf<T> | Refusal> {
    const e = this.#closed ? undefined : this.#entries.get(userKey);
    // Only an idle wallet: a command already in its mailbox (a transfer's credit, a cheque's refund) must be seen
    // by a read that comes after it, as the mailbox's order guarantees.
    if (!e?.state || busy(e)) return this.send(userKey, type, args);
    // A committed state never changes, so neither do the answers to reads of it: each is decided once, frozen,
    // and handed out as the same settled promise until the wallet commits again (no garbage per read).
    let answers = this.#answers.get(e.state);
    if (!answers) this.#answers.set(e.state, (answers = {}));
    let answer = answers[type] as Promise<AnswerOf<T> | Refusal> | undefined;
    if (!answer) {
      const d = decide(e.state, Object.assign({ type, reply: () => undefined }, args) as unknown as WalletCommand, { now: this.#now() });
      if (!isRefusal(d) && d.events.length > 0) return this.send(userKey, type, args); // not a pure read after all
      answer = answers[type] = Promise.resolve(Object.freeze(isRefusal(d) ? d : d.answer(e.state)) as AnswerOf<T> | Refusal);
    }
    // Recency as for any use: a read keeps the wallet resident.
    this.#touch(userKey, e);
    this.stats.reads++;
    return answer;
  }

  /**
   * A page of a wallet's history, newest first: the committed entry count comes from the wallet (as any read),
   * the entries from its history records, which were durable before that count was published.
   */
  async history(userKey: string, page: number, pageSize: number): Promise<HistoryPage | Refusal> {
    const t = await this.read(userKey, "history", {});
    if (isRefusal(t)) return t;
    return this.#o.records.page(userKey, t.total, page, pageSize);
  }

  /** Sends a command to a wallet (activating it if needed) and waits for its answer. */
  ask<R>(userKey: string, make: WalletMessage<R>, timeoutMs = this.#o.askTimeoutMs): Promise<R | Refusal> {
    if (this.#closed) return Promise.resolve(refuseUnsent("busy", "The engine is shutting down; try again in a minute."));
    const failed = this.#failedUntil.get(userKey);
    if (failed !== undefined) {
      if (this.#clock() < failed) {
        return Promise.resolve(refuseUnsent("internal", "This wallet is unavailable after repeated errors; operators have been told. Nothing was moved."));
      }
      this.#failedUntil.delete(userKey);
    }
    const entry = this.#activate(userKey);
    // Every command the wallet has not answered counts, also one whose caller stopped waiting: it stays in the mailbox
    // and is still carried out. Counting only the callers still waiting, a wallet stuck behind a hung journal write took
    // commands without bound while each caller was told "nothing may have happened yet" (and sent again, with new ids),
    // and carried every one out when the store came back.
    if (entry.inFlight >= this.#o.maxInFlight || (entry.pending?.size ?? 0) >= this.#o.maxInFlight) {
      this.stats.refusedBusy++;
      return Promise.resolve(refuseUnsent("busy", "Too many requests at once for this wallet; try again in a moment."));
    }
    entry.inFlight++;
    this.stats.inFlight++;
    entry.lastUsed = this.#clock();
    const settle = () => {
      entry.inFlight--;
      this.stats.inFlight--;
      entry.lastUsed = this.#clock();
    };
    let tracked: Reply<R> | undefined, gaveUp = false;
    return this.#o.system
      .ask<WalletCommand, R>(entry.ref, (reply) => {
        tracked = (r) => {
          if (entry.pending?.delete(tracked as Reply<never>) && gaveUp) entry.gaveUp--;
          // Most wallets sit idle: keep no empty set around for them.
          if (entry.pending?.size === 0) entry.pending = undefined;
          reply(r);
        };
        (entry.pending ??= new Set()).add(tracked as Reply<never>);
        return make(tracked);
      }, timeoutMs)
      .then(
        (r) => (settle(), r),
        (e: unknown) => {
          settle();
          if (e instanceof AskTimeout && entry.pending?.has(tracked as Reply<never>)) {
            gaveUp = true;
            entry.gaveUp++;
          }
          if (e instanceof AskTimeout) return refuse("busy", "The wallet did not answer in time; nothing may have happened yet. Check /balance in a moment.");
          if (e instanceof ActorStopped) return refuse("busy", "The engine is restarting; this may still have been done. Check /balance in a minute before trying again.");
          throw e;
        },
      );
  }

  get records(): WalletRecords {
    return this.#o.records;
  }

  isResident(userKey: string): boolean {
    return this.#entries.has(userKey);
  }

  /** Wallets whose recent crashes are kept (counted against their crash budget): diagnostics and tests. */
  get crashRecords(): number {
    return this.#crashes.size;
  }

  get resident(): number {
    return this.#entries.size;
  }

  /** Mailbox depth per resident wallet (in-flight commands), deepest first, for operators. */
  busiest(limit = 20): Array<{ userKey: string; inFlight: number }> {
    // Commands whose callers stopped waiting count too: a wallet stuck behind them is what an operator looks for here.
    return [...this.#entries].map(([userKey, e]) => ({ userKey, inFlight: Math.max(e.inFlight, e.pending?.size ?? 0) })).filter((x) => x.inFlight > 0)
      .sort((a, b) => b.inFlight - a.inFlight).slice(0, limit);
  }

  /**
   * Passivates wallets idle for longer than idleMs (oldest first; stops at the first recent one). `now`: a time of the
   * monotonic clock (#clock: performance.now() unless a test gave its own).
   */
  passivateIdle(now = this.#clock()): number {
    // Crash records past their window, and blocks past their time, are forgotten (else one entry per wallet that ever
    // crashed, for as long as the engine runs).
    for (const [userKey, times] of this.#crashes) if (times.length === 0 || now - times[times.length - 1]! >= this.#o.crashWindowMs) this.#crashes.delete(userKey);
    for (const [userKey, until] of this.#failedUntil) if (now >= until) this.#failedUntil.delete(userKey);
    let n = 0;
    for (const [userKey, e] of this.#entries) {
      if (now - e.lastUsed < this.#o.idleMs) break;
      if (!busy(e)) {
        this.#passivate(userKey, e);
        n++;
      }
    }
    return n;
  }

  /** Passivates every idle wallet now (tests, shutdown). */
  passivateAll(): void {
    for (const [userKey, e] of this.#entries) if (!busy(e)) this.#passivate(userKey, e);
  }

  /** Closed (the engine stopping): every command is refused from now on. */
  get closed(): boolean {
    return this.#closed;
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#sweep);
    // A command being journalled now may still be committed: the caller is not told that nothing was moved.
    // "busy": an edge says "it may still go through" for it (its words for "internal" are "nothing was moved").
    for (const [userKey, e] of this.#entries) this.#stop(userKey, e, refuse("busy", "The engine is shutting down; this may still have been done. Check /balance in a minute before trying again."));
  }

  #activate(userKey: string): Entry {
    const found = this.#entries.get(userKey);
    if (found) {
      this.#touch(userKey, found);
      return found;
    }
    const o = this.#o;
    const ref = o.system.spawnPersistent(
      `w${++this.#generation}`,
      walletBehaviour(userKey, this.#walletOptions),
      { onCrash: (report) => this.#onCrash(userKey, report.message, report.error) },
    );
    const now = this.#clock();
    // Every field from the start, and none ever deleted: a delete turns the object into a dictionary with a shape of
    // its own (~400 bytes more for each resident wallet, in a heap snapshot of 10k wallets).
    const entry: Entry = { ref, inFlight: 0, gaveUp: 0, lastUsed: now, movedAt: now, pending: undefined, state: undefined };
    this.#entries.set(userKey, entry);
    this.stats.activations++;
    this.stats.resident = this.#entries.size;
    // First message after activation: re-send whatever the wallet's outbox still holds.
    void this.send(userKey, "resume", {}).catch(() => undefined);
    this.#evictOverflow();
    return entry;
  }

  /**
   * Marks a use. The LRU order is the Map's insertion order; an entry moves to its end at most once per
   * `#recencyMs` (a tenth of idleMs, at most a second): a delete and re-insert on every use made the Map rehash its
   * table every few thousand reads, garbage that showed in the read path's tail. Passivation and eviction follow
   * the order within that slack.
   */
  #touch(userKey: string, e: Entry): void {
    const now = this.#clock();
    e.lastUsed = now;
    if (now - e.movedAt < this.#recencyMs) return;
    this.#entries.delete(userKey);
    this.#entries.set(userKey, e);
    e.movedAt = now;
  }

  #evictOverflow(): void {
    if (this.#entries.size <= this.#o.maxResident) return;
    for (const [userKey, e] of this.#entries) {
      if (this.#entries.size <= this.#o.maxResident) break;
      if (!busy(e)) this.#passivate(userKey, e);
    }
  }

  #passivate(userKey: string, e: Entry): void {
    this.#entries.delete(userKey);
    this.#o.system.stop(e.ref);
    this.stats.passivations++;
    this.stats.resident = this.#entries.size;
  }

  #stop(userKey: string, e: Entry, answer: Refusal): void {
    this.#entries.delete(userKey);
    this.#o.system.stop(e.ref);
    for (const reply of [...(e.pending ?? [])]) (reply as Reply<Refusal>)(answer);
    e.pending = undefined;
    this.stats.resident = this.#entries.size;
  }

  #onCrash(userKey: string, message: WalletCommand | undefined, error: unknown): "reset" | "stop" {
    this.stats.crashes++;
    const now = this.#clock();
    const recent = (this.#crashes.get(userKey) ?? []).filter((t) => now - t < this.#o.crashWindowMs);
    // A write the store could not make (a full disk, an I/O error) is not the wallet's doing: not counted, or a disk
    // filling up would stop every busy wallet until the crash window passed, long after the space was freed.
    const storeFault = error instanceof StoreError && error.code === "write_failed";
    if (!storeFault) recent.push(now);
    if (recent.length > 0) this.#crashes.set(userKey, recent);
    else this.#crashes.delete(userKey);
    // The crashing command is answered, never dropped: its effects were not journalled (or, after a write the store
    // could not confirm, may have been: crashRefusal says which).
    if (message) (message.reply as Reply<Refusal>)(crashRefusal(error));
    const entry = this.#entries.get(userKey);
    // The actor replays its journal: until it handles a message again, reads go through it.
    if (entry) entry.state = undefined;
    if (recent.length > this.#o.crashBudget) {
      this.stats.stoppedAfterCrashes++;
      this.#o.log.error({ alert: true, userKey, ...crashedCommand(message), crashes: recent.length, err: error }, "wallet stopped after repeated crashes; operator attention needed");
      this.#failedUntil.set(userKey, now + this.#o.crashWindowMs);
      if (entry) {
        // nact stops the actor itself on "stop"; answer what was queued behind the crash.
        this.#entries.delete(userKey);
        this.stats.resident = this.#entries.size;
        queueMicrotask(() => {
          for (const reply of [...(entry.pending ?? [])]) (reply as Reply<Refusal>)(refuse("internal", "This wallet is unavailable after repeated errors; operators have been told. Nothing was moved."));
        });
      }
      return "stop";
    }
    this.#o.log.warn({ userKey, ...crashedCommand(message), err: error }, "wallet crashed; replaying it from its journal");
    return "reset";
  }

  /** The wall clock: only for what a read is decided at (see RegistryOptions.now). */
  #now(): number {
    return (this.#o.now ?? Date.now)();
  }

  /** Monotonic: idleness, recency, crash windows and blocks (see RegistryOptions.now). */
  #clock(): number {
    return this.#o.now ? this.#o.now() : performance.now();
  }
}

/** The command a wallet crashed on, for its log lines: its type and, when it has one, its id. */
function crashedCommand(m: WalletCommand | undefined): { command?: string; id?: string } {
  if (!m) return {};
  const id = "id" in m && typeof m.id === "string" ? m.id : m.type === "reserve_withdrawal" ? m.request.id : undefined;
  return { command: m.type, ...(id !== undefined ? { id } : {}) };
}
