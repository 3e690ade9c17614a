// The one typed facade over nact: spawn, tell, ask and persistent actors. No other file imports nact.
// It closes nact's known holes (NOTES.md): replies travel in a closure carried by the message, never
// through nact's random temporary ids; persistent actors journal exactly one event batch per command
// and replay from the journal on any failure; supervision is always explicit.
import { createRequire } from "node:module";
import nact from "nact";
import { refuse } from "../domain/refusals.ts";
import type { JournalEvent, JournalExtras, JournalRecord, JournalSnapshot } from "../store/journal.ts";

const { start, spawn, spawnPersistent, dispatch, stop, configurePersistence } = nact as unknown as NactModule;

// nact builds a context for every message it hands an actor: a copy of the actor's children Map, then, for a
// persistent actor, a spread that adds `persist` (and on replay `recovering`). A spread that adds a field its source
// lacks gives every object a hidden class of its own in V8 (~2 µs each in a micro-benchmark, and garbage). This
// context has every field from the start, so those spreads only replace fields and share one hidden class. Our actors
// never spawn children (every actor here is the system's), so `children` is one empty Map, and no context leaves
// this file: the handlers below read `persist` and `recovering`, the crash handlers `reset`, `stop` and `resume`.
const NO_CHILDREN: ReadonlyMap<string, unknown> = new Map();
const { Actor } = createRequire(import.meta.url)("nact/lib/actor.js") as { Actor: { prototype: { createContext(this: NactActor, sender: unknown): object } } };
Actor.prototype.createContext = function createContext(this: NactActor, sender: unknown) {
  return {
    parent: this.parent?.reference, path: this.path, self: this.reference, name: this.name,
    children: this.childReferences.size === 0 ? NO_CHILDREN : new Map(this.childReferences), sender, log: this.log, persist: undefined, recovering: false,
  };
};

/** An opaque, typed address of an actor that accepts messages of type M. */
export interface Ref<M> {
  readonly name: string;
  /** Phantom field: makes Ref<A> and Ref<B> distinct types. Never set at run time. */
  readonly __messages?: (m: M) => void;
}

/** A reply channel carried inside a message. Calling it more than once is ignored. */
export type Reply<R> = (result: R) => void;

export class AskTimeout extends Error {
  readonly code = "ask_timeout";
  constructor(target: string, ms: number) {
    super(`${target} did not answer within ${ms} ms`);
  }
}

export class ActorStopped extends Error {
  readonly code = "actor_stopped";
  constructor(target: string) {
    super(`${target} is not running`);
  }
}

/** What a persistence engine must offer nact (our Journal implements it). */
export interface PersistenceEngine {
  events(key: string, offset: number, limit?: number, tags?: string[]): {
    reduce<T>(f: (acc: T, ev: PersistedEventLike, index: number) => T, init: T): Promise<T> | T;
  };
  latestSnapshot(key: string): Promise<PersistedSnapshotLike | undefined>;
  takeSnapshot(snapshot: PersistedSnapshotLike): Promise<unknown>;
  persist(event: PersistedEventLike): Promise<unknown>;
  /**
   * Undefined when the store can be read; else resolves once it can. A crashed actor's replay waits for it: replaying
   * against a closed store (reopened after a failed write) would crash at once, again and again.
   */
  readable?(): Promise<void> | undefined;
}
/** nact's event and snapshot shapes, declared once beside the journal that stores them. */
export type PersistedEventLike = JournalEvent;
export type PersistedSnapshotLike = JournalSnapshot;

/** Why an actor crashed, handed to the owner's crash handler; `message` may carry a reply to fail. */
export interface CrashReport<M> {
  name: string;
  message: M | undefined;
  error: unknown;
}

export type { JournalRecord };

export interface PersistentBehaviour<S, M, E> {
  /** Journal key; stable across restarts. */
  key: string;
  /** The state before any event; given the journal key (so one function can serve many actors). */
  initial: (key: string) => S;
  /** Pure: applies one journalled event. Used live and on replay. */
  evolve: (state: S, event: E) => S;
  /**
   * Handles one live message and returns the next state. To change state durably it calls
   * `persist(events, extras)` — each call is one atomic journal record, with what `extras` brings (store records
   * of a read model, what they add to the store's running sums, data kept beside the events: see JournalRecord)
   * written in the same batch — before answering anyone. A command whose events must stand or fall together
   * persists them in one call.
   */
  handle: (state: S, msg: M, persist: (events: E[], extras?: JournalExtras) => Promise<void>) => S | Promise<S>;
  /** Take a snapshot of the state every N journalled commands (the journal's codec handles bigint). */
  snapshotEvery?: number;
  /** The state from a snapshot's data (which lost what JSON drops, such as fields set to undefined). */
  restore?: (data: S) => S;
}

