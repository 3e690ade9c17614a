// Maps keyed by ids (outpoints, withdrawal, transfer and payout ids, cheque hashes) inside actor state, copied on
// every event because evolve is pure. A copy has no prototype, which puts it in V8's dictionary mode: as an object
// literal, every new id gave it a new hidden class as large as the map (about 10 µs an event, and a growing
// transition tree). Without a prototype an id such as "__proto__" or "toString" is an ordinary key too.

/** A copy of `m` (or an empty map) without a prototype. */
export function idMap<T>(m?: Readonly<Record<string, T>>): Record<string, T> {
  const c = Object.create(null) as Record<string, T>;
  if (m) for (const k in m) c[k] = m[k]!;
  return c;
}

/** A copy of `m` with `key` set, or removed when `value` is undefined. */
export function withKey<T>(m: Readonly<Record<string, T>>, key: string, value: NoInfer<T> | undefined): Record<string, T> {
  const c = Object.create(null) as Record<string, T>;
  for (const k in m) if (k !== key) c[k] = m[k]!;
  if (value !== undefined) c[key] = value;
  return c;
}
