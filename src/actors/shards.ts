// Immutable maps of many entries that an actor's event must not copy whole (the cheque book's cheques and creators, the
// payout book's finished payouts and batches): keys are spread over FAN × FAN shards by a hash of the key, in two
// levels of arrays, so a change copies the two arrays on its shard's path (FAN pointers each) and the shard (a Map of
// about size/4,096 entries: ~12 at 50,000, ~250 at a million). A Map copies at roughly 0.2–1 µs an entry here, so one
// level of 256 shards would still cost ~50–100 µs a change at 50,000 entries.

export const FAN = 64;
export type Level<V> = ReadonlyArray<ReadonlyArray<ReadonlyMap<string, V>>>;
/** One empty shard, and one empty row of them, shared by every empty slot: copied before any write, never written. */
export const NONE: ReadonlyMap<string, never> = new Map<string, never>();
export const EMPTY_ROW: ReadonlyArray<ReadonlyMap<string, never>> = Object.freeze(new Array<ReadonlyMap<string, never>>(FAN).fill(NONE));
export const emptyLevel = <V>(): Level<V> => Object.freeze(new Array<ReadonlyArray<ReadonlyMap<string, V>>>(FAN).fill(EMPTY_ROW));

/** FNV-1a of a key, to a shard (0 … FAN² − 1). Keys may be HMACs already, or ids and user keys that are not. */
export function slotOf(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return (h >>> 0) % (FAN * FAN);
}

export function lookup<V>(level: Level<V>, key: string): V | undefined {
  const slot = slotOf(key);
  return level[slot >>> 6]![slot & (FAN - 1)]!.get(key);
}

/** Every entry of a level (those `keep` keeps), in an array (without a generator's step per entry), in no order. */
export function entriesOf<V>(level: Level<V>, keep?: (v: V) => boolean): Array<[string, V]> {
  const all: Array<[string, V]> = [];
  for (const row of level) {
    if (row === EMPTY_ROW) continue;
    for (const shard of row) for (const x of shard) if (!keep || keep(x[1])) all.push(x);
  }
  return all;
}

/** A level built in one pass (a snapshot's entries), every part new. */
export function levelOf<V>(entries: Iterable<readonly [string, V]>): Level<V> {
  const shards = new Array<Map<string, V> | undefined>(FAN * FAN);
  for (const [k, v] of entries) (shards[slotOf(k)] ??= new Map()).set(k, v);
  return Array.from({ length: FAN }, (_, i) => {
    const row = Array.from({ length: FAN }, (_, j): ReadonlyMap<string, V> => shards[i * FAN + j] ?? NONE);
    return row.some((x) => x !== NONE) ? row : EMPTY_ROW;
  });
}

/**
 * The writes of one draft (one event applied to a book): each array, shard or list is copied on its first write in the
 * draft and written in place after that; what a book before it holds is never written. `work.copied` counts the
 * entries of the shards copied (tests and benches: an event that touches no shard copies none).
 */
export class CopyOnWrite {
  readonly #own = new Set<object>();
  readonly #work: { copied: number };

  constructor(work: { copied: number }) {
    this.#work = work;
  }

  /** `x` itself if this draft made it, else a copy this draft owns from now on. */
  mine<T extends object>(x: T, copy: (x: T) => T): T {
    if (this.#own.has(x)) return x;
    const c = copy(x);
    this.#own.add(c);
    return c;
  }

  /** The level with `key`'s shard written by `f`: the path to it (two arrays and the shard) copied once per draft. */
  write<V>(level: Level<V>, key: string, f: (shard: Map<string, V>) => unknown): Level<V> {
    const slot = slotOf(key);
    const top = this.mine(level, (x) => x.slice()) as Array<ReadonlyArray<ReadonlyMap<string, V>>>;
    const row = this.mine(top[slot >>> 6]!, (x) => x.slice()) as Array<ReadonlyMap<string, V>>;
    const shard = this.mine(row[slot & (FAN - 1)]!, (x) => ((this.#work.copied += x.size), new Map(x))) as Map<string, V>;
    top[slot >>> 6] = row;
    row[slot & (FAN - 1)] = shard;
    f(shard);
    return top;
  }
}
