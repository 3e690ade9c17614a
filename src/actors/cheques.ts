// The cheque book: one persistent actor holding every cheque's escrow. A cheque is funded by an ordinary
// transfer from its creator's wallet (to the pseudo-user "cheque:<hash>"), and paid out by an ordinary
// transfer with an id derived from the cheque, so each leg takes effect once. Only an HMAC of the claim
// code is stored: a leaked journal does not leak claimable codes.
import type { PersistentBehaviour, Reply } from "./runtime.ts";
import { refuse, type Refusal } from "../domain/refusals.ts";
import type { EncryptedStore, StoreOp } from "../store/db.ts";
import { idMap } from "./idmap.ts";
import { Shelf } from "../store/shelf.ts";

export interface ChequeRecord {
  creator: string;
  amount: bigint;
  expiresAt: number;
  status: "awaiting_funds" | "open" | "claimed" | "revoked";
  /** Who receives the payout (claimant or, after a revoke, the creator) and whether they acknowledged it. */
  payee?: string;
  paid?: boolean;
  /**
   * The creator's command id, from which the engine derives the claim code again for its creator's list (an HMAC
   * under a key sealed in the store: the journal alone still gives no code). Absent for cheques made before.
   */
  id?: string;
}

export interface ChequeState {
  cheques: Record<string, ChequeRecord>;
}

export type ChequeEvent =
  | { t: "created"; hash: string; creator: string; amount: string; expiresAt: number; id?: string }
  | { t: "funded"; hash: string }
  | { t: "claimed"; hash: string; by: string }
  | { t: "revoked"; hash: string }
  | { t: "paid"; hash: string }
  /** A cheque whose funding its creator's wallet refused outright (nothing was sent): it leaves the book. */
  | { t: "dropped"; hash: string }
  /**
   * Finished cheques (paid out, to the claimant or back to the creator) beyond the newest `retainFinished` leave the
   * book; the record of each that stays in the store answers whatever still names it.
   */
  | { t: "pruned"; hashes: string[] };

export type ChequeCommand =
  /** Answers the cheque as it stands: as it was made, when the same command comes again later. */
  | { type: "create"; hash: string; creator: string; id: string; amount: bigint; expiresAt: number; now: number; reply: Reply<{ amount: bigint; expiresAt: number } | Refusal> }
  /** A creator's cheques that can still be claimed or funded, newest first (at most `limit`), and how many there are. */
  | { type: "mine"; creator: string; now: number; limit: number; reply: Reply<{ cheques: MyCheque[]; total: number }> }
  | { type: "fund"; hash: string; from: string; amount: bigint; reply: Reply<{ ok: true } | Refusal> }
  /**
   * The creator of a cheque that can be claimed now (open, not expired), undefined for any other: a claim first checks
   * that its creator's wallet is not frozen (the book holds no wallet state).
   */
  | { type: "creator"; hash: string; now: number; reply: Reply<{ creator: string } | undefined> }
  | { type: "claim"; hash: string; by: string; now: number; reply: Reply<{ amount: bigint } | Refusal> }
  | { type: "revoke"; hash: string; by: string; reply: Reply<{ amount: bigint } | Refusal> }
  | { type: "paid"; hash: string; reply: Reply<{ ok: true } | Refusal> }
  /** The creator's wallet refused to fund it, for good (insufficient funds, frozen…): forget it. */
  | { type: "drop"; hash: string; creator: string; reply: Reply<{ ok: true }> }
  /**
   * Returns every funded cheque past its expiry to its creator (at each block, and at start), and names the cheques
   * past their expiry still waiting for their funds (`stale`): the service drops those whose funding is not on its way.
   */
  | { type: "expire"; now: number; reply: Reply<{ expired: number; stale: Array<{ hash: string; creator: string }> }> }
  /** Re-sends every payout not yet acknowledged (after a restart, or a store outage). */
  | { type: "resume"; reply: Reply<{ resent: number }> }
  /**
   * Resets the book from its journal (BookReplay): after a write the store could not confirm turned out to be on
   * disk, the book as it stands may lack it (a claim, a revoke), until it writes again.
   */
  | { type: "replay"; reply: Reply<{ ok: true }> }
  | { type: "state"; reply: Reply<ChequeState> };

/** One of a creator's cheques as the book has it (no code: the service derives it from `id`). */
export interface MyCheque {
  amount: bigint;
  expiresAt: number;
  funded: boolean;
  id: string | undefined;
}

