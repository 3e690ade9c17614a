// An operator's adjustment of a wallet's books through the admin edge (POST /wallets/:userKey/adjust), and the release
// of cheques held after a lossy restore (POST /cheques/release-held), as an operator drives them: over real TLS with a
// TOTP code, on a real regtest engine. The wallet's side (exactly once, sums, refusals) is test/actors/adjust-*.
import t from "tap";
import { startTestEngine } from "../../support/engine.ts";
import { enginePort } from "../../../src/edges/admin/engine-port.ts";
import { isRefusal } from "../../../src/domain/refusals.ts";
import { opsEdge } from "./ops-support.ts";

t.test("adjust: sign and unit required, an over-debit refused with what is available, once per id, audited; release-held answers", async (t) => {
  const te = await startTestEngine();
  t.teardown(() => te.stop());
  const h = await opsEdge(t, { config: te.config, store: te.engine.storage.store, port: enginePort(te.engine) });
  const key = "u_opsadjust_user1";
  await te.engine.relay.start(key);
  await te.engine.registry.send(key, "receive_transfer", { id: "seed", from: "u_bank", amount: 50_000n });
  const adjust = (body: Record<string, unknown>, who = key) => h.api(`/wallets/${who}/adjust`, { method: "POST", body });
  const available = async () => {
    const b = await te.engine.relay.balance(key);
    if (isRefusal(b)) throw new Error(b.message);
    return b.available;
  };

  for (const amount of ["1000", "-1000", "1000 sats"]) {
    const r = await adjust({ id: "adj-bad", amount, reason: "lost payout after restore" });
    t.equal(r.status, 422, `"${amount}": a sign and a unit are needed (${r.body})`);
  }
  t.equal((await adjust({ id: "adj-1", amount: "-1000 sats", reason: "x" })).status, 400, "a reason of a few characters at least");
  const ghost = await adjust({ id: "adj-1", amount: "-1000 sats", reason: "lost payout after restore" }, "u_opsadjust_typo1");
  t.equal(ghost.status, 404, "a key with no wallet");

  const over = await adjust({ id: "adj-1", amount: "-60000 sats", reason: "lost payout after restore" });
  t.equal(over.status, 409, over.body);
  t.match(JSON.parse(over.body).error, /Available is 0\.0005 BTC \(50,000 sats\)/);
  t.equal(await available(), 50_000n, "a refusal changes nothing");

  const done = await adjust({ id: "adj-1", amount: "-20000 sats", reason: "lost payout after restore" });
  t.equal(done.status, 200, done.body);
  t.match(JSON.parse(done.body), { repeated: false });
  t.equal(await available(), 30_000n, "debited");
  const again = await adjust({ id: "adj-1", amount: "-20000 sats", reason: "lost payout after restore" });
  t.match([again.status, JSON.parse(again.body)], [200, { repeated: true }], "the same adjustment again is a repeat");
  t.equal(await available(), 30_000n, "debited once");
  const other = await adjust({ id: "adj-1", amount: "-1000 sats", reason: "lost payout after restore" });
  t.equal(other.status, 409, "the same id with another amount is refused");
  const entries = await h.audit.list(20);
  t.ok(entries.some((e) => e.action === "adjust" && e.target === key && /adj-1: -0\.0002 BTC: lost payout after restore/.test(String(e.reason))), "the audit log has who, what and why");
  t.notMatch(JSON.stringify(h.lines), /-20000|0\.0002/, "the edge's log has no amount beside the user key");

  const release = await h.api("/cheques/release-held", { method: "POST", body: { reason: "nothing held" } });
  t.same([release.status, JSON.parse(release.body)], [200, { released: 0 }], "nothing held: nothing released");
  const health = JSON.parse((await h.api("/health")).body);
  t.match(health, { chequesHeld: null, lastRestoreIncident: null }, "health says no cheques are held and no incident was resolved");
});
