// Chat handles sealed with the Telegram edge's own key: the engine stores them and hands them back for
// notifications, but cannot read them (in the split shape it never holds that key).
import { createCipheriv, createDecipheriv, createHmac } from "node:crypto";
import { StoreError } from "./errors.ts";

const AAD = Buffer.from("runigun/chat-handle/v1");
const IV_LABEL = "runigun/chat-handle/iv/v1";

/**
 * The nonce is synthetic (an HMAC of the handle under the edge key, as in SIV): the same handle always seals to
 * the same text, so the engine can tell "unchanged" without reading it (a /start does not journal it again).
 * Equal nonces only ever come with equal plaintexts, which GCM tolerates; all it reveals is that equality.
 */
export function sealHandle(edgeKey: Uint8Array, handle: object): string {
  if (edgeKey.length !== 32) throw new StoreError("bad_input", "the edge key must be 32 bytes");
  const plain = Buffer.from(JSON.stringify(handle), "utf8");
  const iv = createHmac("sha256", edgeKey).update(IV_LABEL).update(plain).digest().subarray(0, 12);
  const c = createCipheriv("aes-256-gcm", edgeKey, iv);
  c.setAAD(AAD);
  const ct = Buffer.concat([c.update(plain), c.final()]);
  return Buffer.concat([iv, ct, c.getAuthTag()]).toString("base64url");
}

export function openHandle<T extends object = Record<string, unknown>>(edgeKey: Uint8Array, sealed: string): T {
  const buf = Buffer.from(sealed, "base64url");
  if (buf.length < 12 + 16 + 2) throw new StoreError("bad_format", "a sealed chat handle is truncated");
  const d = createDecipheriv("aes-256-gcm", edgeKey, buf.subarray(0, 12));
  d.setAAD(AAD);
  d.setAuthTag(buf.subarray(buf.length - 16));
  try {
    return JSON.parse(Buffer.concat([d.update(buf.subarray(12, buf.length - 16)), d.final()]).toString("utf8")) as T;
  } catch {
    throw new StoreError("tampered", "a sealed chat handle does not open with this edge's key");
  }
}
