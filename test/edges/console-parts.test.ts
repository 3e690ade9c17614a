// The console's small parts without a browser: escaping, exact BTC formatting, sessions (expiry, certificate
// binding, single-use challenges, a fresh id after login, step-ups), enrollment tokens, and the SVG charts. Then its
// routes for operators and an ambiguous payout's adoption, driven over mutual TLS without a browser, with a security
// key in software (an ES256 key answering WebAuthn's ceremonies as an authenticator would) for the step-ups.
import t, { type Test } from "tap";
import { join } from "node:path";
import { connect } from "node:tls";
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from "node:crypto";
import { isRefusal, refuse } from "../../src/domain/refusals.ts";
import { STEP_UP_MAX_AGE_MS, Sessions, sameToken, type Session } from "../../src/edges/admin/console/session.ts";
import { btc, esc, html } from "../../src/edges/admin/console/html.ts";
import { chart, charts } from "../../src/edges/admin/console/charts.ts";
import { confirmForm, incidentAlert, reasonForm, storeAlert } from "../../src/edges/admin/console/forms.ts";
import { ACTIONS, fill } from "../../src/edges/admin/console/actions.ts";
import { OperatorStore, addOperator, hashToken, totpFor, type Operator } from "../../src/edges/admin/operators.ts";
import { AuditLog, type AuditEntry } from "../../src/edges/admin/audit.ts";
import { buildAdmin, listenAdmin } from "../../src/edges/admin/server.ts";
import type { AdminPort, Json } from "../../src/edges/admin/port.ts";
import { EncryptedStore } from "../../src/store/db.ts";
import { generateKeyRingFile } from "../../src/store/keyring.ts";
import { ensurePki, readPem, type Pem } from "../../src/tls/certs.ts";
import { MAX_CONSOLE_SESSION_TTL_MS, loadConfig } from "../../src/config.ts";
import { createLogger } from "../../src/log.ts";
import { mtls } from "../support/https.ts";

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

t.test("step-ups: for one path, on one session, fresh for two minutes, used once; their challenges say what they are for", async (t) => {
  let now = 1_000_000;
  const s = new Sessions(15 * 60_000, () => now);
  const a = s.open("fp-alice", "alice", true, "key1"), b = s.open("fp-alice", "alice", true, "key1");
  s.setChallenge(a, "step-up", "c1", "/console/drain/on");
  t.equal(s.takeChallenge(a, "login"), undefined, "a step-up's challenge is no sign-in's…");
  s.setChallenge(a, "login", "c2");
  t.equal(s.takeStepUpChallenge(a), undefined, "…nor a sign-in's a step-up's");
  s.setChallenge(a, "step-up", "c3", "/console/drain/on");
  t.same(s.takeStepUpChallenge(a), { value: "c3", for: "/console/drain/on" }, "with what it is for");
  t.equal(s.takeStepUpChallenge(a), undefined, "once");
  s.setChallenge(a, "step-up", "c4", "/console/drain/on");
  now += STEP_UP_MAX_AGE_MS + 1;
  t.equal(s.takeStepUpChallenge(a), undefined, "and waits two minutes for the touch, no more");

  s.recordStepUp(a, "key2", "/console/drain/on");
  t.equal(s.peekStepUp(b, "/console/drain/on"), undefined, "another session of the same operator has none");
  t.equal(s.peekStepUp(a, "/console/drain/off"), undefined, "nothing for another path");
  t.match(s.peekStepUp(a, "/console/drain/on"), { keyId: "key2", for: "/console/drain/on" }, "a look leaves it");
  t.match(s.takeStepUp(a, "/console/drain/on"), { keyId: "key2" });
  t.equal(s.takeStepUp(a, "/console/drain/on"), undefined, "one touch, one action");
  s.recordStepUp(a, "key2", "/console/drain/on");
  t.equal(s.takeStepUp(a, "/console/drain/off"), undefined, "asked for another path…");
  t.equal(s.takeStepUp(a, "/console/drain/on"), undefined, "…it is gone all the same");
  s.recordStepUp(a, "key2", "/console/drain/on");
  now += STEP_UP_MAX_AGE_MS;
  t.ok(s.peekStepUp(a, "/console/drain/on"), "two minutes old: still fresh");
  now += 1;
  t.equal(s.takeStepUp(a, "/console/drain/on"), undefined, "older: not");
  s.recordStepUp(a, "key2", "/console/drain/on");
  const c = s.promote(a, "key2");
  t.equal(c.stepUp, undefined, "a new session starts without one");
});

