// Identity: Telegram user id → user key by argon2id keyed with a secret pepper (never in the database).
// Derivations run in worker threads behind a bounded queue (a lookup beyond it is refused as busy, at once); a
// bounded LRU keyed by an HMAC of the id (not the id itself) makes a busy user pay the cost once without a raw id
// sitting in the heap as a cache key. A worker that dies or stops answering is replaced, and only its own lookups are
// refused (as busy: the person tries again), so one bad worker never stops identity until a restart.
import { createHmac } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writeFileDurably } from "./files.ts";
import { Worker } from "node:worker_threads";
import { StoreError } from "./errors.ts";
import { createLogger, type Logger } from "../log.ts";

export interface KdfParams {
  /** argon2id time cost (iterations). */
  timeCost: number;
  /** argon2id memory in KiB. */
  memoryKiB: number;
  parallelism: number;
}

export interface IdentityOptions extends KdfParams {
  pepper: string | Uint8Array;
  cacheSize: number;
  workers?: number;
  /** Derivations running or waiting at most, all workers together (default: DERIVATIONS_PER_WORKER per worker). */
  maxQueued?: number;
  /** A derivation not answered within this is refused and its worker replaced (default: DERIVATION_TIMEOUT_MS). */
  timeoutMs?: number;
  /** Where a worker's death is reported (an `alert: true` line, never an id); default: a JSON logger on stdout. */
  log?: Pick<Logger, "error">;
}

/**
 * Derivations waiting per worker before new ones are refused. One argon2id derivation takes ≈ 213–270 ms here (OWASP's
 * minimum cost), so a worker does about four a second whatever the queue: a longer queue adds waiting, not answers.
 * With 16, the last in line is answered within about 4 s — what a person waits for, and inside Telegram's webhook
 * timeout — and a burst of strangers (a busy group's tips) cannot put minutes of derivations in front of everyone.
 */
/**
 * What a user key looks like (Identity.userKey makes `u_` + 22 base64url characters; tests and the script edge use
 * shorter ones): the owner labels read back from the node, and the relay's transfer receivers, are checked against it.
 */
export const USER_KEY = /^u_[A-Za-z0-9_-]{1,64}$/;

export const DERIVATIONS_PER_WORKER = 16;

/**
 * A derivation's answer is waited for at most this long, queueing included. The last of a full queue is answered
 * within about 4 s (see above), so a worker silent for 30 s is stuck, not busy: it is replaced.
 */
export const DERIVATION_TIMEOUT_MS = 30_000;

/**
 * Workers that die within a minute beyond one per worker are replaced only after a pause that doubles each time (up
 * to 30 s): workers that die as soon as they start (a broken install, no memory) must not be respawned in a loop.
 */
const RESPAWN_WINDOW_MS = 60_000, RESPAWN_FIRST_MS = 100, RESPAWN_MAX_MS = 30_000;

/** The derivation queue is full: the caller should tell the person to try again in a moment. Nothing was derived. */
export class IdentityBusy extends Error {
  override readonly name = "IdentityBusy";
  readonly code = "busy";
  constructor(message = "the identity service is busy deriving user keys; try again in a moment") {
    super(message);
  }
}

const SALT = Buffer.from("runigun/telegram-user-key/v1");
const ID_RE = /^[1-9][0-9]{0,15}$/;

export class Identity {
  readonly #o: IdentityOptions;
  readonly #pepper: Buffer;
  readonly #cacheMac: Buffer;
  readonly #cache = new Map<string, string>();
  /** One slot per worker; empty while a dead worker waits to be replaced. */
  readonly #workers: (Worker | undefined)[] = [];
  /** Requests in flight, each with the worker it went to: a worker's death refuses its own and no others. */
  readonly #pending = new Map<number, { worker: Worker; timer: NodeJS.Timeout | undefined; resolve: (b: Uint8Array) => void; reject: (e: Error) => void }>();
  /** Workers that have loaded (their first message): a lookup's time limit counts from then, not from their start-up. */
  readonly #online = new WeakSet<Worker>();
  /** Lookups being derived, by cache key: a second lookup of the same id waits for the first's derivation. */
  readonly #deriving = new Map<string, Promise<string>>();
  readonly #maxQueued: number;
  readonly #timeoutMs: number;
  /** When workers died lately (within RESPAWN_WINDOW_MS): how long the next replacement waits. */
  #deaths: number[] = [];
  readonly #respawns = new Set<NodeJS.Timeout>();
  #closed = false;
  #next = 0;
  #seq = 0;
  readonly stats = { derivations: 0, hits: 0, refusedBusy: 0, workerDeaths: 0 };

