// The sealed record format: version(1) | keyId(u32 BE) | nonce(12) | ciphertext | tag(16), AES-256-GCM.
// The AAD binds the namespace, the record key, the version and the key id, so a value cannot be moved to
// another record or relabelled with another key id without failing authentication.
import { createCipheriv, createDecipheriv, randomFillSync } from "node:crypto";
import { StoreError } from "./errors.ts";

export const ENVELOPE_VERSION = 1;
const HEADER = 1 + 4 + 12;
const TAG = 16;

// Nonces come from a refilled random pool: one syscall per 4,096 nonces instead of one per write.
const POOL_SIZE = 12 * 4096;
let pool = Buffer.alloc(0);
let offset = POOL_SIZE;
function nonce(): Buffer {
  if (offset + 12 > pool.length) {
    pool = Buffer.allocUnsafe(POOL_SIZE);
    randomFillSync(pool);
    offset = 0;
  }
  const n = pool.subarray(offset, offset + 12);
  offset += 12;
  return n;
}

/** Length-prefixed, so ("a","bc") and ("ab","c") can never share an AAD. */
export function aadFor(ns: string, key: string, version: number, keyId: number): Buffer {
  const nsB = Buffer.from(ns, "utf8");
  const keyB = Buffer.from(key, "utf8");
  const out = Buffer.allocUnsafe(8 + 4 + nsB.length + 4 + keyB.length + 1 + 4);
  let o = out.write("runigun\u0000", 0, "latin1");
  o = out.writeUInt32BE(nsB.length, o);
  o += nsB.copy(out, o);
  o = out.writeUInt32BE(keyB.length, o);
  o += keyB.copy(out, o);
  o = out.writeUInt8(version, o);
  out.writeUInt32BE(keyId, o);
  return out;
}

export function seal(dataKey: Uint8Array, keyId: number, ns: string, key: string, plaintext: Uint8Array, iv: Uint8Array = nonce()): Buffer {
  const cipher = createCipheriv("aes-256-gcm", dataKey, iv);
  cipher.setAAD(aadFor(ns, key, ENVELOPE_VERSION, keyId));
  const out = Buffer.allocUnsafe(HEADER + plaintext.length + TAG);
  out.writeUInt8(ENVELOPE_VERSION, 0);
  out.writeUInt32BE(keyId, 1);
  out.set(iv, 5);
  const n = cipher.update(plaintext).copy(out, HEADER);
  cipher.final();
  cipher.getAuthTag().copy(out, HEADER + n);
  return out;
}

/** The key id a sealed value was written under (for rotation and for picking the key). */
export function keyIdOf(sealed: Uint8Array, ns: string): number {
  if (sealed.length < HEADER + TAG || sealed[0] !== ENVELOPE_VERSION) {
    throw new StoreError("bad_format", `a record in "${ns}" is not a RuniGun envelope (truncated or of another format)`);
  }
  return Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength).readUInt32BE(1);
}

export function open(dataKey: Uint8Array, ns: string, key: string, sealed: Uint8Array): Buffer {
  const keyId = keyIdOf(sealed, ns);
  const buf = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  const decipher = createDecipheriv("aes-256-gcm", dataKey, buf.subarray(5, HEADER));
  decipher.setAAD(aadFor(ns, key, ENVELOPE_VERSION, keyId));
  decipher.setAuthTag(buf.subarray(buf.length - TAG));
  try {
    return Buffer.concat([decipher.update(buf.subarray(HEADER, buf.length - TAG)), decipher.final()]);
  } catch {
    throw new StoreError("tampered", `a record in "${ns}" failed authentication: it was modified, moved from another key, or sealed under another master key. Restore it from a backup; do not ignore it.`);
  }
}
