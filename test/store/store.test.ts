// The encrypted store on a real LevelDB in a temp dir: sealing, binding, tamper detection, keys, rotation.
import t from "tap";
import { createCipheriv, randomBytes } from "node:crypto";
import { chmodSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { EncryptedStore } from "../../src/store/db.ts";
import { open, seal } from "../../src/store/envelope.ts";
import { KeyRing, generateKeyRingFile, loadKeyRingFile, writeKeyRingFile } from "../../src/store/keyring.ts";
import { rotateStore } from "../../src/store/rotate.ts";
import { fillDisk, lostUntilReopen } from "../support/store.ts";
import { openStorage } from "../../src/storage.ts";
import { createLogger } from "../../src/log.ts";

const vectors = JSON.parse(readFileSync(new URL("./envelope.vectors.json", import.meta.url), "utf8")) as {
  vectors: Array<{ key: string; keyId: number; ns: string; rk: string; nonce: string; plaintext: string; sealed: string }>;
};

function ring(): KeyRing {
  return new KeyRing(new Map([[1, Buffer.alloc(32, 7)]]), 1);
}

/** Every byte LevelDB wrote, for plaintext searches. */
function diskBytes(dir: string): Buffer {
  return Buffer.concat(readdirSync(dir).map((f) => readFileSync(join(dir, f))));
}

t.test("envelope vectors: the documented layout, checked against node:crypto directly", async (t) => {
  for (const v of vectors.vectors) {
    const key = Buffer.from(v.key, "hex");
    t.equal(seal(key, v.keyId, v.ns, v.rk, Buffer.from(v.plaintext), Buffer.from(v.nonce, "hex")).toString("hex"), v.sealed);
    t.equal(open(key, v.ns, v.rk, Buffer.from(v.sealed, "hex")).toString(), v.plaintext);
    // Independent construction of the same bytes from the format description.
    const ns = Buffer.from(v.ns), rk = Buffer.from(v.rk);
    const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b; };
    const aad = Buffer.concat([Buffer.from("runigun\0", "latin1"), u32(ns.length), ns, u32(rk.length), rk, Buffer.from([1]), u32(v.keyId)]);
    const c = createCipheriv("aes-256-gcm", key, Buffer.from(v.nonce, "hex"));
    c.setAAD(aad);
    const ct = Buffer.concat([c.update(Buffer.from(v.plaintext)), c.final()]);
    t.equal(Buffer.concat([Buffer.from([1]), u32(v.keyId), Buffer.from(v.nonce, "hex"), ct, c.getAuthTag()]).toString("hex"), v.sealed, `${v.ns}/${v.rk}`);
  }
});

t.test("round trip, bigint values, ordered iteration", async (t) => {
  const dir = t.testdir();
  const s = await EncryptedStore.open({ path: dir, keyring: ring() });
  t.teardown(() => s.close());
  await s.put("wallet", "u_a", { available: 123n, list: [1n, "x"], nested: { n: 2n ** 70n } });
  t.same(await s.get("wallet", "u_a"), { available: 123n, list: [1n, "x"], nested: { n: 2n ** 70n } });
  t.equal(await s.get("wallet", "missing"), undefined);
  await s.batch([{ type: "put", ns: "n", key: "b", value: 2 }, { type: "put", ns: "n", key: "a", value: 1 }, { type: "put", ns: "o", key: "a", value: 9 }]);
  const seen: Array<[string, number]> = [];
  for await (const e of s.iterate<number>("n")) seen.push(e);
  t.same(seen, [["a", 1], ["b", 2]], "one namespace, in key order");
  await s.del("n", "a");
  t.equal(await s.get("n", "a"), undefined);
  t.throws(() => EncryptedStore.recordKey("Bad NS", "k"), { code: "bad_input" });
});

t.test("a value moved to another key, or a flipped byte anywhere, is refused by name", async (t) => {
  const dir = t.testdir();
  const s = await EncryptedStore.open({ path: dir, keyring: ring() });
  t.teardown(() => s.close());
  await s.put("wallet", "u_a", { available: 5n });
  const raw = (await s.db.get(EncryptedStore.recordKey("wallet", "u_a")))!;
  await s.db.put(EncryptedStore.recordKey("wallet", "u_b"), raw);
  await t.rejects(s.get("wallet", "u_b"), { code: "tampered", message: /"wallet"/ }, "AAD binds the record key");
  for (const i of [0, 1, 5, 10, 17, raw.length - 20, raw.length - 1]) {
    const bad = Buffer.from(raw);
    bad[i]! ^= 0x01;
    await s.db.put(EncryptedStore.recordKey("wallet", "u_a"), bad);
    await t.rejects(s.get("wallet", "u_a"), { name: "StoreError" }, `byte ${i} flipped`);
  }
  await s.db.put(EncryptedStore.recordKey("wallet", "u_a"), raw.subarray(0, 10));
  await t.rejects(s.get("wallet", "u_a"), { code: "bad_format" }, "truncated");
});