  constructor(o: IdentityOptions) {
    const pepper = typeof o.pepper === "string" ? Buffer.from(o.pepper, "utf8") : Buffer.from(o.pepper);
    if (pepper.length < 16) throw new StoreError("bad_input", "the identity pepper must be at least 16 bytes (use `runigun keys pepper`)");
    this.#o = o;
    this.#pepper = pepper;
    this.#cacheMac = createHmac("sha256", pepper).update("runigun/identity-cache").digest();
    const n = Math.max(1, o.workers ?? 1);
    this.#maxQueued = Math.max(1, o.maxQueued ?? DERIVATIONS_PER_WORKER * n);
    this.#timeoutMs = Math.max(1, o.timeoutMs ?? DERIVATION_TIMEOUT_MS);
    for (let i = 0; i < n; i++) this.#spawn(i);
  }

  /** The user key of a Telegram user id: `u_` + 22 base64url characters (128 bits). */
  async userKey(telegramUserId: string | number | bigint): Promise<string> {
    const id = String(telegramUserId);
    if (!ID_RE.test(id) || BigInt(id) > 2n ** 53n) throw new StoreError("bad_input", "a Telegram user id is a positive whole number");
    const cacheKey = createHmac("sha256", this.#cacheMac).update(id).digest("base64url");
    const hit = this.#cache.get(cacheKey);
    if (hit) {
      this.stats.hits++;
      this.#cache.delete(cacheKey);
      this.#cache.set(cacheKey, hit);
      return hit;
    }
    const deriving = this.#deriving.get(cacheKey);
    if (deriving) return deriving;
    // Refused before anything is queued: the queue is bounded (see DERIVATIONS_PER_WORKER).
    if (this.#pending.size >= this.#maxQueued) {
      this.stats.refusedBusy++;
      throw new IdentityBusy();
    }
    const derived = this.#derive(id).then((out) => {
      const key = `u_${Buffer.from(out).toString("base64url")}`;
      this.stats.derivations++;
      if (this.#o.cacheSize > 0) {
        this.#cache.set(cacheKey, key);
        if (this.#cache.size > this.#o.cacheSize) this.#cache.delete(this.#cache.keys().next().value!);
      }
      return key;
    }).finally(() => this.#deriving.delete(cacheKey));
    this.#deriving.set(cacheKey, derived);
    return derived;
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const t of this.#respawns) clearTimeout(t);
    for (const p of this.#pending.values()) clearTimeout(p.timer);
    await Promise.all(this.#workers.map((w) => w?.terminate()));
    this.#cache.clear();
  }

  #spawn(slot: number): void {
    const w = new Worker(new URL("./kdf-worker.mjs", import.meta.url));
    w.on("message", (m: { id: number; out?: Uint8Array; error?: string; ready?: true }) => {
      if (m.ready) {
        this.#online.add(w);
        w.emit("ready");
        return;
      }
      const p = this.#pending.get(m.id);
      if (!p || p.worker !== w) return;
      this.#settled(m.id, p.timer);
      if (m.out) p.resolve(m.out);
      else p.reject(new Error(`identity derivation failed: ${m.error}`));
    });
    // A crash emits `error` then `exit`; a worker stopped from outside only `exit`. The first one counts.
    w.on("error", (e) => this.#lost(slot, w, `it failed: ${e.message}`));
    w.on("exit", (code) => this.#lost(slot, w, `it exited with code ${code}`));
    w.unref();
    this.#workers[slot] = w;
  }

  #settled(reqId: number, timer: NodeJS.Timeout | undefined): void {
    clearTimeout(timer);
    this.#pending.delete(reqId);
    // Idle workers must not keep the process alive; busy ones must.
    if (this.#pending.size === 0) for (const x of this.#workers) x?.unref();
  }

  /** A worker died or hung: its own lookups are refused (the person tries again) and it is replaced. */
  #lost(slot: number, w: Worker, why: string): void {
    if (this.#closed || this.#workers[slot] !== w) return;
    this.#workers[slot] = undefined;
    void w.terminate();
    this.stats.workerDeaths++;
    for (const [reqId, p] of this.#pending) {
      if (p.worker !== w) continue;
      this.#settled(reqId, p.timer);
      p.reject(new IdentityBusy("a user-key derivation was lost with its worker; try again in a moment"));
    }
    const now = Date.now();
    this.#deaths = this.#deaths.filter((t) => now - t < RESPAWN_WINDOW_MS);
    this.#deaths.push(now);
    const beyond = this.#deaths.length - this.#workers.length;
    const delayMs = beyond <= 0 ? 0 : Math.min(RESPAWN_MAX_MS, RESPAWN_FIRST_MS * 2 ** (beyond - 1));
    // No id and no pepper here: the reason is the worker's own error or exit code.
    const log = this.#o.log ?? fallbackLog();
    log.error({ alert: true, worker: slot, deathsLastMinute: this.#deaths.length, replacedInMs: delayMs }, `an identity KDF worker stopped (${why}); its lookups were answered "busy" and it is being replaced`);
    if (delayMs === 0) return this.#spawn(slot);
    const timer = setTimeout(() => {
      this.#respawns.delete(timer);
      if (!this.#closed) this.#spawn(slot);
    }, delayMs);
    timer.unref();
    this.#respawns.add(timer);
  }

  #derive(id: string): Promise<Uint8Array> {
    const live = this.#workers.filter((w): w is Worker => w !== undefined);
    if (live.length === 0) {
      this.stats.refusedBusy++;
      return Promise.reject(new IdentityBusy("the identity service is replacing its workers; try again in a moment"));
    }
    const reqId = ++this.#seq;
    const w = live[this.#next++ % live.length]!;
    const slot = this.#workers.indexOf(w);
    return new Promise((resolve, reject) => {
      // A worker that does not answer in time is treated as stuck: replaced like a dead one, which refuses this
      // lookup and clears it from #deriving, so the same id's next lookup derives again. The time counts once the
      // worker runs: a replacement still starting (seconds on a loaded host) is not stuck.
      const entry: { worker: Worker; timer: NodeJS.Timeout | undefined; resolve: (b: Uint8Array) => void; reject: (e: Error) => void } = { worker: w, timer: undefined, resolve, reject };
      const limit = () => {
        if (this.#pending.get(reqId) !== entry) return;
        entry.timer = setTimeout(() => this.#lost(slot, w, `no answer within ${this.#timeoutMs} ms`), this.#timeoutMs);
        entry.timer.unref();
      };
      this.#pending.set(reqId, entry);
      if (this.#online.has(w)) limit();
      else w.once("ready", limit);
      w.ref();
      w.postMessage({ id: reqId, input: Buffer.from(id), pepper: this.#pepper, salt: SALT, t: this.#o.timeCost, m: this.#o.memoryKiB, p: this.#o.parallelism });
    });
  }
}

let fallback: Logger | undefined;
/** For callers that pass no logger: a worker's death must still reach an operator. Made only when first needed. */
function fallbackLog(): Logger {
  return (fallback ??= createLogger({ pretty: false }));
}

/**
 * Pins the identity settings (the pepper and the KDF's parameters) to a data directory: its first start records a
 * check value (a MAC of the user key of Telegram id 1), every later start must derive the same. Changed settings
 * give every Telegram user another user key — a new, empty wallet, their money left behind — so a start with them
 * is refused, naming what to do.
 */
export async function pinIdentity(identity: Identity, dir: string): Promise<void> {
  const path = join(dir, "identity.pin");
  const check = await identityCheck(identity);
  let pinned: string | undefined;
  try {
    pinned = readFileSync(path, "utf8").trim();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  if (pinned === undefined) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileDurably(path, `${check}\n`);
    return;
  }
  if (pinned !== check) {
    throw new StoreError("wrong_key", `the identity settings differ from those this data directory's wallets were made with (the pepper, or identity.timeCost / memoryKiB / parallelism): every Telegram user would get a new, empty wallet. Start with the original settings (${path} holds their check value; delete it only to abandon every wallet made so far)`);
  }
}

/** The check value of an identity's settings: a MAC of the user key of Telegram id 1 (no user key itself). */
export async function identityCheck(identity: Identity): Promise<string> {
  return createHmac("sha256", "runigun/identity-pin").update(await identity.userKey(1)).digest("hex");
}
