#!/usr/bin/env node
// `npm run audit:deps`: checks package-lock.json against the advisory snapshot in security/ without any network
// (the registry's audit endpoint answers 405 here). A finding fails the check unless an unexpired exception
// names it. OSV ranges: events introduced / fixed / last_affected, "0" meaning every version.
import { readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import semver from "semver";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const lockPath = arg("--lock", join(root, "package-lock.json"));
const advisoriesPath = arg("--advisories", join(root, "security", "advisories.json"));
const exceptionsPath = arg("--exceptions", join(root, "security", "audit-exceptions.json"));
const today = arg("--today", new Date().toISOString().slice(0, 10));

const lock = JSON.parse(readFileSync(lockPath, "utf8"));
const snapshot = JSON.parse(readFileSync(advisoriesPath, "utf8"));
const exceptions = JSON.parse(readFileSync(exceptionsPath, "utf8")).exceptions ?? [];

/** Is `version` inside one OSV range? Events are ordered: introduced … fixed | last_affected. */
export function inRange(version, events) {
  let affected = false;
  for (const e of events) {
    if (e.introduced !== undefined) affected = e.introduced === "0" || semver.gte(version, e.introduced);
    else if (e.fixed !== undefined && affected && semver.gte(version, e.fixed)) affected = false;
    else if (e.last_affected !== undefined && affected && semver.gt(version, e.last_affected)) affected = false;
  }
  return affected;
}

const installed = [];
for (const [path, meta] of Object.entries(lock.packages ?? {})) {
  if (!path || !meta.version) continue;
  const name = meta.name ?? path.slice(path.lastIndexOf("node_modules/") + "node_modules/".length);
  if (semver.valid(meta.version)) installed.push({ name, version: meta.version, path });
}

const findings = [];
for (const adv of snapshot.advisories) {
  for (const a of adv.affected) {
    for (const pkg of installed.filter((p) => p.name === a.package)) {
      if (a.ranges.some((r) => inRange(pkg.version, r.events))) {
        const fixed = a.ranges.flatMap((r) => r.events.filter((e) => e.fixed).map((e) => e.fixed)).join(", ") || "no fix";
        findings.push({ ...pkg, id: adv.id, cve: (adv.aliases ?? []).join(","), severity: adv.severity, fixed });
      }
    }
  }
}

let failing = 0;
const rows = findings.map((f) => {
  const ex = exceptions.find((e) => e.advisory === f.id && e.package === f.name);
  let status;
  if (!ex) {
    status = "FAIL";
    failing++;
  } else if (ex.expires < today) {
    status = `FAIL (exception expired ${ex.expires})`;
    failing++;
  } else status = `excepted until ${ex.expires}`;
  return `${f.name}@${f.version}  ${f.id} ${f.cve}  ${f.severity}  fixed in: ${f.fixed}  ${f.path}  → ${status}`;
});
if (rows.length) console.log(rows.join("\n"));
const age = (Date.parse(today) - Date.parse(snapshot.taken)) / 86_400_000;
if (age > 30) console.log(`warning: the advisory snapshot is ${Math.floor(age)} days old; refresh it (${snapshot.refresh})`);
console.log(`audit:deps: ${installed.length} installed packages, ${snapshot.advisories.length} advisories in the snapshot (checked: ${snapshot.checked.join(", ")}), ${findings.length} findings, ${failing} failing`);
process.exitCode = failing ? 1 : 0;