t.test("admin.console.sessionTtlMs: at most one hour, refused above it with the limit named", async (t) => {
  t.equal(MAX_CONSOLE_SESSION_TTL_MS, 3_600_000);
  t.equal(loadConfig({ env: {} }).admin.console.sessionTtlMs, 900_000, "15 minutes by default");
  t.equal(loadConfig({ env: { RUNIGUN_ADMIN_CONSOLE_SESSION_TTL_MS: "3600000" } }).admin.console.sessionTtlMs, 3_600_000, "one hour is allowed");
  t.throws(() => loadConfig({ env: { RUNIGUN_ADMIN_CONSOLE_SESSION_TTL_MS: "3600001" } }),
    /config key admin\.console\.sessionTtlMs: 3600001 is above the limit of 3600000 ms \(1 hour\).*RUNIGUN_ADMIN_CONSOLE_SESSION_TTL_MS/);
  t.throws(() => loadConfig({ env: {}, overrides: { admin: { console: { sessionTtlMs: 24 * 3_600_000 } } } }), /86400000 is above the limit of 3600000 ms \(1 hour\)/, "a day, allowed before, is not");
  t.throws(() => loadConfig({ env: { RUNIGUN_ADMIN_CONSOLE_SESSION_TTL_MS: "1000" } }), /config key admin\.console\.sessionTtlMs: /, "nor under a minute, as before");
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
  const p = { userKey: "u_k", mode: "on", id: "wd_k", name: "bob", txid: "ab".repeat(32) };
  const audited = ACTIONS.map((a) => [a.path, a.audit(p), a.path.includes(":mode") ? a.audit({ ...p, mode: "off" }) : undefined]);
  t.same(audited, [
    ["/console/wallets/:userKey/freeze", { action: "freeze", target: "u_k" }, undefined],
    ["/console/wallets/:userKey/unfreeze", { action: "unfreeze", target: "u_k" }, undefined],
    ["/console/payouts/queued/:id/unqueue", { action: "unqueue-payout", target: "wd_k" }, undefined],
    ["/console/payouts/pause", { action: "pause-payouts", target: "payouts" }, undefined],
    ["/console/payouts/resume", { action: "resume-payouts", target: "payouts" }, undefined],
    ["/console/drain/:mode", { action: "drain-on", target: "engine" }, { action: "drain-off", target: "engine" }],
    ["/console/backup", { action: "backup", target: "store" }, undefined],
    ["/console/operators/:name/revoke", { action: "revoke-operator", target: "bob" }, undefined],
    ["/console/payouts/ambiguous/:id/adopt", { action: "adopt-payout", target: "wd_k" }, undefined],
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

t.test("restore incident: each ambiguous payout gets an adoption form, its candidate spends to choose from or a txid field", async (t) => {
  const [t1, t2] = ["a1".repeat(32), "b2".repeat(32)];
  const incident = {
    unknownSpends: [{ txid: t1, confirmations: 3, outputs: [{ address: "bcrt1qalike", sats: "150000" }] }, { txid: t2, confirmations: 1, outputs: [{ address: "bcrt1qother", sats: "7" }] }],
    frozen: ["u_one", "u_two"], ambiguous: ["wd_one", "wd_two"],
  };
  const queued = { payouts: [{ id: "wd_one", userKey: "u_one", address: "bcrt1qalike", amount: "150000" }, { id: "wd_two", userKey: "u_two", address: "bcrt1qalike", amount: "150000" }] };
  t.match(incidentAlert(incident).text, /Ambiguous payouts \(2\).*wd_one.*wd_two/s, "listed without forms when the page gives no token");
  t.notMatch(incidentAlert(incident).text, /<form/);
  const box = incidentAlert(incident, { csrf: "tok", queued }).text;
  const forms = box.match(/<form[\s\S]*?<\/form>/g) ?? [];
  t.equal(forms.length, 2, "one form per ambiguous payout");
  t.match(forms[0], /action="\/console\/payouts\/ambiguous\/wd_one\/adopt\/review"/, "it leads to the review only");
  t.match(forms[0], /name="_csrf" value="tok"/);
  t.match(forms[0], /0\.00150000 BTC to <code>bcrt1qalike<\/code>/, "what the payout is");
  t.match(forms[0], new RegExp(`<select name="txid" required><option value="">choose its txid</option><option value="${t1}">`), "the spend paying its address and amount is offered");
  t.notMatch(forms[0], t2, "a spend with no output alike is not");
  t.match(forms[0], /<input name="reason" minlength="3" maxlength="500" required>/);
  t.notMatch(box, /name="confirm"/, "never a confirmation");
  // An incident that lists no spend to choose from: the txid is typed in, 64 hex digits.
  const bare = incidentAlert({ unknownSpends: [], frozen: [], ambiguous: ["wd_one"] }, { csrf: "tok" }).text;
  t.match(bare, /<input name="txid" required minlength="64" maxlength="64" pattern="\[0-9a-f\]\{64\}"/);
  t.match(bare, /not among the queued payouts now/);
});

// The console's routes without a browser: the real admin edge over mutual TLS on 127.0.0.1, a real encrypted store,
// sessions opened as a security key's login would open them (AdminOptions.consoleSessions), a fake engine.
const COOKIE = "__Host-runigun-console";
const TXID = "c3".repeat(32), OTHER_TXID = "d4".repeat(32);

/** A FIDO2 security key in software: an ES256 credential that signs what a real key would sign. */
interface SoftKey { id: string; key: KeyObject; cose: Buffer; counter: number }
const b64u = (b: Buffer) => b.toString("base64url");
const sha256 = (b: Buffer | string) => createHash("sha256").update(b).digest();
/** A CBOR byte string's or text string's header (major type 2 or 3), for lengths up to 65535. */
const cborHead = (major: number, n: number) => (n < 24 ? Buffer.from([(major << 5) | n]) : n < 256 ? Buffer.from([(major << 5) | 24, n]) : Buffer.from([(major << 5) | 25, n >> 8, n & 255]));
const cborText = (x: string) => Buffer.concat([cborHead(3, Buffer.byteLength(x)), Buffer.from(x)]);
const cborBytes = (b: Buffer) => Buffer.concat([cborHead(2, b.length), b]);

function softKey(): SoftKey {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk = publicKey.export({ format: "jwk" });
  // COSE_Key {1: 2 (EC2), 3: -7 (ES256), -1: 1 (P-256), -2: x, -3: y}
  const cose = Buffer.concat([Buffer.from([0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21]), cborBytes(Buffer.from(jwk.x!, "base64url")), Buffer.from([0x22]), cborBytes(Buffer.from(jwk.y!, "base64url"))]);
  return { id: b64u(randomBytes(16)), key: privateKey, cose, counter: 0 };
}

/** Authenticator data: the RP id's hash, the flags (user present; `uv`: verified), the counter, and what follows. */
function authData(k: SoftKey, uv: boolean, extra: Buffer = Buffer.alloc(0), at = false): Buffer {
  const counter = Buffer.alloc(4);
  counter.writeUInt32BE(++k.counter);
  return Buffer.concat([sha256("localhost"), Buffer.from([0x01 | (uv ? 0x04 : 0) | (at ? 0x40 : 0)]), counter, extra]);
}

/** The answer of `navigator.credentials.get()` with this key to a challenge. */
function assertion(k: SoftKey, challenge: string, origin: string, o: { uv?: boolean } = {}) {
  const data = authData(k, o.uv !== false);
  const clientData = Buffer.from(JSON.stringify({ type: "webauthn.get", challenge, origin, crossOrigin: false }));
  const signature = sign("sha256", Buffer.concat([data, sha256(clientData)]), k.key);
  return { id: k.id, rawId: k.id, type: "public-key", response: { authenticatorData: b64u(data), clientDataJSON: b64u(clientData), signature: b64u(signature) }, clientExtensionResults: {} };
}

/** The answer of `navigator.credentials.create()` with this (new) key, attestation "none". */
function attestation(k: SoftKey, challenge: string, origin: string) {
  const id = Buffer.from(k.id, "base64url");
  const data = authData(k, true, Buffer.concat([Buffer.alloc(16), Buffer.from([id.length >> 8, id.length & 255]), id, k.cose]), true);
  const attestationObject = Buffer.concat([Buffer.from([0xa3]), cborText("fmt"), cborText("none"), cborText("attStmt"), Buffer.from([0xa0]), cborText("authData"), cborBytes(data)]);
  const clientData = Buffer.from(JSON.stringify({ type: "webauthn.create", challenge, origin, crossOrigin: false }));
  return { id: k.id, rawId: k.id, type: "public-key", response: { clientDataJSON: b64u(clientData), attestationObject: b64u(attestationObject), transports: ["usb"] }, clientExtensionResults: {} };
}

async function edge(t: Test, names: string[], extra: Partial<AdminPort> = {}) {
  const dir = t.testdir();
  const store = await EncryptedStore.open({ path: join(dir, "store"), keyring: generateKeyRingFile(join(dir, "master.key")) });
  const pki = join(dir, "pki");
  await ensurePki(pki, { admin: "127.0.0.1", internal: "127.0.0.1" });
  const operators = new OperatorStore(store);
  const audit = new AuditLog(store);
  let now = Date.now();
  const ops: Record<string, { fp: string; cert: Pem; code: () => string; key: SoftKey }> = {};
  for (const name of names) {
    const added = await addOperator({ pkiDir: pki, store: operators, name, out: join(dir, `operator-${name}`) });
    const rec = (await operators.get(added.fingerprint))!;
    // Each operator has a security key registered (in software), as enrollment leaves it.
    const key = softKey();
    await operators.addKey(added.fingerprint, { id: key.id, publicKey: b64u(key.cose), counter: 0, label: `${name}'s key`, addedAt: 1 });
    ops[name] = { fp: added.fingerprint, cert: readPem(added.dir, name), code: () => totpFor(rec).generate({ timestamp: (now += 30_000) }), key };
  }
  // A restore incident with two payouts of two wallets alike to one output of an unknown spend.
  const incident = {
    at: 0, archive: "snapshot-0001.rgs", frozen: ["u_walletone01", "u_wallettwo02"], ambiguous: ["wd_one", "wd_two"],
    unknownSpends: [{ txid: TXID, confirmations: 2, outputs: [{ address: "bcrt1qalike", sats: "150000" }] }, { txid: OTHER_TXID, confirmations: 1, outputs: [{ address: "bcrt1qother", sats: "9" }] }],
  };
  const queued = [{ id: "wd_one", userKey: "u_walletone01", address: "bcrt1qalike", amount: "150000", status: "queued" }, { id: "wd_two", userKey: "u_wallettwo02", address: "bcrt1qalike", amount: "150000", status: "queued" }];
  const adopted: Array<[string, string, string]> = [];
  const port = {
    health: async () => ({ ok: false, payoutsPaused: "restore", draining: null, restoreIncident: incident }),
    node: async () => ({}), tip: async () => ({ height: 1 }), solvency: async () => ({ ok: true }), actors: () => ({}),
    payouts: async () => ({ batches: [], payouts: queued }),
    adoptPayout: async (id: string, txid: string, operator: string) => {
      if (!incident.ambiguous.includes(id)) return refuse("not_allowed", `Payout ${id} is not one the open restore incident names as ambiguous.`);
      adopted.push([id, txid, operator]);
      return { batch: "b7", ambiguous: [] };
    },
    ...extra,
  } as unknown as AdminPort;
  // The console's clock, moved on by a test (`h.later(ms)`) to age a step-up.
  let skew = 0;
  const sessions = new Sessions(15 * 60_000, () => Date.now() + skew);
  const config = loadConfig({ env: {} });
  const lines: Array<{ level: number; alert?: boolean; msg: string; operator?: string; revoked?: string }> = [];
  const log = createLogger({ level: "warn", destination: { write: (l: string) => void lines.push(JSON.parse(l)) } });
  const app = await buildAdmin({ config, log, tls: { ...readPem(pki, "admin-server"), ca: readPem(pki, "operators-ca").cert }, operators, audit, port, clock: () => now, consoleSessions: sessions });
  const listening = await listenAdmin(app, config);
  t.teardown(async () => {
    await app.close();
    await store.close();
  });
  const ca = readPem(pki, "admin-server-ca").cert;
  const origin = `https://localhost:${listening}`;
  /** A session as a security key's login leaves it. */
  const signIn = (who: string) => sessions.open(ops[who]!.fp, who, true, `key-${who}`);
  const get = (who: string, s: Session, path: string) => mtls(listening, ca, path, { client: ops[who]!.cert, headers: { cookie: `${COOKIE}=${s.id}` } });
  /** A form post as the console's page sends it: the session's cookie and CSRF token, the console's origin. */
  const post = (who: string, s: Session, path: string, form: Record<string, string>, o: { csrf?: string | null; origin?: string } = {}) => {
    const csrf = o.csrf === undefined ? s.csrf : o.csrf;
    return mtls(listening, ca, path, {
      client: ops[who]!.cert, method: "POST", body: new URLSearchParams({ ...(csrf === null ? {} : { _csrf: csrf }), ...form }).toString(),
      headers: { cookie: `${COOKIE}=${s.id}`, origin: o.origin ?? origin, "content-type": "application/x-www-form-urlencoded" },
    });
  };
  /** A request as the console's script sends it: JSON, the CSRF token in a header. */
  const json = (who: string, s: Session, path: string, body: unknown) => mtls(listening, ca, path, {
    client: ops[who]!.cert, method: "POST", body: JSON.stringify(body),
    headers: { cookie: `${COOKIE}=${s.id}`, origin, "x-csrf-token": s.csrf, "content-type": "application/json", accept: "application/json" },
  });
  /**
   * The step-up as the page's script makes it: options for `forPath`, a touch of `key` (the operator's own unless
   * said), the answer checked. Returns the answer to the assertion.
   */
  const touch = async (who: string, s: Session, forPath: string, o: { key?: SoftKey; uv?: boolean; challenge?: (c: string) => string } = {}) => {
    const r = await json(who, s, "/console/step-up/options", { for: forPath });
    if (r.status !== 200) return r;
    const { challenge } = JSON.parse(r.body) as { challenge: string };
    return json(who, s, "/console/step-up/verify", { response: assertion(o.key ?? ops[who]!.key, o.challenge ? o.challenge(challenge) : challenge, origin, o.uv === undefined ? {} : { uv: o.uv }) });
  };
  /** A JSON API request with a fresh TOTP code. */
  const api = (who: string, path: string, body: unknown) => mtls(listening, ca, path, {
    client: ops[who]!.cert, method: "POST", body: JSON.stringify(body), headers: { "x-totp": ops[who]!.code(), "content-type": "application/json" },
  });
  /** A JSON API read with a fresh TOTP code. */
  const apiGet = (who: string, path: string) => mtls(listening, ca, path, { client: ops[who]!.cert, headers: { "x-totp": ops[who]!.code() } });
  const later = (ms: number) => void (skew += ms);
  return { operators, audit, ops, sessions, signIn, get, post, json, touch, later, api, apiGet, adopted, lines, listening, ca, origin };
}

const activeNames = async (operators: OperatorStore) => (await operators.list()).filter((o) => !o.revoked).map((o) => o.name).sort();
/** An audit entry without its number, time and free text: what the action was, on whom, by whom, how it ended. */
const shape = (e: AuditEntry | undefined) => e && { operator: e.operator, action: e.action, target: e.target, outcome: e.outcome };

t.test("operators page: every operator with its state, a fingerprint prefix, when added; never a secret", async (t) => {
  const h = await edge(t, ["alice", "bob", "carol"]);
  await h.operators.revoke("carol");
  const link = await h.operators.issueEnrollment(h.ops.bob!.fp, { ttlMs: 60_000 });
  const r = await h.get("alice", h.signIn("alice"), "/console/operators");
  t.equal(r.status, 200, "answered", { body: r.body });
  t.match(r.body, /<a href="\/console\/operators" aria-current="page">Operators<\/a>/, "a navigation entry");
  for (const [name, op] of Object.entries(h.ops)) {
    const rec = (await h.operators.get(op.fp))!;
    t.ok(r.body.includes(`<code>${op.fp.slice(0, 16)}…</code>`), `${name}: its certificate's fingerprint prefix`);
    t.notOk(r.body.includes(op.fp), `${name}: not the whole fingerprint`);
    t.notOk(r.body.includes(rec.totpSecret), `${name}: never the TOTP secret`);
  }
  t.notOk(r.body.includes(link.token) || r.body.includes((await h.operators.get(h.ops.bob!.fp))!.enroll!.tokenHash), "nor an enrollment link or its hash");
  t.match(r.body, /<td>alice <span class="badge ok">you<\/span><\/td><td><span class="badge ok">active<\/span>/);
  t.match(r.body, /<td>carol<\/td><td><span class="badge bad">revoked<\/span>/);
  t.match(r.body, /\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC/, "when each was added");
  t.match(r.body, /yourself included, except the last active one/, "the rule, as the JSON API has it");
  t.match(r.body, /action="\/console\/operators\/alice\/revoke\/review"/, "the signed-in operator may revoke themself, as with the JSON API");
  t.match(r.body, /action="\/console\/operators\/bob\/revoke\/review"/);
  t.notMatch(r.body, /operators\/carol\/revoke/, "nothing to revoke on a revoked operator");
});

t.test("revoke from the console: refused without the confirmation, done with it, audited like the JSON API, the sessions end", async (t) => {
  const h = await edge(t, ["alice", "bob", "carol", "dave"]);
  const alice = h.signIn("alice"), bob = h.signIn("bob");
  const reason = "bob's laptop was stolen";

  let r = await h.post("alice", alice, "/console/operators/bob/revoke/review", { reason });
  t.equal(r.status, 200, "answered", { body: r.body });
  t.match(r.body, /Confirm: revoke the operator <strong>bob<\/strong>/);
  t.match(r.body, /<form method="post" action="\/console\/operators\/bob\/revoke" class="action" data-step-up>/, "the confirmation's form (it asks for a touch)");
  t.match(r.body, /name="confirm" value="yes"/);
  r = await h.post("alice", alice, "/console/operators/bob/revoke", { reason });
  t.equal(r.status, 400, "without the confirmation");
  t.match(r.body, /Not confirmed: nothing was done/);
  t.same(await activeNames(h.operators), ["alice", "bob", "carol", "dave"], "nothing happened before the confirmation");
  t.same(await h.audit.list(10), [], "not even attempted");

  t.equal((await h.touch("alice", alice, "/console/operators/bob/revoke")).status, 200, "a touch of alice's key for it");
  r = await h.post("alice", alice, "/console/operators/bob/revoke", { reason, confirm: "yes" });
  t.equal(r.status, 200, "answered", { body: r.body });
  t.match(r.body, /bob is revoked/);
  t.same(await activeNames(h.operators), ["alice", "carol", "dave"]);
  t.equal(h.sessions.find(bob.id, h.ops.bob!.fp), undefined, "bob's console session ended with it");
  t.equal((await h.get("bob", bob, "/console/")).status, 401, "bob's certificate opens nothing");
  // Found by action and target: the refused certificate's own entry is written beside the answer, not before it.
  const find = async (action: string, target: string) => (await h.audit.list(20)).find((e) => e.action === action && e.target === target);
  const [entry, outcome] = [await find("revoke-operator", "bob"), await find("revoke-operator:outcome", "bob")];
  t.match(entry, { operator: "alice", action: "revoke-operator", target: "bob", reason });
  t.match(outcome, { operator: "alice", action: "revoke-operator:outcome", target: "bob", outcome: "done" });

  // The JSON API's revocation, for comparison: the same two entries, bar the names.
  t.equal((await h.api("carol", "/operators/dave/revoke", { reason: "dave left the company" })).status, 200);
  const [apiEntry, apiOutcome] = [await find("revoke-operator", "dave"), await find("revoke-operator:outcome", "dave")];
  t.same([shape(entry), shape(outcome)].map((e) => ({ ...e, operator: "X", target: "Y" })), [shape(apiEntry), shape(apiOutcome)].map((e) => ({ ...e, operator: "X", target: "Y" })));
  t.match(apiEntry, { operator: "carol", action: "revoke-operator", target: "dave" });
  t.match(h.lines.filter((l) => l.alert), [{ level: 50, operator: "alice", revoked: "bob", msg: /revoked online/ }, { level: 50, operator: "carol", revoked: "dave", msg: /revoked online/ }], "each raises the same alert");
});

t.test("revoke from the console: yourself as the JSON API allows, never the last active operator (the port's refusal)", async (t) => {
  const h = await edge(t, ["alice", "bob"]);
  const alice = h.signIn("alice"), bob = h.signIn("bob");
  let r = await h.post("bob", bob, "/console/operators/bob/revoke/review", { reason: "handing over my duties" });
  t.match(r.body, /<strong>This is you:<\/strong>/, "the review says it is the operator themself");
  await h.touch("bob", bob, "/console/operators/bob/revoke");
  r = await h.post("bob", bob, "/console/operators/bob/revoke", { reason: "handing over my duties", confirm: "yes" });
  t.equal(r.status, 200, "answered", { body: r.body });
  t.match(r.body, /You revoked yourself/);
  t.equal(h.sessions.find(bob.id, h.ops.bob!.fp), undefined, "their own session ended");
  t.same(await activeNames(h.operators), ["alice"]);

  await h.touch("alice", alice, "/console/operators/alice/revoke");
  r = await h.post("alice", alice, "/console/operators/alice/revoke", { reason: "testing the last one", confirm: "yes" });
  t.equal(r.status, 409);
  t.match(r.body, /alice is the last active operator: revoking it here would lock every operator out\. Add another first/, "the port's own message");
  t.same(await activeNames(h.operators), ["alice"], "alice stays");
  t.ok(h.sessions.find(alice.id, h.ops.alice!.fp), "and so does her session");
  t.match((await h.audit.list(1))[0], { operator: "alice", action: "revoke-operator:outcome", target: "alice", outcome: /^refused: alice is the last active operator/ });
});

t.test("adopt an ambiguous payout from the restore incident: the txid checked, the confirmation, the port called and audited like the JSON API", async (t) => {
  const h = await edge(t, ["alice", "bob"]);
  const alice = h.signIn("alice");
  const reason = "the node's wallet shows wd_one's address in that spend";
  const overview = await h.get("alice", alice, "/console/");
  t.equal(overview.status, 200, "answered", { body: overview.body });
  const form = /<form method="post" action="\/console\/payouts\/ambiguous\/wd_one\/adopt\/review"[\s\S]*?<\/form>/.exec(overview.body)?.[0] ?? "";
  t.match(form, new RegExp(`<option value="${TXID}">`), "the incident's spend paying its address and amount is offered");
  t.notMatch(form, OTHER_TXID, "the other is not");
  t.match(overview.body, /action="\/console\/payouts\/ambiguous\/wd_two\/adopt\/review"/, "each ambiguous payout has its form");

  const path = "/console/payouts/ambiguous/wd_one/adopt";
  for (const txid of ["", "xyz", TXID.toUpperCase(), TXID.slice(1), `${TXID}00`]) {
    for (const [p, form] of [[`${path}/review`, { txid, reason }], [path, { txid, reason, confirm: "yes" }]] as const) {
      const r = await h.post("alice", alice, p, form);
      t.equal(r.status, 400, `${p}: ${JSON.stringify(txid)} is refused`);
      t.match(r.body, /A txid is 64 hexadecimal digits/);
    }
  }
  let r = await h.post("alice", alice, `${path}/review`, { txid: ` ${TXID} `, reason });
  t.equal(r.status, 200, "answered", { body: r.body });
  t.match(r.body, new RegExp(`Confirm: record that the unknown spend <code>${TXID}</code> paid the queued payout <strong>wd_one</strong> \\(0\\.00150000 BTC to <code>bcrt1qalike</code>, wallet u_walletone01\\)`));
  t.ok(r.body.includes(`<input type="hidden" name="txid" value="${TXID}">`), "the txid travels on to the confirmation (trimmed)");
  r = await h.post("alice", alice, path, { txid: TXID, reason });
  t.equal(r.status, 400, "without the confirmation");
  t.same(h.adopted, [], "the port was not asked");
  t.same(await h.audit.list(10), [], "nothing attempted");

  await h.touch("alice", alice, path);
  r = await h.post("alice", alice, path, { txid: TXID, reason, confirm: "yes" });
  t.equal(r.status, 200, "answered", { body: r.body });
  t.match(r.body, new RegExp(`wd_one is recorded as paid by <code>${TXID}</code> \\(batch b7\\)`));
  t.same(h.adopted, [["wd_one", TXID, "alice"]], "the port's adoptPayout, with the id and the txid");
  const [outcome, entry] = await h.audit.list(2);
  t.match(entry, { operator: "alice", action: "adopt-payout", target: "wd_one", reason });
  t.match(outcome, { operator: "alice", action: "adopt-payout:outcome", target: "wd_one", outcome: "done" });

  t.equal((await h.api("bob", "/payouts/adopt", { id: "wd_two", txid: TXID, reason: "checked against the node" })).status, 200);
  const [apiOutcome, apiEntry] = await h.audit.list(2);
  t.same([shape(entry), shape(outcome)].map((e) => ({ ...e, operator: "X", target: "Y" })), [shape(apiEntry), shape(apiOutcome)].map((e) => ({ ...e, operator: "X", target: "Y" })), "the same entries as the JSON API's");

  await h.touch("alice", alice, "/console/payouts/ambiguous/wd_nobody/adopt");
  r = await h.post("alice", alice, "/console/payouts/ambiguous/wd_nobody/adopt", { txid: TXID, reason, confirm: "yes" });
  t.equal(r.status, 409);
  t.match(r.body, /Payout wd_nobody is not one the open restore incident names as ambiguous\./, "the port's refusal, as its message");
  t.match((await h.audit.list(1))[0], { action: "adopt-payout:outcome", target: "wd_nobody", outcome: /^refused: Payout wd_nobody/ });
});

t.test("the new actions' POSTs keep the guard: no CSRF token, a wrong one or another origin is refused; nothing happens", async (t) => {
  const h = await edge(t, ["alice", "bob"]);
  const alice = h.signIn("alice");
  const posts: Array<[string, Record<string, string>]> = [
    ["/console/operators/bob/revoke/review", { reason: "not really me" }], ["/console/operators/bob/revoke", { reason: "not really me", confirm: "yes" }],
    ["/console/payouts/ambiguous/wd_one/adopt/review", { txid: TXID, reason: "not really me" }], ["/console/payouts/ambiguous/wd_one/adopt", { txid: TXID, reason: "not really me", confirm: "yes" }],
  ];
  for (const [path, form] of posts) {
    let r = await h.post("alice", alice, path, form, { csrf: null });
    t.equal(r.status, 403, `${path}: no CSRF token`);
    t.match(r.body, /missing or wrong CSRF token/);
    t.equal((await h.post("alice", alice, path, form, { csrf: "wrong" })).status, 403, `${path}: a wrong CSRF token`);
    r = await h.post("alice", alice, path, form, { origin: "https://evil.example" });
    t.equal(r.status, 403, `${path}: another origin, even with the token`);
    t.match(r.body, /cross-origin request refused/);
  }
  t.same(await activeNames(h.operators), ["alice", "bob"]);
  t.same(h.adopted, []);
  t.same(await h.audit.list(10), [], "nothing attempted");
});

t.test("a fee rate above withdrawals.maxFeeRateSatVb: the JSON API refuses it without aboveMaxFeeRate, the console's review says so and asks for a tick", async (t) => {
  const asked: Array<[string, string, bigint]> = [];
  const batch = { id: "b3", status: "broadcast", txid: "e5".repeat(32), fee: "4200", ids: ["wd_a", "wd_b"], replaced: [] };
  const h = await edge(t, ["alice"], {
    payouts: async () => ({ batches: [batch], payouts: [] }),
    bumpPayout: async (b: string, rate: bigint) => (asked.push(["bump", b, rate]), { txid: "f6".repeat(32), fee: "9000" }),
    releasePayout: async (b: string, rate: bigint) => (asked.push(["release", b, rate]), { status: "cancelling", txid: "f7".repeat(32), fee: "800" }),
  });
  const max = loadConfig({ env: {} }).withdrawals.maxFeeRateSatVb;
  t.equal(max, 500, "the default ceiling");
  const reason = "stuck in the mempool at 3 a.m.";

  // The JSON API: refused with what the limit is and how to go above it; nothing asked of the engine, nothing audited.
  for (const [path, body] of [
    ["/payouts/b3/bump", { feeRateSatVb: 5000, reason }], ["/payouts/b3/release", { feeRateSatVb: 501, reason }],
    ["/payouts/b3/bump", { feeRateSatVb: 5000, aboveMaxFeeRate: false, reason }],
  ] as const) {
    const r = await h.api("alice", path, body);
    t.equal(r.status, 422, `${path} ${JSON.stringify(body)} is refused`);
    t.match(JSON.parse(r.body), { code: "over_limit", error: /is above withdrawals\.maxFeeRateSatVb \(500 sat\/vB\).*"aboveMaxFeeRate": true/ });
  }
  t.same(asked, [], "the engine was not asked");
  t.same(await h.audit.list(10), [], "nothing attempted");
  t.equal((await h.api("alice", "/payouts/b3/bump", { feeRateSatVb: max, reason })).status, 200, "the ceiling itself needs no override");
  t.equal((await h.api("alice", "/payouts/b3/bump", { feeRateSatVb: 5000, aboveMaxFeeRate: true, reason })).status, 200, "above it with the override");
  t.equal((await h.api("alice", "/payouts/b3/release", { feeRateSatVb: 600, aboveMaxFeeRate: true, reason })).status, 200);
  t.equal((await h.api("alice", "/payouts/b3/bump", { feeRateSatVb: 10_001, aboveMaxFeeRate: true, reason })).status, 400, "never above the hard limit");
  t.same(asked, [["bump", "b3", 500n], ["bump", "b3", 5000n], ["release", "b3", 600n]]);
  t.match((await h.audit.list(10)).find((e) => e.action === "bump-fee"), { operator: "alice", target: "b3", reason });
  const overrides = (await h.audit.list(10)).filter((e) => / above withdrawals\.maxFeeRateSatVb 500: confirmed\]$/.test(e.reason));
  t.same(overrides.map((e) => [e.action, e.reason.startsWith(`${reason} [`)]).sort(), [["bump-fee", true], ["release-payout", true]], "an override is on file with its rate");
  t.ok(overrides.some((e) => e.reason.includes("[5000 sat/vB")) && overrides.some((e) => e.reason.includes("[600 sat/vB")), "the rates it let through");

  // The console: the form says what the ceiling is; the review says the rate is above it and asks for a tick.
  asked.length = 0;
  const actions = async () => (await h.audit.list(50)).filter((e) => e.action === "bump-fee" || e.action === "release-payout").length;
  const before = await actions();
  const alice = h.signIn("alice");
  t.match((await h.get("alice", alice, "/console/payouts/b3/bump")).body, /the engine's own batches pay at most 500\) <input type="number" name="feeRateSatVb" min="1" max="10000" required>/);
  let r = await h.post("alice", alice, "/console/payouts/b3/bump/review", { feeRateSatVb: "60", reason });
  t.equal(r.status, 200, "answered", { body: r.body });
  t.notMatch(r.body, /above-max-fee-rate|aboveMaxFeeRate/, "below the ceiling: no warning, no box");
  for (const action of ["bump", "release"]) {
    r = await h.post("alice", alice, `/console/payouts/b3/${action}/review`, { feeRateSatVb: "5000", reason });
    t.equal(r.status, 200, "answered", { body: r.body });
    t.match(r.body, /<p class="error" role="alert" id="above-max-fee-rate"><strong>5000 sat\/vB is above the configured maximum<\/strong> of 500 sat\/vB \(<code>withdrawals\.maxFeeRateSatVb<\/code>\).*10\.0 times it/, `${action}: the review says so`);
    t.match(r.body, /<input type="checkbox" name="aboveMaxFeeRate" value="yes" required> I mean 5000 sat\/vB/, `${action}: a box to tick`);
    const refused = await h.post("alice", alice, `/console/payouts/b3/${action}`, { feeRateSatVb: "5000", reason, confirm: "yes" });
    t.equal(refused.status, 422, `${action}: confirmed without the tick`);
    t.match(refused.body, /5000 sat\/vB is above the configured maximum.*nothing was done/s);
  }
  t.same(asked, [], "the engine was not asked");
  t.equal(await actions(), before, "nor anything audited");
  await h.touch("alice", alice, "/console/payouts/b3/bump");
  r = await h.post("alice", alice, "/console/payouts/b3/bump", { feeRateSatVb: "5000", reason, confirm: "yes", aboveMaxFeeRate: "yes" });
  t.equal(r.status, 200, "answered", { body: r.body });
  t.match(r.body, /was bumped/);
  t.equal((await h.post("alice", alice, "/console/payouts/b3/bump/review", { feeRateSatVb: "10001", reason })).status, 400, "never above the hard limit");
  t.same(asked, [["bump", "b3", 5000n]], "with the tick");
});

t.test("step-up: the actions that move money or change who can do what need a fresh touch of a key for them; without it nothing runs, nothing is audited", async (t) => {
  const ran: string[] = [];
  const did = (what: string, answer: Json = {}) => async () => (ran.push(what), answer);
  const h = await edge(t, ["alice", "bob", "carol"], {
    payouts: async () => ({ batches: [{ id: "b3", status: "stuck", txid: "e5".repeat(32), fee: "4200", ids: ["wd_a"], replaced: [] }], payouts: [] }),
    freeze: did("freeze"), unfreeze: did("unfreeze"), unqueuePayout: did("unqueue"), pausePayouts: did("pause"), resumePayouts: did("resume"),
    setDraining: async (on: boolean) => (ran.push(on ? "drain-on" : "drain-off"), { draining: on }), backup: did("backup", { path: "/b/s.rgs", bytes: 1, ms: 1 }),
    adoptPayout: did("adopt", { batch: "b7", ambiguous: [] }), bumpPayout: did("bump", { txid: "f6".repeat(32), fee: "9000" }), releasePayout: did("release", { status: "cancelling", txid: "f7".repeat(32), fee: "800" }),
  });
  const alice = h.signIn("alice");
  const reason = "an unlocked laptop, say";
  const needed: Array<[string, Record<string, string>]> = [
    ["/console/wallets/u_walletone01/unfreeze", {}], ["/console/payouts/queued/wd_one/unqueue", {}], ["/console/payouts/resume", {}],
    ["/console/drain/on", {}], ["/console/drain/off", {}], ["/console/operators/bob/revoke", {}], ["/console/payouts/ambiguous/wd_one/adopt", { txid: TXID }],
    ["/console/payouts/b3/bump", { feeRateSatVb: "60" }], ["/console/payouts/b3/release", { feeRateSatVb: "5" }],
  ];
  for (const [path, fields] of needed) {
    const review = await h.post("alice", alice, `${path}/review`, { reason, ...fields });
    t.equal(review.status, 200, `${path}: its review`, { body: review.body });
    t.match(review.body, new RegExp(`<form method="post" action="${path}" class="action" data-step-up>`), `${path}: the confirmation asks for the touch`);
    t.match(review.body, /Confirming asks for a touch of your security key/);
    t.match(review.body, /<script src="\/console\/static\/simplewebauthn-browser\.js" defer><\/script>\s*<script src="\/console\/static\/webauthn-pages\.js" defer><\/script>/, `${path}: with the scripts that make it (no inline script)`);
    const r = await h.post("alice", alice, path, { reason, confirm: "yes", ...fields });
    t.equal(r.status, 403, `${path}: refused without a touch`);
    t.match(r.body, /This action needs a fresh touch of one of your security keys .* nothing was done/, `${path}: and says why`);
  }
  t.same(ran, [], "nothing ran");
  t.same(await h.audit.list(10), [], "nothing was audited");
  t.same(await activeNames(h.operators), ["alice", "bob", "carol"], "bob is not revoked");
  t.match(h.lines.filter((l) => /no fresh touch/.test(l.msg)), Array(needed.length).fill({ operator: "alice" }), "each refusal is a warning");

  // Freeze, pause payouts and back up now only stop things or copy the store: no touch.
  for (const path of ["/console/wallets/u_walletone01/freeze", "/console/payouts/pause", "/console/backup"]) {
    const review = await h.post("alice", alice, `${path}/review`, { reason });
    t.notMatch(review.body, /data-step-up|<script/, `${path}: no touch asked`);
    t.equal((await h.post("alice", alice, path, { reason, confirm: "yes" })).status, 200, `${path}: done without a touch`);
  }
  t.same(ran, ["freeze", "pause", "backup"]);

  // With a touch for it: done, once.
  ran.length = 0;
  const unfreeze = "/console/wallets/u_walletone01/unfreeze";
  t.same(JSON.parse((await h.touch("alice", alice, unfreeze)).body), { ok: true });
  t.equal((await h.post("alice", alice, unfreeze, { reason, confirm: "yes" })).status, 200, "touched: done");
  t.equal((await h.post("alice", alice, unfreeze, { reason, confirm: "yes" })).status, 403, "one touch, one action");
  for (const [path, fields] of needed.filter(([p]) => p !== "/console/operators/bob/revoke")) {
    t.equal((await h.touch("alice", alice, path)).status, 200);
    const r = await h.post("alice", alice, path, { reason, confirm: "yes", ...fields });
    t.equal(r.status, 200, `${path}: done with a touch`, { body: r.body });
  }
  t.same(ran, ["unfreeze", "unfreeze", "unqueue", "resume", "drain-on", "drain-off", "adopt", "bump", "release"]);
  t.match((await h.audit.list(50)).find((e) => e.action === "release-payout"), { operator: "alice", target: "b3", reason });

  ran.length = 0;
  const drainOn = "/console/drain/on", drainOff = "/console/drain/off";
  await h.touch("alice", alice, drainOn);
  t.equal((await h.post("alice", alice, drainOff, { reason, confirm: "yes" })).status, 403, "a touch for drain on does not switch it off");
  t.equal((await h.post("alice", alice, drainOn, { reason, confirm: "yes" })).status, 403, "and is gone after that attempt");
  await h.touch("alice", alice, drainOn);
  h.later(STEP_UP_MAX_AGE_MS + 1000);
  t.equal((await h.post("alice", alice, drainOn, { reason, confirm: "yes" })).status, 403, "more than two minutes old: refused");
  const other = h.signIn("alice");
  await h.touch("alice", other, drainOn);
  t.equal((await h.post("alice", alice, drainOn, { reason, confirm: "yes" })).status, 403, "a touch on another session of the same operator does not count");

  // The touch itself: a registered key of this operator, with user verification, answering this session's challenge once.
  let r = await h.touch("alice", alice, drainOn, { uv: false });
  t.equal(r.status, 401);
  t.match(JSON.parse(r.body).error, /User verification required/, "without user verification (PIN, fingerprint): refused");
  r = await h.touch("alice", alice, drainOn, { key: h.ops.bob!.key });
  t.same(JSON.parse(r.body), { error: "this security key is not registered for alice" }, "bob's key does not touch for alice");
  r = await h.touch("alice", alice, drainOn, { key: softKey() });
  t.equal(r.status, 401, "nor a key nobody registered");
  r = await h.touch("alice", alice, drainOn, { challenge: () => b64u(randomBytes(32)) });
  t.equal(r.status, 401, "nor an answer to another challenge");
  const opts = JSON.parse((await h.json("alice", alice, "/console/step-up/options", { for: drainOn })).body) as { challenge: string; userVerification: string; allowCredentials: Array<{ id: string }> };
  t.equal(opts.userVerification, "required");
  t.same(opts.allowCredentials.map((c) => c.id), [h.ops.alice!.key.id], "alice's keys only");
  const answer = assertion(h.ops.alice!.key, opts.challenge, h.origin);
  t.equal((await h.json("alice", alice, "/console/step-up/verify", { response: answer })).status, 200);
  t.equal((await h.post("alice", alice, drainOn, { reason, confirm: "yes" })).status, 200, "the real answer allows it");
  t.same(ran, ["drain-on"]);
  r = await h.json("alice", alice, "/console/step-up/verify", { response: answer });
  t.equal(r.status, 401, "a replayed answer is refused");
  t.match(JSON.parse(r.body).error, /no confirmation with a security key in progress/);
  await h.json("alice", alice, "/console/step-up/options", { for: drainOn });
  t.equal((await h.json("alice", alice, "/console/step-up/verify", { response: answer })).status, 401, "also against a new challenge");
  const login = JSON.parse((await h.json("alice", alice, "/console/login/options", {})).body) as { challenge: string };
  t.equal((await h.json("alice", alice, "/console/step-up/verify", { response: assertion(h.ops.alice!.key, login.challenge, h.origin) })).status, 401, "a sign-in's challenge is not a step-up's");
  t.equal((await h.post("alice", alice, drainOn, { reason, confirm: "yes" })).status, 403, "none of those left a step-up");
  const preLogin = h.sessions.open(h.ops.alice!.fp, "alice");
  t.equal((await h.json("alice", preLogin, "/console/step-up/options", { for: drainOn })).status, 401, "not before signing in");
  t.equal((await h.json("alice", alice, "/console/step-up/options", { for: "https://evil.example/" })).status, 400, "for a console path only");

  // A key removed after its touch no longer allows anything.
  const spare = softKey();
  await h.operators.addKey(h.ops.alice!.fp, { id: spare.id, publicKey: b64u(spare.cose), counter: 0, label: "spare", addedAt: 2 });
  t.equal((await h.touch("alice", alice, drainOn, { key: spare })).status, 200, "any registered key of hers touches");
  await h.operators.removeKey(h.ops.alice!.fp, spare.id);
  t.equal((await h.post("alice", alice, drainOn, { reason, confirm: "yes" })).status, 403, "the key was removed since");
  t.same(ran, ["drain-on"], "none of the others ran");
});

t.test("step-up: adding a security key needs a touch of one already registered, on this session, within two minutes; removing one too; enrollment links stay as they were", async (t) => {
  const h = await edge(t, ["alice", "bob"]);
  const alice = h.signIn("alice");
  const keys = async (who: string) => ((await h.operators.get(h.ops[who]!.fp))!.keys ?? []).map((k) => k.label);
  /** A new key's registration, as the keys page's script makes it once the touch is done. */
  const register = async (s: Session, k: SoftKey, label: string) => {
    const o = await h.json("alice", s, "/console/keys/options", {});
    if (o.status !== 200) return o;
    return h.json("alice", s, "/console/keys/verify", { label, response: attestation(k, (JSON.parse(o.body) as { challenge: string }).challenge, h.origin) });
  };
  const intruder = softKey();
  let r = await h.json("alice", alice, "/console/keys/options", {});
  t.equal(r.status, 403, "no registration options without a touch");
  t.match(JSON.parse(r.body).error, /needs a fresh touch of one of your security keys/);
  r = await h.json("alice", alice, "/console/keys/verify", { label: "mine now", response: attestation(intruder, b64u(randomBytes(32)), h.origin) });
  t.equal(r.status, 403, "nor a registration");
  await h.touch("alice", alice, "/console/drain/on");
  t.equal((await register(alice, intruder, "mine now")).status, 403, "a touch for another action does not add a key");
  // The touch for the options, then more than two minutes until the new key answers: refused.
  await h.touch("alice", alice, "/console/keys/verify");
  const o = JSON.parse((await h.json("alice", alice, "/console/keys/options", {})).body) as { challenge: string; excludeCredentials: Array<{ id: string }> };
  t.same(o.excludeCredentials.map((c) => c.id), [h.ops.alice!.key.id]);
  h.later(STEP_UP_MAX_AGE_MS + 1000);
  t.equal((await h.json("alice", alice, "/console/keys/verify", { label: "mine now", response: attestation(intruder, o.challenge, h.origin) })).status, 403, "too late");
  t.same(await keys("alice"), ["alice's key"], "no key was added");
  t.same(await h.audit.list(10), [], "nothing audited");

  // Touched with her key: the new key is added, once.
  const spare = softKey();
  t.equal((await h.touch("alice", alice, "/console/keys/verify")).status, 200);
  r = await register(alice, spare, "spare key in the safe");
  t.equal(r.status, 200, "added", { body: r.body });
  t.same(await keys("alice"), ["alice's key", "spare key in the safe"]);
  t.match((await h.audit.list(2)).find((e) => e.action === "console-key-add"), { operator: "alice", target: "alice" });
  t.equal((await register(alice, softKey(), "a third")).status, 403, "a second key needs a second touch");

  // Removing a key: a touch for it too.
  const remove = (id: string) => h.post("alice", alice, "/console/keys/remove", { id, reason: "lost it on the train" });
  r = await remove(spare.id);
  t.equal(r.status, 403, "refused without a touch");
  t.match(r.body, /needs a fresh touch/);
  t.same(await keys("alice"), ["alice's key", "spare key in the safe"], "both keys stay");
  t.equal((await h.touch("alice", alice, "/console/keys/remove", { key: spare })).status, 200, "the new key touches too");
  t.equal((await remove(spare.id)).status, 303, "removed with a touch");
  t.same(await keys("alice"), ["alice's key"]);

  // Enrollment through a one-time link (a first key, before any sign-in): no touch of an older key, as before.
  const link = await h.operators.issueEnrollment(h.ops.bob!.fp, { ttlMs: 60_000 });
  const pre = h.sessions.open(h.ops.bob!.fp, "bob");
  const e = await h.json("bob", pre, "/console/enroll/options", { token: link.token });
  t.equal(e.status, 200, "enrollment options", { body: e.body });
  const bobNew = softKey();
  r = await h.json("bob", pre, "/console/enroll/verify", { token: link.token, label: "bob's second", response: attestation(bobNew, (JSON.parse(e.body) as { challenge: string }).challenge, h.origin) });
  t.equal(r.status, 200, "enrolled through the link", { body: r.body });
  t.same(await keys("bob"), ["bob's key", "bob's second"]);
});

t.test("lists of every user's deposits or payouts are audited: one entry per request, with the operator, the route and the filter", async (t) => {
  const h = await edge(t, ["alice", "bob"], { deposits: async () => ({ deposits: [] }) });
  t.equal((await h.apiGet("alice", "/deposits?status=pending")).status, 200);
  t.equal((await h.apiGet("bob", "/payouts")).status, 200);
  const alice = h.signIn("alice");
  t.equal((await h.get("alice", alice, "/console/deposits?status=confirmed")).status, 200);
  t.equal((await h.get("alice", alice, "/console/payouts")).status, 200);
  t.equal((await h.apiGet("alice", "/deposits?status=nope!")).status, 400, "a bad filter is refused first");
  const shown = (await h.audit.list(10)).reverse().map((e) => ({ operator: e.operator, action: e.action, target: e.target, reason: e.reason }));
  t.same(shown, [
    { operator: "alice", action: "read-list", target: "/deposits", reason: "listed them with status pending" },
    { operator: "bob", action: "read-list", target: "/payouts", reason: "listed them all" },
    { operator: "alice", action: "read-list", target: "/console/deposits", reason: "listed them with status confirmed" },
    { operator: "alice", action: "read-list", target: "/console/payouts", reason: "listed them all" },
  ]);
  // A store that cannot write: an alert, and the list all the same.
  const append = h.audit.append.bind(h.audit);
  h.audit.append = async () => {
    throw new Error("the store cannot write (simulated)");
  };
  t.teardown(() => void (h.audit.append = append));
  t.equal((await h.apiGet("alice", "/payouts")).status, 200);
  t.match(h.lines.filter((l) => l.alert), [{ level: 50, operator: "alice", msg: /list of deposits or payouts could not be recorded/ }]);
});

t.test("the admin edge speaks TLS 1.3 only: under 1.2 the operator's certificate would cross the VPN in the clear", async (t) => {
  const h = await edge(t, ["alice"]);
  const handshake = (maxVersion: "TLSv1.2" | "TLSv1.3") => new Promise<string>((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port: h.listening, servername: "localhost", ca: h.ca, ...h.ops.alice!.cert, maxVersion }, () => {
      const v = s.getProtocol() ?? "";
      s.end();
      resolve(v);
    });
    s.on("error", reject);
  });
  t.equal(await handshake("TLSv1.3"), "TLSv1.3");
  await t.rejects(handshake("TLSv1.2"), /protocol version|wrong version|no protocols/i, "a TLS 1.2 client is refused");
});
