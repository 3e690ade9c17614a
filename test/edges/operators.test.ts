// The operators' second factor on a real encrypted store: a TOTP code passes once however many requests carry it
// at the same moment, and wrong codes within a day stop the checking for a while (a six-digit code cannot be guessed
// by trying them all), whatever right codes came between, told to the operator and to the log. `keys operator add`
// writes both factors to the operator's own directory (0700, files 0600), and only the certificate into pkiDir.
import t, { type Test } from "tap";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { EncryptedStore } from "../../src/store/db.ts";
import { generateKeyRingFile } from "../../src/store/keyring.ts";
import { OperatorStore, TOTP_FREE_FAILURES, addOperator, totpFor, type Operator, type TotpFailure } from "../../src/edges/admin/operators.ts";
import { ensurePki, fingerprint } from "../../src/tls/certs.ts";

/** How long a wrong code counts (TOTP_WINDOW_MS): a day. */
const TOTP_WINDOW_MS = 24 * 3600_000;

async function setup(t: Test) {
  const dir = t.testdir();
  const store = await EncryptedStore.open({ path: join(dir, "store"), keyring: generateKeyRingFile(join(dir, "master.key")) });
  t.teardown(() => store.close());
  const pauses: Array<[string, number]> = [];
  const failures: TotpFailure[] = [];
  const ops = new OperatorStore(store, { onTotpPause: (name, ms) => void pauses.push([name, ms]), onTotpFailure: (e) => void failures.push(e) });
  const alice: Operator = { name: "alice", fingerprint: "ab".repeat(32), totpSecret: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", lastStep: 0, addedAt: 0 };
  await ops.put(alice);
  return { dir, ops, alice, pauses, failures };
}

/** A code other than the ones valid at `now` (±1 step). */
function wrongCode(op: Operator, now: number): string {
  const valid = new Set([-30_000, 0, 30_000].map((d) => totpFor(op).generate({ timestamp: now + d })));
  for (let i = 0; ; i++) {
    const c = String(i).padStart(6, "0");
    if (!valid.has(c)) return c;
  }
}

t.test("one code passes once, also when requests carry it together", async (t) => {
  const { ops, alice } = await setup(t);
  const now = Date.parse("2026-11-28T12:00:10Z");
  const code = totpFor(alice).generate({ timestamp: now });
  const answers = await Promise.all(Array.from({ length: 8 }, () => ops.checkTotp(alice, code, now)));
  t.equal(answers.filter((a) => a === undefined).length, 1, "exactly one of eight concurrent checks accepted");
  for (const a of answers.filter((a) => a !== undefined)) t.match(a, /already used/);
  t.equal((await ops.get(alice.fingerprint))!.lastStep, Math.floor(now / 30_000), "its step is consumed");
  // A change to the record that started before the check does not write back the old step.
  const later = now + 30_000;
  await Promise.all([ops.touchKey(alice.fingerprint, "none", 1, later), ops.checkTotp(alice, totpFor(alice).generate({ timestamp: later }), later)]);
  t.equal((await ops.get(alice.fingerprint))!.lastStep, Math.floor(later / 30_000), "a key touched meanwhile keeps the consumed step");
  t.equal(await ops.checkTotp(alice, totpFor(alice).generate({ timestamp: later }), later), "that TOTP code was already used; wait for the next one");
});

t.test("wrong codes within a day pause the checking, doubling at each further one", async (t) => {
  const { ops, alice, pauses } = await setup(t);
  let now = Date.parse("2026-11-28T12:00:10Z");
  for (let i = 1; i < TOTP_FREE_FAILURES; i++) t.equal(await ops.checkTotp(alice, wrongCode(alice, now), now), "the TOTP code is wrong", `wrong code ${i}`);
  t.match(await ops.checkTotp(alice, wrongCode(alice, now), now), /after 5 wrong codes within 24 h, codes are not checked for 60 s/);
  t.same(pauses, [["alice", 60_000]], "the pause is told once, with the operator's name");
  const right = totpFor(alice).generate({ timestamp: now + 1000 });
  t.match(await ops.checkTotp(alice, right, now + 1000), /too many wrong TOTP codes; try again in 59 s/, "even a right code is not checked during the pause");
  t.equal((await ops.get(alice.fingerprint))!.lastStep, 0, "and nothing is consumed");
  now += 60_000;
  t.match(await ops.checkTotp(alice, wrongCode(alice, now), now), /not checked for 120 s/, "the next wrong code doubles the pause");
  now += 120_000;
  t.equal(await ops.checkTotp(alice, totpFor(alice).generate({ timestamp: now }), now), undefined, "after it, a right code passes");
  now += 30_000;
  t.match(await ops.checkTotp(alice, wrongCode(alice, now), now), /after 7 wrong codes within 24 h, codes are not checked for 240 s/, "but clears nothing: the next wrong code pauses again");
  t.equal(pauses.length, 3);
});

t.test("a right code between wrong ones resets nothing: 5 rounds of 4 wrong codes and 1 right one are paused and audited", async (t) => {
  const { ops, alice, pauses, failures } = await setup(t);
  let now = Date.parse("2026-11-28T12:00:10Z");
  const answers: Array<string | undefined> = [];
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < 4; i++) answers.push(await ops.checkTotp(alice, wrongCode(alice, now), now));
    now += 30_000;
    // The operator's own request (or the attacker's one lucky guess) between the guesses.
    answers.push(await ops.checkTotp(alice, totpFor(alice).generate({ timestamp: now }), now));
    now += 30_000;
  }
  t.match(answers[5], /after 5 wrong codes within 24 h, codes are not checked for 60 s/, "the fifth wrong code pauses, a right code between notwithstanding");
  t.ok(answers.filter((a) => a !== undefined && /too many wrong TOTP codes/.test(a)).length > 0, "codes are refused unchecked during the pauses");
  t.ok(pauses.length >= 1, "the pause is told");
  t.same(failures[0], { name: "alice", fingerprint: "ab".repeat(8), wrongCodes: 1, windowMs: TOTP_WINDOW_MS, pauseMs: 0 }, "the first wrong code of the window is told (for the audit log), the fingerprint shortened as in the logs");
  t.same(failures.slice(1).map((e) => e.pauseMs > 0), failures.slice(1).map(() => true), "after it, only pauses are told");
  t.equal(failures.filter((e) => e.pauseMs > 0).length, pauses.length, "every pause is told");
  t.notOk(JSON.stringify(failures).includes("ab".repeat(9)), "never the full fingerprint");
});