t.test("a wrong master key refuses to open the store; key files must be 0600", async (t) => {
  const dir = t.testdir({ db: {} });
  const s = await EncryptedStore.open({ path: join(dir, "db"), keyring: ring() });
  await s.put("x", "k", 1);
  await s.close();
  const other = new KeyRing(new Map([[1, Buffer.alloc(32, 8)]]), 1);
  await t.rejects(EncryptedStore.open({ path: join(dir, "db"), keyring: other }), { code: "wrong_key", message: /RUNIGUN_MASTER_KEY_FILE/ });
  const unknown = new KeyRing(new Map([[2, Buffer.alloc(32, 7)]]), 2);
  await t.rejects(EncryptedStore.open({ path: join(dir, "db"), keyring: unknown }), { code: "unknown_key_id" });
  const file = join(dir, "master.key");
  generateKeyRingFile(file);
  t.equal(loadKeyRingFile(file).current, 1);
  t.throws(() => generateKeyRingFile(file), /refusing to overwrite/);
  chmodSync(file, 0o644);
  t.throws(() => loadKeyRingFile(file), { code: "key_file_permissions", message: /chmod 600/ });
  t.throws(() => loadKeyRingFile(join(dir, "nope")), { code: "missing_key" });
  writeFileSync(join(dir, "junk"), "not a key", { mode: 0o600 });
  t.throws(() => loadKeyRingFile(join(dir, "junk")), { code: "bad_format" });
});

t.test("rotation interrupted midway resumes after a restart and leaves nothing under the old key", async (t) => {
  const dir = t.testdir({ db: {} });
  const file = join(dir, "master.key");
  const first = generateKeyRingFile(file);
  let s = await EncryptedStore.open({ path: join(dir, "db"), keyring: first });
  const ops = Array.from({ length: 2500 }, (_, i) => ({ type: "put" as const, ns: "wallet", key: `u_${String(i).padStart(5, "0")}`, value: { n: BigInt(i) } }));
  await s.batch(ops);
  await s.close();
  const second = first.withNewKey();
  writeKeyRingFile(file, second);
  s = await EncryptedStore.open({ path: join(dir, "db"), keyring: loadKeyRingFile(file) });
  let batches = 0;
  await t.rejects(rotateStore(s, { batchSize: 500, onBatch: () => { if (++batches === 2) throw new Error("power cut"); } }), /power cut/);
  await s.close();
  s = await EncryptedStore.open({ path: join(dir, "db"), keyring: loadKeyRingFile(file) });
  t.teardown(() => s.close());
  const done = await rotateStore(s, { batchSize: 500 });
  t.ok(done.done);
  t.ok(done.rotated <= 1504, `resumed from its cursor: ${done.rotated} records left to rotate, not all 2,504`);
  let old = 0, total = 0;
  for await (const v of s.db.values()) {
    total++;
    if (Buffer.from(v).readUInt32BE(1) !== 2) old++;
  }
  t.equal(old, 0, `all ${total} records are under key 2`);
  t.same(await s.get("wallet", "u_02499"), { n: 2499n });
});

t.test("a store whose rotation was cut short says so at every start until it is resumed", async (t) => {
  const dir = t.testdir();
  const lines: Array<{ msg: string; toKeyId?: number; alert?: boolean }> = [];
  const log = createLogger({ level: "info", destination: { write: (x: string) => void lines.push(JSON.parse(x)) } });
  const first = new KeyRing(new Map([[1, randomBytes(32)]]), 1);
  let storage = await openStorage({ dataPath: dir, keyring: first, sync: false, log });
  await storage.store.batch(Array.from({ length: 30 }, (_, i) => ({ type: "put" as const, ns: "wallet", key: `u_${i}`, value: i })));
  await storage.close();
  t.same(lines.filter((l) => l.alert), [], "nothing to say before any rotation");
  const second = first.withNewKey();
  storage = await openStorage({ dataPath: dir, keyring: second, sync: false, log });
  await t.rejects(rotateStore(storage.store, { batchSize: 10, onBatch: () => { throw new Error("power cut"); } }), /power cut/);
  await storage.close();
  storage = await openStorage({ dataPath: dir, keyring: second, sync: false, log });
  t.match(lines.filter((l) => l.alert), [{ toKeyId: 2, msg: /rotation to key 2 was cut short.*runigun keys rotate --resume/ }], "an alert naming the key and the command");
  t.ok((await rotateStore(storage.store)).done);
  await storage.close();
  lines.length = 0;
  await (await openStorage({ dataPath: dir, keyring: second, sync: false, log })).close();
  t.same(lines.filter((l) => l.alert), [], "nothing once it is resumed");
});

