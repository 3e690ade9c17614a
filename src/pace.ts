// A pace for work that ends in Telegram messages nobody waits for (drain mode's announcement to every user): at most
// `perSecond` items on average. Without it, the engine records tens of thousands of notices a second while Telegram
// takes 30 a second: the rest would wait in the edge's send queue, in memory, and be lost with a restart, though
// every wallet already records them as told.
export function pace(perSecond: number, o: { now?: () => number; sleep?: (ms: number) => Promise<void> } = {}): (items: number) => Promise<void> {
  // A monotonic clock: a wall clock set back an hour would make the next wait an hour long.
  const now = o.now ?? (() => performance.now());
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref()));
  const started = now();
  let done = 0;
  return async (items) => {
    done += items;
    const due = started + (done * 1000) / perSecond;
    const wait = due - now();
    if (wait > 0) await sleep(wait);
  };
}
