// Secret files written durably: the content under the name, mode 0600 whatever the umask, nothing left beside it,
// a replacement atomic (the old content or the new, never a mix), a failure leaving the old file as it was.
import t from "tap";
import { lstatSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createFileDurably, writeFileDurably } from "../../src/store/files.ts";
import { generateKeyRingFile, loadKeyRingFile, writeKeyRingFile } from "../../src/store/keyring.ts";

t.test("writeFileDurably", async (t) => {
  const dir = t.testdir();
  const path = join(dir, "pepper");
  const umask = process.umask(0);
  t.teardown(() => void process.umask(umask));
  writeFileDurably(path, "first\n");
  t.equal(readFileSync(path, "utf8"), "first\n");
  t.equal(statSync(path).mode & 0o777, 0o600, "0600 even with an umask of 0");
  writeFileSync(path, "old\n", { mode: 0o644 });
  writeFileDurably(path, "second\n");
  t.equal(readFileSync(path, "utf8"), "second\n", "replaced");
  t.equal(statSync(path).mode & 0o777, 0o600, "and its mode set again");
  t.same(readdirSync(dir), ["pepper"], "no temporary file left");
  t.throws(() => writeFileDurably(join(dir, "missing", "x"), "y"), /ENOENT/, "a directory that does not exist is an error");
  t.same(readdirSync(dir), ["pepper"]);
});

t.test("a file or link planted beside the secret (a directory others can write to) never receives it", async (t) => {
  const dir = t.testdir({ victim: "theirs\n" });
  const path = join(dir, "pepper");
  // The name a temporary file once had, `<path>.tmp-<pid>`, is predictable: a link there must not be followed.
  symlinkSync(join(dir, "victim"), `${path}.tmp-${process.pid}`);
  writeFileDurably(path, "secret\n");
  t.equal(readFileSync(path, "utf8"), "secret\n");
  t.equal(readFileSync(join(dir, "victim"), "utf8"), "theirs\n", "the linked file is untouched");
});

t.test("a secret whose name is a symbolic link is written through it: the link stays, its target gets the content", async (t) => {
  const dir = t.testdir({ safe: {}, data: {} });
  const real = join(dir, "safe", "master.key"), link = join(dir, "data", "master.key");
  const ring = generateKeyRingFile(real);
  symlinkSync(real, link);
  const next = ring.withNewKey();
  writeKeyRingFile(link, next);
  t.ok(lstatSync(link).isSymbolicLink(), "still a link");
  t.equal(loadKeyRingFile(real).current, next.current, "the linked file holds the new key");
  t.equal(statSync(real).mode & 0o777, 0o600);
  t.same(readdirSync(join(dir, "safe")), ["master.key"], "no temporary file left beside it");
});

t.test("a key ring written with a new key reads back with it", async (t) => {
  const path = join(t.testdir(), "master.key");
  const ring = generateKeyRingFile(path);
  const next = ring.withNewKey();
  writeKeyRingFile(path, next);
  const back = loadKeyRingFile(path);
  t.equal(back.current, next.current);
  t.ok(back.dataKey("store").equals(next.dataKey("store")));
  t.ok(back.dataKey("store", ring.current).equals(ring.dataKey("store")), "the old key kept");
});

t.test("a secret is created only where nothing is: two processes making the same key ring at once, one wins, whole", async (t) => {
  const path = join(t.testdir(), "master.key");
  // Two children race to create the same file (as two commands started together on a new data directory).
  const { execFile } = await import("node:child_process");
  const register = new URL("../../bin/ts-register.mjs", import.meta.url).pathname;
  const files = new URL("../../src/store/files.ts", import.meta.url).pathname;
  const run = (tag: string) => new Promise<string>((resolve) => {
    const code = `import { createFileDurably } from ${JSON.stringify(files)}; try { createFileDurably(${JSON.stringify(path)}, ${JSON.stringify(tag)} + "\\n"); console.log("created"); } catch (e) { console.log(e.code); }`;
    execFile(process.execPath, ["--import", register, "--input-type=module", "-e", code], (_e, out) => resolve(out.trim()));
  });
  const outcomes = await Promise.all(Array.from({ length: 6 }, (_, i) => run(`ring-${i}`)));
  t.equal(outcomes.filter((o) => o === "created").length, 1, `one created it: ${outcomes.join(", ")}`);
  t.equal(outcomes.filter((o) => o === "EEXIST").length, 5, "the others were told it exists");
  const winner = outcomes.indexOf("created");
  t.equal(readFileSync(path, "utf8"), `ring-${winner}\n`, "the file is the winner's, whole");
  t.throws(() => createFileDurably(path, "again\n"), { code: "EEXIST" });
  t.equal(readFileSync(path, "utf8"), `ring-${winner}\n`);
  t.throws(() => generateKeyRingFile(path), /already exists; refusing to overwrite/);
});