export const CHEQUE_JOURNAL_KEY = "cheques";
/** Expired cheques returned in one turn at most. */
const EXPIRE_CHUNK = 500;
export const chequeUserKey = (hash: string) => `cheque:${hash}`;
/** The transfer id of a cheque's payout: derived, so a re-sent payout is credited once. */
export const chequePayoutId = (hash: string) => `chq:${hash}`;

export const emptyCheques = (): ChequeState => ({ cheques: idMap() });

/** Thrown by the book on a "replay" command: its owner answers it and resets the book from its journal. */
export class BookReplay extends Error {
  constructor() {
    super("the cheque book reads its journal again");
  }
}

/**
 * Pure: applies one event. The map of cheques is copied as a dictionary (idmap.ts); a cheque has every field from
 * the start (a spread adding `payee` later gives each one a hidden class of its own).
 */
export function evolveCheques(s: ChequeState, e: ChequeEvent): ChequeState {
  const cheques = idMap(s.cheques);
  if (e.t === "pruned") {
    for (const h of e.hashes) delete cheques[h];
    return { cheques };
  }
  if (e.t === "dropped") {
    delete cheques[e.hash];
    return { cheques };
  }
  const c = s.cheques[e.hash];
  switch (e.t) {
    case "created":
      cheques[e.hash] = { creator: e.creator, amount: BigInt(e.amount), expiresAt: e.expiresAt, status: "awaiting_funds", payee: undefined, paid: undefined, id: e.id };
      break;
    case "funded":
      cheques[e.hash] = { ...c!, status: "open" };
      break;
    case "claimed":
      cheques[e.hash] = { ...c!, status: "claimed", payee: e.by, paid: false };
      break;
    case "revoked":
      cheques[e.hash] = { ...c!, status: "revoked", payee: c!.creator, paid: false };
      break;
    case "paid":
      cheques[e.hash] = { ...c!, paid: true };
      break;
  }
  return { cheques };
}

/**
 * Cheques that left the book (see the "pruned" event): one store record each, keyed by the cheque's hash (itself an
 * HMAC of the code), written in the same batch as the event. The book answers from it as from the cheque itself: a
 * claim or revoke of an old code, a re-sent funding transfer, a repeated /cheque command.
 */
export class FinishedCheques extends Shelf<ChequeRecord> {
  constructor(store: EncryptedStore) {
    super(store, "cheque-done");
  }
}

export interface ChequeBookOptions {
  finished: FinishedCheques;
  /** Finished cheques the book keeps (the newest); the rest leave it, remembered in the store. */
  retainFinished: number;
  /**
   * Cheques one creator may have that are not yet claimed, revoked or expired (default 50): every cheque lives in
   * the book, which every event copies, so one account making cheques of a satoshi could slow everyone's.
   */
  maxOpenPerCreator?: number;
}

/** At most this many cheques leave the book in one event. */
const PRUNE_CHUNK = 1000;

/** Money held for open cheques (and for payouts not yet acknowledged): part of the engine's liabilities. */
export function escrowOf(s: ChequeState): bigint {
  let sum = 0n;
  for (const c of Object.values(s.cheques)) if (c.status === "open" || ((c.status === "claimed" || c.status === "revoked") && !c.paid)) sum += c.amount;
  return sum;
}

export interface ChequeHooks {
  /** Deliver a cheque's payout as a transfer from the cheque to the payee (the wallet dedupes by id). */
  pay(hash: string, payee: string, amount: bigint): void;
}

