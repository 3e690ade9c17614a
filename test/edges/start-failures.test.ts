// `runigun start` failing part-way, as an operator would meet it: it says what to fix, exits 1, and leaves nothing
// running (no bitcoind, no engine holding the data directory).
import t from "tap";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { BotApiStandIn } from "../support/bot-api.ts";
import { runigun } from "../support/cli.ts";

const base = { NODE_ENV: "production", RUNIGUN_IDENTITY_MEMORY_KI_B: "1024", RUNIGUN_IDENTITY_TIME_COST: "1", RUNIGUN_LOG_LEVEL: "fatal" };

t.test("webhook mode without its secret: refused before anything starts", async (t) => {
  const dir = t.testdir();
  const r = await runigun(["start"], { ...base, RUNIGUN_DATA_DIR: dir, RUNIGUN_TELEGRAM_TOKEN: "4242:TEST-TOKEN", RUNIGUN_TELEGRAM_MODE: "webhook" });
  t.equal(r.code, 1, r.out);
  t.match(r.out, /RUNIGUN_TELEGRAM_WEBHOOK_SECRET/);
  t.notOk(existsSync(join(dir, "bitcoind")), "no bitcoind was started");
});

t.test("a bot token Telegram refuses: the start says so, stops what it started and exits", { timeout: 120_000 }, async (t) => {
  const api = new BotApiStandIn();
  await api.start();
  t.teardown(() => api.stop());
  const dir = t.testdir();
  const r = await runigun(["start"], { ...base, RUNIGUN_DATA_DIR: dir, RUNIGUN_TELEGRAM_TOKEN: "4242:WRONG-TOKEN", RUNIGUN_TELEGRAM_API_ROOT: api.apiRoot });
  t.equal(r.code, 1, r.out);
  t.match(r.out, /refused the bot token \(401 Unauthorized\): check RUNIGUN_TELEGRAM_TOKEN/);
  t.notMatch(r.out, /at .*\.ts:\d+/, "a sentence, not a stack trace");
  t.ok(readdirSync(dir).includes("bitcoind"), "the engine had started (bitcoind included)");
});

t.test("a second start on a data directory in use: says another engine runs there, starts no bitcoind of its own", { timeout: 120_000 }, async (t) => {
  const { spawn } = await import("node:child_process");
  const { runigunBin } = await import("../support/cli.ts");
  const dir = t.testdir();
  const env = { ...process.env, ...base, RUNIGUN_DATA_DIR: dir, RUNIGUN_ADMIN_ENABLED: "false" };
  const first = spawn(process.execPath, [runigunBin, "start"], { env, stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise<number | null>((r) => first.once("exit", r));
  t.teardown(() => void first.kill("SIGKILL"));
  let out = "";
  await new Promise<void>((resolve, reject) => {
    first.stdout.on("data", (d: Buffer) => (out += d.toString(), /local chat:/.test(out) && resolve()));
    first.once("exit", (code) => reject(new Error(`the first start exited (${code}): ${out}`)));
  });
  const second = await runigun(["start"], { ...base, RUNIGUN_DATA_DIR: dir, RUNIGUN_ADMIN_ENABLED: "false" });
  t.equal(second.code, 1, second.out);
  t.match(second.out, /another RuniGun engine is running on .*stop it first/);
  t.notMatch(second.out, /debug\.log|bitcoind exited/, "not bitcoind's lock error");
  first.kill("SIGTERM");
  t.equal(await exited, 0, "the first one stops cleanly");
});

t.test("Ctrl-C at a terminal (SIGINT to the whole process group): a clean stop, exit 0, no error logged", { timeout: 120_000 }, async (t) => {
  const { spawn } = await import("node:child_process");
  const { runigunBin } = await import("../support/cli.ts");
  const dir = t.testdir();
  const env = { ...process.env, ...base, RUNIGUN_DATA_DIR: dir, RUNIGUN_ADMIN_ENABLED: "false", RUNIGUN_LOG_LEVEL: "info" };
  // A process group of its own, as a terminal gives a command.
  const run = spawn(process.execPath, [runigunBin, "start"], { env, stdio: ["ignore", "pipe", "pipe"], detached: true });
  const exited = new Promise<number | null>((r) => run.once("exit", r));
  t.teardown(() => void run.kill("SIGKILL"));
  let out = "";
  run.stderr.on("data", (d: Buffer) => (out += d.toString()));
  await new Promise<void>((resolve) => run.stdout.on("data", (d: Buffer) => (out += d.toString(), /local chat:/.test(out) && resolve())));
  process.kill(-run.pid!, "SIGINT");
  t.equal(await exited, 0, out);
  t.match(out, /stopped \(bitcoind included\)/);
  const { readFileSync } = await import("node:fs");
  const engineLog = readFileSync(join(dir, "engine.log"), "utf8");
  t.notMatch(engineLog, /"level":50/, "no error while stopping");
});
