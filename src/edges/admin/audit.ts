// The operators' audit log: append-only, in the encrypted store (sealed like everything else), numbered so it
// reads in order. An entry is written before the action runs and its outcome after, so an action that
// crashed midway still shows that it was attempted.
import type { Logger } from "../../log.ts";
import type { EncryptedStore } from "../../store/db.ts";
import { StoreError } from "../../store/errors.ts";

export interface AuditEntry {
  seq: number;
  at: number;
  operator: string;
  action: string;
  target: string;
  reason: string;
  outcome?: string;
}

const NS = "audit";
const key = (seq: number) => String(seq).padStart(12, "0");

export class AuditLog {
  #next: number | undefined;
  #chain = Promise.resolve();

  constructor(private readonly store: EncryptedStore) {}

  /**
   * Appends an entry; entries are never overwritten. After a failed append the next number is read from the disk again:
   * a put whose fate the store could not learn (a disk fault) may be found there when the store reopens, and its number
   * is then taken.
   */
  append(e: Omit<AuditEntry, "seq" | "at">): Promise<AuditEntry> {
    const run = this.#chain.then(async () => {
      for (let again = true; ; again = false) {
        // The epoch the number is read in: if such a put turns up on disk before this one is written, the store refuses
        // this one (nothing written) rather than let it take, and overwrite, the number the read did not see.
        const epoch = this.store.epoch;
        try {
          if (this.#next === undefined) {
            let last = 0;
            for await (const k of this.store.keys(NS, { reverse: true, limit: 1 })) last = Number(k);
            this.#next = last + 1;
          }
          const entry: AuditEntry = { ...e, seq: this.#next, at: Date.now() };
          if ((await this.store.get(NS, key(entry.seq))) !== undefined) throw new Error(`audit entry ${entry.seq} exists; refusing to overwrite it (the next entry reads the last number from the store again)`);
          await this.store.batch([{ type: "put", ns: NS, key: key(entry.seq), value: entry }], epoch);
          this.#next++;
          return entry;
        } catch (err) {
          this.#next = undefined;
          // Refused, nothing written, because a put of unknown fate turned up meanwhile: numbered again, once, after it.
          if (again && this.store.epoch !== epoch && err instanceof StoreError && err.written === "no") continue;
          throw err;
        }
      }
    });
    this.#chain = run.then(() => undefined, () => undefined);
    return run;
  }

  /** Records how an appended action ended (a second record, so the first is never rewritten). */
  outcome(entry: AuditEntry, outcome: string): Promise<AuditEntry> {
    return this.append({ operator: entry.operator, action: `${entry.action}:outcome`, target: entry.target, reason: `#${entry.seq}`, outcome });
  }

  /**
   * One page of the log, newest first: entries numbered below `before` (all when absent), at most `limit`, and with
   * `action` only those of that action and their outcomes (`freeze` and `freeze:outcome`), with `target` only those of
   * that target. A filtered page reads at most `scan` entries (a filter that matches none of a long log must not read
   * it all per request), so it may hold fewer than `limit`. `next` is the `before` of the page after it: null once the
   * log's first entry was read.
   */
  async page(o: { limit: number; before?: number; action?: string; target?: string; scan?: number }): Promise<{ entries: AuditEntry[]; next: number | null }> {
    const filtered = o.action !== undefined || o.target !== undefined;
    const scan = filtered ? Math.max(o.limit, o.scan ?? 10_000) : o.limit;
    const matches = (e: AuditEntry) => (o.action === undefined || e.action === o.action || e.action === `${o.action}:outcome`) && (o.target === undefined || e.target === o.target);
    const entries: AuditEntry[] = [];
    let read = 0, last: number | undefined;
    for await (const [, v] of this.store.iterate<AuditEntry>(NS, { reverse: true, limit: scan, ...(o.before !== undefined ? { lt: key(o.before) } : {}) })) {
      read++;
      last = v.seq;
      if (matches(v)) entries.push(v);
      if (entries.length >= o.limit) break;
    }
    // Entries are numbered from 1: below the last one read there are more, unless it was the first.
    const more = last !== undefined && last > 1 && (entries.length >= o.limit || read >= scan);
    return { entries, next: more ? last! : null };
  }

  async list(limit = 100, before?: number): Promise<AuditEntry[]> {
    const out: AuditEntry[] = [];
    for await (const [, v] of this.store.iterate<AuditEntry>(NS, { reverse: true, limit, ...(before ? { lt: key(before) } : {}) })) out.push(v);
    return out;
  }
}

/**
 * An operator looked at one user's wallet (balance parts, history): recorded before the answer is sent, so who looked
 * at whom, and when, is on file. A store that cannot write must not keep an operator from looking: the failure is an
 * alert, and the look goes on.
 */
export async function auditRead(log: Pick<Logger, "error">, audit: AuditLog, operator: string, userKey: string): Promise<void> {
  await audit.append({ operator, action: "read-wallet", target: userKey, reason: "looked at the wallet" }).catch((e: unknown) => {
    log.error({ alert: true, err: (e as Error).message, operator, action: "read-wallet", target: userKey }, "an operator's look at a wallet could not be recorded in the audit log");
  });
}
