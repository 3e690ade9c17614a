// The cheque book as it was before it was sharded (src/actors/cheques.ts, ChequeBook): a flat map copied whole on every
// event. Kept as the reference the book's test compares the sharded book with, and the baseline of its bench.
import { idMap } from "../../src/actors/idmap.ts";
import type { ChequeEvent, ChequeRecord } from "../../src/actors/cheques.ts";

export type Flat = Record<string, ChequeRecord>;

/** The flat book's evolve. */
export function flatEvolve(m: Flat, e: ChequeEvent): Flat {
  const cheques = idMap(m);
  if (e.t === "pruned") {
    for (const h of e.hashes) delete cheques[h];
    return cheques;
  }
  if (e.t === "dropped") {
    delete cheques[e.hash];
    return cheques;
  }
  const c = m[e.hash];
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
  return cheques;
}
