// The sealed record format: version(1) | keyId(u32 BE) | nonce(12) | ciphertext | tag(16), AES-256-GCM.
// The AAD binds the namespace, the record key, the version and the key id, so a value cannot be moved to
// another record or relabelled with another key id without failing authentication.
import { createDecipheriv } from "node:crypto";
import { aadFor, ENVELOPE_VERSION, HEADER, seal, TAG } from "./envelope-core.mjs";
import { StoreError } from "./errors.ts";

// Sealing itself lives in plain JS (envelope-core.mjs), shared with the sealing worker.
export { aadFor, ENVELOPE_VERSION, seal };

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
