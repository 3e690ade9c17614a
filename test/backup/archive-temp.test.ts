// An archive's temporary file is a new file of the engine's own: `--out` may point into a directory others can write
// to, where a symbolic link planted under a name the engine would use must not receive the archive.
import t from "tap";
import { randomBytes } from "node:crypto";
import { lstatSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { EncryptedStore } from "../../src/store/db.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { verifyArchive, writeArchive } from "../../src/backup/archive.ts";

const ring = new KeyRing(new Map([[1, randomBytes(32)]]), 1);

t.test("a link planted where the temporary file would go is not written through", async (t) => {
  const dir = t.testdir();
  const s = await EncryptedStore.open({ path: join(dir, "store"), keyring: ring });
  t.teardown(() => s.close());
  await s.put("j", "a", 1);
  const victim = join(dir, "victim.key");
  writeFileSync(victim, "the engine user's key ring", { mode: 0o600 });
  const shared = join(dir, "shared");
  mkdirSync(shared, { mode: 0o777 });
  // The name a temporary file was given from the pid alone.
  symlinkSync(victim, join(shared, `.x.rga.partial-${process.pid}`));
  const temporary: Array<{ name: string; link: boolean; mode: number }> = [];
  const info = await writeArchive({
    store: s, path: join(shared, "x.rga"), network: "regtest",
    onChunk: () => {
      for (const name of readdirSync(shared).filter((n) => n.includes(".partial-"))) {
        const st = lstatSync(join(shared, name));
        temporary.push({ name, link: st.isSymbolicLink(), mode: st.mode & 0o777 });
      }
    },
  });
  t.equal(readFileSync(victim, "utf8"), "the engine user's key ring", "the link's target is untouched");
  const own = temporary.filter((f) => !f.link);
  t.ok(own.length > 0, "the archive was written to a file of its own");
  t.ok(own.every((f) => f.mode === 0o600 && f.name !== `.x.rga.partial-${process.pid}`), "private, under a name nobody could plant in advance");
  t.equal((await verifyArchive(info.path, ring)).records, info.manifest.records, "and the archive is whole");
});
