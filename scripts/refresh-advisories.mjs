#!/usr/bin/env node
// Rebuilds security/advisories.json where the network allows (never in CI, never at run time): asks the OSV API
// about every package@version in package-lock.json and keeps the GitHub-reviewed (GHSA) advisories found.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const lock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8"));
const queries = new Map();
for (const [path, meta] of Object.entries(lock.packages ?? {})) {
  if (!path || !meta.version) continue;
  const name = meta.name ?? path.slice(path.lastIndexOf("node_modules/") + 13);
  queries.set(`${name}@${meta.version}`, { package: { ecosystem: "npm", name }, version: meta.version });
}
const list = [...queries.values()];
const ids = new Set();
for (let i = 0; i < list.length; i += 500) {
  const res = await fetch("https://api.osv.dev/v1/querybatch", { method: "POST", body: JSON.stringify({ queries: list.slice(i, i + 500) }) });
  if (!res.ok) throw new Error(`OSV answered ${res.status}`);
  for (const r of (await res.json()).results) for (const v of r.vulns ?? []) if (v.id.startsWith("GHSA-")) ids.add(v.id);
}
const advisories = [];
for (const id of ids) {
  const v = await (await fetch(`https://api.osv.dev/v1/vulns/${id}`)).json();
  advisories.push({
    id, aliases: v.aliases ?? [], severity: v.database_specific?.severity ?? "UNKNOWN", modified: v.modified, summary: v.summary,
    affected: v.affected.filter((a) => a.package.ecosystem === "npm").map((a) => ({ package: a.package.name, ranges: a.ranges.filter((r) => r.type !== "GIT").map((r) => ({ type: r.type, events: r.events })) })),
  });
}
const names = [...new Set(list.map((q) => q.package.name))];
writeFileSync(join(root, "security", "advisories.json"), JSON.stringify({
  source: "OSV API (GitHub-reviewed advisories) for every package@version in package-lock.json", taken: new Date().toISOString().slice(0, 10),
  refresh: "node scripts/refresh-advisories.mjs", coverage: `every package in the lockfile (${names.length})`, checked: names, advisories,
}, null, 2) + "\n");
console.log(`${advisories.length} advisories for ${list.length} package versions`);
