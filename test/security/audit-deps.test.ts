// The offline dependency check: OSV ranges evaluated against a lockfile, exceptions with versions and expiry
// dates, coverage counted per installed name@version.
import t, { type Test } from "tap";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const script = new URL("../../scripts/audit-deps.mjs", import.meta.url).pathname;
const refreshScript = new URL("../../scripts/refresh-advisories.mjs", import.meta.url).pathname;
const fx = (f: string) => new URL(`./fixtures/${f}`, import.meta.url).pathname;
// The fixtures run against a frozen snapshot of their own, so the committed one can grow without changing them.
const snapshot = fx("advisories.json");
const readJson = (p: string) => JSON.parse(readFileSync(p, "utf8"));

function audit(args: string[]) {
  const r = spawnSync(process.execPath, [script, ...args], { encoding: "utf8" });
  return { code: r.status, out: r.stdout + r.stderr };
}

/** Writes `value` as JSON into a fresh directory and returns its path. */
function write(t: Test, value: unknown): string {
  const path = join(t.testdir({}), "file.json");
  writeFileSync(path, JSON.stringify(value));
  return path;
}

const fixtureLock = readJson(fx("lock.json"));
const withPackages = (extra: Record<string, unknown>) => ({ ...fixtureLock, packages: { ...fixtureLock.packages, ...extra } });

