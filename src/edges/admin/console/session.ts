// Console sessions: in memory only (a restart logs everyone out), short and absolute (config sessionTtlMs), bound to
// the client certificate that opened them, each with its own CSRF token. A session starts unauthenticated (it
// carries the WebAuthn challenge) and gets a new id once a security key has signed in, so an id seen before login
// is worth nothing after it. An operator action that moves money or changes who can do what needs, besides the
// session, a step-up: a fresh touch of one of the operator's registered keys (user verification required) for that
// action, made in the last STEP_UP_MAX_AGE_MS on this session, and used once.
import { randomBytes, timingSafeEqual } from "node:crypto";

export const COOKIE = "__Host-runigun-console";

export interface Challenge {
  value: string;
  purpose: "enroll" | "login" | "add-key" | "step-up";
  /** A step-up's: the POST path its touch will allow (an action's confirmation, a key's addition or removal). */
  for?: string;
  expiresAt: number;
}

/** A verified touch of a registered key (with user verification) on this session, for one action. */
export interface StepUp {
  keyId: string;
  /** The POST path it allows, once. */
  for: string;
  at: number;
}

export interface Session {
  id: string;
  /** Fingerprint of the client certificate the session belongs to. */
  fingerprint: string;
  operator: string;
  csrf: string;
  authenticated: boolean;
  /** Which security key signed in (its credential id). */
  keyId?: string;
  expiresAt: number;
  challenge?: Challenge;
  /** The last step-up, until an action takes it (or it is too old). */
  stepUp?: StepUp;
}

const CHALLENGE_TTL_MS = 5 * 60_000;
/** How long a step-up's touch allows its action (and how long its challenge waits for the touch). */
export const STEP_UP_MAX_AGE_MS = 2 * 60_000;
const MAX_SESSIONS = 10_000;

export class Sessions {
  readonly #byId = new Map<string, Session>();

  constructor(private readonly ttlMs: number, private readonly clock: () => number = Date.now) {}

  /** The live session with this id for this certificate; an expired one, or another certificate's, is none. */
  find(id: string | undefined, fingerprint: string): Session | undefined {
    if (!id) return undefined;
    const s = this.#byId.get(id);
    if (!s) return undefined;
    if (s.expiresAt <= this.clock()) {
      this.#byId.delete(id);
      return undefined;
    }
    return s.fingerprint === fingerprint ? s : undefined;
  }

  open(fingerprint: string, operator: string, authenticated = false, keyId?: string): Session {
    this.#sweep();
    const s: Session = {
      id: randomBytes(32).toString("base64url"), fingerprint, operator, csrf: randomBytes(32).toString("base64url"),
      authenticated, expiresAt: this.clock() + this.ttlMs, ...(keyId ? { keyId } : {}),
    };
    this.#byId.set(s.id, s);
    return s;
  }

  /** After a verified login: the old id is dropped and a fresh authenticated session (new id, new CSRF) returned. */
  promote(old: Session, keyId: string): Session {
    this.#byId.delete(old.id);
    return this.open(old.fingerprint, old.operator, true, keyId);
  }

  close(s: Session): void {
    this.#byId.delete(s.id);
  }

  /** Ends every session of a certificate (a removed key, a revoked operator). */
  closeAllOf(fingerprint: string, keyId?: string): void {
    for (const [id, s] of this.#byId) if (s.fingerprint === fingerprint && (!keyId || s.keyId === keyId)) this.#byId.delete(id);
  }

  setChallenge(s: Session, purpose: Challenge["purpose"], value: string, forPath?: string): void {
    const ttl = purpose === "step-up" ? STEP_UP_MAX_AGE_MS : CHALLENGE_TTL_MS;
    s.challenge = { value, purpose, expiresAt: this.clock() + ttl, ...(forPath !== undefined ? { for: forPath } : {}) };
  }

  /** Takes the pending challenge for this purpose: it is gone afterwards, whatever the verification says. */
  takeChallenge(s: Session, purpose: Challenge["purpose"]): string | undefined {
    return this.#take(s, purpose)?.value;
  }

  /** Takes the pending step-up challenge with what its touch is for; gone afterwards, as any challenge. */
  takeStepUpChallenge(s: Session): { value: string; for: string } | undefined {
    const c = this.#take(s, "step-up");
    return c?.for !== undefined ? { value: c.value, for: c.for } : undefined;
  }

  /** After a verified step-up assertion: it allows `forPath` once, for STEP_UP_MAX_AGE_MS. It replaces any earlier one. */
  recordStepUp(s: Session, keyId: string, forPath: string): void {
    s.stepUp = { keyId, for: forPath, at: this.clock() };
  }

  /** The session's step-up if it is fresh and for `forPath`; it stays (a key's addition looks before it takes). */
  peekStepUp(s: Session, forPath: string): StepUp | undefined {
    const u = s.stepUp;
    return u && u.for === forPath && this.clock() - u.at <= STEP_UP_MAX_AGE_MS ? u : undefined;
  }

  /** Takes the session's step-up: it is gone afterwards, whatever it was for; returned only if fresh and for `forPath`. */
  takeStepUp(s: Session, forPath: string): StepUp | undefined {
    const u = this.peekStepUp(s, forPath);
    delete s.stepUp;
    return u;
  }

  #take(s: Session, purpose: Challenge["purpose"]): Challenge | undefined {
    const c = s.challenge;
    delete s.challenge;
    return c && c.purpose === purpose && c.expiresAt > this.clock() ? c : undefined;
  }

  get size(): number {
    return this.#byId.size;
  }

  #sweep(): void {
    const now = this.clock();
    for (const [id, s] of this.#byId) if (s.expiresAt <= now) this.#byId.delete(id);
    // Bounded: if something floods us with pre-login sessions, the oldest go first.
    while (this.#byId.size >= MAX_SESSIONS) this.#byId.delete(this.#byId.keys().next().value!);
  }
}

export function sameToken(a: string | undefined, b: string): boolean {
  if (typeof a !== "string") return false;
  const x = Buffer.from(a), y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
