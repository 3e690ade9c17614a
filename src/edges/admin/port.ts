// What the admin edge may ask of the engine. Implemented by the engine (engine-port.ts); the edge adds no rule.
import type { Refusal } from "../../domain/refusals.ts";

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export interface AdminPort {
  health(): Promise<Json>;
  node(): Promise<Json>;
  actors(): Json;
  wallet(userKey: string, page: number): Promise<Json | Refusal>;
  solvency(): Promise<Json>;
  /** Deposit records matching every filter given, newest first, at most `limit`; `matched` and `truncated` say how many there were. */
  deposits(q?: DepositQuery): Promise<Json>;
  payouts(status?: string): Promise<Json>;
  metrics(): Promise<string>;
  /** `not_found` for a key with no wallet; a wallet frozen already keeps its first reason, and the answer says so (`already`). */
  freeze(userKey: string, reason: string, operator: string): Promise<Json | Refusal>;
  unfreeze(userKey: string, operator: string): Promise<Json | Refusal>;
  /**
   * An operator's correction of a wallet's books, once per id (engine.ts, adjustWallet): `amount` signed satoshis (a
   * debit never beyond available); `outpoint`, the reversed deposit it books.
   */
  adjustWallet(userKey: string, a: { id: string; amount: bigint; reason: string; outpoint?: string }, operator: string): Promise<Json | Refusal>;
  bumpPayout(batch: string, feeRateSatVb: bigint): Promise<Json | Refusal>;
  /** A stuck batch given up: made impossible to mine, then its payouts go back to their wallets (payout.ts, "release"). */
  releasePayout(batch: string, feeRateSatVb: bigint, reason: string): Promise<Json | Refusal>;
  rescanFrom(height: number): Promise<Json | Refusal>;
  /** After a restore: which ambiguous queued payout an unknown spend paid (engine.ts, adoptPayout). */
  adoptPayout(id: string, txid: string, operator: string): Promise<Json | Refusal>;
  /** Stops new payout batches until an operator resumes them (engine.ts, pausePayouts). */
  pausePayouts(reason: string, operator: string): Promise<Json | Refusal>;
  /** A payout still queued given back to its wallet (engine.ts, unqueuePayout). */
  unqueuePayout(id: string, operator: string): Promise<Json | Refusal>;
  resumePayouts(operator: string): Promise<Json | Refusal>;
  /** After a lossy restore: the cheques held for review can be claimed, revoked and expire again (engine.ts, releaseHeldCheques). */
  releaseHeldCheques(operator: string): Promise<Json | Refusal>;
  setDraining(on: boolean, reason: string, operator: string): Promise<Json | Refusal>;
  /** Takes a snapshot archive now (into backup.dir/snapshots; the node wallet's backup included). */
  backup(): Promise<Json | Refusal>;
  /** The chain tip and its age in seconds (from the tip block's time, or the median time past without it). */
  tip(): Promise<Json>;
  /** Data for the console's charts: per-hour deposits and payouts, and the bounded ring of engine samples. */
  series(): Promise<ChartSeries>;
}

export interface DepositQuery {
  status?: string;
  userKey?: string;
  txid?: string;
  limit?: number;
}

export interface EngineSample {
  at: number;
  resident: number;
  activations: number;
  passivations: number;
  journalBatches: number;
  /** The last journal commit's latency when there was a commit since the previous sample, else null. */
  commitMs: number | null;
}

export interface ChartSeries {
  /** Hour buckets (start, ms since epoch), oldest first, over the last 24 hours. */
  hours: Array<{ start: number; deposits: number; payouts: number }>;
  /** Samples taken every `sampleMs` since the engine started (bounded: the oldest fall off). */
  samples: EngineSample[];
  sampleMs: number;
}
