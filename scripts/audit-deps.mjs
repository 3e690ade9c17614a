#!/usr/bin/env node
// `npm run audit:deps`: checks package-lock.json against the advisory snapshot in security/ without any network
// (the registry's audit endpoint answers 405 here). See security/README.md for the rules; in short:
// - a finding (an installed name@version inside an advisory's OSV range) fails unless an exception names its
//   advisory, package and version (exact or semver range) and has not expired;
// - a malformed snapshot or exception (no version, an `expires` that is not YYYY-MM-DD, an unknown key) fails;
// - coverage is counted per installed name@version: the snapshot's `lookups` say which name@versions were looked
//   up and how ("complete" or "partial"). A production name@version whose package was looked up at other versions
//   only fails (its lookup says nothing about what is installed now); production name@versions never looked up
//   are counted in the summary line and fail only with --strict (the release gate, after a networked refresh).
// Flags: --lock, --advisories, --exceptions, --today YYYY-MM-DD, --strict, --list-uncovered.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import semver from "semver";

const DAY = 86_400_000;
const ISO_DATE = /^\d{4}-\d{2}-\d{2}$/;

/** A real calendar date written YYYY-MM-DD (2027-02-30 is not). */
export function isIsoDate(s) {
  if (typeof s !== "string" || !ISO_DATE.test(s)) return false;
  const d = new Date(`${s}T00:00:00Z`);
  return !Number.isNaN(d.getTime()) && d.toISOString().slice(0, 10) === s;
}

const eventVersion = (e) => e.introduced ?? e.fixed ?? e.last_affected ?? e.limit;
const compareEventVersions = (a, b) => (a === "0" ? (b === "0" ? 0 : -1) : b === "0" ? 1 : semver.compare(a, b));
// At one version: introduced before last_affected before fixed (an `introduced X, fixed X` pair is empty).
const KIND_ORDER = { introduced: 0, last_affected: 1, fixed: 2, limit: 3 };
const kindOf = (e) => Object.keys(KIND_ORDER).find((k) => e[k] !== undefined);

/**
 * Is `version` inside one OSV range (type SEMVER or ECOSYSTEM)? Per the OSV schema's evaluation: events sorted by
 * version ("0" below every version); the version is affected when the last event at or below it is an
 * `introduced` (`fixed` excludes its own version, `last_affected` includes it). Several introduced/fixed pairs
 * in one range are several intervals. `limit` (git ranges) is ignored.
 */
export function inRange(version, events) {
  const sorted = events
    .filter((e) => e.limit === undefined)
    .map((e, i) => ({ e, i }))
    .sort((a, b) => compareEventVersions(eventVersion(a.e), eventVersion(b.e)) || KIND_ORDER[kindOf(a.e)] - KIND_ORDER[kindOf(b.e)] || a.i - b.i)
    .map((x) => x.e);
  let affected = false;
  for (const e of sorted) {
    if (e.introduced !== undefined) {
      if (e.introduced === "0" || semver.gte(version, e.introduced)) affected = true;
    } else if (e.fixed !== undefined) {
      if (semver.gte(version, e.fixed)) affected = false;
    } else if (e.last_affected !== undefined) {
      if (semver.gt(version, e.last_affected)) affected = false;
    }
  }
  return affected;
}

/** The first `fixed` above `version` in the range it is affected by, or a note that there is none. */
function fixFor(version, events) {
  const above = events
    .filter((e) => e.fixed !== undefined && semver.gt(e.fixed, version))
    .map((e) => e.fixed)
    .sort(semver.compare);
  if (above.length) return above[0];
  const la = events.filter((e) => e.last_affected !== undefined).map((e) => e.last_affected);
  return la.length ? `no fix (last affected ${la.sort(semver.compare).at(-1)})` : "no fix";
}

