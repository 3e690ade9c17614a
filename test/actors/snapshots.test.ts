// A snapshot's state comes back from JSON: the behaviours' `restore` gives it back the shape evolve keeps (every
// field of a wallet present; id-keyed books as prototype-less dictionaries), so what a snapshot restores behaves
// as what replay builds.
import t from "tap";
import { decode, encode } from "../../src/store/codec.ts";
import { walletBehaviour, type WalletOptions } from "../../src/actors/wallet.actor.ts";
import { ADDRESSES_KEPT, emptyWallet, evolve } from "../../src/actors/wallet.ts";
import { emptyPayouts, evolvePayouts, payoutBehaviour, type PayoutOptions } from "../../src/actors/payout.ts";
import { chequeBehaviour, emptyCheques, evolveCheques, type ChequeBookOptions } from "../../src/actors/cheques.ts";

const roundTrip = <T>(x: T): T => decode<T>(encode(x));

t.test("a wallet's snapshot: every field present again, values kept", async (t) => {
  const b = walletBehaviour("u_snap", {} as WalletOptions);
  const s = evolve(emptyWallet("u_snap"), { t: "transfer_received", id: "x", from: "u_y", amount: "5", at: 1 });
  const data = roundTrip(s);
  t.notOk(Object.hasOwn(data, "openedAt"), "JSON dropped the undefined field");
  const back = b.restore!(data);
  t.same(Object.keys(back), Object.keys(emptyWallet("u_snap")), "the same fields, in the same order, as a new wallet");
  t.equal(back.available, 5n);
  t.equal(back.historyTotal, 1);
});

t.test("a wallet's snapshot from before format 7: the address flag worked out, the newest ADDRESSES_KEPT addresses kept", async (t) => {
  const b = walletBehaviour("u_old", {} as WalletOptions);
  const addresses = Array.from({ length: ADDRESSES_KEPT + 5 }, (_, i) => `bcrt1q${i}`);
  const last = addresses.at(-1)!;
  const deposit = { txid: "aa", vout: 0, address: last, amount: 5n, status: "confirmed", seenAt: 1, h: 1 };
  const { addressUsed: _, ...old } = { ...emptyWallet("u_old"), opened: true, addresses, deposits: { "aa:0": deposit } };
  const back = b.restore!(roundTrip(old) as never);
  t.same([back.addressUsed, back.addresses.length, back.addresses.at(-1)], [true, ADDRESSES_KEPT, last], "a deposit arrived on the newest address");
  const unused = b.restore!(roundTrip({ ...old, deposits: {} }) as never);
  t.equal(unused.addressUsed, false, "none did");
});

t.test("the payout and cheque books' snapshots: dictionaries without a prototype, ids as ordinary keys", async (t) => {
  const book = evolvePayouts(emptyPayouts(), { t: "queued", id: "toString", userKey: "u_a", address: "bcrt1qx", amount: "1000", quotedFee: "10", at: 1 });
  const payouts = payoutBehaviour({} as PayoutOptions).restore!(roundTrip(book));
  t.equal(Object.getPrototypeOf(payouts.payouts), null);
  t.equal(Object.getPrototypeOf(payouts.batches), null);
  t.equal(payouts.payouts["toString"]!.amount, 1000n, "the payout with id toString is there");
  t.equal(payoutBehaviour({} as PayoutOptions).restore!(roundTrip(emptyPayouts())).payouts.constructor, undefined, "no id finds Object.prototype's members");

  const cheques = evolveCheques(emptyCheques(), { t: "created", hash: "h1", creator: "u_a", amount: "500", expiresAt: 9 });
  const back = chequeBehaviour({ pay: () => undefined }, {} as ChequeBookOptions).restore!(roundTrip(cheques));
  t.equal(Object.getPrototypeOf(back.cheques), null);
  t.same(Object.keys(back.cheques), ["h1"]);
  t.equal(back.cheques.h1!.amount, 500n);
  t.equal(back.cheques.constructor, undefined);
});
