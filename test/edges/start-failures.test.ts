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
