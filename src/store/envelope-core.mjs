// Sealing in the envelope format (envelope.ts describes it): plain JS, so the sealing worker (seal-worker.mjs)
// loads the very same code as the engine's thread, whatever loads the TypeScript around it.
import { createCipheriv, randomFillSync } from "node:crypto";

export const ENVELOPE_VERSION = 1;
export const HEADER = 1 + 4 + 12;
export const TAG = 16;

// Nonces come from a refilled random pool: one syscall per 4,096 nonces instead of one per write.
const POOL_SIZE = 12 * 4096;
let pool = Buffer.alloc(0);
let offset = POOL_SIZE;
function nonce() {
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
export function aadFor(ns, key, version, keyId) {
  // Written straight into one buffer: no intermediate buffers per record (every seal and every open builds one).
  const nsLength = Buffer.byteLength(ns, "utf8");
  const keyLength = Buffer.byteLength(key, "utf8");
  const out = Buffer.allocUnsafe(8 + 4 + nsLength + 4 + keyLength + 1 + 4);
  let o = out.write("runigun\u0000", 0, "latin1");
  o = out.writeUInt32BE(nsLength, o);
  o += out.write(ns, o, "utf8");
  o = out.writeUInt32BE(keyLength, o);
  o += out.write(key, o, "utf8");
  o = out.writeUInt8(version, o);
  out.writeUInt32BE(keyId, o);
  return out;
}

/** Seals `plaintext` into `out` at `at` (HEADER + plaintext + TAG bytes); returns the bytes written. */
export function sealInto(out, at, dataKey, keyId, ns, key, plaintext, iv = nonce()) {
  const cipher = createCipheriv("aes-256-gcm", dataKey, iv);
  cipher.setAAD(aadFor(ns, key, ENVELOPE_VERSION, keyId));
  out[at] = ENVELOPE_VERSION;
  out.writeUInt32BE(keyId, at + 1);
  out.set(iv, at + 5);
  const n = cipher.update(plaintext).copy(out, at + HEADER);
  cipher.final();
  cipher.getAuthTag().copy(out, at + HEADER + n);
  return HEADER + n + TAG;
}

export function seal(dataKey, keyId, ns, key, plaintext, iv) {
  const out = Buffer.allocUnsafe(HEADER + plaintext.length + TAG);
  sealInto(out, 0, dataKey, keyId, ns, key, plaintext, iv);
  return out;
}
