// The short crash-injection run in CI: 20 SIGKILLs of a real engine process under a mixed workload, the money
// invariants checked from its store after every kill. `npm run chaos -- --kills 1000` is the long version.
import t from "tap";
import { chaos } from "../../bench/chaos.ts";

t.test("20 kills of the engine process: no invariant violated, no acknowledged command lost", async (t) => {
  const seed = Number(process.env.CHAOS_SEED ?? 20261124);
  const r = await chaos({ kills: Number(process.env.CHAOS_KILLS ?? 20), seed });
  t.equal(r.kills, Number(process.env.CHAOS_KILLS ?? 20));
  t.ok(r.acknowledged > 100, `seed ${seed}: ${r.acknowledged} acknowledged commands, ${r.refused} refusals`);
  t.same(r.violations, [], "no violations");
});
