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

  /**
   * Keeps `items` before everything kept, in their order (older than anything kept: notices handed to a bot that never
   * acknowledged them); true as `hold`. Past `max`, the oldest go, these first.
   */
  putBack(items: T[]): boolean {
    if (items.length === 0) return false;
    this.#items = [...items, ...this.#items];
    const over = this.#items.length - this.max;
    if (over <= 0) return false;
    this.#items.splice(0, over);
    const first = this.dropped === 0;
    this.dropped += over;
    return first;
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

/**
 * Who hears notices, and the notices held until an edge does (the engine's relay and the bot's side of the internal
 * link share it). A listener that delivers them (an edge) releases what is held, to every listener there is; an
 * observer (a test script's inbox) only watches: it neither receives nor releases held notices on its own.
 */
export class Notices<T> {
  readonly #listeners = new Set<(n: T) => void>();
  readonly #deliverers = new Set<(n: T) => void>();
  readonly #held: Held<T>;
  readonly #log: { warn(o: object, msg: string): void };

  constructor(log: { warn(o: object, msg: string): void }, max = 10_000) {
    this.#log = log;
    this.#held = new Held<T>(max);
  }

  subscribe(listener: (n: T) => void, o: { observer?: boolean } = {}): () => void {
    this.#listeners.add(listener);
    if (!o.observer) {
      this.#deliverers.add(listener);
      // In order, before anything published after this subscription.
      for (const n of this.#held.take()) for (const l of this.#listeners) this.#tell(l, n);
    }
    return () => {
      this.#listeners.delete(listener);
      this.#deliverers.delete(listener);
    };
  }

  /** A failing listener never blocks the others. */
  publish(n: T): void {
    if (this.#deliverers.size === 0) {
      if (this.#held.hold(n)) this.#log.warn({ kept: this.#held.max }, "no edge has listened for notices yet: the oldest kept ones are dropped");
      return;
    }
    for (const l of this.#listeners) this.#tell(l, n);
  }

  /** How many wait for an edge. */
  get held(): number {
    return this.#held.size;
  }

  clear(): void {
    this.#listeners.clear();
    this.#deliverers.clear();
    this.#held.take();
  }

  #tell(l: (n: T) => void, n: T): void {
    try {
      l(n);
    } catch (e) {
      this.#log.warn({ err: e }, "notification listener failed");
    }
  }
}