t.test("a mark is a key with an empty value: seen by hasSync, refused by get, skipped by rotation", async (t) => {
  const dir = t.testdir({ db: {} });
  const file = join(dir, "master.key");
  const first = generateKeyRingFile(file);
  let s = await EncryptedStore.open({ path: join(dir, "db"), keyring: first });
  const key = s.mac("transfer", "u_a\u0001out\u0001t1");
  await s.batch([{ type: "mark", ns: "xfer", key }, { type: "put", ns: "wallet", key: "u_a", value: 1 }]);
  t.ok(s.hasSync("xfer", key), "there");
  t.notOk(s.hasSync("xfer", s.mac("transfer", "u_a\u0001out\u0001t2")), "another id is not");
  t.equal((await s.db.get(EncryptedStore.recordKey("xfer", key)))!.length, 0, "nothing stored but the key");
  await t.rejects(s.get("xfer", key), { code: "bad_format" }, "a mark has no value to read");
  await s.close();
  writeKeyRingFile(file, first.withNewKey());
  s = await EncryptedStore.open({ path: join(dir, "db"), keyring: loadKeyRingFile(file) });
  t.teardown(() => s.close());
  const rotated = await rotateStore(s);
  t.ok(rotated.done);
  t.ok(s.hasSync("xfer", key), "still there after the rotation");
  t.same(await s.get("wallet", "u_a"), 1);
});

t.test("nothing private in the bytes on disk", async (t) => {
  const dir = t.testdir();
  const s = await EncryptedStore.open({ path: dir, keyring: ring() });
  const marker = "PLAINTEXT-MARKER-7f3a9c";
  const telegramId = "5550001234";
  const address = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
  await s.put("notes", "n1", { marker, telegramId });
  await s.put("addr", s.mac("address", address), { userKey: "u_x" });
  await s.close();
  const bytes = diskBytes(dir);
  t.ok(bytes.length > 0);
  for (const secret of [marker, telegramId, address]) t.equal(bytes.indexOf(secret), -1, `${secret.slice(0, 12)}… not on disk`);
});

t.test("a batch that cannot reach the disk fails its writers, flags the store as failing once, and clears when writes work", async (t) => {
  const store = await EncryptedStore.open({ path: t.testdir(), keyring: ring() });
  t.teardown(() => store.close());
  const seen: boolean[] = [];
  store.onWriteHealth((h) => seen.push(h.failing));
  await store.put("t", "a", 1);
  const position = store.position;
  const disk = fillDisk(store);
  await t.rejects(store.put("t", "b", 2), { code: "write_failed", written: "unknown" }, "the writer is told it is not known whether it was written");
  await t.rejects(store.put("t", "c", 3), { code: "write_failed", written: "no" }, "nothing is written until the store is reopened");
  t.match(store.writeHealth, { failing: true, lastError: { message: /No space left/ } });
  t.equal(store.position, position, "no commit position for what did not reach the disk");
  disk.free();
  await store.put("t", "d", 4);
  t.equal(store.writeHealth.failing, false, "writes work again: the store reopened the database itself");
  t.same(seen, [true, false], "listeners hear it start failing once, and recover once");
  t.same([await store.get("t", "b"), await store.get("t", "c"), await store.get("t", "d")], [undefined, undefined, 4]);
  t.equal(store.position, position + 1);
});

t.test("a write that fails after its batch reached the disk (a failed fsync, say) counts as written once the reopened store sees it there", async (t) => {
  const store = await EncryptedStore.open({ path: t.testdir(), keyring: ring() });
  t.teardown(() => store.close());
  const shipped: number[] = [];
  store.onWrite((position) => shipped.push(position));
  const batch = store.db.batch.bind(store.db);
  let failNext = true;
  (store.db as { batch: typeof batch }).batch = ((...a: Parameters<typeof batch>) => {
    const b = batch(...a);
    const write = b.write.bind(b);
    b.write = (async (...w: Parameters<typeof write>) => {
      await write(...w);
      if (failNext) {
        failNext = false;
        throw new Error("Input/output error (simulated, after the write)");
      }
    }) as typeof write;
    return b;
  }) as typeof batch;
  await store.put("t", "a", 1);
  t.equal(await store.get("t", "a"), 1);
  t.same(shipped, [store.position], "continuous backup sees it, once");
  t.equal(store.writeHealth.failing, false);
});

