// Work to try again later, by key: a credit whose receiver stayed busy (the courier), a cheque payout its payee's
// wallet did not take (the cheque book). The first try waits `baseMs`, each next one twice as long up to five
// minutes, jittered ±20% so what failed together does not come back together. The work stays durable elsewhere (an
// outbox, the cheque book), so a waiting try does not keep the process alive unless someone waits for it (`keepAlive`),
// and `stop` drops them all for good (a shutdown).
const MAX_MS = 5 * 60_000;

export class Later {
  /** The waiting tries, by key: each one's timer and what it runs. */
  readonly #waiting = new Map<string, { timer: NodeJS.Timeout; run: () => void }>();
  #stopped = false;
  #alive = false;

  constructor(private readonly baseMs: number) {}

  /** Runs `run` once after the delay of try number `round` (0: the first), unless stopped or cancelled meanwhile. */
  schedule(key: string, round: number, run: () => void): void {
    if (this.#stopped) return;
    this.cancel(key);
    const delay = Math.min(this.baseMs * 2 ** Math.min(round, 20), MAX_MS) * (0.8 + Math.random() * 0.4);
    const timer = setTimeout(() => {
      this.#waiting.delete(key);
      run();
    }, delay);
    if (!this.#alive) timer.unref();
    this.#waiting.set(key, { timer, run });
  }

  /** Drops the waiting try for `key` (it is being done now). */
  cancel(key: string): void {
    const waiting = this.#waiting.get(key);
    if (!waiting) return;
    clearTimeout(waiting.timer);
    this.#waiting.delete(key);
  }

  /** Does every waiting try now, instead of at its time; returns how many. */
  runNow(): number {
    const all = [...this.#waiting.values()];
    this.#waiting.clear();
    for (const { timer } of all) clearTimeout(timer);
    for (const { run } of all) run();
    return all.length;
  }

  /** From now on, the waiting tries keep the process alive (someone waits for them to be done). */
  keepAlive(): void {
    this.#alive = true;
    for (const { timer } of this.#waiting.values()) timer.ref();
  }

  /** Drops every waiting try, and schedules none from now on. */
  stop(): void {
    this.#stopped = true;
    for (const { timer } of this.#waiting.values()) clearTimeout(timer);
    this.#waiting.clear();
  }

  get size(): number {
    return this.#waiting.size;
  }
}
