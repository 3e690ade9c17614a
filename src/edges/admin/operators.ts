// Operators: who may use the admin edge. Each has a client certificate (its SHA-256 fingerprint is the
// allowlist key, so a revoked operator is refused even with a CA-valid certificate) and a TOTP secret; the
// last accepted time step is kept so a code can never be used twice. Stored in the encrypted store.
import { join } from "node:path";
import { mkdirSync, writeFileSync } from "node:fs";
import { Secret, TOTP } from "otpauth";
import QRCode from "qrcode";
import type { EncryptedStore } from "../../store/db.ts";
import { fingerprint, issue, readPem, writePem } from "../../tls/certs.ts";

export interface Operator {
  name: string;
  fingerprint: string;
  totpSecret: string;
  lastStep: number;
  revoked?: boolean;
  addedAt: number;
}

const NS = "operators";
const NAME_RE = /^[a-z][a-z0-9_-]{1,31}$/;

export class OperatorStore {
  constructor(private readonly store: EncryptedStore) {}

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
    for (const op of await this.list()) {
      if (op.name === name && !op.revoked) {
        await this.put({ ...op, revoked: true });
        done = true;
      }
    }
    return done;
  }

  /**
   * Checks a TOTP code for the operator (RFC 6238, ±1 step) and consumes its time step: a code, or an older
   * one, is never accepted twice. Returns why not, or undefined when accepted.
   */
  async checkTotp(op: Operator, code: string | undefined, now = Date.now()): Promise<string | undefined> {
    if (!code || !/^\d{6}$/.test(code)) return "a six-digit TOTP code is required in the X-TOTP header";
    const totp = totpFor(op);
    const delta = totp.validate({ token: code, timestamp: now, window: 1 });
    if (delta === null) return "the TOTP code is wrong";
    const step = Math.floor(now / 1000 / totp.period) + delta;
    if (step <= op.lastStep) return "that TOTP code was already used; wait for the next one";
    await this.put({ ...op, lastStep: step });
    return undefined;
  }
}

export function totpFor(op: Pick<Operator, "name" | "totpSecret">): TOTP {
  return new TOTP({ issuer: "RunIGun", label: op.name, algorithm: "SHA1", digits: 6, period: 30, secret: Secret.fromBase32(op.totpSecret) });
}

/**
 * `runigun keys operator add NAME`: a client certificate from the operators' CA, a TOTP secret, its otpauth URI
 * and QR code, written under `<pkiDir>/operators/`, and the operator recorded in the store.
 */
export async function addOperator(o: { pkiDir: string; store: OperatorStore; name: string }): Promise<{ dir: string; uri: string; fingerprint: string }> {
  if (!NAME_RE.test(o.name)) throw Object.assign(new Error("an operator name is 2–32 lowercase letters, digits, - or _"), { code: "setup" });
  const ca = readPem(o.pkiDir, "operators-ca");
  const pem = await issue(ca, { name: o.name, kind: "client", years: 1 });
  const dir = join(o.pkiDir, "operators");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writePem(dir, o.name, pem);
  const secret = new Secret({ size: 20 });
  const op: Operator = { name: o.name, fingerprint: fingerprint(pem.cert), totpSecret: secret.base32, lastStep: 0, addedAt: Date.now() };
  const uri = totpFor(op).toString();
  writeFileSync(join(dir, `${o.name}.otpauth`), uri + "\n", { mode: 0o600 });
  await QRCode.toFile(join(dir, `${o.name}-totp.png`), uri, { type: "png" });
  await o.store.put(op);
  return { dir, uri, fingerprint: op.fingerprint };
}
