// `runigun keys operator …` as an operator runs it: add writes the operator's credentials to the directory named
// with --out (never into the data directory) and prints a one-time console link; enroll issues a new link that
// replaces the old one; revoke refuses the operator; bad usage says what to type; each change is written to the audit
// log; operators' secrets an older version left in pkiDir are named at every `keys operator` command.
import t from "tap";
import { runigun } from "../support/cli.ts";
import { join } from "node:path";
import { EncryptedStore } from "../../src/store/db.ts";
import { loadKeyRingFile } from "../../src/store/keyring.ts";
import { OperatorStore } from "../../src/edges/admin/operators.ts";

t.test("keys operator add, enroll, revoke", async (t) => {
  const dir = t.testdir();
  const env = { RUNIGUN_NETWORK: "regtest", RUNIGUN_DATA_DIR: join(dir, "data"), RUNIGUN_LOG_LEVEL: "error", RUNIGUN_ADMIN_PORT: "8443" };
  const add = await runigun(["keys", "operator", "add", "alice", "--out", join(dir, "operator-alice")], env);
  t.equal(add.code, 0, add.out);
  const first = /enroll#t=([A-Za-z0-9_-]+)/.exec(add.out)?.[1];
  t.ok(first, "a one-time console link");
  t.match(add.out, /https:\/\/localhost:8443\/console\/enroll#t=/);
  const enroll = await runigun(["keys", "operator", "enroll", "alice"], env);
  t.equal(enroll.code, 0, enroll.out);
  const second = /enroll#t=([A-Za-z0-9_-]+)/.exec(enroll.out)?.[1];
  t.ok(second && second !== first, "a new link");
  const store = await EncryptedStore.open({ path: join(dir, "data", "store"), keyring: loadKeyRingFile(join(dir, "data", "master.key")) });
  const ops = new OperatorStore(store);
  const alice = (await ops.list()).find((o) => o.name === "alice")!;
  t.match(ops.checkEnrollment(alice, first!, Date.now()), /not valid/, "the old link stopped working");
  t.equal(ops.checkEnrollment(alice, second!, Date.now()), undefined, "the new one works");
  await store.close();
  const nobody = await runigun(["keys", "operator", "enroll", "bob"], env);
  t.equal(nobody.code, 1);
  t.match(nobody.out, /no active operator bob; add one with/);
  t.equal((await runigun(["keys", "operator", "revoke", "alice"], env)).code, 0);
  t.match((await runigun(["keys", "operator", "enroll", "alice"], env)).out, /no active operator alice/, "a revoked operator gets no link");
  const usage = await runigun(["keys", "operator", "promote", "alice"], env);
  t.match(usage.out, /usage: runigun keys operator add\|enroll\|revoke NAME/);
});

t.test("keys operator revoke on a wrong data directory, or of nobody: refused, exit 1, nothing made", async (t) => {
  const { existsSync, readdirSync } = await import("node:fs");
  const dir = t.testdir();
  const env = { RUNIGUN_NETWORK: "regtest", RUNIGUN_LOG_LEVEL: "error" };
  const wrong = await runigun(["keys", "operator", "revoke", "alice"], { ...env, RUNIGUN_DATA_DIR: join(dir, "dta") });
  t.equal(wrong.code, 1, wrong.out);
  t.match(wrong.out, /no store at .*dta\/store.*RUNIGUN_DATA_DIR/);
  t.notOk(existsSync(join(dir, "dta")) && readdirSync(join(dir, "dta")).length > 0, "no store, PKI or secrets were made there");
  const enroll = await runigun(["keys", "operator", "enroll", "alice"], { ...env, RUNIGUN_DATA_DIR: join(dir, "dta") });
  t.equal(enroll.code, 1, enroll.out);
  t.match(enroll.out, /no store at/);
  const data = { ...env, RUNIGUN_DATA_DIR: join(dir, "data") };
  t.equal((await runigun(["keys", "operator", "add", "bob", "--out", join(dir, "operator-bob")], data)).code, 0, "add makes the store on a first setup");
  const nobody = await runigun(["keys", "operator", "revoke", "alice"], data);
  t.equal(nobody.code, 1, nobody.out);
  t.match(nobody.out, /no active operator alice: nothing was revoked/);
  const bob = await runigun(["keys", "operator", "revoke", "bob"], data);
  t.equal(bob.code, 0, bob.out);
  t.match(bob.out, /operator bob revoked/);
  t.equal((await runigun(["keys", "operator", "revoke", "bob"], data)).code, 1, "revoking again revokes nothing");
});

t.test("keys operator add, enroll, revoke are written to the audit log, by \"cli\", with their outcomes", async (t) => {
  const { AuditLog } = await import("../../src/edges/admin/audit.ts");
  const dir = t.testdir();
  const env = { RUNIGUN_NETWORK: "regtest", RUNIGUN_DATA_DIR: join(dir, "data"), RUNIGUN_LOG_LEVEL: "error" };
  for (const args of [["add", "alice", "--out", join(dir, "operator-alice")], ["enroll", "alice"], ["revoke", "alice"], ["revoke", "alice"]]) await runigun(["keys", "operator", ...args], env);
  const store = await EncryptedStore.open({ path: join(dir, "data", "store"), keyring: loadKeyRingFile(join(dir, "data", "master.key")) });
  t.teardown(() => store.close());
  const entries = (await new AuditLog(store).list(20)).reverse().map((e) => ({ operator: e.operator, action: e.action, target: e.target, reason: e.reason, outcome: e.outcome }));
  t.match(entries, [
    { operator: "cli", action: "add-operator", target: "alice", reason: /keys operator add.*one-time link/ },
    { operator: "cli", action: "add-operator:outcome", target: "alice", outcome: "done" },
    { operator: "cli", action: "console-enroll-link", target: "alice", reason: /keys operator enroll/ },
    { operator: "cli", action: "console-enroll-link:outcome", outcome: "done" },
    { operator: "cli", action: "revoke-operator", target: "alice" },
    { operator: "cli", action: "revoke-operator:outcome", outcome: "done" },
    { operator: "cli", action: "revoke-operator", target: "alice" },
    { operator: "cli", action: "revoke-operator:outcome", outcome: "refused: no active operator alice" },
  ]);
  t.equal(entries.length, 8);
  t.notMatch(JSON.stringify(entries), /enroll#t=|secret=/, "no link token or TOTP secret in the log");
});

t.test("keys operator add: the credentials go to --out (required), the data directory keeps the certificate only; old secrets there are named", async (t) => {
  const { existsSync, readdirSync, statSync, mkdirSync, writeFileSync } = await import("node:fs");
  const dir = t.testdir();
  const data = join(dir, "data"), pki = join(data, "pki");
  const env = { RUNIGUN_NETWORK: "regtest", RUNIGUN_DATA_DIR: data, RUNIGUN_LOG_LEVEL: "error" };
  const bare = await runigun(["keys", "operator", "add", "alice"], env);
  t.equal(bare.code, 1, bare.out);
  t.match(bare.out, /say where alice's credentials go: runigun keys operator add alice --out DIR/);
  t.notOk(existsSync(data), "nothing made without --out");
  const inside = await runigun(["keys", "operator", "add", "alice", "--out", join(data, "operator-alice")], env);
  t.equal(inside.code, 1, inside.out);
  t.match(inside.out, /is inside .*data.*--out DIR/, "not into the data directory (its backups would hold both factors)");
  t.notOk(existsSync(join(data, "operator-alice")));
  const out = join(dir, "usb", "operator-alice");
  mkdirSync(join(dir, "usb"));
  const add = await runigun(["keys", "operator", "add", "alice", "--out", out], env);
  t.equal(add.code, 0, add.out);
  t.match(add.out, new RegExp(`alice's credentials are in ${out} .*alice\\.crt and alice\\.key.*alice\\.otpauth and alice-totp\\.png`));
  t.match(add.out, new RegExp(`Hand this directory to alice offline .*then delete it here: rm -r ${out}\\.`));
  t.match(add.out, /the engine keeps only the certificate \(.*operators\/alice\.crt\)/);
  t.notMatch(add.out, /warning/, "nothing left over on a new data directory");
  t.equal((statSync(out).mode & 0o777).toString(8), "700");
  t.same(readdirSync(out).sort(), ["alice-totp.png", "alice.crt", "alice.key", "alice.otpauth"]);
  t.same(readdirSync(join(pki, "operators")), ["alice.crt"], "pkiDir: the certificate only");
  // What an older version left beside the certificate: named at the next `keys operator` command, kept.
  for (const f of ["old.key", "old.otpauth", "old-totp.png"]) writeFileSync(join(pki, "operators", f), "otpauth://totp/RuniGun:old?secret=JBSWY3DPEHPK3PXP");
  const enroll = await runigun(["keys", "operator", "enroll", "alice"], env);
  t.equal(enroll.code, 0, enroll.out);
  t.match(enroll.out, /warning: operators' secrets from an older version are in .*pki: operators\/old-totp\.png, operators\/old\.key, operators\/old\.otpauth .*move these files off this host/);
  t.notMatch(enroll.out, /JBSWY3DP/, "never their contents");
  t.match((await runigun(["keys", "operator", "revoke", "alice"], env)).out, /warning: operators' secrets from an older version/);
  t.match((await runigun(["keys", "operator", "add", "bob", "--out", join(dir, "usb", "operator-bob")], env)).out, /warning: operators' secrets from an older version/);
  t.ok(existsSync(join(pki, "operators", "old.key")), "never deleted for the operator");
});