export function chequeBehaviour(hooks: ChequeHooks, o: ChequeBookOptions): PersistentBehaviour<ChequeState, ChequeCommand, ChequeEvent> {
  return {
    key: CHEQUE_JOURNAL_KEY,
    initial: emptyCheques,
    // A snapshot's map comes back from JSON with a prototype: a dictionary again, as evolve keeps it.
    restore: (d) => ({ cheques: idMap(d.cheques) }),
    evolve: evolveCheques,
    snapshotEvery: 200,
    async handle(s, cmd, persist) {
      const commit = async (e: ChequeEvent) => {
        await persist([e]);
        return evolveCheques(s, e);
      };
      // A cheque that left the book is answered from its record: it is finished (paid), so every command below
      // treats it as a claimed or revoked cheque, as before it left.
      const c = "hash" in cmd ? (s.cheques[cmd.hash] ?? o.finished.get(cmd.hash)) : undefined;
      switch (cmd.type) {
        case "state":
          cmd.reply(s);
          return s;
        case "mine": {
          // The book keeps cheques in the order they were made: newest first is that order reversed.
          const mine: MyCheque[] = [];
          for (const h in s.cheques) {
            const x = s.cheques[h]!;
            // Open, or awaiting its funding transfer, until it expires (a funded one then goes back to its creator).
            if (x.creator === cmd.creator && (x.status === "open" || x.status === "awaiting_funds") && cmd.now <= x.expiresAt) {
              mine.push({ amount: x.amount, expiresAt: x.expiresAt, funded: x.status === "open", id: x.id });
            }
          }
          cmd.reply({ cheques: mine.reverse().slice(0, cmd.limit), total: mine.length });
          return s;
        }
        case "create": {
          if (c) {
            cmd.reply(c.creator === cmd.creator ? { amount: c.amount, expiresAt: c.expiresAt } : refuse("duplicate", "That cheque code is taken; try again."));
            return s;
          }
          const most = o.maxOpenPerCreator ?? 50;
          let open = 0;
          for (const h in s.cheques) {
            const x = s.cheques[h]!;
            if (x.creator === cmd.creator && (x.status === "open" || x.status === "awaiting_funds") && cmd.now <= x.expiresAt) open++;
          }
          if (open >= most) {
            cmd.reply(refuse("over_limit", `You have ${open} cheques nobody has claimed yet, the most one account may have. Revoke one (/cheque list shows them) or wait until one is claimed or expires.`));
            return s;
          }
          const next = await commit({ t: "created", hash: cmd.hash, creator: cmd.creator, amount: cmd.amount.toString(), expiresAt: cmd.expiresAt, id: cmd.id });
          cmd.reply({ amount: cmd.amount, expiresAt: cmd.expiresAt });
          return next;
        }
        case "fund": {
          if (!c || c.amount !== cmd.amount || c.creator !== cmd.from) {
            // Money arrived for a cheque we do not know as such: refuse, the sender's transfer stays unacknowledged.
            cmd.reply(refuse("not_found", "No such cheque awaiting these funds."));
            return s;
          }
          if (c.status !== "awaiting_funds") {
            cmd.reply({ ok: true });
            return s;
          }
          // The funding leaves the transfers in flight as it enters the escrow, in the same record.
          const funded: ChequeEvent = { t: "funded", hash: cmd.hash };
          await persist([funded], { s: { transit: -cmd.amount } });
          cmd.reply({ ok: true });
          return evolveCheques(s, funded);
        }
        case "creator":
          cmd.reply(c && c.status === "open" && cmd.now <= c.expiresAt ? { creator: c.creator } : undefined);
          return s;
        case "claim": {
          if (!c || c.status === "awaiting_funds") return answer(s, cmd.reply, refuse("not_found", "This cheque does not exist or is not funded."));
          // The claimant again (the answer to the first claim was lost: a crash, a timeout): the same answer, and the
          // payout again while it is not acknowledged (a claim saved during a disk fault, its payout never sent).
          if (c.status === "claimed") {
            if (c.payee !== cmd.by) return answer(s, cmd.reply, refuse("already_claimed", "This cheque has already been claimed."));
            cmd.reply({ amount: c.amount });
            payAgain(hooks, cmd.hash, c);
            return s;
          }
          // Past its expiry a cheque goes back to its creator (the "expire" command): expired, whether that happened yet.
          if (cmd.now > c.expiresAt) return answer(s, cmd.reply, refuse("expired", "This cheque has expired; its amount went back to its creator."));
          if (c.status === "revoked") return answer(s, cmd.reply, refuse("revoked", "This cheque was revoked by its creator."));
          if (c.creator === cmd.by) return answer(s, cmd.reply, refuse("not_allowed", "You cannot claim your own cheque; use /cheque revoke to take it back."));
          const next = await commit({ t: "claimed", hash: cmd.hash, by: cmd.by });
          cmd.reply({ amount: c.amount });
          hooks.pay(cmd.hash, cmd.by, c.amount);
          return next;
        }
        case "revoke": {
          if (!c || c.creator !== cmd.by) return answer(s, cmd.reply, refuse("not_found", "You have no such cheque."));
          if (c.status === "claimed") return answer(s, cmd.reply, refuse("already_claimed", "This cheque has already been claimed."));
          if (c.status === "revoked") {
            // Its creator again: the payout back to them again while it is not acknowledged (see "claim").
            cmd.reply(refuse("revoked", "This cheque was already revoked."));
            payAgain(hooks, cmd.hash, c);
            return s;
          }
          // Its funding may be on its way (a wallet that answered late): revoked now, the funds would then make it
          // claimable again. Nothing to take back yet; once they arrive, a revoke returns them.
          if (c.status === "awaiting_funds") {
            return answer(s, cmd.reply, refuse("busy", "This cheque is still waiting for its funds; try /cheque revoke again in a moment. If the amount never left your balance, there is nothing to take back."));
          }
          const next = await commit({ t: "revoked", hash: cmd.hash });
          cmd.reply({ amount: c.amount });
          hooks.pay(cmd.hash, c.creator, c.amount);
          return next;
        }
        case "drop": {
          // Only a cheque still waiting for its funds, and only its creator's: one funded since is kept.
          if (!c || c.status !== "awaiting_funds" || c.creator !== cmd.creator) return answer(s, cmd.reply, { ok: true as const });
          const next = await commit({ t: "dropped", hash: cmd.hash });
          cmd.reply({ ok: true });
          return next;
        }
        case "paid": {
          if (!c || c.paid !== false) return answer(s, cmd.reply, { ok: true as const });
          const next = await commit({ t: "paid", hash: cmd.hash });
          cmd.reply({ ok: true });
          return prune(next, persist, o);
        }
        case "expire": {
          // At most EXPIRE_CHUNK a turn (one journal record): the rest at the next block.
          const due: string[] = [];
          const stale: Array<{ hash: string; creator: string }> = [];
          for (const [hash, x] of Object.entries(s.cheques)) {
            if (x.status === "open" && cmd.now > x.expiresAt && due.length < EXPIRE_CHUNK) due.push(hash);
            // Never funded by its expiry: its funding was refused late, or never sent (a /cheque that timed out).
            if (x.status === "awaiting_funds" && cmd.now > x.expiresAt && stale.length < EXPIRE_CHUNK) stale.push({ hash, creator: x.creator });
            if (due.length === EXPIRE_CHUNK && stale.length === EXPIRE_CHUNK) break;
          }
          if (due.length === 0) return answer(s, cmd.reply, { expired: 0, stale });
          const events: ChequeEvent[] = due.map((hash) => ({ t: "revoked", hash }));
          await persist(events);
          const next = events.reduce(evolveCheques, s);
          cmd.reply({ expired: due.length, stale });
          for (const hash of due) hooks.pay(hash, next.cheques[hash]!.creator, next.cheques[hash]!.amount);
          return next;
        }
        case "replay":
          throw new BookReplay();
        case "resume": {
          let resent = 0;
          for (const [hash, x] of Object.entries(s.cheques)) {
            if (x.paid === false && x.payee) {
              hooks.pay(hash, x.payee, x.amount);
              resent++;
            }
          }
          cmd.reply({ resent });
          return s;
        }
      }
    },
  };
}

