// Operators: who may use the admin edge. Each has a client certificate (its SHA-256 fingerprint is the
// allowlist key, so a revoked operator is refused even with a CA-valid certificate) and a TOTP secret; the
// last accepted time step is kept so a code can never be used twice. For the console, an operator also holds
// FIDO2 security keys (WebAuthn credentials), registered through a one-time enrollment link that expires; only
// a hash of the link's token is stored. Stored in the encrypted store. The engine's host keeps an operator's
// certificate only: the private key and the TOTP secret go to an export directory that is handed to the operator.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { existsSync, mkdirSync, realpathSync } from "node:fs";
import { Secret, TOTP } from "otpauth";
import QRCode from "qrcode";
import type { EncryptedStore } from "../../store/db.ts";
import { refuse, type Refusal } from "../../domain/refusals.ts";
import { fingerprint, issue, readPem, writeNewFile } from "../../tls/certs.ts";

export interface Operator {
  name: string;
  fingerprint: string;
  totpSecret: string;
  lastStep: number;
  revoked?: boolean;
  addedAt: number;
  /** FIDO2 security keys for the console (WebAuthn credentials). */
  keys?: SecurityKey[];
  /** A pending enrollment link: the SHA-256 of its token and when it stops working. */
  enroll?: { tokenHash: string; expiresAt: number };
}

export interface SecurityKey {
  /** The credential id, base64url. */
  id: string;
  /** The COSE public key, base64url. */
  publicKey: string;
  counter: number;
  transports?: string[];
  label: string;
  addedAt: number;
  lastUsedAt?: number;
}

const NS = "operators";
const NAME_RE = /^[a-z][a-z0-9_-]{1,31}$/;
/** The answer to a certificate that names no active operator. */
export const NOT_AN_OPERATOR = "this certificate is not (or no longer) an operator's";

/**
 * Wrong TOTP codes a certificate may send within TOTP_WINDOW_MS before the API stops checking its codes for a while.
 * A right code does not take them back: otherwise a stolen certificate's guesses, interleaved with its operator's
 * own requests, would never add up to a pause.
 */
export const TOTP_FREE_FAILURES = 5;
/** How long a wrong code counts (a sliding window per certificate). */
export const TOTP_WINDOW_MS = 24 * 3600_000;
/** The first pause after them, doubled at every further wrong code in the window up to TOTP_MAX_PAUSE_MS. */
const TOTP_FIRST_PAUSE_MS = 60_000;
const TOTP_MAX_PAUSE_MS = 60 * 60_000;

/**
 * Wrong TOTP codes worth an audit entry: the first from a certificate in a window (`pauseMs` 0), and each one that starts
 * a pause. `fingerprint` is shortened as the logs shorten it; the code itself is never told.
 */
export interface TotpFailure {
  name: string;
  fingerprint: string;
  /** Wrong codes from this certificate within the window, this one included. */
  wrongCodes: number;
  windowMs: number;
  /** 0 for the first wrong code of a window; otherwise how long codes are not checked from now. */
  pauseMs: number;
}

export interface OperatorStoreOptions {
  /** Told once each time an operator's wrong TOTP codes start a pause (the operator's name, the pause). */
  onTotpPause?: (name: string, pauseMs: number) => void;
  /** Told of the first wrong code from a certificate in each window, and of each pause (see TotpFailure). */
  onTotpFailure?: (e: TotpFailure) => void;
}

export class OperatorStore {
  /**
   * Each operator's record changes one change at a time (a TOTP step consumed, a key added or touched): two requests
   * with the same code must not both pass, and no change may write back a step an earlier one consumed.
   */
  readonly #turns = new Map<string, Promise<unknown>>();
  /**
   * When each wrong TOTP code of the last TOTP_WINDOW_MS came, per certificate, and until when its codes are not checked
   * at all. Kept in memory: only a holder of an operator's certificate gets this far, and a restart does not come from
   * them. Bounded: codes are not checked (nor counted) during a pause, so a window holds a few dozen at most.
   */
  readonly #failures = new Map<string, { at: number[]; until: number }>();
  /** Who else is told when a pause starts (the admin edge's audit log), besides `onTotpPause`. */
  readonly #pauseWatchers = new Set<(name: string, pauseMs: number) => void>();
  /** Who else is told of a window's first wrong code and of each pause, besides `onTotpFailure`. */
  readonly #failureWatchers = new Set<(e: TotpFailure) => void>();

  constructor(private readonly store: EncryptedStore, private readonly o: OperatorStoreOptions = {}) {}

