// Worker thread that seals the journal's group commits (sealer.ts), so AES-GCM runs beside the engine's thread
// instead of on it. Plain JS so it loads the same way under any TypeScript loader and plain node.
import { parentPort, workerData } from "node:worker_threads";
import { HEADER, TAG, sealInto } from "./envelope-core.mjs";

const dataKey = Buffer.from(workerData.dataKey);
const keyId = workerData.keyId;

// One request: the record keys ("ns\0key") as one string and each one's length, the plaintexts back to back and each
// one's length. The answer is the sealed values back to back (each HEADER + length + TAG bytes), in the same order,
// in a transferred buffer, with the plaintext lengths handed back.
parentPort.on("message", ({ id, keys, keyLengths, plain, lengths }) => {
  try {
    const src = Buffer.from(plain);
    const out = Buffer.from(new ArrayBuffer(plain.byteLength + lengths.length * (HEADER + TAG)));
    let from = 0, at = 0, k = 0;
    for (let i = 0; i < lengths.length; i++) {
      const key = keys.slice(k, k += keyLengths[i]);
      const sep = key.indexOf("\u0000");
      at += sealInto(out, at, dataKey, keyId, key.slice(0, sep), key.slice(sep + 1), src.subarray(from, from + lengths[i]));
      from += lengths[i];
    }
    parentPort.postMessage({ id, sealed: out.buffer, lengths }, [out.buffer, lengths.buffer]);
  } catch (e) {
    parentPort.postMessage({ id, error: String(e && e.message ? e.message : e) });
  }
});