/** Problems with the snapshot's shape; each one fails the run (a range nobody can evaluate must not pass silently). */
function validateSnapshot(snapshot) {
  const errors = [];
  if (!isIsoDate(snapshot.taken)) errors.push(`snapshot: "taken" must be YYYY-MM-DD, got ${JSON.stringify(snapshot.taken)}`);
  if (snapshot.checked !== undefined)
    errors.push(`snapshot: "checked" (package names only) is no longer read; record lookups per name@version in "lookups"`);
  if (!snapshot.lookups || typeof snapshot.lookups !== "object" || Array.isArray(snapshot.lookups))
    errors.push(`snapshot: "lookups" must be an object { "<package>": { "versions": [...], "status": "complete"|"partial", "how": "..." } }`);
  else
    for (const [name, l] of Object.entries(snapshot.lookups)) {
      if (!Array.isArray(l.versions) || !l.versions.length || !l.versions.every((v) => semver.valid(v)))
        errors.push(`snapshot lookups.${name}: "versions" must list the exact versions looked up`);
      if (l.status !== "complete" && l.status !== "partial") errors.push(`snapshot lookups.${name}: "status" must be "complete" or "partial"`);
      if (typeof l.how !== "string" || !l.how) errors.push(`snapshot lookups.${name}: "how" must say how it was looked up`);
    }
  if (!Array.isArray(snapshot.advisories)) {
    errors.push(`snapshot: "advisories" must be a list`);
    return errors;
  }
  const seen = new Set();
  for (const adv of snapshot.advisories) {
    const where = `advisory ${adv.id ?? "(no id)"}`;
    if (typeof adv.id !== "string") errors.push(`${where}: no id`);
    else if (seen.has(adv.id)) errors.push(`${where}: listed twice`);
    seen.add(adv.id);
    if (!Array.isArray(adv.affected) || !adv.affected.length) errors.push(`${where}: no "affected" entries`);
    for (const a of adv.affected ?? []) {
      if (typeof a.package !== "string") errors.push(`${where}: an affected entry without "package"`);
      if (a.versions !== undefined && (!Array.isArray(a.versions) || !a.versions.every((v) => semver.valid(v))))
        errors.push(`${where} (${a.package}): "versions" must be a list of exact versions`);
      if (!Array.isArray(a.ranges) && a.versions === undefined) errors.push(`${where} (${a.package}): neither "ranges" nor "versions"`);
      for (const r of a.ranges ?? []) {
        if (r.type !== "SEMVER" && r.type !== "ECOSYSTEM") errors.push(`${where} (${a.package}): range type ${r.type} cannot be evaluated`);
        if (!Array.isArray(r.events) || !r.events.some((e) => e.introduced !== undefined))
          errors.push(`${where} (${a.package}): a range without an "introduced" event`);
        for (const e of r.events ?? []) {
          const kinds = Object.keys(e);
          const v = eventVersion(e);
          if (kinds.length !== 1 || !(kinds[0] in KIND_ORDER)) errors.push(`${where} (${a.package}): bad event ${JSON.stringify(e)}`);
          else if (!(kinds[0] === "introduced" && v === "0") && !semver.valid(v))
            errors.push(`${where} (${a.package}): event ${JSON.stringify(e)} is not a semver version`);
        }
      }
    }
  }
  return errors;
}

const EXCEPTION_KEYS = ["advisory", "package", "version", "reason", "expires"];

/** Problems with one exception; each one fails the run (a misspelt key must not make an exception eternal). */
function validateException(ex, i) {
  const where = `exception #${i + 1} (${ex?.advisory ?? "?"} ${ex?.package ?? "?"})`;
  if (!ex || typeof ex !== "object") return [`exception #${i + 1}: not an object`];
  const errors = [];
  for (const k of Object.keys(ex)) if (!EXCEPTION_KEYS.includes(k)) errors.push(`${where}: unknown key "${k}" (allowed: ${EXCEPTION_KEYS.join(", ")})`);
  for (const k of EXCEPTION_KEYS) if (typeof ex[k] !== "string" || !ex[k].trim()) errors.push(`${where}: "${k}" is required`);
  if (typeof ex.version === "string" && ex.version.trim() && !semver.validRange(ex.version))
    errors.push(`${where}: "version" must be a version or semver range, got ${JSON.stringify(ex.version)}`);
  if (typeof ex.version === "string" && ["*", "x", ""].includes(ex.version.trim()))
    errors.push(`${where}: "version" must name the versions reviewed, not every version`);
  if (typeof ex.expires === "string" && !isIsoDate(ex.expires)) errors.push(`${where}: "expires" must be a date written YYYY-MM-DD, got ${JSON.stringify(ex.expires)}`);
  return errors;
}

