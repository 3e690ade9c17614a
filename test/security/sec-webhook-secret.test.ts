// A Bot API call that fails at the edge's start must not put the webhook secret on the terminal (found by the security
// review): grammY's error carries the call's payload, setWebhook's `secret_token` included, and Node printed that error
// whole when it ended `runigun start`. Now the start ends with one line from its summary: the method, Telegram's code and
// description. Run as an operator would meet it: `runigun start` as a child process, the local Bot API stand-in
// answering setWebhook with 400.
import t from "tap";
import { BotApiStandIn } from "../support/bot-api.ts";
import { runigun } from "../support/cli.ts";

const SECRET = "WEBHOOK-SECRET-canary-0123456789";

t.test("setWebhook refused at start: the process says which call and why, exits 1, and prints no secret", { timeout: 120_000 }, async (t) => {
  const api = new BotApiStandIn();
  await api.start();
  t.teardown(() => api.stop());
  api.failNext("setWebhook", { error_code: 400, description: "Bad Request: bad webhook: Failed to resolve host: Name or service not known" });
  const dir = t.testdir();
  const r = await runigun(["start"], {
    NODE_ENV: "production", RUNIGUN_IDENTITY_MEMORY_KI_B: "1024", RUNIGUN_IDENTITY_TIME_COST: "1", RUNIGUN_LOG_LEVEL: "fatal",
    RUNIGUN_DATA_DIR: dir, RUNIGUN_ADMIN_ENABLED: "false", RUNIGUN_TELEGRAM_TOKEN: api.token, RUNIGUN_TELEGRAM_API_ROOT: api.apiRoot,
    RUNIGUN_TELEGRAM_MODE: "webhook", RUNIGUN_TELEGRAM_WEBHOOK_URL: "https://bot.example.invalid/hook", RUNIGUN_TELEGRAM_WEBHOOK_SECRET: SECRET,
  });
  t.equal(r.code, 1, r.out);
  t.notMatch(r.out, SECRET, "the webhook secret is nowhere in the output");
  t.notMatch(r.out, /secret_token|payload/, "nor the call's payload");
  t.notMatch(r.out, api.token, "nor the bot token");
  t.match(r.out, /runigun start: the Telegram edge could not start: Telegram refused setWebhook \(400: Bad Request: bad webhook: Failed to resolve host: Name or service not known\)/);
  t.notMatch(r.out, /at .*\.ts:\d+/, "a sentence, not a stack trace");
});
