// `runigun keys rotate` as an operator runs it at 3 a.m.: a mistyped data directory, an inline key, a missing key
// file or an engine still running are refused without touching the ring file; a rotation that completes says to copy
// the ring to the offline copies now.
import t from "tap";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { runigun } from "../support/cli.ts";
import { EncryptedStore } from "../../src/store/db.ts";
import { generateKeyRingFile, loadKeyRingFile } from "../../src/store/keyring.ts";

const base = { RUNIGUN_NETWORK: "regtest", RUNIGUN_LOG_LEVEL: "error" };

/** A data directory with a store in it, sealed under a ring in `<dir>/ring.key`. */
async function withStore(dir: string) {
  const ring = join(dir, "ring.key");
  const store = await EncryptedStore.open({ path: join(dir, "data", "store"), keyring: generateKeyRingFile(ring) });
  await store.put("test", "a", { n: 1 });
  await store.close();
  return { ring, data: join(dir, "data") };
}

t.test("a data directory without a store: refused, no store made, the ring file untouched", async (t) => {
  const dir = t.testdir();
  const { ring } = await withStore(dir);
  const before = readFileSync(ring, "utf8");
  const r = await runigun(["keys", "rotate"], { ...base, RUNIGUN_DATA_DIR: join(dir, "dta"), RUNIGUN_MASTER_KEY_FILE: ring });
  t.equal(r.code, 1, r.out);
  t.match(r.out, /no store at .*dta\/store.*RUNIGUN_DATA_DIR/);
  t.notMatch(r.out, /complete/);
  t.notOk(existsSync(join(dir, "dta", "store")), "no empty store was made");
  t.equal(readFileSync(ring, "utf8"), before, "the ring file was not rewritten");
});

t.test("an inline RUNIGUN_MASTER_KEY: refused (rotation writes the ring to a file), no master.key made", async (t) => {
  const dir = t.testdir();
  const { ring, data } = await withStore(dir);
  const r = await runigun(["keys", "rotate"], { ...base, RUNIGUN_DATA_DIR: data, RUNIGUN_MASTER_KEY: readFileSync(ring, "utf8") });
  t.equal(r.code, 1, r.out);
  t.match(r.out, /RUNIGUN_MASTER_KEY_FILE/);
  t.notMatch(r.out, /keys generate/, "no advice to make a new key");
  t.notOk(existsSync(join(data, "master.key")));
});

t.test("a key file that is not there, for a store that exists: restore it, never 'create one'", async (t) => {
  const dir = t.testdir();
  const { data } = await withStore(dir);
  const r = await runigun(["keys", "rotate"], { ...base, RUNIGUN_DATA_DIR: data, RUNIGUN_MASTER_KEY_FILE: join(dir, "gone.key") });
  t.equal(r.code, 1, r.out);
  t.match(r.out, /gone\.key does not exist.*restore it from your offline copy/);
  t.notMatch(r.out, /keys generate/);
  t.notOk(existsSync(join(dir, "gone.key")));
});