/** Installed entries of a lockfile (v2/v3 `packages`), production = not marked dev. */
function readInstalled(lock) {
  const installed = [];
  const unreadable = [];
  for (const [path, meta] of Object.entries(lock.packages ?? {})) {
    if (!path) continue;
    if (meta.link) continue; // a symlink to a workspace folder, itself listed under its own path
    const name = meta.name ?? path.slice(path.lastIndexOf("node_modules/") + "node_modules/".length);
    const entry = { name, version: meta.version, path, production: !meta.dev, optional: !!meta.optional };
    if (typeof meta.version === "string" && semver.valid(meta.version)) installed.push(entry);
    else unreadable.push(entry);
  }
  return { installed, unreadable };
}

export function audit({ lock, snapshot, exceptions: exceptionsFile, today, strict = false, listUncovered = false }) {
  const out = [];
  const errors = [];
  const warnings = [];
  if (!isIsoDate(today)) errors.push(`--today must be YYYY-MM-DD, got ${JSON.stringify(today)}`);
  if (!lock.packages || !Object.keys(lock.packages).length)
    errors.push(`the lockfile has no "packages" (lockfileVersion ${lock.lockfileVersion}); npm 7+ lockfiles (v2/v3) only`);
  errors.push(...validateSnapshot(snapshot));
  const exceptions = Array.isArray(exceptionsFile?.exceptions) ? exceptionsFile.exceptions : [];
  if (!Array.isArray(exceptionsFile?.exceptions)) errors.push(`exceptions: the file must be { "exceptions": [ ... ] }`);
  exceptions.forEach((ex, i) => errors.push(...validateException(ex, i)));
  if (errors.length) {
    for (const e of errors) out.push(`error: ${e}`);
    out.push(`audit:deps: ${errors.length} error(s) in the inputs; nothing was checked`);
    return { code: 1, out };
  }

  const { installed, unreadable } = readInstalled(lock);

  // Findings.
  const findings = [];
  for (const adv of snapshot.advisories) {
    for (const a of adv.affected) {
      for (const pkg of installed) {
        if (pkg.name !== a.package) continue;
        const range = (a.ranges ?? []).find((r) => inRange(pkg.version, r.events));
        if (range || a.versions?.includes(pkg.version)) {
          const fixed = range ? fixFor(pkg.version, range.events) : "no fix (listed version)";
          findings.push({ ...pkg, id: adv.id, cve: (adv.aliases ?? []).join(","), severity: adv.severity ?? "UNKNOWN", fixed });
        }
      }
    }
  }
  // One row per advisory × installed path (an advisory listing a package twice gives one row).
  const unique = [...new Map(findings.map((f) => [`${f.id} ${f.path}`, f])).values()];

  let failing = 0;
  const used = new Set();
  for (const f of unique) {
    const i = exceptions.findIndex((e) => e.advisory === f.id && e.package === f.name && semver.satisfies(f.version, e.version, { includePrerelease: true }));
    let status;
    if (i < 0) {
      status = "FAIL";
      const other = exceptions.find((e) => e.advisory === f.id && e.package === f.name);
      if (other) status += ` (the exception covers ${other.version} only)`;
      failing++;
    } else {
      used.add(i);
      const ex = exceptions[i];
      if (ex.expires < today) {
        status = `FAIL (exception expired ${ex.expires})`;
        failing++;
      } else status = `excepted until ${ex.expires}`;
    }
    out.push(`${f.name}@${f.version}  ${f.id} ${f.cve}  ${f.severity}  fixed in: ${f.fixed}  ${f.path}${f.production ? "" : " (dev)"}  → ${status}`);
  }
  exceptions.forEach((ex, i) => {
    if (!used.has(i)) warnings.push(`unused exception: ${ex.advisory} ${ex.package}@${ex.version} (expires ${ex.expires}) matches no finding; remove it`);
    else if ((Date.parse(ex.expires) - Date.parse(today)) / DAY > 184)
      warnings.push(`exception ${ex.advisory} ${ex.package}@${ex.version} expires more than six months from today (${ex.expires})`);
  });

  // Coverage, per distinct name@version (one package installed at two paths is looked up once).
  const lookups = snapshot.lookups;
  const byKey = new Map();
  for (const p of [...installed, ...unreadable]) {
    const key = `${p.name}@${p.version ?? "?"}`;
    const prev = byKey.get(key);
    byKey.set(key, { name: p.name, version: p.version, production: (prev?.production ?? false) || p.production, optional: p.optional && (prev?.optional ?? true) });
  }
  const classes = { complete: [], partial: [], stale: [], none: [] };
  for (const [key, p] of byKey) {
    const l = Object.hasOwn(lookups, p.name) ? lookups[p.name] : undefined;
    const cls = !l ? "none" : p.version && l.versions.includes(p.version) ? l.status : "stale";
    classes[cls].push({ key, ...p, lookedUpAt: l?.versions });
  }
  const count = (list, prod) => list.filter((p) => !prod || p.production).length;
  const prodTotal = [...byKey.values()].filter((p) => p.production).length;
  const staleProd = classes.stale.filter((p) => p.production);
  for (const p of classes.stale)
    (p.production ? out : warnings).push(
      `${p.production ? "FAIL" : "warning"}: ${p.key}${p.production ? "" : " (dev)"} was not looked up: the snapshot looked up ${p.name} at ${p.lookedUpAt.join(", ")} only; look it up again and add the version to "lookups"`,
    );
  failing += staleProd.length;
  const uncoveredProd = [...classes.none, ...classes.stale].filter((p) => p.production);
  if (strict)
    for (const p of [...uncoveredProd.filter((p) => !staleProd.includes(p)), ...classes.partial.filter((p) => p.production)]) {
      out.push(`FAIL (--strict): ${p.key} ${classes.partial.includes(p) ? "was only partly looked up" : "was never looked up"}`);
      failing++;
    }
  for (const u of unreadable) warnings.push(`${u.path}: version ${JSON.stringify(u.version)} is not semver; it cannot be checked`);

  const age = (Date.parse(today) - Date.parse(snapshot.taken)) / DAY;
  if (age > 30) warnings.push(`the advisory snapshot is ${Math.floor(age)} days old; refresh it (${snapshot.refresh})`);
  for (const w of warnings) out.push(w.startsWith("warning:") ? w : `warning: ${w}`);

  const notLookedUp = [...classes.none, ...classes.stale];
  if (listUncovered) {
    const fmt = (p) => `${p.key}${p.optional ? " (optional)" : ""}`;
    out.push(`not looked up, production (${uncoveredProd.length}): ${uncoveredProd.map(fmt).sort().join(" ") || "none"}`);
    const dev = notLookedUp.filter((p) => !p.production);
    out.push(`not looked up, dev only (${dev.length}): ${dev.map(fmt).sort().join(" ") || "none"}`);
    const partial = classes.partial;
    out.push(`partly looked up (${partial.length}): ${partial.map((p) => p.key + (p.production ? "" : " (dev)")).sort().join(" ") || "none"}`);
  }
  const total = byKey.size;
  const lookedProd = prodTotal - uncoveredProd.length;
  const lookedAll = total - notLookedUp.length;
  // Only an OSV answer is complete; a hand lookup finds what public material names, not every advisory there is.
  const partlyProd = count(classes.partial, true);
  const gap = uncoveredProd.length
    ? `coverage INCOMPLETE: ${uncoveredProd.length} of ${prodTotal} production name@versions NOT looked up`
    : partlyProd > 0
      ? `coverage INCOMPLETE: every production name@version looked up, ${partlyProd} of ${prodTotal} only partly`
      : `every production name@version looked up completely`;
  out.push(
    `coverage: production ${lookedProd}/${prodTotal} name@versions looked up (${count(classes.complete, true)} complete, ${count(classes.partial, true)} partial), ` +
      `all ${lookedAll}/${total} (${classes.complete.length} complete, ${classes.partial.length} partial); snapshot taken ${snapshot.taken}` +
      (uncoveredProd.length && !listUncovered ? "; --list-uncovered names them" : ""),
  );
  out.push(
    `audit:deps: ${installed.length} lockfile entries, ${snapshot.advisories.length} advisories, ${unique.length} findings, ${failing} failing; ${gap}` +
      (strict ? " (--strict)" : ""),
  );
  return { code: failing ? 1 : 0, out };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const root = join(dirname(fileURLToPath(import.meta.url)), "..");
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : fallback;
  };
  const read = (p) => JSON.parse(readFileSync(p, "utf8"));
  const r = audit({
    lock: read(arg("--lock", join(root, "package-lock.json"))),
    snapshot: read(arg("--advisories", join(root, "security", "advisories.json"))),
    exceptions: read(arg("--exceptions", join(root, "security", "audit-exceptions.json"))),
    today: arg("--today", new Date().toISOString().slice(0, 10)),
    strict: process.argv.includes("--strict"),
    listUncovered: process.argv.includes("--list-uncovered"),
  });
  console.log(r.out.join("\n"));
  process.exitCode = r.code;
}