  get(fp: string): Promise<Operator | undefined> {
    return this.store.get<Operator>(NS, fp);
  }

  async list(): Promise<Operator[]> {
    const out: Operator[] = [];
    for await (const [, op] of this.store.iterate<Operator>(NS)) out.push(op);
    return out;
  }

  put(op: Operator): Promise<void> {
    return this.store.put(NS, op.fingerprint, op);
  }

  async revoke(name: string): Promise<boolean> {
    let done = false;
    for (const listed of await this.list()) {
      if (listed.name !== name) continue;
      await this.#change(listed.fingerprint, (op) => {
        if (op.revoked) return undefined;
        done = true;
        return { ...op, revoked: true };
      });
    }
    return done;
  }

  /**
   * A fresh one-time enrollment token for the operator's security keys (any older link stops working). Only its
   * hash is stored; the token itself goes into the link printed once for the operator.
   */
  async issueEnrollment(fp: string, o: { ttlMs: number; now?: number }): Promise<{ token: string; expiresAt: number }> {
    const token = randomBytes(32).toString("base64url");
    const expiresAt = (o.now ?? Date.now()) + o.ttlMs;
    await this.#change(fp, (op) => {
      if (op.revoked) throw Object.assign(new Error("no such active operator"), { code: "setup" });
      return { ...op, enroll: { tokenHash: hashToken(token), expiresAt } };
    }, () => {
      throw Object.assign(new Error("no such active operator"), { code: "setup" });
    });
    return { token, expiresAt };
  }

  /** Why the enrollment token does not work for this operator, or undefined when it does (it is not consumed here). */
  checkEnrollment(op: Operator, token: string | undefined, now = Date.now()): string | undefined {
    if (!op.enroll || !token) return "this enrollment link is not valid (it was used already, or a newer one was issued)";
    const a = Buffer.from(hashToken(token), "hex"), b = Buffer.from(op.enroll.tokenHash, "hex");
    if (a.length !== b.length || !timingSafeEqual(a, b)) return "this enrollment link is not valid (it was used already, or a newer one was issued)";
    if (now > op.enroll.expiresAt) return "this enrollment link has expired; ask for a new one";
    return undefined;
  }

  /**
   * Adds a security key. Through an enrollment link (`enrollment`), the link is checked again in the operator's turn
   * and used up: two requests holding the same link add one key, and the other is refused.
   */
  async addKey(fp: string, key: SecurityKey, o: { enrollment?: { token: string; now: number } } = {}): Promise<Operator | Refusal> {
    let why: string | undefined;
    const r = await this.#change(fp, (op) => {
      if (op.revoked) throw new Error("no such operator");
      if (o.enrollment && (why = this.checkEnrollment(op, o.enrollment.token, o.enrollment.now))) return undefined;
      const next: Operator = { ...op, keys: [...(op.keys ?? []).filter((k) => k.id !== key.id), key] };
      if (o.enrollment) delete next.enroll;
      return next;
    });
    return why ? refuse("not_allowed", why) : r;
  }

  /** Removes a security key, never the operator's last one (checked in the operator's turn: two removals race). */
  async removeKey(fp: string, id: string): Promise<Operator | Refusal> {
    let why: string | undefined;
    const r = await this.#change(fp, (op) => {
      const keys = op.keys ?? [];
      if (!keys.some((k) => k.id === id)) return void (why = "no such security key");
      if (keys.length === 1) return void (why = "this is your only security key; add another before removing it");
      return { ...op, keys: keys.filter((k) => k.id !== id) };
    });
    return why ? refuse("not_allowed", why) : r;
  }

  /** Records a key's new signature counter after a verified login. */
  async touchKey(fp: string, id: string, counter: number, now = Date.now()): Promise<void> {
    await this.#change(fp, (op) => ({ ...op, keys: (op.keys ?? []).map((k) => (k.id === id ? { ...k, counter, lastUsedAt: now } : k)) }), () => undefined);
  }

  /**
   * Checks a TOTP code for the operator (RFC 6238, ±1 step) and consumes its time step: a code, or an older
   * one, is never accepted twice, also by requests that arrive together. Once a certificate has sent
   * TOTP_FREE_FAILURES wrong codes within TOTP_WINDOW_MS, its codes are not checked for a minute, doubled at every
   * further wrong code in the window up to an hour (a six-digit code cannot be guessed by trying them all); right codes
   * in between do not clear the count. Returns why not, or undefined when accepted.
   */
  async checkTotp(op: Pick<Operator, "fingerprint">, code: string | undefined, now = Date.now()): Promise<string | undefined> {
    if (!code || !/^\d{6}$/.test(code)) return "a six-digit TOTP code is required in the X-TOTP header";
    let why: string | undefined;
    await this.#change(op.fingerprint, (fresh) => {
      if (fresh.revoked) {
        why = NOT_AN_OPERATOR;
        return undefined;
      }
      const failed = this.#failures.get(fresh.fingerprint);
      if (failed && now < failed.until) {
        why = `too many wrong TOTP codes; try again in ${Math.ceil((failed.until - now) / 1000)} s`;
        return undefined;
      }
      const totp = totpFor(fresh);
      const delta = totp.validate({ token: code, timestamp: now, window: 1 });
      if (delta === null) {
        why = this.#wrongCode(fresh, now);
        return undefined;
      }
      const step = Math.floor(now / 1000 / totp.period) + delta;
      if (step <= fresh.lastStep) {
        why = "that TOTP code was already used; wait for the next one";
        return undefined;
      }
      // A right code clears nothing; only a window with no wrong code left in it is forgotten.
      if (failed && !failed.at.some((t) => t > now - TOTP_WINDOW_MS)) this.#failures.delete(fresh.fingerprint);
      return { ...fresh, lastStep: step };
    }, () => {
      why = NOT_AN_OPERATOR;
    });
    return why;
  }

  /** Calls `f` each time an operator's wrong TOTP codes start a pause; returns how to stop. */
  watchTotpPauses(f: (name: string, pauseMs: number) => void): () => void {
    this.#pauseWatchers.add(f);
    return () => void this.#pauseWatchers.delete(f);
  }

  /** Calls `f` for the first wrong TOTP code from a certificate in each window and for each pause; returns how to stop. */
  watchTotpFailures(f: (e: TotpFailure) => void): () => void {
    this.#failureWatchers.add(f);
    return () => void this.#failureWatchers.delete(f);
  }

  #wrongCode(op: Operator, now: number): string {
    const at = [...(this.#failures.get(op.fingerprint)?.at ?? []).filter((t) => t > now - TOTP_WINDOW_MS), now];
    const count = at.length;
    const over = count - TOTP_FREE_FAILURES;
    const pause = over < 0 ? 0 : Math.min(TOTP_MAX_PAUSE_MS, TOTP_FIRST_PAUSE_MS * 2 ** Math.min(over, 20));
    this.#failures.set(op.fingerprint, { at, until: now + pause });
    if (count === 1 || pause > 0) {
      const e: TotpFailure = { name: op.name, fingerprint: op.fingerprint.slice(0, 16), wrongCodes: count, windowMs: TOTP_WINDOW_MS, pauseMs: pause };
      this.o.onTotpFailure?.(e);
      for (const f of this.#failureWatchers) f(e);
    }
    if (pause === 0) return "the TOTP code is wrong";
    this.o.onTotpPause?.(op.name, pause);
    for (const f of this.#pauseWatchers) f(op.name, pause);
    return `the TOTP code is wrong; after ${count} wrong codes within ${TOTP_WINDOW_MS / 3600_000} h, codes are not checked for ${Math.round(pause / 1000)} s`;
  }

  /**
   * Changes the operator's record, one change at a time per operator: `f` gets the record as stored now and returns
   * the new one (undefined: no change). `missing` answers when there is no such operator (default: an error).
   */
  async #change<T = Operator>(fp: string, f: (op: Operator) => Operator | undefined, missing?: () => T): Promise<Operator | T> {
    const before = this.#turns.get(fp) ?? Promise.resolve();
    const turn = before.then(async () => {
      const op = await this.get(fp);
      if (!op) {
        if (missing) return missing();
        throw new Error("no such operator");
      }
      const next = f(op);
      if (next === undefined) return op;
      await this.put(next);
      return next;
    });
    const settled = turn.then(() => undefined, () => undefined);
    this.#turns.set(fp, settled);
    void settled.then(() => {
      if (this.#turns.get(fp) === settled) this.#turns.delete(fp);
    });
    return turn;
  }
}

export function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

export function totpFor(op: Pick<Operator, "name" | "totpSecret">): TOTP {
  return new TOTP({ issuer: "RuniGun", label: op.name, algorithm: "SHA1", digits: 6, period: 30, secret: Secret.fromBase32(op.totpSecret) });
}

/**
 * `runigun keys operator add NAME`: a client certificate from the operators' CA and a TOTP secret, the operator recorded
 * in the store — with a one-time enrollment token for the console's security keys when `enrollTtlMs` is given. Both
 * factors (the certificate with its private key, the TOTP secret's otpauth URI and QR code) go to `out`, a new
 * directory (0700, its files 0600) to hand to the operator and then delete; it may not be inside any of `hostDirs`
 * (pkiDir always: what the engine's host keeps, and its backups hold). pkiDir keeps only the certificate
 * (`operators/NAME.crt`), for the expiry checks.
 */
export async function addOperator(o: { pkiDir: string; store: OperatorStore; name: string; out: string; hostDirs?: string[]; enrollTtlMs?: number; now?: number }): Promise<{ dir: string; cert: string; uri: string; fingerprint: string; enrollment?: { token: string; expiresAt: number } }> {
  if (!NAME_RE.test(o.name)) throw Object.assign(new Error("an operator name is 2–32 lowercase letters, digits, - or _"), { code: "setup" });
  // Another certificate for an active name would leave the first one (and its TOTP secret) working, unseen in the audit
  // log, which names operators: a lost laptop's certificate must be revoked, not shadowed.
  if ((await o.store.list()).some((op) => op.name === o.name && !op.revoked)) {
    throw Object.assign(new Error(`operator ${o.name} exists; to replace a lost certificate, revoke it first (runigun keys operator revoke ${o.name}), then add ${o.name} again`), { code: "setup" });
  }
  const ca = readPem(o.pkiDir, "operators-ca");
  const out = makeExportDir(o.out, [o.pkiDir, ...(o.hostDirs ?? [])]);
  const pem = await issue(ca, { name: o.name, kind: "client", years: 1 });
  const secret = new Secret({ size: 20 });
  const op: Operator = { name: o.name, fingerprint: fingerprint(pem.cert), totpSecret: secret.base32, lastStep: 0, addedAt: Date.now() };
  const uri = totpFor(op).toString();
  writeNewFile(join(out, `${o.name}.crt`), pem.cert);
  writeNewFile(join(out, `${o.name}.key`), pem.key);
  writeNewFile(join(out, `${o.name}.otpauth`), uri + "\n");
  // The QR code is the TOTP secret too: as private as the URI beside it.
  writeNewFile(join(out, `${o.name}-totp.png`), await QRCode.toBuffer(uri, { type: "png" }));
  // What the engine keeps: the certificate alone (public; `expiringCertificates` reads it). Replaces a revoked one's.
  const opsDir = join(o.pkiDir, "operators");
  mkdirSync(opsDir, { recursive: true, mode: 0o700 });
  const cert = join(opsDir, `${o.name}.crt`);
  writeNewFile(cert, pem.cert, 0o644);
  await o.store.put(op);
  const made = { dir: out, cert, uri, fingerprint: op.fingerprint };
  if (o.enrollTtlMs === undefined) return made;
  const enrollment = await o.store.issueEnrollment(op.fingerprint, { ttlMs: o.enrollTtlMs, ...(o.now !== undefined ? { now: o.now } : {}) });
  return { ...made, enrollment };
}

/**
 * Creates the export directory `dir` (0700), which must not exist yet (so nothing of someone else's is in it, and no
 * link stands in its place) and must not be inside any of `hostDirs`. Returns its absolute path.
 */
function makeExportDir(dir: string, hostDirs: string[]): string {
  const setup = (m: string) => Object.assign(new Error(m), { code: "setup" });
  const abs = resolve(dir);
  // Compared where the paths really lead: a link in either must not hide that the bundle lands in pkiDir.
  const real = (p: string) => (existsSync(p) ? realpathSync(p) : resolve(p));
  const at = join(real(dirname(abs)), basename(abs));
  for (const host of hostDirs) {
    const rel = relative(real(host), at);
    if (rel === "" || (rel !== ".." && !rel.startsWith(`..${sep}`) && !isAbsolute(rel))) {
      throw setup(`${dir} is inside ${host}, which stays on the engine's host (and in its backups): export the operator's credentials somewhere else (--out DIR)`);
    }
  }
  try {
    mkdirSync(abs, { mode: 0o700 });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EEXIST") throw setup(`${dir} exists; name a new directory for the operator's credentials (--out DIR; it is made 0700)`);
    if (code === "ENOENT") throw setup(`${dirname(abs)} does not exist; make it first, or name another --out DIR`);
    throw e;
  }
  return abs;
}
