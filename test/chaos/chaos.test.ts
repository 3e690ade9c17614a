// The short crash-injection run in CI: 20 SIGKILLs of a real engine process under a mixed workload, the money
// invariants checked from its store after every kill (payouts never left paused, each deposit credited at most once,
// acknowledged cheques and claims in the cheque book); at the end every withdrawal must be paid and settled and every
// deposit credited once within a few blocks, the books must equal the node to the satoshi, and after a clean stop the
// newest backup snapshot + journal segments are restored and must pass the same checks and match the store record
// for record. `npm run chaos -- --kills 1000` is the long version.
import t from "tap";
import { chaos } from "../../bench/chaos.ts";

t.test("20 kills of the engine process: no invariant violated, no acknowledged command lost", async (t) => {
  const seed = Number(process.env.CHAOS_SEED ?? 20261124);
  const kills = Number(process.env.CHAOS_KILLS ?? 20);
  const r = await chaos({ kills, seed });
  t.equal(r.kills, kills);
  t.ok(r.acknowledged > 100, `seed ${seed}: ${r.acknowledged} acknowledged commands, ${r.refused} refusals`);
  t.same(r.violations, [], "no violations (the restore drill's included)");
  t.equal(r.restoreLag, 0, "the restore drill ran, and the backup held the store's last commit");
  t.ok(r.pruned > 0, `${r.pruned} of ${r.withdrawals} withdrawals' payouts left the payout book under the kills (its retention is 5 here)`);
  t.ok(r.chequesPruned > 0, `${r.chequesPruned} paid cheques left the cheque book under the kills (its retention is 3 here)`);
  t.ok(r.deposits > 12, `${r.deposits} deposits made (12 at the start), each credited once`);
  t.equal(r.housePaid, 0n, "the payouts' fees were their users' shares: the books equal the node to the satoshi");
  // What the run is for: these happened as scheduled, not just reported.
  t.equal(r.bitcoindKills, 1, "bitcoind was killed and restarted once, mid-burst");
  t.same(r.rotation, { interrupted: true, resumed: true }, "the key rotation was killed part-way and resumed");
  // Five of the twenty rounds kill right after a withdrawal is acknowledged, while its payout is being signed.
  t.ok(r.killsDuringPayout > 0, `${r.killsDuringPayout} kills came while a payout was being signed or broadcast (${r.killsSignedNotBroadcast} signed, not yet broadcast)`);
});
