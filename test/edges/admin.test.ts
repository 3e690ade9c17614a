// The admin edge over real TLS on 127.0.0.1: both factors on every request, audited actions, and a freeze
// that stops money going out. The engine behind it is the real one on a regtest node.
import t from "tap";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { startTestEngine } from "../support/engine.ts";
import { mtls, type Res } from "../support/https.ts";
import { buildAdmin, listenAdmin } from "../../src/edges/admin/server.ts";
import { enginePort } from "../../src/edges/admin/engine-port.ts";
import { OperatorStore, addOperator, totpFor } from "../../src/edges/admin/operators.ts";
import { AuditLog } from "../../src/edges/admin/audit.ts";
import { createCA, ensurePki, issue, readPem, type Pem } from "../../src/tls/certs.ts";
import { loadConfig } from "../../src/config.ts";
import { silentLogger } from "../../src/log.ts";
import { isRefusal } from "../../src/domain/refusals.ts";

/** An admin API request: JSON body, the TOTP header when given. */
function call(port: number, ca: string, path: string, o: { client?: Pem; totp?: string; method?: string; body?: unknown } = {}): Promise<Res> {
  const body = o.body === undefined ? undefined : JSON.stringify(o.body);
  return mtls(port, ca, path, {
    ...(o.client ? { client: o.client } : {}), ...(o.method ? { method: o.method } : {}), ...(body ? { body } : {}),
    headers: { ...(o.totp ? { "x-totp": o.totp } : {}), ...(body ? { "content-type": "application/json" } : {}) },
  });
}

