// Values ⇄ bytes for the store: JSON, with bigint (all amounts are bigint satoshis) as a tagged object.
const BIG = "$n";

export function encode(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value, (_k, v: unknown) => {
    if (typeof v === "bigint") return { [BIG]: v.toString() };
    if (v === undefined || typeof v === "function" || typeof v === "symbol") return undefined;
    if (typeof v === "number" && !Number.isFinite(v)) throw new TypeError(`cannot store the number ${v}`);
    return v;
  }), "utf8");
}

export function decode<T>(bytes: Uint8Array): T {
  return JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8"), (_k, v: unknown) => {
    if (v !== null && typeof v === "object" && !Array.isArray(v)) {
      const o = v as Record<string, unknown>;
      const n = o[BIG];
      if (typeof n === "string" && Object.keys(o).length === 1) return BigInt(n);
    }
    return v;
  }) as T;
}