export interface CrashPolicy<M> {
  /**
   * Called on every crash. "reset" restarts from the initial state (persistent actors: replay the journal),
   * "stop" stops for good, "resume" (in-memory actors only) carries on with the state before the crash.
   */
  onCrash: (report: CrashReport<M>) => "reset" | "stop" | "resume";
}

/** An actor system: a thin owner of one nact system. */
export class ActorSystem {
  readonly #system: NactRef;
  #stopped = false;
  /**
   * Asks waiting for an answer, by their fail function: the sweeper times them out, a shutdown fails them. Deadlines are
   * performance.now() times: monotonic, so a step of the wall clock (NTP setting a skewed clock right) neither keeps every
   * ask waiting for hours (a step back) nor fails them all at once (a step forward).
   */
  readonly #waiting = new Map<(e: Error) => void, { deadline: number; name: string; timeoutMs: number }>();
  #sweeper: NodeJS.Timeout | undefined;

  readonly #persistence: PersistenceEngine | undefined;

  constructor(persistence?: PersistenceEngine) {
    this.#persistence = persistence;
    this.#system = persistence ? start(configurePersistence(persistence)) : start();
  }

  /** A stateful in-memory actor. Crashes follow `policy` (default: resume with the state before the crash). */
  spawn<S, M>(
    name: string,
    initial: S,
    handle: (state: S, msg: M) => S | Promise<S>,
    policy?: CrashPolicy<M>,
  ): Ref<M> {
    let ref: Ref<M>;
    const inner = spawn(this.#system, (state: S, msg: M) => handle(state, msg), name, {
      initialState: initial,
      onCrash: (msg: M, error: unknown, ctx: NactSupervisionCtx) => {
        // A stopped actor (or one of a shut-down system) is never restarted: its dependencies are gone.
        if (this.#stopped || !refs.has(ref)) return ctx.stop;
        const decision = policy?.onCrash({ name, message: msg, error }) ?? "resume";
        if (decision === "stop") markStopped(ref);
        return decision === "reset" ? ctx.reset : decision === "stop" ? ctx.stop : ctx.resume;
      },
    });
    ref = wrap<M>(inner, name);
    return ref;
  }