t.test("admin edge: certificate and TOTP on every request; audited actions; a freeze stops withdrawals", async (t) => {
  const te = await startTestEngine();
  t.teardown(() => te.stop());
  const base = t.testdir(), pki = join(base, "pki");
  await ensurePki(pki, { admin: "127.0.0.1", internal: "127.0.0.1" });
  const store = te.engine.storage.store;
  const operators = new OperatorStore(store);
  const alice = await addOperator({ pkiDir: pki, store: operators, name: "alice", out: join(base, "operator-alice") });
  t.ok(readFileSync(join(alice.dir, "alice-totp.png")).subarray(1, 4).toString() === "PNG", "a QR code of the otpauth URI");
  t.match(alice.uri, /^otpauth:\/\/totp\/RuniGun:alice\?/);
  await t.rejects(addOperator({ pkiDir: pki, store: operators, name: "alice", out: join(base, "operator-alice-2") }), { code: "setup", message: /revoke it first/ }, "an active name is not given a second certificate");
  t.equal((await operators.list()).filter((o) => o.name === "alice").length, 1);
  const audit = new AuditLog(store);
  let now = Date.now();
  const server = readPem(pki, "admin-server");
  const app = await buildAdmin({ config: te.config, log: silentLogger, tls: { ...server, ca: readPem(pki, "operators-ca").cert }, operators, audit, port: enginePort(te.engine), clock: () => now });
  const port = await listenAdmin(app, te.config);
  t.teardown(() => app.close());
  const ca = readPem(pki, "admin-server-ca").cert;
  const cert = readPem(alice.dir, "alice");
  const op = (await operators.get(alice.fingerprint))!;
  /** A fresh code for the next 30-second step (each code is good once). */
  const code = () => {
    now += 30_000;
    return totpFor(op).generate({ timestamp: now });
  };

  await t.rejects(call(port, ca, "/health"), "no client certificate: the TLS handshake is refused");
  const stranger = await issue(await createCA("someone else"), { name: "mallory", kind: "client" });
  await t.rejects(call(port, ca, "/health", { client: stranger, totp: code() }), "a certificate from another CA is refused by TLS");
  t.equal((await call(port, ca, "/health", { client: cert })).status, 401, "certificate without TOTP");
  t.equal((await call(port, ca, "/health", { client: cert, totp: "123456" })).status, 401, "wrong TOTP");
  const good = code();
  t.equal((await call(port, ca, "/health", { client: cert, totp: good })).status, 200, "both factors");
  const replay = await call(port, ca, "/health", { client: cert, totp: good });
  t.equal(replay.status, 401, "the same code again is refused");
  t.match(replay.body, /already used/);
  // The request limit counts requests refused for their TOTP code too (it once ran after the factors were checked).
  const limited = await buildAdmin({ config: te.config, log: silentLogger, tls: { ...server, ca: readPem(pki, "operators-ca").cert }, operators: new OperatorStore(store), audit, port: enginePort(te.engine), clock: () => now, rateLimit: 3 });
  const limitedPort = await listenAdmin(limited, te.config);
  t.teardown(() => limited.close());
  const tries = [];
  for (let i = 0; i < 4; i++) tries.push((await call(limitedPort, ca, "/health", { client: cert, totp: "000000" })).status);
  t.same(tries, [401, 401, 401, 429], "wrong codes count against the request limit");

  const userKey = "u_frozenwallet0001";
  await te.engine.relay.start(userKey);
  await te.engine.registry.send(userKey, "receive_transfer", { id: "seed", from: "u_bank", amount: 1_000_000n });
  const frozen = await call(port, ca, `/wallets/${userKey}/freeze`, { client: cert, totp: code(), method: "POST", body: { reason: "suspicious login reported by the user" } });
  t.equal(frozen.status, 200, frozen.body);
  const q = await te.engine.relay.quoteWithdrawal(userKey, await te.node.outsideAddress(), "0.001");
  t.ok(isRefusal(q) && q.code === "frozen" && /frozen by an operator/.test(q.message), "withdrawals are refused with a clear message");
  const wallet = await call(port, ca, `/wallets/${userKey}`, { client: cert, totp: code() });
  t.equal(wallet.status, 200);
  t.match(JSON.parse(wallet.body), { frozen: { reason: "suspicious login reported by the user", by: "alice" }, available: "1000000" });
  t.notMatch(wallet.body, /chatHandle/, "never a chat handle");
  t.equal((await call(port, ca, "/wallets/not-a-key", { client: cert, totp: code() })).status, 400, "bad input is refused by the schema");
  t.equal((await call(port, ca, `/wallets/${userKey}/freeze`, { client: cert, totp: code(), method: "POST", body: { reason: "x" } })).status, 400, "a reason is required");
  const log = JSON.parse((await call(port, ca, "/audit", { client: cert, totp: code() })).body) as { entries: Array<{ operator: string; action: string; target?: string; reason: string; outcome?: string }> };
  t.match(log.entries.find((e) => e.action === "freeze"), { operator: "alice", reason: "suspicious login reported by the user" });
  t.match(log.entries.find((e) => e.action === "freeze:outcome"), { outcome: "done" });
  // Found by a review: an outcome that could not be recorded turned a done action into "internal error; nothing was
  // changed", and a second "failed" outcome.
  const outcome = audit.outcome.bind(audit);
  audit.outcome = async () => {
    audit.outcome = outcome;
    throw new Error("the store cannot write (simulated)");
  };
  const unfrozen = await call(port, ca, `/wallets/${userKey}/unfreeze`, { client: cert, totp: code(), method: "POST", body: { reason: "the user confirmed the login" } });
  t.equal(unfrozen.status, 200, "done is done, though its outcome was not recorded");
  t.ok(!isRefusal(await te.engine.relay.quoteWithdrawal(userKey, await te.node.outsideAddress(), "0.001")), "and the wallet is unfrozen");
  t.equal((JSON.parse((await call(port, ca, "/audit", { client: cert, totp: code() })).body) as typeof log).entries.filter((e) => e.action === "unfreeze:outcome").length, 0, "no outcome claims it failed");
  await call(port, ca, `/wallets/${userKey}/freeze`, { client: cert, totp: code(), method: "POST", body: { reason: "suspicious login reported by the user" } });
  const release = await call(port, ca, "/payouts/b404/release", { client: cert, totp: code(), method: "POST", body: { reason: "refused by every mempool", feeRateSatVb: 5 } });
  t.equal(release.status, 409, "releasing a batch that does not exist is refused");
  t.match(release.body, /No payout batch b404/);
  t.equal((await call(port, ca, "/payouts/b1/release", { client: cert, totp: code(), method: "POST", body: { reason: "no fee rate" } })).status, 400, "a release names its fee rate");
  // After a restore, nothing is given back before the incident is reviewed.
  te.engine.restoreIncident = { at: Date.now(), archive: "snapshot-test", unknownSpends: [], frozen: [] };
  const during = await call(port, ca, "/payouts/b404/release", { client: cert, totp: code(), method: "POST", body: { reason: "after the restore", feeRateSatVb: 5 } });
  te.engine.restoreIncident = undefined;
  t.equal(during.status, 409, "no release while a restore incident is open");
  t.match(during.body, /restore incident is open/);
  // Which ambiguous payout an unknown spend paid: only one the open incident names, with a well-formed txid.
  const txid = "ab".repeat(32);
  t.equal((await call(port, ca, "/payouts/adopt", { client: cert, totp: code(), method: "POST", body: { id: "wd_x", txid: "not-a-txid", reason: "asked the users" } })).status, 400, "a txid is 64 hex digits");
  const adopt = await call(port, ca, "/payouts/adopt", { client: cert, totp: code(), method: "POST", body: { id: "wd_x", txid, reason: "asked the users" } });
  t.equal(adopt.status, 409, "no incident names it");
  t.match(adopt.body, /not one the open restore incident names/);
  const released = (JSON.parse((await call(port, ca, "/audit", { client: cert, totp: code() })).body) as typeof log).entries;
  t.ok(released.some((e) => e.action === "adopt-payout" && e.operator === "alice" && e.reason === "asked the users"), "the adoption is audited");
  t.ok(released.some((e) => e.action === "release-payout" && e.operator === "alice" && e.reason === "refused by every mempool"), "audited");
  t.ok(released.some((e) => e.action === "release-payout:outcome" && /^refused: A restore incident/.test(e.outcome ?? "")), "the refusal during the incident too");
  t.ok(released.some((e) => e.action === "read-wallet" && e.operator === "alice" && e.target === userKey), "an operator's look at a wallet is on file");
  // An operator's pause: audited, shown by /health, kept until an operator resumes.
  const paused = await call(port, ca, "/payouts/pause", { client: cert, totp: code(), method: "POST", body: { reason: "a withdrawal looks wrong" } });
  t.equal(paused.status, 200, paused.body);
  t.same(JSON.parse(paused.body), { paused: "paused by operator alice: a withdrawal looks wrong", already: false });
  t.equal(te.engine.payouts.paused, "paused by operator alice: a withdrawal looks wrong");
  t.match(JSON.parse((await call(port, ca, "/health", { client: cert, totp: code() })).body), { ok: false, payoutsPaused: "paused by operator alice: a withdrawal looks wrong" });
  t.equal((await call(port, ca, "/payouts/pause", { client: cert, totp: code(), method: "POST", body: {} })).status, 400, "a pause gives its reason");
  // This test's wallet was credited without coins on the node: the resume finds the hole and refuses (the resume of an
  // operator's pause with the books covered: test/actors/continuity.test.ts).
  const resumed = await call(port, ca, "/payouts/resume", { client: cert, totp: code(), method: "POST", body: { reason: "checked it, all good" } });
  t.equal(resumed.status, 409, resumed.body);
  t.match(resumed.body, /Cover the hole/);
  t.equal(te.engine.payouts.paused, "paused by operator alice: a withdrawal looks wrong", "still paused, for the operator's reason");
  const unqueue = await call(port, ca, "/payouts/unqueue", { client: cert, totp: code(), method: "POST", body: { id: "wd_nobody", reason: "the user asked" } });
  t.equal(unqueue.status, 409, "giving back a payout the book does not have is refused");
  t.match(unqueue.body, /No payout wd_nobody/);
  t.equal((await call(port, ca, "/payouts/unqueue", { client: cert, totp: code(), method: "POST", body: { id: "wd x", reason: "the user asked" } })).status, 400, "an id is checked by the schema");
  const entries = (JSON.parse((await call(port, ca, "/audit", { client: cert, totp: code() })).body) as typeof log).entries;
  t.ok(entries.some((e) => e.action === "pause-payouts" && e.operator === "alice" && e.reason === "a withdrawal looks wrong"), "the pause is audited");
  t.ok(entries.some((e) => e.action === "pause-payouts:outcome" && e.outcome === "done"));
  t.ok(entries.some((e) => e.action === "unqueue-payout" && e.target === "wd_nobody" && e.reason === "the user asked"), "audited");
  const api = JSON.parse((await call(port, ca, "/openapi.json", { client: cert, totp: code() })).body) as { paths: Record<string, unknown> };
  t.ok(api.paths["/wallets/{userKey}/freeze"] && api.paths["/solvency"], "OpenAPI lists the routes");
  const metrics = await call(port, ca, "/metrics", { client: cert, totp: code() });
  t.match(metrics.body, /runigun_wallets_resident \d+/);
  const solvency = JSON.parse((await call(port, ca, "/solvency", { client: cert, totp: code() })).body) as { ok: boolean };
  t.equal(typeof solvency.ok, "boolean");
  t.equal((await call(port, ca, "/node", { client: cert, totp: code() })).status, 200);
  const noBackup = await call(port, ca, "/backup", { client: cert, totp: code(), method: "POST", body: { reason: "before the upgrade" } });
  t.equal(noBackup.status, 409, "a backup with backups off is refused");
  t.match(noBackup.body, /backup\.dir/, "and says what to set");
  t.match(metrics.body, /runigun_backup_enabled 0/);
  // Found by the fuzzer: a rescan above the tip was a 500, and a reason of spaces was accepted.
  const above = await call(port, ca, "/deposits/rescan", { client: cert, totp: code(), method: "POST", body: { reason: "missed deposits", height: 9_999_999 } });
  t.equal(above.status, 409, "a rescan above the chain tip is refused");
  t.match(above.body, /above the chain tip/);
  t.equal((await call(port, ca, "/deposits/rescan", { client: cert, totp: code(), method: "POST", body: { reason: "   ", height: 0 } })).status, 400, "a reason must say something");
  // Found by a review: the validator bent bad values into good ones — `null` became a rescan from the genesis block,
  // drain `{"on": null}` switched drain mode off, extra keys were dropped silently. Each is a 400 that changes nothing.
  const auditBefore = (JSON.parse((await call(port, ca, "/audit?limit=500", { client: cert, totp: code() })).body) as typeof log).entries.length;
  for (const [url, body] of [
    ["/deposits/rescan", { height: null, reason: "missed deposits" }],
    ["/deposits/rescan", { height: false, reason: "missed deposits" }],
    ["/deposits/rescan", { height: "0", reason: "missed deposits" }],
    ["/deposits/rescan", { height: 0, reason: "missed deposits", extra: 1 }],
    ["/drain", { on: null, reason: "winding down" }],
    ["/drain", { on: 0, reason: "winding down" }],
    ["/payouts/b1/release", { feeRateSatVb: true, reason: "refused by every mempool" }],
    ["/payouts/b1/bump", { feeRateSatVb: [7], reason: "fees rose" }],
    ["/wallets/u_aaaaaaaaaaaa/freeze", { reason: 1234 }],
  ] as const) {
    const r = await call(port, ca, url, { client: cert, totp: code(), method: "POST", body });
    t.equal(r.status, 400, `${url} ${JSON.stringify(body)} is refused`);
  }
  const auditAfter = (JSON.parse((await call(port, ca, "/audit?limit=500", { client: cert, totp: code() })).body) as typeof log).entries.length;
  t.equal(auditAfter, auditBefore, "nothing was done or audited");
  t.equal(te.engine.draining, undefined, "drain mode was not touched");
  t.equal((await call(port, ca, "/audit?limit=2", { client: cert, totp: code() })).status, 200, "a number in a query string is still read");
  t.equal((await call(port, ca, "/audit?limit=two", { client: cert, totp: code() })).status, 400);

  // Revoked online, by another operator, while the engine runs; never the last one.
  const last = await call(port, ca, "/operators/alice/revoke", { client: cert, totp: code(), method: "POST", body: { reason: "laptop stolen" } });
  t.equal(last.status, 409, "the last active operator is not revoked online");
  t.match(last.body, /last active operator/);
  const bob = await addOperator({ pkiDir: pki, store: operators, name: "bob", out: join(base, "operator-bob") });
  const bobCert = readPem(bob.dir, "bob");
  const bobOp = (await operators.get(bob.fingerprint))!;
  const bobCode = () => {
    now += 30_000;
    return totpFor(bobOp).generate({ timestamp: now });
  };
  t.equal((await call(port, ca, "/operators/nobody/revoke", { client: bobCert, totp: bobCode(), method: "POST", body: { reason: "laptop stolen" } })).status, 409, "no such operator");
  const revoked = await call(port, ca, "/operators/alice/revoke", { client: bobCert, totp: bobCode(), method: "POST", body: { reason: "laptop stolen" } });
  t.equal(revoked.status, 200, revoked.body);
  t.same(JSON.parse(revoked.body), { revoked: "alice" });
  t.equal((await call(port, ca, "/health", { client: cert, totp: code() })).status, 401, "a revoked operator is refused despite a CA-valid certificate");
  const trail = (JSON.parse((await call(port, ca, "/audit", { client: bobCert, totp: bobCode() })).body) as typeof log).entries;
  t.ok(trail.some((e) => e.action === "revoke-operator" && e.operator === "bob" && e.target === "alice" && e.reason === "laptop stolen"), "audited");
  const again = await addOperator({ pkiDir: pki, store: operators, name: "alice", out: join(base, "operator-alice-3") });
  t.not(again.fingerprint, alice.fingerprint, "once revoked, the name can be given a new certificate");

  await te.engine.storage.journal.flushed();
  const bytes = Buffer.concat(readdirSync(join(te.dataPath, "store")).map((f) => readFileSync(join(te.dataPath, "store", f))));
  t.equal(bytes.indexOf("suspicious login reported"), -1, "the audit log is encrypted on disk");
  t.equal(bytes.indexOf(op.totpSecret), -1, "so are the operators' TOTP secrets");
  t.throws(() => loadConfig({ env: { RUNIGUN_ADMIN_HOST: "0.0.0.0" } }), /not a loopback or VPN address/, "a non-VPN bind is refused at config validation");
});
