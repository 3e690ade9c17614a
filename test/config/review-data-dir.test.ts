// Found by a review: off regtest the data directory defaulted to a relative path (data/<network>), resolved against
// the directory the command was run from, while the config directory is found from the install directory. A
// `runigun keys operator add` (or a `runigun start`, a service unit without WorkingDirectory) run from elsewhere
// silently made a new store and a new PKI there: an empty store against the live node wallet.
import t from "tap";
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { loadConfig } from "../../src/config.ts";
import { runigunBin } from "../support/cli.ts";

t.test("signet and mainnet: no default data directory; a relative dataDir or pkiDir is refused, naming the variable", async (t) => {
  for (const network of ["signet", "mainnet"]) {
    t.throws(() => loadConfig({ env: { RUNIGUN_NETWORK: network } }), {
      code: "config_invalid",
      message: new RegExp(`^config key dataDir is not set: on ${network} give an absolute path, e\\.g\\. /var/lib/runigun/${network} \\(env RUNIGUN_DATA_DIR, or --data-dir\\); an engine that ran with the old default \\(data/${network}\\)`),
    }, `${network}: no default`);
    t.throws(() => loadConfig({ env: { RUNIGUN_NETWORK: network, RUNIGUN_DATA_DIR: `data/${network}` } }), {
      message: new RegExp(`^config key dataDir: "data/${network}" is a relative path; on ${network} give an absolute path \\(env RUNIGUN_DATA_DIR, or --data-dir\\)`),
    }, `${network}: the old default, given by hand`);
    t.throws(() => loadConfig({ env: { RUNIGUN_NETWORK: network, RUNIGUN_DATA_DIR: "./data" } }), /"\.\/data" is a relative path/);
    t.throws(() => loadConfig({ env: { RUNIGUN_NETWORK: network, RUNIGUN_DATA_DIR: "~/runigun" } }), /"~\/runigun" is a relative path/, "no shell here to expand ~");
    t.throws(() => loadConfig({ env: { RUNIGUN_NETWORK: network, RUNIGUN_DATA_DIR: "/srv/rg", RUNIGUN_PKI_DIR: "pki" } }), {
      message: /^config key pkiDir: "pki" is a relative path; on .* give an absolute path \(env RUNIGUN_PKI_DIR\)/,
    });
    t.throws(() => loadConfig({ env: { RUNIGUN_NETWORK: network }, overrides: { dataDir: "data" }, cwd: "/srv" }), /is a relative path/, "overrides too");
  }
});

t.test("an absolute data directory: the same paths from any directory; regtest keeps its relative default", async (t) => {
  const env = { RUNIGUN_NETWORK: "mainnet", RUNIGUN_DATA_DIR: "/srv/runigun" };
  const a = loadConfig({ env, cwd: "/" });
  const b = loadConfig({ env, cwd: "/tmp" });
  t.equal(a.dataPath, "/srv/runigun");
  t.equal(b.dataPath, a.dataPath);
  t.equal(b.pkiPath, "/srv/runigun/pki", "pkiDir empty: under the data directory");
  t.equal(loadConfig({ env: { ...env, RUNIGUN_PKI_DIR: "/etc/runigun/pki" } }).pkiPath, "/etc/runigun/pki");
  const backup = loadConfig({ env: { ...env, RUNIGUN_BACKUP_DIR: "backup" }, cwd: "/tmp" }).backup.dir;
  t.equal(backup, "/srv/runigun/backup", "a relative backup.dir is under the (absolute) data directory, not the current one");

  const reg = loadConfig({ env: {}, cwd: "/work/x" });
  t.equal(reg.dataDir, "data/regtest", "regtest: the relative default `npm start` and the tests use");
  t.equal(reg.dataPath, "/work/x/data/regtest");
  t.equal(loadConfig({ env: { RUNIGUN_PKI_DIR: "pki" }, cwd: "/w" }).pkiPath, "/w/pki", "regtest: a relative pkiDir too");
  t.throws(() => loadConfig({ env: { RUNIGUN_DATA_DIR: "" } }), /^config key dataDir is not set: give the data directory \(env RUNIGUN_DATA_DIR/, "an empty one is no directory, on regtest either");
});

t.test("the reviewer's probe: `keys operator add` on mainnet from another directory makes nothing there", async (t) => {
  const dir = t.testdir();
  const out = join(dir, "carol.p12");
  // RUNIGUN_DATA_DIR unset (the old default), then a relative one: both refused before anything is written.
  for (const data of [undefined, "data/mainnet"]) {
    const r = await runigunIn(dir, ["keys", "operator", "add", "carol", "--out", out], { RUNIGUN_NETWORK: "mainnet", RUNIGUN_LOG_LEVEL: "error", ...(data ? { RUNIGUN_DATA_DIR: data } : {}) });
    t.equal(r.code, 1, r.out);
    t.match(r.out, /^runigun keys: config key dataDir.*RUNIGUN_DATA_DIR/m, data ?? "unset");
    t.notMatch(r.out, /at .*\.ts:\d+/, "a sentence, not a stack trace");
  }
  t.same(readdirSync(dir), [], "no store, no PKI, no certificate");
});

/** runigun run from `cwd`, with no RUNIGUN_* variable but those given (as test/support/cli.ts, which runs it here). */
function runigunIn(cwd: string, args: string[], env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("RUNIGUN_")));
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [runigunBin, ...args], { cwd, env: { ...base, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    c.stdout.on("data", (d: Buffer) => (out += d.toString()));
    c.stderr.on("data", (d: Buffer) => (out += d.toString()));
    c.on("exit", (code) => resolve({ code, out }));
  });
}
