// The watchdog's arithmetic: what the books owe against what the node holds, with payouts in flight counted once.
import t from "tap";
import { assessSolvency } from "../../src/actors/solvency.ts";
import { emptyPayouts, type Payout, type PayoutState } from "../../src/actors/payout.ts";

const payout = (status: Payout["status"], extra: Partial<Payout> = {}): Payout => ({
  userKey: "u", address: "bcrt1q", amount: 100_000n, quotedFee: 5_000n, fee: 3_000n, status, at: 0, ...extra,
});
const book = (...ps: Payout[]): PayoutState => ({ ...emptyPayouts(), payouts: Object.fromEntries(ps.map((p, i) => [`wd${i}`, p])) });
// One user: 1,000,000 available, and 105,000 reserved for a 100,000-sat withdrawal quoted 5,000 in fees.
const liabilities = { available: 1_000_000n, pending: 0n, reserved: 105_000n, escrow: 0n, wallets: 1 };
const node = (trusted: bigint) => ({ trusted, untrustedPending: 0n, immature: 0n });

t.test("a reservation whose payout has not left the node must be covered by the node", async (t) => {
  t.ok(assessSolvency({ liabilities, node: node(1_105_000n), payouts: book(payout("queued")) }).ok);
  const r = assessSolvency({ liabilities, node: node(1_104_999n), payouts: book(payout("queued")) });
  t.notOk(r.ok);
  t.match(r.reason, /firm balances \(1105000 sats\) exceed the node's trusted balance \(1104999 sats\) by 1 sats/);
});

t.test("money between two users (debited, not yet credited) is owed firmly: a hole of its size is seen", async (t) => {
  const sending = { ...liabilities, available: 990_000n, transit: 10_000n };
  t.ok(assessSolvency({ liabilities: sending, node: node(1_105_000n), payouts: book(payout("queued")) }).ok);
  const r = assessSolvency({ liabilities: sending, node: node(1_095_000n), payouts: book(payout("queued")) });
  t.notOk(r.ok, "the node short by the amount in flight");
  t.equal(r.liabilities.transit, 10_000n);
  t.equal(r.firm, 1_105_000n);
});

t.test("signed, broadcast, or confirmed with the wallet not yet settled: the coins have left, counted once at the fee paid", async (t) => {
  // The node paid 100,000 + 3,000; the 2,000 left of the quote goes back to the user at settlement.
  for (const p of [payout("signed"), payout("broadcast"), payout("confirmed")]) {
    const r = assessSolvency({ liabilities, node: node(1_002_000n), payouts: book(p) });
    t.ok(r.ok, `${p.status}: in flight`);
    t.equal(r.liabilities.inFlightPayouts, 103_000n);
    t.equal(r.surplus, 0n);
  }
});

t.test("confirmed and settled in the wallet: the reservation is gone, nothing is in flight", async (t) => {
  const settled = { ...liabilities, available: 1_002_000n, reserved: 0n };
  const r = assessSolvency({ liabilities: settled, node: node(1_002_000n), payouts: book(payout("confirmed", { walletSettled: true })) });
  t.ok(r.ok);
  t.equal(r.liabilities.inFlightPayouts, 0n);
  // Counting an acknowledged payout again would hide a hole of its size.
  t.notOk(assessSolvency({ liabilities: settled, node: node(1_002_000n - 103_000n), payouts: book(payout("confirmed", { walletSettled: true })) }).ok);
});

t.test("a pending deposit the node no longer holds is a warning, not a hole: nobody can spend it", async (t) => {
  const withPending = { ...liabilities, reserved: 0n, pending: 50_000n };
  const covered = assessSolvency({ liabilities: withPending, node: { trusted: 1_000_000n, untrustedPending: 50_000n, immature: 0n }, payouts: emptyPayouts() });
  t.ok(covered.ok);
  t.equal(covered.warning, undefined);
  const short = assessSolvency({ liabilities: withPending, node: { trusted: 1_000_000n, untrustedPending: 49_000n, immature: 0n }, payouts: emptyPayouts() });
  t.match(short, { ok: true, warning: /all liabilities \(1050000 sats\) exceed everything the node holds \(1049000 sats\)/ });
  t.equal(short.reason, undefined);
  t.equal(assessSolvency({ liabilities: withPending, node: { trusted: 1_000_000n, untrustedPending: 49_000n, immature: 0n }, payouts: emptyPayouts(), toleranceSats: 1_000n }).warning, undefined, "within the tolerance");
  // The firm part is still checked: a confirmed balance the node does not hold is a hole, whatever is pending.
  t.notOk(assessSolvency({ liabilities: withPending, node: { trusted: 999_999n, untrustedPending: 100_000n, immature: 0n }, payouts: emptyPayouts() }).ok);
});
