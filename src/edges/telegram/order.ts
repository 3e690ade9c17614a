// One at a time per key, with a bound on how many may wait: grammY runner's `sequentialize`, except that an update
// arriving when its key already has `maxPerKey` updates running or waiting is dropped instead of queued. An update
// waiting in line holds one of the runner's slots (or, in webhook mode, a handler) for as long as it waits, so one
// person's flood, unbounded, took the slots everybody else's updates needed.
import type { Context } from "grammy";

export interface Ordered<C extends Context> {
  middleware: (ctx: C, next: () => Promise<void>) => Promise<void>;
  /** Updates dropped because their key's line was full. */
  readonly stats: { dropped: number };
}

export function orderedPerKey<C extends Context>(
  keysOf: (ctx: C) => string[],
  maxPerKey: number,
  onDrop: (dropped: number) => void,
): Ordered<C> {
  const lines = new Map<string, { tail: Promise<unknown>; len: number }>();
  const stats = { dropped: 0 };
  const middleware = async (ctx: C, next: () => Promise<void>) => {
    const keys = keysOf(ctx);
    if (keys.some((k) => (lines.get(k)?.len ?? 0) >= maxPerKey)) {
      stats.dropped++;
      onDrop(stats.dropped);
      return;
    }
    const before = keys.map((k) => {
      let line = lines.get(k);
      if (!line) lines.set(k, (line = { tail: Promise.resolve(), len: 0 }));
      return line;
    });
    const run = (async () => {
      // The updates before this one may have failed: their own callers see that; this one runs all the same.
      await Promise.allSettled(before.map((l) => l.tail));
      try {
        await next();
      } finally {
        for (const k of keys) {
          const line = lines.get(k);
          if (line && --line.len === 0) lines.delete(k);
        }
      }
    })();
    for (const l of before) {
      l.len++;
      l.tail = run;
    }
    await run;
  };
  return { middleware, stats };
}
