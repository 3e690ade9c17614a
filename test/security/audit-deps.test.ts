// The offline dependency check: OSV ranges evaluated against a lockfile, exceptions with expiry dates.
import t from "tap";
import { spawnSync } from "node:child_process";

const script = new URL("../../scripts/audit-deps.mjs", import.meta.url).pathname;
const fx = (f: string) => new URL(`./fixtures/${f}`, import.meta.url).pathname;
// The fixtures run against a frozen snapshot of their own, so the committed one can grow without changing them.
const snapshot = fx("advisories.json");

function audit(args: string[]) {
  const r = spawnSync(process.execPath, [script, ...args], { encoding: "utf8" });
  return { code: r.status, out: r.stdout + r.stderr };
}

t.test("known-vulnerable versions are found, fixed ones are not", async (t) => {
  const r = audit(["--lock", fx("lock.json"), "--advisories", snapshot, "--exceptions", fx("exceptions-none.json"), "--today", "2026-11-24"]);
  t.equal(r.code, 1, "fails without exceptions");
  t.match(r.out, /request@2\.88\.2 +GHSA-p8p7-x288-28g6/, "last_affected: 2.88.2 is affected");
  t.match(r.out, /qs@6\.5\.5 +GHSA-6rw7-vpxm-498p/);
  t.notMatch(r.out, /qs@6\.14\.1/, "the fixed version is clean");
  t.match(r.out, /form-data@3\.0\.2 +GHSA-fjxv-7rqg-78g4/, "the second of several ranges");
  t.notMatch(r.out, /form-data@4\.0\.4/, "the third range's fix");
  t.match(r.out, /tough-cookie@2\.5\.0/);
  t.match(r.out, /4 findings, 4 failing/);
});

t.test("an unexpired exception covers a finding; an expired one does not", async (t) => {
  const r = audit(["--lock", fx("lock.json"), "--advisories", snapshot, "--exceptions", fx("exceptions-all.json"), "--today", "2026-11-24"]);
  t.equal(r.code, 1);
  t.match(r.out, /tough-cookie@2\.5\.0 .*FAIL \(exception expired 2020-01-01\)/);
  t.match(r.out, /request@2\.88\.2 .*excepted until 2030-01-01/);
  t.match(r.out, /4 findings, 1 failing/);
});

t.test("the real tree passes with the committed snapshot and exceptions", async (t) => {
  const r = audit([]);
  t.equal(r.code, 0, r.out);
  t.match(r.out, /0 failing/);
});
