// The payout book as it was before finished payouts were kept apart (src/actors/payout.ts, PayoutBook): every payout
// and batch in two flat maps, each copied whole on every event. Kept as the reference the book's test compares
// PayoutBook with (test/actors/payout-book.test.ts), and the baseline of its bench (bench/payouts.bench.ts).
import { idMap, withKey } from "../../src/actors/idmap.ts";
import type { Batch, Cancel, Payout, PayoutEvent } from "../../src/actors/payout.ts";

export interface FlatPayouts {
  payouts: Record<string, Payout>;
  batches: Record<string, Batch>;
  seq: number;
}

export const emptyFlat = (): FlatPayouts => ({ payouts: idMap(), batches: idMap(), seq: 0 });

/** The flat book's evolve, as it was (evolvePayouts before PayoutBook). */
export function flatEvolve(s: FlatPayouts, e: PayoutEvent): FlatPayouts {
  switch (e.t) {
    case "queued": {
      const p: Payout = {
        userKey: e.userKey, address: e.address, amount: BigInt(e.amount), quotedFee: BigInt(e.quotedFee), status: "queued", batch: undefined, fee: undefined,
        walletSettled: undefined, at: e.at,
      };
      return { ...s, payouts: withKey(s.payouts, e.id, p) };
    }
    case "signed": {
      const payouts = idMap(s.payouts);
      let quoted = 0n;
      e.ids.forEach((id, i) => {
        const p = payouts[id]!;
        quoted += p.quotedFee;
        payouts[id] = { ...p, status: "signed", batch: e.batch, fee: BigInt(e.shares[i]!) };
      });
      const b: Batch = {
        ids: e.ids, hex: e.hex, txid: e.txid, fee: BigInt(e.fee), quoted, status: "signed", replaced: [], at: e.at, reason: undefined,
        inputs: e.inputs ? { [e.txid]: e.inputs } : undefined, ...(e.adopted ? { adopted: true as const } : {}),
      };
      return { ...s, seq: s.seq + 1, payouts, batches: withKey(s.batches, e.batch, b) };
    }
    case "broadcast":
    case "confirmed":
    case "stuck":
    case "released": {
      const b = s.batches[e.batch]!;
      if (e.t === "confirmed" && e.txid !== undefined && e.txid !== b.txid) {
        const payouts = idMap(s.payouts);
        b.ids.forEach((id, i) => (payouts[id] = { ...payouts[id]!, fee: BigInt(e.shares![i]!), status: "confirmed" }));
        const batch: Batch = { ...b, txid: e.txid, fee: BigInt(e.fee!), status: "confirmed", replaced: [...b.replaced.filter((t) => t !== e.txid), b.txid] };
        return { ...s, payouts, batches: withKey(s.batches, e.batch, batch) };
      }
      const status = e.t;
      const payouts = idMap(s.payouts);
      for (const id of b.ids) payouts[id] = { ...payouts[id]!, status };
      return { ...s, payouts, batches: withKey(s.batches, e.batch, { ...b, status, ...(e.t === "stuck" ? { reason: e.reason } : {}) }) };
    }
    case "unqueued": {
      const p = s.payouts[e.id]!;
      return { ...s, payouts: withKey(s.payouts, e.id, { ...p, status: "released" }) };
    }
    case "wallet_settled": {
      const payouts = idMap(s.payouts);
      for (const id of e.ids) payouts[id] = { ...payouts[id]!, walletSettled: true };
      return { ...s, payouts };
    }
    case "pruned": {
      const payouts = idMap(s.payouts), batches = idMap(s.batches);
      for (const id of e.ids) delete payouts[id];
      for (const b of e.batches) delete batches[b];
      return { ...s, payouts, batches };
    }
    case "cancelling": {
      const b = s.batches[e.batch]!, was = b.cancel;
      const earlier = was?.txid !== undefined && was.txid !== e.txid ? [...was.earlier, was.txid] : (was?.earlier ?? []);
      const cancel: Cancel = {
        reason: e.reason, input: e.input, earlier,
        ...(e.txid !== undefined ? { txid: e.txid, hex: e.hex!, fee: BigInt(e.fee!) } : {}), ...(e.spentAt !== undefined ? { spentAt: e.spentAt } : {}), ...(e.spentIn !== undefined ? { spentIn: e.spentIn } : {}),
      };
      const payouts = idMap(s.payouts);
      for (const id of b.ids) payouts[id] = { ...payouts[id]!, status: "cancelling" };
      return { ...s, payouts, batches: withKey(s.batches, e.batch, { ...b, status: "cancelling", cancel }) };
    }
    case "replaced": {
      const b = s.batches[e.batch]!;
      const payouts = idMap(s.payouts);
      b.ids.forEach((id, i) => (payouts[id] = { ...payouts[id]!, fee: BigInt(e.shares[i]!), status: "signed" }));
      const inputs = e.inputs ? { ...b.inputs, [e.txid]: e.inputs } : b.inputs;
      const batch: Batch = { ...b, hex: e.hex, txid: e.txid, fee: BigInt(e.fee), status: "signed", replaced: [...b.replaced, b.txid], inputs };
      return { ...s, payouts, batches: withKey(s.batches, e.batch, batch) };
    }
  }
}
