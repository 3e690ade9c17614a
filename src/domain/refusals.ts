// The one registry of refusal codes. A refusal is a value, not an exception: actors return it, and each
// edge renders it in its own words (the `message` here is the default, written for a person).
export const REFUSAL_CODES = [
  "bad_amount",
  "bad_address",
  "wrong_network",
  "insufficient_funds",
  "below_dust",
  "over_limit",
  "frozen",
  "not_found",
  "unknown_command",
  "bad_input",
  "duplicate",
  "self_transfer",
  "expired",
  "already_claimed",
  "revoked",
  "not_allowed",
  "stale",
  "busy",
  "node_unavailable",
  "draining",
  "paused",
  /** A wallet holds as many unconfirmed deposits as it may (deposits.maxPendingPerWallet): a new one waits for its confirmations. */
  "too_many_pending",
  "internal",
] as const;

export type RefusalCode = (typeof REFUSAL_CODES)[number];

export interface Refusal {
  readonly refused: true;
  readonly code: RefusalCode;
  readonly message: string;
  /**
   * Refused before the command reached its wallet (the engine shutting down, too many commands in flight, a wallet
   * blocked after repeated errors): certainly nothing was done. Absent when it may still have been.
   */
  readonly unsent?: true;
}

export function refuse(code: RefusalCode, message: string): Refusal {
  return { refused: true, code, message };
}

/** A refusal given before the command reached its wallet: nothing was done, for certain (see Refusal.unsent). */
export function refuseUnsent(code: RefusalCode, message: string): Refusal {
  return { refused: true, code, message, unsent: true };
}

export function isRefusal(v: unknown): v is Refusal {
  return typeof v === "object" && v !== null && (v as { refused?: unknown }).refused === true;
}
