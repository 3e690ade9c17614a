// The watchdog's arithmetic: what the books owe against what the node holds, with payouts in flight counted once.
import t from "tap";
import { assessSolvency, maturingDeposits } from "../../src/actors/solvency.ts";
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

t.test("deposits confirmed but below the target back only their pending balances: a hole of their size is seen", async (t) => {
  // 1,000,000 available (firm) and 300,000 pending, all the node's coins confirmed: 300,000 of them are deposits one
  // or two blocks deep of a target of 3, which the node trusts and the wallets hold as pending.
  const withPending = { ...liabilities, reserved: 0n, pending: 300_000n };
  const whole = { trusted: 1_300_000n, untrustedPending: 0n, immature: 0n };
  const ok = assessSolvency({ liabilities: withPending, node: whole, maturingDeposits: 300_000n, payouts: emptyPayouts() });
  t.ok(ok.ok, "every balance covered");
  t.equal(ok.node.maturingDeposits, 300_000n, "reported with the node's balances");
  t.equal(ok.surplus, 0n, "the surplus counts them (they are the node's, and owed)");
  // 300,000 of other coins gone from the node: the trusted balance still exceeds the firm balances, but only because
  // of the pending deposits' coins.
  const robbed = { ...whole, trusted: 1_000_000n };
  const hole = assessSolvency({ liabilities: withPending, node: robbed, maturingDeposits: 300_000n, payouts: emptyPayouts() });
  t.notOk(hole.ok, "a hole, although trusted ≥ firm");
  t.equal(hole.reason, "the wallets' firm balances (1000000 sats) exceed the node's trusted balance (1000000 sats, less 300000 sats of deposits not yet at the confirmation target, which back only pending balances) by 300000 sats");
  t.equal(hole.node.maturingDeposits, 300_000n);
  t.equal(assessSolvency({ liabilities: withPending, node: robbed, maturingDeposits: 300_000n, payouts: emptyPayouts(), toleranceSats: 300_000n }).ok, true, "within the tolerance");
  t.ok(assessSolvency({ liabilities: withPending, node: robbed, payouts: emptyPayouts() }).ok, "without the figure the hole hides behind them (as it did)");
  t.equal(assessSolvency({ liabilities: withPending, node: robbed, payouts: emptyPayouts() }).node.maturingDeposits, 0n, "absent: none");
});

t.test("maturing deposits: listed 1 to target − 1 deep, counted only where the deposit is pending in its wallet", async (t) => {
  const calls: unknown[][] = [];
  const coins = [
    { txid: "a", vout: 0, amount: 0.001 }, // a pending deposit
    { txid: "a", vout: 1, amount: 0.5 }, // change, or a house float, or dust: no open deposit
    { txid: "b", vout: 2, amount: 0.00000123 }, // a pending deposit
  ];
  const node = { call: async <T>(method: string, params: unknown[] = []) => (calls.push([method, ...params]), coins as T) };
  const open = new Set(["a:0", "b:2"]);
  t.equal(await maturingDeposits(3, node, (o) => open.has(o)), 100_123n);
  t.same(calls, [["listunspent", 1, 2]], "coins at least one and at most target − 1 deep");
  t.equal(await maturingDeposits(1, node, () => true), 0n, "a target of 1: nothing is confirmed and pending");
  t.equal(calls.length, 1, "and the node is not asked");
});
