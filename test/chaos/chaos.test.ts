// The short crash-injection run in CI: 20 SIGKILLs of a real engine process under a mixed workload, the money
// invariants checked from its store after every kill (payouts never left paused); at the end every withdrawal must
// be paid and settled within a few blocks, and after a clean stop the newest backup snapshot + journal segments are
// restored and must pass the same checks and match the store record for record.
// `npm run chaos -- --kills 1000` is the long version.
import t from "tap";
import { chaos } from "../../bench/chaos.ts";

t.test("20 kills of the engine process: no invariant violated, no acknowledged command lost", async (t) => {
  const seed = Number(process.env.CHAOS_SEED ?? 20261124);
  const r = await chaos({ kills: Number(process.env.CHAOS_KILLS ?? 20), seed });
  t.equal(r.kills, Number(process.env.CHAOS_KILLS ?? 20));
  t.ok(r.acknowledged > 100, `seed ${seed}: ${r.acknowledged} acknowledged commands, ${r.refused} refusals, ${r.killsDuringPayout} kills with a payout signed or broadcast`);
  t.same(r.violations, [], "no violations (the restore drill's included)");
  t.equal(r.restoreLag, 0, "the restore drill ran, and the backup held the store's last commit");
  t.ok(r.pruned > 0, `${r.pruned} of ${r.withdrawals} withdrawals' payouts left the payout book under the kills (its retention is 5 here)`);
  t.ok(r.chequesPruned > 0, `${r.chequesPruned} paid cheques left the cheque book under the kills (its retention is 3 here)`);
});
