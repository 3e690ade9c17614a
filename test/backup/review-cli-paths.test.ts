// Ordinary path mistakes on the command line get one line naming the path and what to do, exit 1, never a Node stack
// trace; `backup --out` never replaces a file that is not a RuniGun archive; and `keys …`, `backup` and `restore` say
// which data directory (and store) they used. Few child processes (each costs a second or two of CPU): the errors
// that print nothing else go through the CLI's entry point in this process.
import t, { type Test } from "tap";
import { chmodSync, existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { main } from "../../src/cli.ts";
import { writeArchive } from "../../src/backup/archive.ts";
import { EncryptedStore } from "../../src/store/db.ts";
import { generateKeyRingFile, loadKeyRingFile } from "../../src/store/keyring.ts";
import { runigun } from "../support/cli.ts";

/** `runigun ARGS` in this process: its exit code and what it wrote to stderr (where its errors go), or what it threw. */
async function inProcess(args: string[], env: Record<string, string>): Promise<{ code: number | string; err: string }> {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  const write = process.stderr.write;
  let err = "";
  process.stderr.write = ((s: string | Uint8Array) => ((err += String(s)), true)) as typeof process.stderr.write;
  try {
    return { code: await main(args), err };
  } catch (e) {
    return { code: `threw ${(e as Error).stack ?? String(e)}`, err };
  } finally {
    process.stderr.write = write;
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  }
}

const oneLine = (t: Test, r: { code: number | string; err: string }, message: RegExp, what: string) => {
  t.equal(r.code, 1, `${what}: exit 1`);
  t.match(r.err, message, what);
  t.equal(r.err.trim().split("\n").length, 1, `${what}: one line`);
  t.notMatch(r.err, /\n\s+at /, `${what}: no stack trace`);
};

t.test("keys generate and a secret file: a missing directory, a directory for a file, said in one line", async (t) => {
  const dir = t.testdir({ secrets: {} });
  const env = { RUNIGUN_NETWORK: "regtest", RUNIGUN_DATA_DIR: join(dir, "data"), RUNIGUN_LOG_LEVEL: "error" };
  // Before: ENOENT on "<path>.tmp-<pid>-<hex>", with a stack.
  oneLine(t, await inProcess(["keys", "generate", "--out", join(dir, "missing", "mk")], env), new RegExp(`^runigun keys: ${dir}/missing/mk: there is no directory ${dir}/missing; create it first`), "keys generate into a missing directory");
  oneLine(t, await inProcess(["keys", "pepper", "--out", join(dir, "secrets")], env), new RegExp(`^runigun keys: ${dir}/secrets is a directory; give the path of a new file, e.g. --out ${dir}/secrets/pepper`), "keys pepper onto a directory");
  // A secret file variable naming a directory (0700: not refused as readable by others), read in the configuration:
  // still one line, and exit 1.
  chmodSync(join(dir, "secrets"), 0o700);
  oneLine(t, await inProcess(["keys", "pki"], { ...env, RUNIGUN_TELEGRAM_TOKEN_FILE: join(dir, "secrets") }), /^runigun keys: .*is a directory/, "RUNIGUN_TELEGRAM_TOKEN_FILE naming a directory");
  t.notOk(existsSync(join(dir, "missing")), "no directory made for a key");
  t.same(readdirSync(join(dir, "secrets")), [], "nothing written");
});

t.test("backup --out refuses a directory and any file that is not an archive; restore refuses a directory; each says its data directory", async (t) => {
  const dir = t.testdir({ out: {}, "precious.txt": "an operator's notes, nothing to do with RuniGun\n" });
  const keyFile = join(dir, "master.key");
  generateKeyRingFile(keyFile);
  const data = join(dir, "data");
  const store = await EncryptedStore.open({ path: join(data, "store"), keyring: loadKeyRingFile(keyFile) });
  await store.put("test", "k", { v: 1 });
  // The archive's own checks, in this process: an unrelated file keeps its bytes (before: replaced by the archive),
  // a directory is refused, an older archive under the name is replaced.
  const precious = join(dir, "precious.txt");
  await t.rejects(writeArchive({ store, path: precious, network: "regtest" }), { name: "BackupError", message: new RegExp(`^${precious} exists and is not a RuniGun archive; nothing was written`) });
  t.equal(readFileSync(precious, "utf8"), "an operator's notes, nothing to do with RuniGun\n", "the file is untouched");
  const archive = join(dir, "a.rga");
  await writeArchive({ store, path: archive, network: "regtest" });
  const first = readFileSync(archive);
  await store.put("test", "k2", { v: 2 });
  const again = await writeArchive({ store, path: archive, network: "regtest" });
  t.ok(again.manifest.records > 0 && !readFileSync(archive).equals(first), "an archive is replaced by a newer one");
  t.same(readdirSync(dir).filter((n) => n.includes("partial")), [], "no temporary file left");
  await store.close();

  const env = { RUNIGUN_NETWORK: "regtest", RUNIGUN_DATA_DIR: data, RUNIGUN_MASTER_KEY_FILE: keyFile, RUNIGUN_LOG_LEVEL: "error" };
  // Before: EISDIR from the rename, a stack trace.
  const toDir = await runigun(["backup", "--out", join(dir, "out")], env);
  t.equal(toDir.code, 1, toDir.out);
  t.match(toDir.out, new RegExp(`^runigun backup: ${dir}/out is a directory; give the path of the archive to write`));
  t.notMatch(toDir.out, /\n\s+at /, "no stack trace");
  t.same(readdirSync(join(dir, "out")), []);
  // Before: no word of which store was backed up.
  const backup = await runigun(["backup", "--out", join(dir, "out", "b.rga")], env);
  t.equal(backup.code, 0, backup.out);
  t.match(backup.out, new RegExp(`^data directory ${data} \\(store ${data}/store, read directly: no engine answered on its control socket\\)\nbackup written: ${dir}/out/b.rga`));
  // Before: EISDIR at the first read, with a stack.
  const data2 = join(dir, "data2");
  const fromDir = await runigun(["restore", join(dir, "out")], { ...env, RUNIGUN_DATA_DIR: data2 });
  t.equal(fromDir.code, 1, fromDir.out);
  t.match(fromDir.out, new RegExp(`^data directory ${data2} \\(store ${data2}/store\\)$`, "m"));
  t.match(fromDir.out, new RegExp(`^runigun restore: ${dir}/out is a directory, not an archive; give the archive's file`, "m"));
  t.notMatch(fromDir.out, /\n\s+at /, "no stack trace");
  // keys commands say theirs first, whatever follows.
  const rotate = await runigun(["keys", "rotate"], { ...env, RUNIGUN_DATA_DIR: join(dir, "dta") });
  t.equal(rotate.code, 1, rotate.out);
  t.match(rotate.out, new RegExp(`^data directory ${dir}/dta \\(store ${dir}/dta/store\\)\\n`));
  t.notOk(existsSync(join(dir, "dta")), "nothing made there");
});
