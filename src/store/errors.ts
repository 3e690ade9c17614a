// Typed store errors: each names what is wrong and what to do, never the key material.
export type StoreErrorCode =
  | "tampered" | "wrong_key" | "unknown_key_id" | "bad_format" | "missing_key" | "key_file_permissions" | "bad_input" | "sequence_gap" | "seal_failed"
  /** A batch did not reach the disk for certain; `written`: whether it is known to be absent ("no") or not ("unknown"). */
  | "write_failed";

export class StoreError extends Error {
  override readonly name = "StoreError";
  constructor(readonly code: StoreErrorCode, message: string, options?: { cause?: unknown; written?: "no" | "unknown" }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    if (options?.written) this.written = options.written;
  }

  /** For "write_failed": "no" when the batch is known not to be on disk, "unknown" when that could not be learnt. */
  written?: "no" | "unknown";
}
