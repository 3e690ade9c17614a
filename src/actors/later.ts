// Work to try again later, by key: a credit whose receiver stayed busy (the courier), a cheque payout its payee's
// wallet did not take (the cheque book). The first try waits `baseMs`, each next one twice as long up to five
// minutes, jittered ±20% so what failed together does not come back together. The work stays durable elsewhere (an
// outbox, the cheque book), so a waiting try does not keep the process alive unless someone waits for it (`keepAlive`),
// and `stop` drops them all for good (a shutdown).
const MAX_MS = 5 * 60_000;

export class Later {
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #runs = new Map<string, () => void>();
  #stopped = false;
  #alive = false;

  constructor(private readonly baseMs: number) {}

  /** Runs `run` once after the delay of try number `round` (0: the first), unless stopped or cancelled meanwhile. */
  schedule(key: string, round: number, run: () => void): void {
    if (this.#stopped) return;
    this.cancel(key);
    const delay = Math.min(this.baseMs * 2 ** Math.min(round, 20), MAX_MS) * (0.8 + Math.random() * 0.4);
    const timer = setTimeout(() => {
      this.#timers.delete(key);
      this.#runs.delete(key);
      run();
    }, delay);
    if (!this.#alive) timer.unref();
    this.#timers.set(key, timer);
    this.#runs.set(key, run);
  }

  /** Drops the waiting try for `key` (it is being done now). */
  cancel(key: string): void {
    const timer = this.#timers.get(key);
    if (!timer) return;
    clearTimeout(timer);
    this.#timers.delete(key);
    this.#runs.delete(key);
  }

  /** Does every waiting try now, instead of at its time; returns how many. */
  runNow(): number {
    const runs = [...this.#runs.values()];
    for (const key of [...this.#timers.keys()]) this.cancel(key);
    for (const run of runs) run();
    return runs.length;
  }

  /** From now on, the waiting tries keep the process alive (someone waits for them to be done). */
  keepAlive(): void {
    this.#alive = true;
    for (const timer of this.#timers.values()) timer.ref();
  }

  /** Drops every waiting try, and schedules none from now on. */
  stop(): void {
    this.#stopped = true;
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    this.#runs.clear();
  }

  get size(): number {
    return this.#timers.size;
  }
}
