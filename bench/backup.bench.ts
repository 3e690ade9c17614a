// npm run bench:backup — snapshot and restore throughput against a raw copy of the same LevelDB directory
// (files copied and fsync'ed), and the durable write path with continuous segment shipping on vs off.
// Writes bench/results/backup.json and prints a table. Bounded loops; no assertion on time.
import { mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import { copyFile, open } from "node:fs/promises";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { EncryptedStore } from "../src/store/db.ts";
import { Journal } from "../src/store/journal.ts";
import { KeyRing } from "../src/store/keyring.ts";
import { writeArchive } from "../src/backup/archive.ts";
import { restoreArchive } from "../src/backup/restore.ts";
import { SegmentShipper } from "../src/backup/segments.ts";
import { silentLogger } from "../src/log.ts";
import { fmt, table, writeResults } from "./lib/report.ts";

// A real disk under the checkout (not tmpfs), as the data and backup directories would be.
const root = join(new URL("..", import.meta.url).pathname, ".cache", "bench", `backup-${process.pid}`);
rmSync(root, { recursive: true, force: true });
mkdirSync(root, { recursive: true });
const ring = new KeyRing(new Map([[1, randomBytes(32)]]), 1);
const RECORDS = Number(process.env.BENCH_BACKUP_RECORDS ?? 150_000);

const dirBytes = (dir: string) => readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0);

/** The baseline: copy every file of a LevelDB directory and fsync it (what `cp` + `sync` of a stopped store costs). */
async function rawCopy(from: string, to: string): Promise<number> {
  mkdirSync(to, { recursive: true });
  const start = performance.now();
  for (const f of readdirSync(from)) {
    await copyFile(join(from, f), join(to, f));
    const fh = await open(join(to, f), "r+");
    await fh.sync();
    await fh.close();
  }
  return performance.now() - start;
}

async function snapshotAndRestore() {
  const storeDir = join(root, "data", "store");
  const store = await EncryptedStore.open({ path: storeDir, keyring: ring, sync: false });
  const value = { d: randomBytes(180).toString("base64"), n: 1n };
  for (let i = 0; i < RECORDS; i += 1000) {
    await store.batch(Array.from({ length: 1000 }, (_, j) => ({ type: "put" as const, ns: "journal", key: `wallet:u_${String(i + j).padStart(8, "0")}\u0001000000000001`, value })));
  }
  await store.compact();
  const archive = join(root, "snap.rga");
  const snap = await writeArchive({ store, path: archive, network: "regtest" });
  await store.close();
  const bytes = dirBytes(storeDir);
  const copyMs = await rawCopy(storeDir, join(root, "copy1"));
  const restoreStart = performance.now();
  await restoreArchive({ archive, dataPath: join(root, "restored"), keyring: ring, network: "regtest" });
  const restoreMs = performance.now() - restoreStart;
  const copyBackMs = await rawCopy(join(root, "copy1"), join(root, "copy2"));
  const mb = (b: number, ms: number) => b / 1e6 / (ms / 1000);
  return {
    records: snap.manifest.records, store_mb: bytes / 1e6, archive_mb: snap.bytes / 1e6,
    snapshot_mb_per_s: mb(bytes, snap.ms), raw_copy_mb_per_s: mb(bytes, copyMs), snapshot_ratio: copyMs / snap.ms,
    restore_mb_per_s: mb(bytes, restoreMs), raw_copy_back_mb_per_s: mb(bytes, copyBackMs), restore_ratio: copyBackMs / restoreMs,
  };
}

/** 1,000 wallets persisting serially (as actors do), all at once, fsync on; optionally shipping segments. */
async function journalRate(ship: boolean, run: number): Promise<number> {
  const store = await EncryptedStore.open({ path: join(root, `journal-${ship ? "ship" : "plain"}-${run}`), keyring: ring, sync: true });
  const shipper = ship ? new SegmentShipper({ dir: join(root, `segments-${run}`), keyring: ring, intervalMs: 1000, log: silentLogger }) : undefined;
  await shipper?.attach(store);
  const journal = new Journal(store);
  const KEYS = 1000, PER = 40;
  const data = { e: [{ t: "transfer_sent", id: "x".repeat(24), to: "u_" + "y".repeat(22), amount: "12345", at: Date.now() }] };
  const start = performance.now();
  await Promise.all(Array.from({ length: KEYS }, async (_, k) => {
    for (let seq = 1; seq <= PER; seq++) await journal.persist({ key: `wallet:u${k}`, sequenceNumber: seq, data, tags: [], createdAt: Date.now(), isDeleted: false });
  }));
  const rate = (KEYS * PER) / ((performance.now() - start) / 1000);
  await shipper?.close();
  await store.close();
  return rate;
}

const sr = await snapshotAndRestore();
// Alternate the two modes so disk warm-up and noise fall on both sides; take the median of three each.
const off: number[] = [], on: number[] = [];
for (let i = 0; i < 3; i++) {
  off.push(await journalRate(false, i));
  on.push(await journalRate(true, i));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[1]!;
const shipping = { events_per_s_shipping: median(on), events_per_s_without: median(off), ratio: median(on) / median(off) };

console.log(`bench:backup — ${fmt(sr.records)} records, store ${fmt(sr.store_mb, 1)} MB on disk, archive ${fmt(sr.archive_mb, 1)} MB\n`);
console.log(table([
  ["snapshot (online archive)", `${fmt(sr.snapshot_mb_per_s, 1)} MB/s`, `raw copy ${fmt(sr.raw_copy_mb_per_s, 1)} MB/s`, fmt(sr.snapshot_ratio, 2)],
  ["restore (verify + load)", `${fmt(sr.restore_mb_per_s, 1)} MB/s`, `raw copy ${fmt(sr.raw_copy_back_mb_per_s, 1)} MB/s`, fmt(sr.restore_ratio, 2)],
  ["durable journal, shipping on", `${fmt(shipping.events_per_s_shipping)} ev/s`, `off ${fmt(shipping.events_per_s_without)} ev/s`, `${fmt(shipping.ratio, 2)} (goal ≥ 0.8)`],
]));
writeResults(new URL("./results/backup.json", import.meta.url).pathname, { snapshot: sr, shipping });
rmSync(root, { recursive: true, force: true });
