// The store is reached by its own user only: a restore makes the data directory and the store 0700 (LevelDB makes its
// files 0644), closing a data directory that was there and open to others; the engine's start closes one too, and says
// so. A segments "directory" that is a file is refused by name.
import t from "tap";
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { EncryptedStore } from "../../src/store/db.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { writeArchive } from "../../src/backup/archive.ts";
import { restoreArchive } from "../../src/backup/restore.ts";
import { openStorage } from "../../src/storage.ts";
import { createLogger } from "../../src/log.ts";

const master = randomBytes(32);
const ring = () => new KeyRing(new Map([[1, master]]), 1);
const mode = (path: string) => (statSync(path).mode & 0o777).toString(8);

t.test("restore: the data directory and the store are 0700, a data directory open to others is closed and said", async (t) => {
  const dir = t.testdir({ "segments.txt": "not a directory" });
  const store = await EncryptedStore.open({ path: join(dir, "source"), keyring: ring() });
  await store.put("test", "u_someone", { v: 1 });
  const archive = join(dir, "a.rga");
  await writeArchive({ store, path: archive, network: "regtest" });
  await store.close();

  // A new data directory, two levels down: made 0700, the store in it 0700. Before: 0755 and 0755.
  const fresh = join(dir, "new", "data");
  const r1 = await restoreArchive({ archive, dataPath: fresh, keyring: ring(), network: "regtest" });
  t.equal(mode(fresh), "700");
  t.equal(mode(join(fresh, "store")), "700");
  t.equal(r1.madePrivate, undefined, "nothing to say about a directory it made");

  // One the operator made with the usual umask: closed, and the report says what it was.
  const made = join(dir, "made");
  mkdirSync(made);
  chmodSync(made, 0o755);
  const r2 = await restoreArchive({ archive, dataPath: made, keyring: ring(), network: "regtest" });
  t.equal(r2.madePrivate, "755");
  t.equal(mode(made), "700");
  t.equal(mode(join(made, "store")), "700");

  await t.rejects(restoreArchive({ archive, segmentsDir: join(dir, "segments.txt"), dataPath: join(dir, "d3"), keyring: ring(), network: "regtest" }), { code: "no_target", message: /segments\.txt is not a directory: give the backup's segments directory/ });
});

t.test("the engine's start closes a data directory open to others, with a warning that says so, once", async (t) => {
  const data = join(t.testdir(), "data");
  mkdirSync(data);
  chmodSync(data, 0o750);
  const lines: Array<{ level: number; msg: string; path?: string }> = [];
  const log = createLogger({ level: "info", destination: { write: (s: string) => void lines.push(JSON.parse(s)) } });
  const first = await openStorage({ dataPath: data, keyring: ring(), sync: false, log });
  await first.close();
  t.equal(mode(data), "700", "before: left 0750, the store readable by the group");
  t.match(lines, [{ level: 40, path: data, msg: /^the data directory .* was open to other users \(mode 750\); made it 0700/ }]);
  t.equal(lines.length, 1);
  const again = await openStorage({ dataPath: data, keyring: ring(), sync: false, log });
  await again.close();
  t.equal(lines.length, 1, "nothing to say when it is closed already");
});
