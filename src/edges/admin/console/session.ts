// Console sessions: in memory only (a restart logs everyone out), short and absolute (config sessionTtlMs), bound to
// the client certificate that opened them, each with its own CSRF token. A session starts unauthenticated (it
// carries the WebAuthn challenge) and gets a new id once a security key has signed in, so an id seen before login
// is worth nothing after it.
import { randomBytes, timingSafeEqual } from "node:crypto";

export const COOKIE = "__Host-runigun-console";

export interface Challenge {
  value: string;
  purpose: "enroll" | "login" | "add-key";
  expiresAt: number;
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
}

const CHALLENGE_TTL_MS = 5 * 60_000;
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

  setChallenge(s: Session, purpose: Challenge["purpose"], value: string): void {
    s.challenge = { value, purpose, expiresAt: this.clock() + CHALLENGE_TTL_MS };
  }

  /** Takes the pending challenge for this purpose: it is gone afterwards, whatever the verification says. */
  takeChallenge(s: Session, purpose: Challenge["purpose"]): string | undefined {
    const c = s.challenge;
    delete s.challenge;
    return c && c.purpose === purpose && c.expiresAt > this.clock() ? c.value : undefined;
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
