// What a singleton actor (the payout actor, the cheque book) does after a crash: replay its journal and go on; after
// more than `max` crashes within a minute, stop (replaying forever against a broken journal would only spin). A crash
// while the store cannot write (a full disk) is not counted: it is not the actor's doing, writes resume by themselves
// once space is freed, and the actor must still be there then.
import type { Logger } from "../log.ts";
import { refuse, type Refusal } from "../domain/refusals.ts";
import { StoreError } from "../store/errors.ts";

/**
 * The answer to a command whose handling crashed. Its effects were not journalled — unless the crash was a write
 * whose fate the store could not learn (a disk failing under it): then it may still have been done, and the caller
 * must look before trying again (a retry with a new id would do it twice).
 */
export function crashRefusal(err: unknown): Refusal {
  if (err instanceof StoreError && err.code === "write_failed" && err.written === "unknown") {
    return refuse("busy", "It could not be confirmed as saved (a disk problem on the server); it may still have been done. Check your balance before you try again.");
  }
  return refuse("internal", "Something went wrong; nothing was moved. Please try again.");
}

export interface CrashBudgetOptions {
  log: Logger;
  /** The actor, in log lines: "payout actor". */
  what: string;
  /** The alert when it stops: what stops working, and what to do. */
  stopped: string;
  /** Whether the store's writes are failing now (EncryptedStore.writeHealth). */
  storeFailing?: () => boolean;
  max?: number;
  windowMs?: number;
  /** A monotonic clock (default performance.now): a step of the wall clock must not forget crashes, nor keep old ones. */
  now?: () => number;
}

export function crashBudget(o: CrashBudgetOptions): (err: unknown) => "reset" | "stop" {
  const max = o.max ?? 5, windowMs = o.windowMs ?? 60_000, now = o.now ?? (() => performance.now());
  let times: number[] = [];
  return (err) => {
    if (o.storeFailing?.()) {
      o.log.warn({ err }, `${o.what} crashed: the store cannot write; replaying its journal (not counted against its crash budget)`);
      return "reset";
    }
    const t = now();
    times = [...times.filter((x) => t - x < windowMs), t];
    if (times.length > max) {
      o.log.error({ alert: true, err }, o.stopped);
      return "stop";
    }
    o.log.error({ err }, `${o.what} crashed; replaying its journal`);
    return "reset";
  };
}
