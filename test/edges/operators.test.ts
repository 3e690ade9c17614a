// The operators' second factor on a real encrypted store: a TOTP code passes once however many requests carry it
// at the same moment, and wrong codes in a row stop the checking for a while (a six-digit code cannot be guessed
// by trying them all), told to the operator and to the log. The files `keys operator add` writes are 0600.
import t, { type Test } from "tap";
import { chmodSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { EncryptedStore } from "../../src/store/db.ts";
import { generateKeyRingFile } from "../../src/store/keyring.ts";
import { OperatorStore, TOTP_FREE_FAILURES, addOperator, totpFor, type Operator } from "../../src/edges/admin/operators.ts";
import { ensurePki } from "../../src/tls/certs.ts";

async function setup(t: Test) {
  const dir = t.testdir();
  const store = await EncryptedStore.open({ path: join(dir, "store"), keyring: generateKeyRingFile(join(dir, "master.key")) });
  t.teardown(() => store.close());
  const pauses: Array<[string, number]> = [];
  const ops = new OperatorStore(store, { onTotpPause: (name, ms) => void pauses.push([name, ms]) });
  const alice: Operator = { name: "alice", fingerprint: "ab".repeat(32), totpSecret: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", lastStep: 0, addedAt: 0 };
  await ops.put(alice);
  return { ops, alice, pauses };
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

t.test("wrong codes in a row pause the checking, doubling, until a right code", async (t) => {
  const { ops, alice, pauses } = await setup(t);
  let now = Date.parse("2026-11-28T12:00:10Z");
  for (let i = 1; i < TOTP_FREE_FAILURES; i++) t.equal(await ops.checkTotp(alice, wrongCode(alice, now), now), "the TOTP code is wrong", `wrong code ${i}`);
  t.match(await ops.checkTotp(alice, wrongCode(alice, now), now), /after 5 wrong codes in a row, codes are not checked for 60 s/);
  t.same(pauses, [["alice", 60_000]], "the pause is told once, with the operator's name");
  const right = totpFor(alice).generate({ timestamp: now + 1000 });
  t.match(await ops.checkTotp(alice, right, now + 1000), /too many wrong TOTP codes; try again in 59 s/, "even a right code is not checked during the pause");
  t.equal((await ops.get(alice.fingerprint))!.lastStep, 0, "and nothing is consumed");
  now += 60_000;
  t.match(await ops.checkTotp(alice, wrongCode(alice, now), now), /not checked for 120 s/, "the next wrong code doubles the pause");
  now += 120_000;
  t.equal(await ops.checkTotp(alice, totpFor(alice).generate({ timestamp: now }), now), undefined, "after it, a right code passes");
  now += 30_000;
  t.equal(await ops.checkTotp(alice, wrongCode(alice, now), now), "the TOTP code is wrong", "and the count starts again");
  t.equal(pauses.length, 2);
});

t.test("a revoked or unknown operator's code is refused", async (t) => {
  const { ops, alice } = await setup(t);
  const now = Date.parse("2026-11-28T12:00:10Z");
  await ops.revoke("alice");
  t.match(await ops.checkTotp(alice, totpFor(alice).generate({ timestamp: now }), now), /not \(or no longer\) an operator's/);
  t.match(await ops.checkTotp({ fingerprint: "cd".repeat(32) }, "123456", now), /not \(or no longer\) an operator's/);
  t.equal(await ops.revoke("alice"), false, "revoking twice says nobody was revoked");
});

t.test("keys operator add: the TOTP secret's files, QR code included, are the operator's only (0600), also when a revoked name is added again", async (t) => {
  const { ops } = await setup(t);
  const pki = t.testdir();
  await ensurePki(pki, { admin: "127.0.0.1", internal: "127.0.0.1" });
  const dir = join(pki, "operators");
  const mode = (f: string) => (statSync(join(dir, f)).mode & 0o777).toString(8);
  const png = await addOperator({ pkiDir: pki, store: ops, name: "carol" });
  t.equal(mode("carol.otpauth"), "600");
  t.equal(mode("carol-totp.png"), "600", "the QR code holds the TOTP secret too");
  t.equal(readFileSync(join(dir, "carol-totp.png")).subarray(1, 4).toString(), "PNG");
  // A QR code left by an older version (0644) for a certificate since revoked: the new operator's is a new file.
  chmodSync(join(dir, "carol-totp.png"), 0o644);
  await ops.revoke("carol");
  const again = await addOperator({ pkiDir: pki, store: ops, name: "carol" });
  t.not(again.uri, png.uri, "a new TOTP secret");
  t.equal(mode("carol-totp.png"), "600");
  t.equal(mode("carol.otpauth"), "600");
});