t.test("the missing-key-file hint: 'create one' only where no store exists yet", async (t) => {
  const dir = t.testdir({ store: {} });
  t.throws(() => loadKeyRingFile(join(dir, "nope"), { storePath: join(dir, "nostore") }), { code: "missing_key", message: /create one with "runigun keys generate/ });
  t.throws(() => loadKeyRingFile(join(dir, "nope"), { storePath: join(dir, "store") }), { code: "missing_key", message: /restore it from your offline copy/ });
  const unknown = t.throws(() => loadKeyRingFile(join(dir, "nope"))) as unknown as Error;
  t.match(unknown?.message, /restore it from your offline copy/, "not knowing the store: the restore advice comes first");
});

t.test("an engine holding the store: refused before the ring file gets a new key", async (t) => {
  const dir = t.testdir();
  const { ring, data } = await withStore(dir);
  const held = await EncryptedStore.open({ path: join(data, "store"), keyring: loadKeyRingFile(ring) });
  t.teardown(() => held.close());
  const r = await runigun(["keys", "rotate"], { ...base, RUNIGUN_DATA_DIR: data, RUNIGUN_MASTER_KEY_FILE: ring });
  t.equal(r.code, 1, r.out);
  t.match(r.out, /in use by a running engine/);
  t.equal(loadKeyRingFile(ring).current, 1, "no key was added");
});

t.test("a rotation that completes says to copy the ring file to the offline copies now; help shows --resume", async (t) => {
  const dir = t.testdir();
  const { ring, data } = await withStore(dir);
  const r = await runigun(["keys", "rotate"], { ...base, RUNIGUN_DATA_DIR: data, RUNIGUN_MASTER_KEY_FILE: ring });
  t.equal(r.code, 0, r.out);
  t.match(r.out, /rotation to key 2 complete: [1-9]\d* re-encrypted/);
  t.match(r.out, /Copy .*ring\.key to your offline copies now/);
  t.equal(loadKeyRingFile(ring).current, 2);
  t.same([...loadKeyRingFile(ring).retired], [1], "the replaced key is retired in the ring file");
  t.match(r.out, /key 1 retired: kept in the ring to open the backups made before, which a restore takes only with --allow-retired-key/);
  const again = await runigun(["keys", "rotate", "--resume"], { ...base, RUNIGUN_DATA_DIR: data, RUNIGUN_MASTER_KEY_FILE: ring });
  t.equal(again.code, 0, again.out);
  t.equal(loadKeyRingFile(ring).current, 2, "--resume adds no key");
  const help = await runigun(["help"], {});
  t.match(help.out, /keys rotate \[--resume\]/);
  t.match(help.out, /--resume .*cut short/);
});

t.test("a rotation killed after its last re-seal, before the old key is retired: the next start says it was cut short, and --resume retires it", async (t) => {
  const { openStorage } = await import("../../src/storage.ts");
  const { rotateStore } = await import("../../src/store/rotate.ts");
  const { createLogger } = await import("../../src/log.ts");
  const { writeKeyRingFile } = await import("../../src/store/keyring.ts");
  const dir = t.testdir();
  const { ring, data } = await withStore(dir);
  // What `runigun keys rotate` does, killed at its last step (compacted, the old key not yet retired in the ring file).
  const next = loadKeyRingFile(ring).withNewKey();
  writeKeyRingFile(ring, next);
  const lines: Array<{ msg: string; alert?: boolean; toKeyId?: number }> = [];
  const log = createLogger({ level: "info", destination: { write: (x: string) => void lines.push(JSON.parse(x)) } });
  let storage = await openStorage({ dataPath: data, keyring: next, sync: false, log });
  await t.rejects(rotateStore(storage.store, { beforeDone: () => { throw new Error("killed"); } }), /killed/);
  await storage.close();
  t.same([...loadKeyRingFile(ring).retired], [], "the old key is not retired");
  storage = await openStorage({ dataPath: data, keyring: loadKeyRingFile(ring), sync: false, log });
  await storage.close();
  t.match(lines.filter((l) => l.alert), [{ toKeyId: 2, msg: /rotation to key 2 was cut short.*runigun keys rotate --resume/ }], "the start says so, naming the command");
  const resumed = await runigun(["keys", "rotate", "--resume"], { ...base, RUNIGUN_DATA_DIR: data, RUNIGUN_MASTER_KEY_FILE: ring });
  t.equal(resumed.code, 0, resumed.out);
  t.match(resumed.out, /key 1 retired/);
  t.same([...loadKeyRingFile(ring).retired], [1], "retired in the ring file");
  lines.length = 0;
  await (await openStorage({ dataPath: data, keyring: loadKeyRingFile(ring), sync: false, log })).close();
  t.same(lines.filter((l) => l.alert), [], "nothing to say once finished");
});

/** Runs `runigun keys rotate` SIGKILLed just before or just after its new key ring replaces the ring file. */
function killedAtRingWrite(ring: string, data: string, when: "before" | "after") {
  const preload = new URL("./fixtures/kill-at-rename.mjs", import.meta.url).pathname;
  return runigun(["keys", "rotate"], { ...base, RUNIGUN_DATA_DIR: data, RUNIGUN_MASTER_KEY_FILE: ring, NODE_OPTIONS: `--import=${preload}`, KILL_AT_RENAME_TO: ring, KILL_AT_RENAME_WHEN: when });
}

/** The start's alerts, and the key ids sealing the store's records. */
async function atStart(ring: string, data: string) {
  const { openStorage } = await import("../../src/storage.ts");
  const { createLogger } = await import("../../src/log.ts");
  const { keyIdOf } = await import("../../src/store/envelope.ts");
  const lines: Array<{ msg: string; alert?: boolean; toKeyId?: number }> = [];
  const log = createLogger({ level: "info", destination: { write: (x: string) => void lines.push(JSON.parse(x)) } });
  const storage = await openStorage({ dataPath: data, keyring: loadKeyRingFile(ring), sync: false, log });
  const ids = new Set<number>();
  for await (const [k, v] of storage.store.db.iterator()) if (v.length) ids.add(keyIdOf(v, k.slice(0, k.indexOf("\u0000"))));
  await storage.close();
  return { alerts: lines.filter((l) => l.alert), keyIds: [...ids].sort() };
}

t.test("a rotation killed once the ring file has the new key, before any record is re-encrypted: the start says it was cut short, --resume finishes it", async (t) => {
  const dir = t.testdir();
  const { ring, data } = await withStore(dir);
  const killed = await killedAtRingWrite(ring, data, "after");
  t.equal(killed.code, null, `killed: ${killed.out}`);
  t.equal(loadKeyRingFile(ring).current, 2, "the ring file has the new key");
  const cut = await atStart(ring, data);
  t.same(cut.keyIds, [1], "every record is still under the old key");
  t.match(cut.alerts, [{ toKeyId: 2, msg: /rotation to key 2 was cut short.*runigun keys rotate --resume/ }], "the start says so, naming the command");
  const resumed = await runigun(["keys", "rotate", "--resume"], { ...base, RUNIGUN_DATA_DIR: data, RUNIGUN_MASTER_KEY_FILE: ring });
  t.equal(resumed.code, 0, resumed.out);
  t.match(resumed.out, /rotation to key 2 complete: [1-9]\d* re-encrypted/);
  t.same([...loadKeyRingFile(ring).retired], [1]);
  t.same(await atStart(ring, data), { alerts: [], keyIds: [2] }, "all under key 2, nothing more to say");
});

t.test("a rotation killed just before the ring file got the new key: the start says so, and --resume starts it again with a new key", async (t) => {
  const dir = t.testdir();
  const { ring, data } = await withStore(dir);
  const killed = await killedAtRingWrite(ring, data, "before");
  t.equal(killed.code, null, `killed: ${killed.out}`);
  t.equal(loadKeyRingFile(ring).current, 1, "the ring file is as it was");
  const cut = await atStart(ring, data);
  t.same(cut.keyIds, [1]);
  t.match(cut.alerts, [{ toKeyId: 2, msg: /rotation to key 2 was cut short.*runigun keys rotate --resume/ }]);
  const resumed = await runigun(["keys", "rotate", "--resume"], { ...base, RUNIGUN_DATA_DIR: data, RUNIGUN_MASTER_KEY_FILE: ring });
  t.equal(resumed.code, 0, resumed.out);
  t.match(resumed.out, /rotation to key 2 was stopped before the key ring file got that key; nothing was re-encrypted under it/);
  t.match(resumed.out, /rotation to key 2 complete: [1-9]\d* re-encrypted/);
  t.equal(loadKeyRingFile(ring).current, 2);
  t.same([...loadKeyRingFile(ring).retired], [1]);
  t.same(await atStart(ring, data), { alerts: [], keyIds: [2] }, "all under key 2, nothing more to say");
});
