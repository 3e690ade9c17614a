// Values ⇄ bytes for the store: JSON, with bigint (all amounts are bigint satoshis) as a tagged object.
const BIG = "$n";

export function encode(value: unknown): Buffer {
  return Buffer.from(encodeText(value), "utf8");
}

/** The JSON text `encode` writes as UTF-8. */
export function encodeText(value: unknown): string {
  return JSON.stringify(value, replacer);
}

/** One function for every encode (a closure per call was garbage on the durable write path). */
function replacer(_k: string, v: unknown): unknown {
  if (typeof v === "bigint") return { [BIG]: v.toString() };
  if (v === undefined || typeof v === "function" || typeof v === "symbol") return undefined;
  if (typeof v === "number" && !Number.isFinite(v)) throw new TypeError(`cannot store the number ${v}`);
  return v;
}

/**
 * JSON.parse, then one walk that turns tagged objects back into bigint — about three times faster than a reviver
 * (no call back from the parser per value), which is what snapshots of long histories pay on every activation.
 */
export function decode<T>(bytes: Uint8Array): T {
  return revive(JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8"))) as T;
}

function revive(v: unknown): unknown {
  if (v === null || typeof v !== "object") return v;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const x: unknown = v[i];
      if (x !== null && typeof x === "object") v[i] = revive(x);
    }
    return v;
  }
  const o = v as Record<string, unknown>;
  const n = o[BIG];
  if (typeof n === "string") {
    let keys = 0;
    for (const _ in o) if (++keys > 1) break;
    if (keys === 1) return BigInt(n);
  }
  for (const k in o) {
    const x = o[k];
    if (x === null || typeof x !== "object") continue;
    const y = revive(x);
    // Objects are revived in place; only a bigint replaces its tag — defined, never assigned (a "__proto__" key
    // stays a plain property, as JSON.parse made it).
    if (y !== x) Object.defineProperty(o, k, { value: y, writable: true, enumerable: true, configurable: true });
  }
  return o;
}