t.test("the window slides: wrong codes older than a day no longer count, and the next one is a window's first again", async (t) => {
  const { ops, alice, failures } = await setup(t);
  let now = Date.parse("2026-11-28T12:00:10Z");
  for (let i = 0; i < TOTP_FREE_FAILURES - 1; i++) {
    t.equal(await ops.checkTotp(alice, wrongCode(alice, now), now), "the TOTP code is wrong");
    now += 3600_000;
  }
  t.equal(failures.length, 1, "one entry for the window's first wrong code");
  // 24 h after the first one: it has left the window, so this is the fourth in it, not the fifth.
  now = Date.parse("2026-11-28T12:00:10Z") + TOTP_WINDOW_MS + 1;
  t.equal(await ops.checkTotp(alice, wrongCode(alice, now), now), "the TOTP code is wrong", "the oldest wrong code no longer counts");
  t.match(await ops.checkTotp(alice, wrongCode(alice, now), now), /after 5 wrong codes within 24 h/, "the others still do");
  now += 2 * TOTP_WINDOW_MS;
  t.equal(await ops.checkTotp(alice, totpFor(alice).generate({ timestamp: now }), now), undefined, "a day without wrong codes: a right one passes");
  t.equal(await ops.checkTotp(alice, wrongCode(alice, now), now), "the TOTP code is wrong");
  t.same(failures.filter((e) => e.pauseMs === 0).map((e) => e.wrongCodes), [1, 1], "and the next wrong code opens a new window, told again");
});

