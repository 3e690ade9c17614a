// Freeze and unfreeze as an operator sees them. Found by an operator review: a mistyped user key answered the user's own
// text ("You have no wallet yet. Send /start…"), and a second freeze with a new reason answered 200 {frozen: true} while
// the wallet silently kept the first reason. On a real regtest engine.
import t from "tap";
import { startTestEngine } from "../../support/engine.ts";
import { enginePort } from "../../../src/edges/admin/engine-port.ts";
import { isRefusal } from "../../../src/domain/refusals.ts";
import { opsEdge } from "./ops-support.ts";

t.test("freeze: 404 for a key with no wallet; a repeat says the first reason stands; unfreeze alike", async (t) => {
  const te = await startTestEngine();
  t.teardown(() => te.stop());
  const h = await opsEdge(t, { config: te.config, store: te.engine.storage.store, port: enginePort(te.engine) });
  const ghost = "u_opsfreeze_typo01";
  for (const action of ["freeze", "unfreeze"]) {
    const r = await h.api(`/wallets/${ghost}/${action}`, { method: "POST", body: { reason: "user reported theft" } });
    t.equal(r.status, 404, `${action} of an unknown key`);
    t.same(JSON.parse(r.body), { error: `no wallet ${ghost}`, code: "not_found" });
    t.match((await h.audit.list(1))[0], { action: `${action}:outcome`, target: ghost, outcome: `refused: no wallet ${ghost}` });
  }
  t.equal((await h.api(`/wallets/${ghost}`)).status, 404, "and no wallet was made for it");

  const key = "u_opsfreeze_user01";
  await te.engine.relay.start(key);
  const first = await h.api(`/wallets/${key}/freeze`, { method: "POST", body: { reason: "first reason" } });
  t.equal(first.status, 200, first.body);
  t.same(JSON.parse(first.body), { frozen: true, reason: "first reason", by: "alice" });
  const second = await h.api(`/wallets/${key}/freeze`, { method: "POST", body: { reason: "second reason" } });
  t.equal(second.status, 200, second.body);
  t.match(JSON.parse(second.body), { frozen: true, already: true, reason: "first reason", by: "alice", at: Number });
  const b = await te.engine.relay.balance(key);
  t.equal(!isRefusal(b) && b.frozen, "first reason", "the wallet keeps the first reason");
  // The console says which reason stands.
  const shown = await h.form(`/console/wallets/${key}/freeze`, { reason: "third reason", confirm: "yes" });
  t.equal(shown.status, 200, shown.body);
  t.match(shown.body, /was already frozen, by alice: first reason\. That reason stands\./);

  const un = await h.api(`/wallets/${key}/unfreeze`, { method: "POST", body: { reason: "checked" } });
  t.same([un.status, JSON.parse(un.body)], [200, { frozen: false }]);
  const unAgain = await h.api(`/wallets/${key}/unfreeze`, { method: "POST", body: { reason: "checked" } });
  t.same([unAgain.status, JSON.parse(unAgain.body)], [200, { frozen: false, already: true }]);
});
