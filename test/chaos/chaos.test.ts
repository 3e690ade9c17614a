// The short crash-injection run in CI: 20 SIGKILLs of a real engine process under a mixed workload, the money
// invariants checked from its store after every kill (payouts never left paused, each deposit credited at most once,
// acknowledged cheques and claims in the cheque book); at the end every acknowledged withdrawal must be sent and paid
// its amount exactly and every deposit credited once within a few blocks, the books must equal the node to the
// satoshi, and after a clean stop the newest backup snapshot + journal segments are restored and must pass the same
// checks and match the store record for record. An engine that exits or hangs by itself is a violation, not a kill.
// `npm run chaos -- --kills 1000` is the long version.
import t from "tap";
import { chaos, EngineProcess } from "../../bench/chaos.ts";

// This file's own time limit (tap's runner takes it from the root test): 20 rounds of an engine process's start, burst
// and kill take 2.5–4 minutes beside the other test files tap runs at the same time, near the limit for a file
// (package.json, 240 s), which cut it off once.
t.setTimeout(600_000);

t.test("the harness tells its own kills from an engine that exits by itself", async (t) => {
  // Stand-ins for the engine, real processes: one that waits to be killed, one that exits by itself once ready.
  const waits = `process.stdout.write("engine ready\\n"); setInterval(() => undefined, 1000);`;
  const exits = `process.stdout.write("engine ready\\n"); process.stdin.resume(); setTimeout(() => process.exit(3), 20);`;
  const unexpected: string[] = [];
  const o = { ready: /engine ready/, timeoutMs: 10_000 };
  const live = await EngineProcess.start(["-e", waits], process.env, unexpected, o);
  t.equal(await live.kill(), true, "a SIGKILL to a live engine is delivered");
  t.equal(await live.kill(), true, "asked again, the same kill");
  t.same(unexpected, [], "our kill is not reported");
  const dying = await EngineProcess.start(["-e", exits], process.env, unexpected, o);
  await dying.exited;
  t.equal(await dying.kill(), false, "an engine that already exited is not counted as killed");
  t.equal(unexpected.length, 1, "its exit is reported");
  t.match(unexpected[0], /exited by itself \(exit code 3\)/, "with its exit code");
  const hangs = await EngineProcess.start(["-e", "setInterval(() => undefined, 1000)"], process.env, unexpected, { ...o, timeoutMs: 300 }).catch((e: Error) => e);
  t.match(String(hangs), /not ready within 0.3 s/, "an engine that never gets ready is an error, not a wait forever");
  const stops = await EngineProcess.start(["-e", `${waits} process.on("SIGTERM", () => process.exit(1));`], process.env, unexpected, o);
  t.match(await stops.stop(10_000), { clean: false, why: /exit code 1 after SIGTERM/ }, "a stop that exits non-zero is not clean");
  t.equal(unexpected.length, 1, "nor reported as an exit of its own");
});

t.test("20 kills of the engine process: no invariant violated, no acknowledged command lost", async (t) => {
  const seed = Number(process.env.CHAOS_SEED ?? 20261124);
  const kills = Number(process.env.CHAOS_KILLS ?? 20);
  const r = await chaos({ kills, seed });
  t.same(r.violations, [], "no violations (the restore drill's, exits and hangs of the engine's own included)");
  // Counted from the exits: a round whose kill found the engine already gone does not count.
  t.equal(r.kills, kills, `${r.kills} of ${kills} SIGKILLs ended a live engine`);
  t.equal(r.hangs, 0, "no burst ended on the relay's timeout");
  t.ok(r.acknowledged > 100, `seed ${seed}: ${r.acknowledged} acknowledged commands, ${r.refused} refusals`);
  t.equal(r.restoreLag, 0, "the restore drill ran, and the backup held the store's last commit");
  t.ok(r.pruned > 0, `${r.pruned} of ${r.withdrawals} withdrawals' payouts left the payout book under the kills (its retention is 5 here)`);
  t.ok(r.chequesPruned > 0, `${r.chequesPruned} paid cheques left the cheque book under the kills (its retention is 3 here)`);
  t.ok(r.deposits > 12, `${r.deposits} deposits made (12 at the start), each credited once`);
  t.equal(r.housePaid, 0n, "the payouts' fees were their users' shares: the books equal the node to the satoshi");
  // What the run is for: these happened as scheduled, not just reported.
  t.equal(r.bitcoindKills, 1, "bitcoind was killed and restarted once, mid-burst");
  t.same(r.rotation, { interrupted: true, resumed: true }, "the key rotation was killed part-way and resumed");
  // Five of the twenty rounds aim their kill at a new payout batch's broadcast, after its signed record.
  t.ok(r.killsSignedNotBroadcast > 0, `${r.killsSignedNotBroadcast} kills between a payout's signed record and its broadcast (${r.aimedKills} aimed kills; ${r.killsWithPayoutInFlight} kills with a payout of the round unconfirmed)`);
});