t.test("a revoked or unknown operator's code is refused", async (t) => {
  const { ops, alice } = await setup(t);
  const now = Date.parse("2026-11-28T12:00:10Z");
  await ops.revoke("alice");
  t.match(await ops.checkTotp(alice, totpFor(alice).generate({ timestamp: now }), now), /not \(or no longer\) an operator's/);
  t.match(await ops.checkTotp({ fingerprint: "cd".repeat(32) }, "123456", now), /not \(or no longer\) an operator's/);
  t.equal(await ops.revoke("alice"), false, "revoking twice says nobody was revoked");
});

t.test("keys operator add: both factors go to the operator's own directory (0700, files 0600), pkiDir keeps only the certificate", async (t) => {
  const { dir, ops } = await setup(t);
  const pki = join(dir, "pki");
  await ensurePki(pki, { admin: "127.0.0.1", internal: "127.0.0.1" });
  const mode = (p: string) => (statSync(p).mode & 0o777).toString(8);
  const out = join(dir, "handover", "operator-carol");
  mkdirSync(join(dir, "handover"));
  const carol = await addOperator({ pkiDir: pki, store: ops, name: "carol", out });
  t.equal(carol.dir, out);
  t.equal(mode(out), "700", "the export directory is the operator's only");
  t.same(readdirSync(out).sort(), ["carol-totp.png", "carol.crt", "carol.key", "carol.otpauth"]);
  for (const f of readdirSync(out)) t.equal(mode(join(out, f)), "600", `${f} is 0600`);
  t.equal(readFileSync(join(out, "carol.otpauth"), "utf8"), carol.uri + "\n");
  t.equal(readFileSync(join(out, "carol-totp.png")).subarray(1, 4).toString(), "PNG", "the QR code holds the TOTP secret too");
  t.match(readFileSync(join(out, "carol.key"), "utf8"), /BEGIN PRIVATE KEY/);
  t.same(readdirSync(join(pki, "operators")), ["carol.crt"], "the engine's host keeps the certificate alone: no key, no TOTP secret");
  t.equal(fingerprint(readFileSync(join(pki, "operators", "carol.crt"), "utf8")), carol.fingerprint, "the one the operator holds");
  t.equal(fingerprint(readFileSync(join(out, "carol.crt"), "utf8")), carol.fingerprint);
  t.notOk(readdirSync(pki).some((f) => /otpauth|totp/.test(f)), "nothing of the TOTP secret in pkiDir");

  // Re-added after a revocation: a new directory, never one that is there (someone else's files, a planted link).
  await ops.revoke("carol");
  await t.rejects(addOperator({ pkiDir: pki, store: ops, name: "carol", out }), { code: "setup", message: /exists; name a new directory/ });
  const elsewhere = join(dir, "elsewhere");
  mkdirSync(elsewhere);
  symlinkSync(elsewhere, join(dir, "handover", "link"));
  await t.rejects(addOperator({ pkiDir: pki, store: ops, name: "carol", out: join(dir, "handover", "link") }), { code: "setup", message: /exists/ }, "a link in its place is not followed");
  t.same(readdirSync(elsewhere), [], "nothing written where the link leads");
  await t.rejects(addOperator({ pkiDir: pki, store: ops, name: "carol", out: join(pki, "carol") }), { code: "setup", message: /inside .*pki.*--out DIR/ }, "not into pkiDir");
  symlinkSync(pki, join(dir, "pki-link"));
  await t.rejects(addOperator({ pkiDir: pki, store: ops, name: "carol", out: join(dir, "pki-link", "operators", "carol") }), { code: "setup", message: /inside/ }, "not into pkiDir through a link");
  await t.rejects(addOperator({ pkiDir: pki, store: ops, name: "carol", out: join(dir, "data", "carol"), hostDirs: [join(dir, "data")] }), { code: "setup", message: /inside/ }, "nor into another of the host's directories");
  t.notOk(existsSync(join(pki, "carol")) || existsSync(join(pki, "operators", "carol")), "nothing made there");
  t.equal((await ops.list()).filter((o) => o.name === "carol" && !o.revoked).length, 0, "and no operator added by a refused add");
  const again = await addOperator({ pkiDir: pki, store: ops, name: "carol", out: join(dir, "handover", "operator-carol-2") });
  t.not(again.uri, carol.uri, "a new TOTP secret");
  t.not(again.fingerprint, carol.fingerprint, "a new certificate");
  t.equal(fingerprint(readFileSync(join(pki, "operators", "carol.crt"), "utf8")), again.fingerprint, "pkiDir's copy is the new certificate");
  t.equal(mode(join(pki, "operators", "carol.crt")), "644");
});

t.test("an older version's operator secrets left in pkiDir are named in a warning (never read, never deleted)", async (t) => {
  const { dir } = await setup(t);
  const pki = join(dir, "pki");
  t.same((await ensurePki(pki, { admin: "127.0.0.1", internal: "127.0.0.1" })).warnings, [], "none on a new pkiDir");
  const secret = "otpauth://totp/RuniGun:dave?secret=JBSWY3DPEHPK3PXP";
  mkdirSync(join(pki, "operators"), { recursive: true });
  for (const f of ["dave.crt", "dave.key", "dave.otpauth", "dave-totp.png"]) writeFileSync(join(pki, "operators", f), f === "dave.otpauth" ? secret : "-----BEGIN PRIVATE KEY-----\nMIGH\n");
  const { warnings } = await ensurePki(pki, { admin: "127.0.0.1", internal: "127.0.0.1" });
  t.equal(warnings.length, 1);
  t.match(warnings[0], /operators\/dave-totp\.png, operators\/dave\.key, operators\/dave\.otpauth/);
  t.match(warnings[0], /move these files off this host/);
  t.notMatch(warnings[0], /dave\.crt/, "the certificate is the engine's to keep");
  t.notOk(warnings[0]!.includes("JBSWY3DP") || warnings[0]!.includes("MIGH"), "names, never contents");
  t.same(readdirSync(join(pki, "operators")).sort(), ["dave-totp.png", "dave.crt", "dave.key", "dave.otpauth"], "nothing deleted");
});