/** Finished cheques beyond the newest `retainFinished` (in the order they were created) leave the book. */
async function prune(s: ChequeState, persist: (events: ChequeEvent[], extras?: { r: StoreOp[] }) => Promise<void>, o: ChequeBookOptions): Promise<ChequeState> {
  const finished: string[] = [];
  for (const h in s.cheques) if (s.cheques[h]!.paid === true) finished.push(h);
  const excess = finished.slice(0, Math.max(0, finished.length - o.retainFinished));
  for (let i = 0; i < excess.length; i += PRUNE_CHUNK) {
    const hashes = excess.slice(i, i + PRUNE_CHUNK);
    const e: ChequeEvent = { t: "pruned", hashes };
    await persist([e], { r: hashes.map((h) => o.finished.op(h, s.cheques[h]!)) });
    s = evolveCheques(s, e);
  }
  return s;
}

/** A claimed or revoked cheque's payout, sent again if not acknowledged yet (the payee's wallet credits its id once). */
function payAgain(hooks: ChequeHooks, hash: string, c: ChequeRecord): void {
  if (c.paid === false && c.payee !== undefined) hooks.pay(hash, c.payee, c.amount);
}

function answer<R>(s: ChequeState, reply: Reply<R>, r: R): ChequeState {
  reply(r);
  return s;
}