t.test("known-vulnerable versions are found, fixed ones are not", async (t) => {
  const r = audit(["--lock", fx("lock.json"), "--advisories", snapshot, "--exceptions", fx("exceptions-none.json"), "--today", "2026-11-24"]);
  t.equal(r.code, 1, "fails without exceptions");
  t.match(r.out, /request@2\.88\.2 +GHSA-p8p7-x288-28g6/, "last_affected: 2.88.2 is affected");
  t.match(r.out, /qs@6\.5\.5 +GHSA-6rw7-vpxm-498p/);
  t.notMatch(r.out, /qs@6\.14\.1/, "the fixed version is clean");
  t.match(r.out, /form-data@3\.0\.2 +GHSA-fjxv-7rqg-78g4 .* fixed in: 3\.0\.4 /, "the second of several ranges, with its own fix");
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

t.test("OSV ranges: several introduced/fixed pairs, unsorted events, last_affected, version lists", async (t) => {
  const r = audit(["--lock", fx("lock-ranges.json"), "--advisories", fx("advisories-ranges.json"), "--exceptions", fx("exceptions-none.json"), "--today", "2026-11-24"]);
  t.equal(r.code, 1, r.out);
  t.match(r.out, /multi@0\.5\.0 +GHSA-test-mult-iple .*fixed in: 1\.0\.0 /, "the first interval (0 – 1.0.0), listed after a later one");
  t.notMatch(r.out, /multi@1\.5\.0/, "between two intervals");
  t.match(r.out, /multi@2\.5\.0 +GHSA-test-mult-iple .*fixed in: 3\.0\.0 /, "the second interval");
  t.notMatch(r.out, /multi@3\.5\.0/);
  t.match(r.out, /multi@4\.2\.0 +GHSA-test-mult-iple .*fixed in: no fix \(last affected 4\.2\.0\)/, "last_affected is inclusive");
  t.notMatch(r.out, /multi@4\.2\.1/, "above last_affected");
  t.match(r.out, /listed@1\.0\.1 +GHSA-test-list-edvs/, "an enumerated version");
  t.notMatch(r.out, /listed@1\.0\.0/);
  t.match(r.out, /4 findings, 4 failing/);
});

t.test("inRange follows the OSV evaluation", async (t) => {
  const { inRange } = await import(script);
  const events = [{ introduced: "2.0.0" }, { fixed: "3.0.0" }, { introduced: "0" }, { fixed: "1.0.0" }, { introduced: "4.0.0" }, { last_affected: "4.2.0" }];
  const cases: [string, boolean][] = [
    ["0.0.1", true], ["0.9.9", true], ["1.0.0", false], ["1.9.9", false], ["2.0.0", true], ["2.9.9", true], ["3.0.0", false],
    ["3.9.9", false], ["4.0.0", true], ["4.2.0", true], ["4.2.1", false], ["9.0.0", false],
  ];
  for (const [v, want] of cases) t.equal(inRange(v, events), want, `${v} ${want ? "is" : "is not"} affected`);
  t.equal(inRange("1.2.3", [{ introduced: "0" }]), true, "introduced 0 with no end: every version");
  t.equal(inRange("1.2.3", [{ introduced: "1.3.0" }]), false, "before the only introduced");
  t.equal(inRange("2.0.0-rc.1", [{ introduced: "0" }, { fixed: "2.0.0" }]), true, "a pre-release of the fix is below it");
});

t.test("coverage is counted per installed name@version", async (t) => {
  t.test("a looked-up production package at another version fails", async (t) => {
    // qs was looked up at 6.5.5 and 6.14.1 only; moving it must not pass silently.
    const p = write(t, withPackages({ "node_modules/qs": { version: "6.15.0" } }));
    const r = audit(["--lock", p, "--advisories", snapshot, "--exceptions", fx("exceptions-all.json"), "--today", "2026-11-24"]);
    t.equal(r.code, 1);
    t.match(r.out, /FAIL: qs@6\.15\.0 was not looked up: the snapshot looked up qs at 6\.5\.5, 6\.14\.1 only/);
  });

  t.test("the same for a dev-only package is a warning", async (t) => {
    const p = write(t, withPackages({ "node_modules/qs": { version: "6.15.0", dev: true } }));
    const r = audit(["--lock", p, "--advisories", snapshot, "--exceptions", fx("exceptions-all.json"), "--today", "2026-11-24"]);
    t.match(r.out, /warning: qs@6\.15\.0 \(dev\) was not looked up/);
    t.match(r.out, /4 findings, 1 failing/, "only the expired exception fails");
  });

  t.test("packages never looked up are counted in the summary line, listed on demand, and fail with --strict", async (t) => {
    const lock = { lockfileVersion: 3, packages: {
      "": { name: "fixture" },
      "node_modules/qs": { version: "6.14.1" },
      "node_modules/left-pad": { version: "1.3.0" },
      "node_modules/a/node_modules/left-pad": { version: "1.3.0" },
      "node_modules/devpkg": { version: "1.0.0", dev: true },
    } };
    const p = write(t, lock);
    const args = ["--lock", p, "--advisories", snapshot, "--exceptions", fx("exceptions-none.json"), "--today", "2026-11-24"];
    const r = audit(args);
    t.equal(r.code, 0, "not looked up is not a failure by default");
    t.match(r.out, /coverage: production 1\/2 name@versions looked up \(0 complete, 1 partial\), all 1\/3/);
    t.match(r.out, /audit:deps: .*0 findings, 0 failing; coverage INCOMPLETE: 1 of 2 production name@versions NOT looked up/);
    t.match(r.out, /--list-uncovered names them/);
    t.notMatch(r.out, /left-pad/, "not listed unless asked");

    const listed = audit([...args, "--list-uncovered"]);
    t.match(listed.out, /not looked up, production \(1\): left-pad@1\.3\.0\n/);
    t.match(listed.out, /not looked up, dev only \(1\): devpkg@1\.0\.0\n/);
    t.match(listed.out, /partly looked up \(1\): qs@6\.14\.1\n/);

    const strict = audit([...args, "--strict"]);
    t.equal(strict.code, 1);
    t.match(strict.out, /FAIL \(--strict\): left-pad@1\.3\.0 was never looked up/);
    t.match(strict.out, /FAIL \(--strict\): qs@6\.14\.1 was only partly looked up/);
    t.notMatch(strict.out, /devpkg/, "dev packages do not fail --strict");

    // Every production package looked up, but by hand: still not a complete audit, and the summary says so.
    const partlyOnly = write(t, { lockfileVersion: 3, packages: { "": { name: "fixture" }, "node_modules/qs": { version: "6.14.1" } } });
    t.match(audit(["--lock", partlyOnly, ...args.slice(2)]).out, /coverage INCOMPLETE: every production name@version looked up, 1 of 1 only partly/);
  });

  t.test("full coverage says so", async (t) => {
    const r = audit(["--lock", fx("lock-ranges.json"), "--advisories", fx("advisories-ranges.json"), "--exceptions", fx("exceptions-none.json"), "--today", "2026-11-24"]);
    t.match(r.out, /coverage: production 8\/8 name@versions looked up \(8 complete, 0 partial\)/);
    t.match(r.out, /every production name@version looked up/);
  });

  t.test("a snapshot that lists names only is refused", async (t) => {
    const snap = readJson(snapshot);
    delete snap.lookups;
    snap.checked = ["request", "form-data", "qs", "tough-cookie"];
    const p = write(t, snap);
    const r = audit(["--lock", fx("lock.json"), "--advisories", p, "--exceptions", fx("exceptions-none.json"), "--today", "2026-11-24"]);
    t.equal(r.code, 1);
    t.match(r.out, /"checked" \(package names only\) is no longer read/);
    t.match(r.out, /nothing was checked/);
  });

  t.test("an event that is not a semver version is refused", async (t) => {
    const snap = readJson(snapshot);
    snap.advisories[0].affected[0].ranges[0].events = [{ introduced: "1.0" }, { fixed: "3.1.1" }];
    const p = write(t, snap);
    const r = audit(["--lock", fx("lock.json"), "--advisories", p, "--exceptions", fx("exceptions-none.json"), "--today", "2026-11-24"]);
    t.equal(r.code, 1);
    t.match(r.out, /event \{"introduced":"1\.0"\} is not a semver version/);
  });
});

t.test("exceptions", async (t) => {
  const base = { advisory: "GHSA-p8p7-x288-28g6", package: "request", version: "2.88.2", reason: "fixture", expires: "2030-01-01" };
  const run = (t: Test, exceptions: unknown[]) => {
    const p = write(t, { exceptions });
    return audit(["--lock", fx("lock.json"), "--advisories", snapshot, "--exceptions", p, "--today", "2026-11-24"]);
  };

  t.test("a version (or range) is required", async (t) => {
    const { version: _, ...noVersion } = base;
    const r = run(t, [noVersion]);
    t.equal(r.code, 1);
    t.match(r.out, /error: exception #1 \(GHSA-p8p7-x288-28g6 request\): "version" is required/);
    t.match(run(t, [{ ...base, version: "*" }]).out, /"version" must name the versions reviewed/);
    t.match(run(t, [{ ...base, version: "two" }]).out, /"version" must be a version or semver range/);
  });

  t.test("an exception for other versions does not cover the installed one", async (t) => {
    const r = run(t, [{ ...base, version: "<2.88.0" }]);
    t.match(r.out, /request@2\.88\.2 .*→ FAIL \(the exception covers <2\.88\.0 only\)/);
    t.match(r.out, /warning: unused exception: GHSA-p8p7-x288-28g6 request@<2\.88\.0/);
    const ranged = run(t, [{ ...base, version: ">=2.88.0 <=2.88.2" }]);
    t.match(ranged.out, /request@2\.88\.2 .*excepted until 2030-01-01/);
  });

  t.test("expires must be YYYY-MM-DD; a missing or misspelt key fails the run", async (t) => {
    for (const expires of ["2027-5-1", "2027-02-30", "01/05/2027", "2027-05-01T00:00:00Z"]) {
      const r = run(t, [{ ...base, expires }]);
      t.equal(r.code, 1, expires);
      t.match(r.out, /"expires" must be a date written YYYY-MM-DD/, expires);
    }
    const { expires: _, ...noExpiry } = base;
    const missing = run(t, [noExpiry]);
    t.equal(missing.code, 1);
    t.match(missing.out, /"expires" is required/);
    const misspelt = run(t, [{ ...noExpiry, expiry: "2030-01-01" }]);
    t.equal(misspelt.code, 1);
    t.match(misspelt.out, /unknown key "expiry"/);
    t.match(misspelt.out, /nothing was checked/);
  });

  t.test("an exception that matches no finding is listed", async (t) => {
    const r = run(t, [base, { ...base, advisory: "GHSA-xxxx-xxxx-xxxx", package: "left-pad", version: "1.3.0" }]);
    t.match(r.out, /warning: unused exception: GHSA-xxxx-xxxx-xxxx left-pad@1\.3\.0 \(expires 2030-01-01\) matches no finding; remove it/);
    t.notMatch(r.out, /unused exception: GHSA-p8p7-x288-28g6/);
  });
});

t.test("the refresh script at least parses (it needs the network, so it never runs here)", async (t) => {
  const r = spawnSync(process.execPath, ["--check", refreshScript], { encoding: "utf8" });
  t.equal(r.status, 0, r.stderr);
});

t.test("the real tree passes with the committed snapshot and exceptions, and says what it did not look up", async (t) => {
  const r = audit([]);
  t.equal(r.code, 0, r.out);
  t.match(r.out, /0 failing/);
  t.match(r.out, /coverage: production \d+\/\d+ name@versions looked up/);
  t.notMatch(r.out, /^error:/m);
  t.notMatch(r.out, /unused exception/, "every exception still matches a finding");
});
