// The console's small parts without a browser: escaping, exact BTC formatting, sessions (expiry, certificate
// binding, single-use challenges, a fresh id after login), enrollment tokens, and the SVG charts.
import t from "tap";
import { isRefusal } from "../../src/domain/refusals.ts";
import { Sessions, sameToken } from "../../src/edges/admin/console/session.ts";
import { btc, esc, html } from "../../src/edges/admin/console/html.ts";
import { chart, charts } from "../../src/edges/admin/console/charts.ts";
import { confirmForm, incidentAlert, reasonForm, storeAlert } from "../../src/edges/admin/console/forms.ts";
import { ACTIONS, fill } from "../../src/edges/admin/console/actions.ts";
import { OperatorStore, hashToken, type Operator } from "../../src/edges/admin/operators.ts";

t.test("html escapes every interpolation; btc formats exactly", async (t) => {
  const evil = `<script>alert("x")</script>&'`;
  t.equal(esc(evil), "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;");
  t.equal(html`<p title="${evil}">${evil}${[html`<b>${evil}</b>`]}</p>`.text, `<p title="${esc(evil)}">${esc(evil)}<b>${esc(evil)}</b></p>`);
  t.equal(btc("123456789"), "1.23456789 BTC");
  t.equal(btc("5"), "0.00000005 BTC");
  t.equal(btc("-2100000000000000"), "−21000000.00000000 BTC");
  t.equal(btc(null), "—");
});

t.test("sessions: bound to a certificate, absolute expiry, single-use challenges, a new id on login", async (t) => {
  let now = 1_000_000;
  const s = new Sessions(60_000, () => now);
  const a = s.open("fp-alice", "alice");
  t.equal(s.find(a.id, "fp-alice"), a);
  t.equal(s.find(a.id, "fp-bob"), undefined, "another certificate cannot use it");
  t.equal(s.find("made-up", "fp-alice"), undefined);
  s.setChallenge(a, "login", "c1");
  t.equal(s.takeChallenge(a, "enroll"), undefined, "a challenge answers its own ceremony only…");
  s.setChallenge(a, "login", "c2");
  t.equal(s.takeChallenge(a, "login"), "c2");
  t.equal(s.takeChallenge(a, "login"), undefined, "…once");
  s.setChallenge(a, "login", "c3");
  now += 5 * 60_000 + 1;
  t.equal(s.takeChallenge(a, "login"), undefined, "and not after five minutes");
  const b = s.promote(a, "key1");
  t.not(b.id, a.id);
  t.not(b.csrf, a.csrf);
  t.ok(b.authenticated);
  t.equal(s.find(a.id, "fp-alice"), undefined, "the pre-login id is gone");
  now += 60_000;
  t.equal(s.find(b.id, "fp-alice"), undefined, "expired after the TTL, whatever the activity");
  const c = s.open("fp-alice", "alice", true, "key1"), d = s.open("fp-alice", "alice", true, "key2");
  s.closeAllOf("fp-alice", "key1");
  t.equal(s.find(c.id, "fp-alice"), undefined, "a removed key's sessions end");
  t.equal(s.find(d.id, "fp-alice"), d, "other keys' sessions stay");
  t.ok(sameToken(d.csrf, d.csrf));
  t.notOk(sameToken(undefined, d.csrf));
  t.notOk(sameToken(d.csrf.slice(1), d.csrf));
});

t.test("enrollment tokens: hashed, one operator, expiring, replaced by a newer one", async (t) => {
  const data = new Map<string, unknown>();
  const store = {
    get: async (_ns: string, k: string) => data.get(k),
    put: async (_ns: string, k: string, v: unknown) => void data.set(k, v),
    iterate: async function* () {
      for (const e of data) yield e;
    },
  };
  const ops = new OperatorStore(store as never);
  const op: Operator = { name: "alice", fingerprint: "aa", totpSecret: "X", lastStep: 0, addedAt: 0 };
  await ops.put(op);
  const first = await ops.issueEnrollment("aa", { ttlMs: 60_000, now: 0 });
  const stored = (await ops.get("aa"))!;
  t.equal(stored.enroll!.tokenHash, hashToken(first.token));
  t.notMatch(JSON.stringify(stored), first.token, "the token itself is not stored");
  t.equal(ops.checkEnrollment(stored, first.token, 59_999), undefined);
  t.match(ops.checkEnrollment(stored, first.token, 60_001), /expired/);
  t.match(ops.checkEnrollment(stored, "x".repeat(43), 1), /not valid/);
  const second = await ops.issueEnrollment("aa", { ttlMs: 60_000, now: 0 });
  t.match(ops.checkEnrollment((await ops.get("aa"))!, first.token, 1), /not valid/, "a newer link replaces the old one");
  // Two requests holding the same link at once (both checked it before either registered): one key is added.
  const [a, b] = await Promise.all(["k1", "k2"].map((id) => ops.addKey("aa", { id, publicKey: "p", counter: 0, label: "key", addedAt: 1 }, { enrollment: { token: second.token, now: 1 } })));
  t.notOk(isRefusal(a), "the first registration through the link is taken");
  t.match(b, { code: "not_allowed", message: /not valid/ }, "the second, racing it, is refused");
  t.same((await ops.get("aa"))!.keys!.map((k) => k.id), ["k1"]);
  t.match(ops.checkEnrollment((await ops.get("aa"))!, second.token, 1), /not valid/, "consumed by a registration");
  // Two removals racing for the last two keys: one stays.
  await ops.addKey("aa", { id: "k2", publicKey: "p", counter: 0, label: "key 2", addedAt: 2 });
  const removed = await Promise.all(["k1", "k2"].map((id) => ops.removeKey("aa", id)));
  t.equal(removed.filter((r) => isRefusal(r)).length, 1, "one removal is refused: it would leave no key");
  t.equal((await ops.get("aa"))!.keys!.length, 1);
});

