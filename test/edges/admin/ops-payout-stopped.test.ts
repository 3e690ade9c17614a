// The payout actor stopped after repeated crashes (its crash budget spent): found by an operator review, /health said
// ok, GET /payouts answered 500 "this request may have been applied in part or in full" (for a read), and a resume after
// a pause answered 500. Now /health and the metrics say it stopped, and what needs it answers 503 with what to do. On a
// real regtest engine; the crashes come from its journal refusing the payout book's writes.
import t from "tap";
import { startTestEngine } from "../../support/engine.ts";
import { enginePort } from "../../../src/edges/admin/engine-port.ts";
import type { AdminPort } from "../../../src/edges/admin/port.ts";
import type { Withdrawal } from "../../../src/actors/wallet.messages.ts";
import { PAYOUT_JOURNAL_KEY } from "../../../src/actors/payout.ts";
import { createLogger } from "../../../src/log.ts";
import { opsEdge } from "./ops-support.ts";

t.test("a stopped payout actor: /health not ok and says so, a metric, 503 with what to do for what needs it", async (t) => {
  const lines: Array<{ alert?: boolean; msg: string }> = [];
  const te = await startTestEngine({}, { log: createLogger({ level: "warn", destination: { write: (l: string) => void lines.push(JSON.parse(l)) } }) });
  t.teardown(() => te.stop());
  const h = await opsEdge(t, { config: te.config, store: te.engine.storage.store, port: enginePort(te.engine) });
  t.match(JSON.parse((await h.api("/health")).body), { singletons: { payouts: "running", action: null } }, "running at first");

  // Every write of the payout book fails: each submit crashes the actor, and the sixth within a minute stops it.
  const journal = te.engine.storage.journal;
  const persist = journal.persist.bind(journal);
  journal.persist = async (ev) => {
    if (ev.key === PAYOUT_JOURNAL_KEY) throw new Error("simulated: the payout book's journal write fails");
    return persist(ev);
  };
  const w = { address: await te.node.outsideAddress(), amount: 100_000n, quotedFee: 1_000n } as Withdrawal;
  for (let i = 0; i < 6; i++) await te.engine.payouts.submit("u_opsstopped_user1", `wd_opsstopped_${i}`, w);
  journal.persist = persist;
  t.equal(te.engine.payouts.running, false, "the payout actor stopped");
  t.ok(lines.some((l) => l.alert && /payout actor stopped after repeated crashes.*restart/.test(l.msg)), "alerted, with what to do");

  const health = JSON.parse((await h.api("/health")).body);
  t.equal(health.ok, false, "/health is not ok");
  t.match(health.singletons, { payouts: "stopped", action: /the payout actor has stopped after repeated crashes: restart the engine \(runigun start/ });
  t.match((await h.api("/metrics")).body, /\nrunigun_payout_actor_stopped 1\n/, "a gauge to alert on");

  const list = await h.api("/payouts?status=queued");
  t.equal(list.status, 503, "a read that needs the actor");
  t.match(JSON.parse(list.body).error, /^the payout actor has stopped after repeated crashes: restart the engine/);
  t.notMatch(list.body, /applied in part/, "never said of a read");
  t.equal((await h.api("/solvency")).status, 503, "the solvency check reads the payout book");

  const pause = await h.api("/payouts/pause", { method: "POST", body: { reason: "the payout actor stopped" } });
  t.equal(pause.status, 200, "a pause needs no actor");
  for (const [path, body] of [["/payouts/resume", { reason: "try again" }], ["/payouts/unqueue", { id: "wd_opsstopped_0", reason: "give it back" }], ["/payouts/b1/bump", { feeRateSatVb: 5, reason: "fees rose" }]] as const) {
    const r = await h.api(path, { method: "POST", body });
    t.equal(r.status, 503, `${path}: ${r.body}`);
    t.match(JSON.parse(r.body).error, /the payout actor has stopped.*restart the engine/);
  }
  t.match((await h.audit.list(1))[0], { action: "bump-fee:outcome", outcome: /^failed: the payout actor has stopped/ }, "on file as failed, with why");
  const console = await h.page("/console/");
  t.equal(console.status, 200, "the overview still answers");
  t.match(console.body, /<section class="alert" role="alert" id="actor-stopped"><h2>An actor has stopped<\/h2><p>the payout actor has stopped/, "and says it first");
});

t.test("a read that fails for another reason answers 500 without claiming it changed anything", async (t) => {
  const te = await startTestEngine();
  t.teardown(() => te.stop());
  const port: AdminPort = { ...enginePort(te.engine), node: async () => { throw new Error("simulated failure of a read"); } };
  const h = await opsEdge(t, { config: te.config, store: te.engine.storage.store, port });
  const r = await h.api("/node");
  t.equal(r.status, 500);
  t.match(JSON.parse(r.body).error, /^internal error: this read changed nothing/);
  t.notMatch(r.body, /applied in part/);
});