  /**
   * A persistent actor: live messages go to `handle`; the journal holds event batches (E[]) that
   * `evolve` folds on replay. A failed persist or a throw resets the actor from its journal; the
   * mailbox is kept, the crashing message is reported to `policy` so its caller gets an answer.
   */
  spawnPersistent<S, M, E>(name: string, behaviour: PersistentBehaviour<S, M, E>, policy: CrashPolicy<M>): Ref<M> {
    const { evolve, handle, initial } = behaviour;
    let replaying = false;
    const f = async (state: S | undefined, msg: M | JournalRecord<E>, ctx: NactPersistentCtx): Promise<S> => {
      const current = state ?? initial(behaviour.key);
      replaying = ctx.recovering === true;
      if (ctx.recovering) return (msg as JournalRecord<E>).e.reduce(evolve, current);
      let failed: { error: unknown } | undefined;
      const persist = async (events: E[], extras?: JournalExtras): Promise<void> => {
        if (events.length === 0) return;
        try {
          // A record of its own shape (a spread adding `e` would give every record a hidden class of its own).
          await ctx.persist(extras ? { e: events, r: extras.r, s: extras.s, h: extras.h } : { e: events });
        } catch (e) {
          failed ??= { error: e };
          throw e;
        }
      };
      const next = await handle(current, msg as M, persist);
      // A handler may catch a failed persist to answer its caller; the actor is reset all the same. nact counted the
      // event's number before the write: kept, every later persist would be refused as a gap, and a snapshot taken
      // after this turn would claim the lost event.
      if (failed) throw failed.error;
      return next;
    };
    let ref: Ref<M>;
    const inner = spawnPersistent(this.#system, f, behaviour.key, name, {
      snapshotEvery: behaviour.snapshotEvery,
      ...(behaviour.restore ? { snapshotDecoder: behaviour.restore } : {}),
      onCrash: (msg: M | JournalRecord<E> | undefined, error: unknown, ctx: NactSupervisionCtx) => {
        // A crash during replay carries a journal record, not a live message.
        const live = replaying ? undefined : (msg as M | undefined);
        if (this.#stopped || !refs.has(ref)) {
          (live as { reply?: (r: unknown) => void } | undefined)?.reply?.(refuse("busy", "The engine is stopping; nothing was moved. Try again in a minute."));
          return ctx.stop;
        }
        if (policy.onCrash({ name, message: live, error }) === "reset") {
          // nact waits for the decision: messages queue in the mailbox meanwhile.
          const readable = this.#persistence?.readable?.();
          return readable ? readable.then(() => ctx.reset) : ctx.reset;
        }
        markStopped(ref);
        return ctx.stop;
      },
    });
    ref = wrap<M>(inner, name);
    return ref;
  }

  /** Delivers a message; throws ActorStopped instead of nact's silent drop when the actor is gone. */
  tell<M>(ref: Ref<M>, msg: M): void {
    // nact drops messages to a stopped system without a word: say so instead.
    if (this.#stopped) throw new ActorStopped(ref.name);
    dispatch(unwrap(ref), msg);
  }

  isRunning<M>(ref: Ref<M>): boolean {
    return refs.has(ref);
  }

  /**
   * Request/response without nact's temporary references: the reply closure travels in the message,
   * so two concurrent asks can never receive each other's answers.
   */
  ask<M, R>(ref: Ref<M>, make: (reply: Reply<R>) => M, timeoutMs: number): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      let done = false;
      const fail = (e: Error) => {
        if (done) return;
        done = true;
        this.#waiting.delete(fail);
        reject(e);
      };
      const reply: Reply<R> = (result) => {
        if (done) return;
        done = true;
        this.#waiting.delete(fail);
        resolve(result);
      };
      this.#waiting.set(fail, { deadline: performance.now() + timeoutMs, name: ref.name, timeoutMs });
      this.#sweep();
      try {
        this.tell(ref, make(reply));
      } catch (e) {
        fail(e as Error);
      }
    });
  }

  /**
   * One timer for every pending ask instead of one each (creating and clearing a timer per message costs more
   * than the message): it ticks only while asks are pending, and fails those past their deadline.
   */
  #sweep(): void {
    if (this.#sweeper) return;
    this.#sweeper = setInterval(() => {
      const now = performance.now();
      for (const [fail, w] of this.#waiting) if (w.deadline <= now) fail(new AskTimeout(w.name, w.timeoutMs));
      if (this.#waiting.size === 0) {
        clearInterval(this.#sweeper);
        this.#sweeper = undefined;
      }
    }, 10);
  }

  stop<M>(ref: Ref<M>): void {
    const inner = refs.get(ref);
    if (!inner) return;
    markStopped(ref);
    stop(inner);
  }

  shutdown(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    stop(this.#system);
    for (const fail of [...this.#waiting.keys()]) fail(new ActorStopped("the actor system"));
  }
}

// --- nact's untyped surface, described once ---
type NactRef = object;
/** The fields of nact's Actor that its createContext reads. */
interface NactActor {
  parent?: { reference: unknown };
  path: unknown;
  reference: unknown;
  name: string;
  childReferences: Map<string, unknown>;
  log: unknown;
}
interface NactSupervisionCtx {
  reset: symbol;
  stop: symbol;
  resume: symbol;
}
interface NactPersistentCtx {
  recovering?: boolean;
  persist: (event: unknown, tags?: string[]) => Promise<void>;
}
interface NactModule {
  start(...extensions: unknown[]): NactRef;
  configurePersistence(engine: PersistenceEngine): unknown;
  spawn(parent: NactRef, f: (...a: never[]) => unknown, name: string, props: object): NactRef;
  spawnPersistent(parent: NactRef, f: (...a: never[]) => unknown, key: string, name: string, props: object): NactRef;
  dispatch(ref: NactRef, msg: unknown): void;
  stop(ref: NactRef): void;
}

const refs = new WeakMap<object, NactRef>();
function wrap<M>(ref: NactRef, name: string): Ref<M> {
  const r: Ref<M> = Object.freeze({ name });
  refs.set(r, ref);
  return r;
}
function markStopped<M>(ref: Ref<M> | undefined): void {
  if (ref) refs.delete(ref);
}
function unwrap<M>(ref: Ref<M>): NactRef {
  const inner = refs.get(ref);
  if (!inner) throw new ActorStopped(ref.name);
  return inner;
}
