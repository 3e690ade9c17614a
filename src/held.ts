// Notices kept while nobody is there to take them — the engine's start-up catch-up (payouts confirmed while it was
// down, outbox re-sends, a drain's announcements) runs before the edges subscribe, and a bot connects to the engine's
// notice stream after the engine is up — then handed to the first taker. Bounded: the oldest go first, counted.
export class Held<T> {
  #items: T[] = [];
  /** How many were dropped for room since the last take. */
  dropped = 0;

  constructor(readonly max: number) {}

  /** Keeps `item`; true when an older one was dropped for it (the first drop since the last take: worth a log line). */
  hold(item: T): boolean {
    this.#items.push(item);
    if (this.#items.length <= this.max) return false;
    this.#items.shift();
    return ++this.dropped === 1;
  }

  /** Everything kept, oldest first; keeps nothing after. */
  take(): T[] {
    const items = this.#items;
    this.#items = [];
    this.dropped = 0;
    return items;
  }

  get size(): number {
    return this.#items.length;
  }
}
