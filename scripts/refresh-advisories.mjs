#!/usr/bin/env node
// Rebuilds security/advisories.json where the network allows (never in CI, never at run time): asks the OSV API
// about every name@version in package-lock.json and keeps the GitHub-reviewed (GHSA) advisories found. Every
// name@version whose query answered in full is recorded in `lookups` as "complete"; one whose answer was cut
// short (a next_page_token OSV did not finish) is recorded as "partial", so scripts/audit-deps.mjs never counts
// more coverage than was had. Withdrawn advisories are left out.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const OSV = "https://api.osv.dev/v1";
const today = new Date().toISOString().slice(0, 10);
const lock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8"));

const queries = new Map();
for (const [path, meta] of Object.entries(lock.packages ?? {})) {
  if (!path || !meta.version || meta.link) continue;
  const name = meta.name ?? path.slice(path.lastIndexOf("node_modules/") + "node_modules/".length);
  queries.set(`${name}@${meta.version}`, { name, version: meta.version });
}

async function post(url, body) {
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`OSV answered ${res.status} for ${url}`);
  return res.json();
}

// querybatch answers ids only; a query with more results than one page carries a next_page_token, followed here.
const ids = new Set();
const partial = new Set();
const list = [...queries.values()];
for (let i = 0; i < list.length; i += 500) {
  const chunk = list.slice(i, i + 500);
  const { results } = await post(`${OSV}/querybatch`, { queries: chunk.map((q) => ({ package: { ecosystem: "npm", name: q.name }, version: q.version })) });
  for (const [j, r] of results.entries()) {
    const q = chunk[j];
    for (const v of r.vulns ?? []) if (v.id.startsWith("GHSA-")) ids.add(v.id);
    let token = r.next_page_token;
    for (let pages = 0; token && pages < 20; pages++) {
      const more = await post(`${OSV}/query`, { package: { ecosystem: "npm", name: q.name }, version: q.version, page_token: token });
      for (const v of more.vulns ?? []) if (v.id.startsWith("GHSA-")) ids.add(v.id);
      token = more.next_page_token;
    }
    if (token) partial.add(`${q.name}@${q.version}`);
  }
}

const advisories = [];
for (const id of [...ids].sort()) {
  const res = await fetch(`${OSV}/vulns/${id}`);
  if (!res.ok) throw new Error(`OSV answered ${res.status} for ${id}`);
  const v = await res.json();
  if (v.withdrawn) continue;
  const affected = [];
  for (const a of v.affected ?? []) {
    if (a.package?.ecosystem !== "npm") continue;
    const ranges = (a.ranges ?? []).filter((r) => r.type === "SEMVER" || r.type === "ECOSYSTEM").map((r) => ({ type: r.type, events: r.events }));
    // An entry without ranges enumerates its versions; with ranges the list is redundant (and long).
    if (ranges.length) affected.push({ package: a.package.name, ranges });
    else if (a.versions?.length) affected.push({ package: a.package.name, versions: a.versions });
  }
  if (!affected.length) continue;
  advisories.push({
    id, aliases: v.aliases ?? [], severity: v.database_specific?.severity ?? "UNKNOWN", modified: v.modified, published: v.published, summary: v.summary, affected,
  });
}

const lookups = {};
for (const q of list) {
  const key = `${q.name}@${q.version}`;
  const status = partial.has(key) ? "partial" : "complete";
  const l = (lookups[q.name] ??= { versions: [], status: "complete", date: today, how: "OSV API querybatch (npm, name@version), GHSA ids kept, each read from /v1/vulns" });
  l.versions.push(q.version);
  if (status === "partial") {
    l.status = "partial";
    l.how += `; ${key}: the answer had more pages than were read`;
  }
}
for (const l of Object.values(lookups)) l.versions.sort();

writeFileSync(join(root, "security", "advisories.json"), JSON.stringify({
  source: "OSV API (GitHub-reviewed advisories) for every name@version in package-lock.json",
  taken: today,
  refresh: "node scripts/refresh-advisories.mjs (needs network: queries the OSV API for every name@version in the lockfile)",
  note: `Every name@version in the lockfile (${list.length}) asked of the OSV API on ${today}; advisories published later are not covered.`,
  lookups,
  advisories,
}, null, 2) + "\n");
console.log(`${advisories.length} advisories for ${list.length} name@versions (${partial.size} answered only in part)`);