t.test("running sums: kept with the writes that add to them, merged per batch, untouched by a failed batch, there after a reopen", async (t) => {
  const path = t.testdir();
  const key = ring();
  const store = await EncryptedStore.open({ path, keyring: key });
  t.same(store.sums, {}, "a new store has none");
  const put = (k: string, v: unknown) => ({ type: "put" as const, key: EncryptedStore.recordKey("t", k), value: store.sealValue("t", k, v) });
  // Two writes queued in one turn share a batch: the batch records their sum once.
  await Promise.all([store.writeRaw([put("a", 1)], { x: 5n, y: -2n }), store.writeRaw([put("b", 2)], { x: 7n }), store.writeRaw([put("c", 3)])]);
  t.same(store.sums, { x: 12n, y: -2n });
  await store.put("t", "d", 4);
  t.same(store.sums, { x: 12n, y: -2n }, "a write that adds nothing leaves them");
  await store.db.close();
  await t.rejects(store.writeRaw([put("e", 5)], { x: 100n }), "a write that cannot reach the disk…");
  t.same(store.sums, { x: 12n, y: -2n }, "…adds nothing");
  await store.db.open();
  await store.resetSums({ x: 1n });
  await store.writeRaw([put("f", 6)], { x: 2n, z: 3n });
  await store.close();
  const again = await EncryptedStore.open({ path, keyring: key });
  t.teardown(() => again.close());
  t.same(again.sums, { x: 3n, z: 3n }, "the last batch's sums are what a reopened store reads");
});

t.test("a write that fails (the file-size limit reached, as a full disk would) and writes after it: every acknowledged record is there after a restart", async (t) => {
  // LevelDB goes on appending to its log after a failed append, out of step with its blocks: a restart's recovery
  // then drops records written after it, acknowledged or not. The store reopens the database after a failure.
  const dir = t.testdir();
  const { execFileSync } = await import("node:child_process");
  const script = new URL("./fixtures/write-past-failure.ts", import.meta.url).pathname;
  const register = new URL("../../bin/ts-register.mjs", import.meta.url).pathname;
  // SIGXFSZ ignored (a write over the limit then fails with EFBIG), and without the test runner's NODE_OPTIONS: its
  // loader re-raises the signals it sees, which would kill the child instead.
  const out = execFileSync("sh", ["-c", `trap '' XFSZ; ulimit -S -f 512; unset NODE_OPTIONS; exec "${process.execPath}" --import "${register}" "${script}" "${dir}" 300`], { encoding: "utf8" });
  const { failedAt, acked, refused } = JSON.parse(out) as { failedAt: number; acked: string[]; refused: string[] };
  t.ok(failedAt > 0, `a write failed (record ${failedAt}) under the limit`);
  t.same(refused, [], "once the limit is lifted, every write is acknowledged");
  const store = await EncryptedStore.open({ path: dir, keyring: new KeyRing(new Map([[1, Buffer.alloc(32, 3)]]), 1) });
  t.teardown(() => store.close());
  const missing = [];
  for (const key of acked) if ((await store.get<string>("things", key)) !== `${"x".repeat(1000)}${key.slice(1)}`) missing.push(key);
  t.same(missing, [], `all ${acked.length} acknowledged records are there after the restart`);
  t.equal(await store.get("things", `a${failedAt}`), undefined, "the failed write is not");
  t.equal(await store.get<string>("things", `a${failedAt - 1}`), "x".repeat(1000), "the one before it is");
});

t.test("a write after close is refused and does not reopen the store (a late write at shutdown would hold LevelDB's lock)", async (t) => {
  const path = t.testdir();
  const store = await EncryptedStore.open({ path, keyring: ring() });
  await store.put("t", "a", 1);
  await store.close();
  await t.rejects(store.put("t", "b", 2), { code: "write_failed", written: "no" });
  await t.rejects(store.put("t", "c", 3), { code: "write_failed", written: "no" });
  t.equal(store.db.status, "closed", "still closed");
  t.equal(store.writeHealth.failing, false, "a closed store is not an outage");
  const again = await EncryptedStore.open({ path, keyring: ring() });
  t.teardown(() => again.close());
  t.equal(await again.get("t", "a"), 1, "the next open takes the lock");
});

