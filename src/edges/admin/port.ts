// What the admin edge may ask of the engine. Implemented by the engine (engine-port.ts); the edge adds no rule.
import type { Refusal } from "../../domain/refusals.ts";

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export interface AdminPort {
  health(): Promise<Json>;
  node(): Promise<Json>;
  actors(): Json;
  wallet(userKey: string, page: number): Promise<Json | Refusal>;
  solvency(): Promise<Json>;
  deposits(status?: string): Promise<Json>;
  payouts(status?: string): Promise<Json>;
  metrics(): Promise<string>;
  freeze(userKey: string, reason: string, operator: string): Promise<Json | Refusal>;
  unfreeze(userKey: string, operator: string): Promise<Json | Refusal>;
  bumpPayout(batch: string, feeRateSatVb: bigint): Promise<Json | Refusal>;
  rescanFrom(height: number): Promise<Json | Refusal>;
  resumePayouts(operator: string): Promise<Json | Refusal>;
  setDraining(on: boolean, reason: string, operator: string): Promise<Json | Refusal>;
}