t.test("charts: SVG only, labelled, numbers escaped, bounded by the data", async (t) => {
  const svg = chart({ id: "c", title: `a <b> title`, unit: "ms", labels: ["00:00", "01:00"], kind: "line", series: [{ name: "x", cls: "s1", values: [1.5, null] }] }).text;
  t.match(svg, /<svg [^>]*role="img"/);
  t.match(svg, /a &lt;b&gt; title/);
  t.notMatch(svg, /<script|style=/, "no script, no inline style (CSP)");
  t.equal((svg.match(/<circle/g) ?? []).length, 1, "a point per value, none for a gap");
  const hour = 3_600_000;
  const all = charts({
    sampleMs: 60_000,
    hours: Array.from({ length: 24 }, (_, i) => ({ start: i * hour, deposits: i === 23 ? 3 : 0, payouts: i === 23 ? 2 : 0 })),
    samples: [
      { at: 0, resident: 0, activations: 0, passivations: 0, journalBatches: 0, commitMs: null },
      { at: 60_000, resident: 4, activations: 5, passivations: 1, journalBatches: 9, commitMs: 2.5 },
    ],
  }).text;
  t.equal((all.match(/<svg/g) ?? []).length, 3);
  t.match(all, /deposits: 24 points, total 3/);
  t.match(all, /activations: 1 points, total 5/, "activations are counted between samples");
  t.match(all, /commit latency: 1 points, total 2\.50/);
});

t.test("action forms: a required reason and the CSRF token, a confirmation that carries both, escaped", async (t) => {
  const evil = `"><script>x</script>`;
  const start = reasonForm({ action: "/console/backup", csrf: "tok", button: "Back up now…" }).text;
  t.match(start, /<form method="post" action="\/console\/backup\/review"/, "the first step only leads to the review");
  t.match(start, /<input type="hidden" name="_csrf" value="tok">/);
  t.match(start, /<input name="reason" minlength="3" maxlength="500" required>/);
  t.notMatch(start, /name="confirm"/, "the first step is never a confirmation");
  const end = confirmForm({ action: "/console/drain/on", csrf: "tok", reason: evil, button: "Confirm", cancel: "/console/" }).text;
  t.match(end, /action="\/console\/drain\/on"/);
  t.match(end, /name="confirm" value="yes"/);
  t.match(end, /name="_csrf" value="tok"/);
  t.ok(end.includes(`name="reason" value="${esc(evil)}"`), "the reason travels on, escaped");
  t.notMatch(end, /<script>/);
  t.equal(fill("/console/wallets/:userKey/freeze", { userKey: "u_a b" }), "/console/wallets/u_a%20b/freeze");
});

t.test("every console action uses the JSON API's audit action and target", async (t) => {
  const audited = ACTIONS.map((a) => [a.path, a.audit({ userKey: "u_k", mode: "on", id: "wd_k" }), a.path.includes(":mode") ? a.audit({ userKey: "u_k", mode: "off", id: "wd_k" }) : undefined]);
  t.same(audited, [
    ["/console/wallets/:userKey/freeze", { action: "freeze", target: "u_k" }, undefined],
    ["/console/wallets/:userKey/unfreeze", { action: "unfreeze", target: "u_k" }, undefined],
    ["/console/payouts/queued/:id/unqueue", { action: "unqueue-payout", target: "wd_k" }, undefined],
    ["/console/payouts/pause", { action: "pause-payouts", target: "payouts" }, undefined],
    ["/console/payouts/resume", { action: "resume-payouts", target: "payouts" }, undefined],
    ["/console/drain/:mode", { action: "drain-on", target: "engine" }, { action: "drain-off", target: "engine" }],
    ["/console/backup", { action: "backup", target: "store" }, undefined],
  ]);
});

t.test("restore incident: a visible alert with the unknown spends and the frozen wallets' count; nothing without one", async (t) => {
  t.equal(incidentAlert(null).text, "");
  t.equal(incidentAlert(undefined).text, "");
  const box = incidentAlert({ at: 0, archive: "<snap>", unknownSpends: [{ txid: "aa11", confirmations: 2, outputs: [] }, { txid: "bb22", confirmations: 1, outputs: [] }], frozen: ["u_one", "u_two", "u_three"] }).text;
  t.match(box, /class="alert" role="alert"/);
  t.match(box, /<strong>2 spend\(s\)<\/strong>/);
  t.match(box, /<strong>3 wallet\(s\)<\/strong>/);
  t.match(box, /aa11.*bb22/s);
  t.match(box, /href="\/console\/wallets\?userKey=u_two"/);
  t.match(box, /&lt;snap&gt;/, "escaped");
  const many = incidentAlert({ unknownSpends: [], frozen: Array.from({ length: 60 }, (_, i) => `u_w${i}`) }).text;
  t.match(many, /60 wallet\(s\)/);
  t.match(many, /and 10 more/, "a long list is cut, the count is not");
});

t.test("a store that cannot write: a visible alert with the error, escaped; nothing while it writes", async (t) => {
  t.equal(storeAlert({ failing: false, failures: 3 }).text, "");
  t.equal(storeAlert(undefined).text, "");
  const box = storeAlert({ failing: true, failures: 2, lastError: { at: 0, message: "IO error: <disk> No space left on device" } }).text;
  t.match(box, /class="alert" role="alert" id="store-failing"/);
  t.match(box, /&lt;disk&gt; No space left on device/, "the error, escaped");
  t.match(box, /2 failed write\(s\)/);
});
