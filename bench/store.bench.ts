// npm run bench:store — the encrypted store against raw LevelDB on the same disk, the journal's durable
// group-commit rate, and the identity KDF. Writes bench/results/store.json.
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { Level } from "level";
import { EncryptedStore } from "../src/store/db.ts";
import { Journal } from "../src/store/journal.ts";
import { KeyRing } from "../src/store/keyring.ts";
import { Identity } from "../src/store/identity.ts";
import { loadConfig } from "../src/config.ts";
import { fmt, table, writeResults } from "./lib/report.ts";

// A real disk under the checkout (not tmpfs), as the engine's data directory would be.
const root = join(new URL("..", import.meta.url).pathname, ".cache", "bench", `store-${process.pid}`);
mkdirSync(root, { recursive: true });
const RECORDS = 50_000;
const BATCH = 100;
// The same 256 bytes on both sides: a 256-character string (what a small JSON record weighs).
const text = randomBytes(192).toString("base64");
const value = Buffer.from(text);

async function rawPuts(): Promise<number> {
  const db = new Level<string, Uint8Array>(join(root, "raw"), { keyEncoding: "utf8", valueEncoding: "view" });
  await db.open();
  const start = performance.now();
  for (let i = 0; i < RECORDS; i += BATCH) {
    await db.batch(Array.from({ length: BATCH }, (_, j) => ({ type: "put" as const, key: `wallet\u0000k${String(i + j).padStart(8, "0")}`, value })), { sync: true });
  }
  const rate = RECORDS / ((performance.now() - start) / 1000);
  await db.close();
  return rate;
}

async function encryptedPuts(): Promise<number> {
  const store = await EncryptedStore.open({ path: join(root, "enc"), keyring: new KeyRing(new Map([[1, randomBytes(32)]]), 1), sync: true });
  const start = performance.now();
  for (let i = 0; i < RECORDS; i += BATCH) {
    await store.batch(Array.from({ length: BATCH }, (_, j) => ({ type: "put" as const, ns: "wallet", key: `k${String(i + j).padStart(8, "0")}`, value: text })));
  }
  const rate = RECORDS / ((performance.now() - start) / 1000);
  await store.close();
  return rate;
}

/** 1,000 keys persisting serially (as actors do), all at once: group commit across wallets, fsync on. */
async function journalRate(): Promise<{ rate: number; batches: number; events: number }> {
  const store = await EncryptedStore.open({ path: join(root, "journal"), keyring: new KeyRing(new Map([[1, randomBytes(32)]]), 1), sync: true });
  const journal = new Journal(store);
  const KEYS = 1000, PER = 60;
  const data = { e: [{ t: "transfer_sent", id: "x".repeat(24), to: "u_" + "y".repeat(22), amount: "12345", at: Date.now() }] };
  const start = performance.now();
  await Promise.all(Array.from({ length: KEYS }, async (_, k) => {
    for (let seq = 1; seq <= PER; seq++) await journal.persist({ key: `wallet:u${k}`, sequenceNumber: seq, data, tags: [], createdAt: Date.now(), isDeleted: false });
  }));
  const rate = (KEYS * PER) / ((performance.now() - start) / 1000);
  const out = { rate, batches: journal.stats.batches, events: journal.stats.events };
  await store.close();
  return out;
}

async function kdf(): Promise<{ ms: number; cachedMs: number; params: string }> {
  const c = loadConfig({ env: {} }).identity;
  const id = new Identity({ ...c, pepper: randomBytes(32) });
  const N = 5;
  let start = performance.now();
  for (let i = 0; i < N; i++) await id.userKey(1000 + i);
  const ms = (performance.now() - start) / N;
  start = performance.now();
  for (let i = 0; i < 10_000; i++) await id.userKey(1000 + (i % N));
  const cachedMs = (performance.now() - start) / 10_000;
  await id.close();
  return { ms, cachedMs, params: `argon2id t=${c.timeCost} m=${c.memoryKiB} KiB p=${c.parallelism}` };
}

try {
  const raw = await rawPuts();
  const enc = await encryptedPuts();
  const j = await journalRate();
  const k = await kdf();
  const results = {
    raw_puts_per_s: Math.round(raw),
    encrypted_puts_per_s: Math.round(enc),
    ratio: Number((enc / raw).toFixed(3)),
    journal_events_per_s: Math.round(j.rate),
    journal_fsyncs: j.batches,
    kdf_ms: Number(k.ms.toFixed(1)),
    kdf_cached_ms: Number(k.cachedMs.toFixed(4)),
    kdf_params: k.params,
  };
  console.log(table([
    ["store: synced batches of 100 × 256 B", `${fmt(enc)} puts/s encrypted`, `${fmt(raw)} puts/s raw level`, enc / raw >= 0.5 ? `${(enc / raw).toFixed(2)} (goal ≥ 0.5)` : `${(enc / raw).toFixed(2)} (BELOW goal 0.5)`],
    ["journal: 1,000 wallets, durable group commit", `${fmt(j.rate)} events/s`, `${fmt(raw)} records/s raw`, `${(j.rate / raw).toFixed(2)}; ${fmt(j.events)} events in ${fmt(j.batches)} fsyncs (goal ≥ 40,000/s)`],
    ["identity KDF per derivation", `${k.ms.toFixed(1)} ms`, k.params, "goal ≥ 50 ms"],
    ["identity KDF cached lookup", `${(k.cachedMs * 1000).toFixed(1)} µs`, "", `${fmt(k.ms / k.cachedMs)}× faster`],
  ]));
  writeResults(new URL("./results/store.json", import.meta.url).pathname, results);
} finally {
  rmSync(root, { recursive: true, force: true });
}
