// Typed store errors: each names what is wrong and what to do, never the key material.
export type StoreErrorCode =
  | "tampered" | "wrong_key" | "unknown_key_id" | "bad_format" | "missing_key" | "key_file_permissions" | "bad_input" | "sequence_gap" | "seal_failed";

export class StoreError extends Error {
  override readonly name = "StoreError";
  constructor(readonly code: StoreErrorCode, message: string) {
    super(message);
  }
}