t.test("a write built on a read from before a reopen found a lost batch on disk is refused; one built after is written", async (t) => {
  const store = await EncryptedStore.open({ path: t.testdir(), keyring: ring() });
  t.teardown(() => store.close());
  await store.put("t", "a", 1);
  const before = store.epoch;
  // A write fails without a reopen (no room); its bytes are found on disk by the reopen (LevelDB's recovery).
  const lost = lostUntilReopen(store);
  await t.rejects(store.put("t", "b", 2), { code: "write_failed", written: "unknown" });
  lost.free();
  const settled = new Promise<boolean>((resolve) => store.onUnsureSettled(resolve));
  t.equal(await settled, true);
  t.equal(store.epoch, before + 1, "a new epoch");
  const seal = (k: string, v: unknown) => [{ type: "put" as const, key: EncryptedStore.recordKey("t", k), value: store.sealValue("t", k, v) }];
  await t.rejects(store.writeRaw(seal("c", 3), undefined, before), { code: "write_failed", written: "no" }, "built in the old epoch: refused");
  await store.writeRaw(seal("d", 4), undefined, store.epoch);
  t.same([await store.get("t", "b"), await store.get("t", "c"), await store.get("t", "d")], [2, undefined, 4]);
});

/** Makes each batch's write reach LevelDB and then report an I/O error (a failed fsync), until the returned undo. */
function failAfterWrite(store: EncryptedStore, before: () => Promise<void> = async () => undefined): () => void {
  const batch = store.db.batch.bind(store.db);
  store.db.batch = (() => {
    const b = batch();
    const write = b.write.bind(b);
    b.write = (async (...w: Parameters<typeof write>): Promise<void> => {
      await before();
      await write(...w);
      throw new Error("IO error: fsync failed (simulated, after the write)");
    }) as typeof write;
    return b;
  }) as typeof store.db.batch;
  return () => void (store.db.batch = batch);
}

t.test("the reopen timer reopens the store with nothing waiting to be written: it says at once that writes work again", async (t) => {
  const store = await EncryptedStore.open({ path: t.testdir(), keyring: ring() });
  t.teardown(() => store.close());
  const seen: boolean[] = [];
  store.onWriteHealth((h) => seen.push(h.failing));
  await store.put("t", "a", 1);
  const position = store.position;
  // A full disk: the write fails, and no reopen is tried without room for LevelDB's recovery.
  const disk = fillDisk(store);
  await t.rejects(store.put("t", "b", 2), { code: "write_failed", written: "unknown" });
  t.equal(store.writeHealth.failing, true);
  let settled = new Promise<boolean>((resolve) => { const off = store.onUnsureSettled((landed) => (off(), resolve(landed))); });
  disk.free();
  t.equal(await settled, false, "the timer's reopen settles the failed batch: not on disk");
  await new Promise(setImmediate);
  t.equal(store.writeHealth.failing, false, "no write needed to say the store writes again");
  t.same(seen, [true, false], "listeners (the outboxes' re-send) are told at once");
  t.equal(store.position, position);
  // A batch that reached the disk before its write failed, found there by the timer's reopen: counted, then said.
  const freeBytes = store.freeBytes;
  store.freeBytes = () => 0;
  const undo = failAfterWrite(store);
  await t.rejects(store.put("t", "c", 3), { code: "write_failed", written: "unknown" });
  undo();
  store.freeBytes = freeBytes;
  settled = new Promise<boolean>((resolve) => { const off = store.onUnsureSettled((landed) => (off(), resolve(landed))); });
  t.equal(await settled, true, "found on disk");
  await new Promise(setImmediate);
  t.equal(store.writeHealth.failing, false);
  t.same(seen, [true, false, true, false]);
  t.equal(store.position, position + 1, "its position counted before the store says it writes again");
  t.equal(await store.get("t", "c"), 3);
});

t.test("a batch whose write fails while the store is closing: its writers are told its fate is unknown, never that nothing was written", async (t) => {
  const path = t.testdir();
  const store = await EncryptedStore.open({ path, keyring: ring() });
  await store.put("t", "a", 1);
  let reached!: () => void;
  const writing = new Promise<void>((r) => (reached = r));
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  failAfterWrite(store, async () => {
    reached();
    await held;
  });
  const put = store.put("t", "b", 2);
  await writing;
  const closed = store.close();
  release();
  await t.rejects(put, { code: "write_failed", written: "unknown", message: /while the store was closing.*known only at the next start/ });
  await closed;
  const again = await EncryptedStore.open({ path, keyring: ring() });
  t.teardown(() => again.close());
  t.equal(await again.get("t", "b"), 2, "it is on disk after all: 'nothing was written' would have been wrong");
});
