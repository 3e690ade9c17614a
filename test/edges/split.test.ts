// The split shape, for real: the engine (with its internal API on mutual TLS) in this process, and `runigun bot`
// as a separate process reaching it only through that API. The bot is SIGKILLed mid-story and nothing is lost.
import t from "tap";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { request } from "node:https";
import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Update } from "grammy/types";
import { BotApiStandIn } from "../support/bot-api.ts";
import { startTestEngine } from "../support/engine.ts";
import { buildInternalEdge, listenInternal } from "../../src/edges/internal/server.ts";
import { ensurePki, readPem, createCA, issue } from "../../src/tls/certs.ts";
import { freePort } from "../../src/regtest/harness.ts";
import { silentLogger } from "../../src/log.ts";
import { Identity } from "../../src/store/identity.ts";
import { runigunBin } from "../support/cli.ts";

let updateId = 1;
const msg = (from: number, text: string): Update => ({
  update_id: updateId++,
  message: {
    message_id: updateId, date: Math.floor(Date.now() / 1000), text, from: { id: from, is_bot: false, first_name: "a" }, chat: { id: from, type: "private", first_name: "a" },
    ...(text.startsWith("/") ? { entities: [{ type: "bot_command", offset: 0, length: text.split(" ")[0]!.length }] } : {}),
  },
} as Update);

t.test("split: bot process → TLS → engine; the deposit → withdraw story; killing the bot loses nothing", async (t) => {
  const api = new BotApiStandIn();
  await api.start();
  t.teardown(() => api.stop());
  const te = await startTestEngine({ deposits: { confirmations: 1 } });
  t.teardown(() => te.stop());
  const dir = t.testdir({ pki: {}, bot: {} });
  const pki = join(dir, "pki");
  await ensurePki(pki, { admin: "127.0.0.1", internal: "127.0.0.1" });
  const port = await freePort();
  const internal = await buildInternalEdge({ relay: te.engine.relay, log: silentLogger, tls: { ...readPem(pki, "internal-server"), ca: readPem(pki, "internal-ca").cert } });
  await listenInternal(internal, { ...te.config, internal: { host: "127.0.0.1", port } });
  t.teardown(() => internal.close());

  // Without a client certificate from the internal CA, the engine's API does not even complete a handshake.
  const stranger = await issue(await createCA("other"), { name: "x", kind: "client" });
  await t.rejects(new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path: "/relay/info", ca: readPem(pki, "internal-ca").cert, servername: "localhost", key: stranger.key, cert: stranger.cert }, resolve);
    req.on("error", reject);
    req.end();
  }), "a client certificate from another CA is refused");

  // The bot's host gets what the README says to copy, and nothing else: never the internal CA's private key.
  const botPki = join(dir, "bot-pki");
  mkdirSync(botPki, { mode: 0o700 });
  for (const f of ["internal-ca.crt", "bot-client.crt", "bot-client.key"]) copyFileSync(join(pki, f), join(botPki, f));
  const pepper = randomBytes(32).toString("hex");
  const env = {
    ...process.env, RUNIGUN_TELEGRAM_TOKEN: api.token, RUNIGUN_TELEGRAM_API_ROOT: api.apiRoot, RUNIGUN_PKI_DIR: botPki,
    RUNIGUN_INTERNAL_PORT: String(port), RUNIGUN_DATA_DIR: join(dir, "bot"), RUNIGUN_PEPPER: pepper, RUNIGUN_EDGE_KEY: randomBytes(32).toString("hex"),
    RUNIGUN_IDENTITY_MEMORY_KI_B: "1024", RUNIGUN_IDENTITY_TIME_COST: "1", RUNIGUN_LOG_LEVEL: "warn", NODE_ENV: "production",
  };
  let bot: ChildProcess | undefined;
  const startBot = async () => {
    bot = spawn(process.execPath, [runigunBin, "bot"], { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    bot.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    bot.stderr!.on("data", (d: Buffer) => (out += d.toString()));
    await new Promise<void>((resolve, reject) => {
      bot!.stdout!.on("data", () => /bot ready/.test(out) && resolve());
      bot!.once("exit", (code) => reject(new Error(`the bot exited (${code}): ${out}`)));
    });
  };
  t.teardown(() => void bot?.kill("SIGKILL"));
  await startBot();
  const ALICE = 3301;
  const ask = async (text: string, match: RegExp) => {
    const since = api.calls.length;
    api.push(msg(ALICE, text));
    const c = await api.waitForCall((x) => x.method === "sendMessage" && match.test(String(x.params.text)), since);
    return String(c.params.text);
  };
  t.match(await ask("/start", /wallet is ready/), /regtest/);
  const address = /(bcrt1[0-9a-z]+)/.exec(await ask("/deposit", /Send bitcoin to/))![1]!;
  await te.node.ensureMatureCoins();
  const beforeFund = api.calls.length;
  await te.node.fund(address, "0.2");
  await te.mine(1);
  await api.waitForCall((c) => /Deposit confirmed/.test(String(c.params.text)), beforeFund);
  t.pass("the confirmation reached the user through the notification stream and the bot process");

  bot!.kill("SIGKILL");
  await new Promise((r) => bot!.once("exit", r));
  const userKey = await new Identity({ timeCost: 1, memoryKiB: 1024, parallelism: 1, cacheSize: 10, pepper: Buffer.from(pepper, "hex") }).userKey(ALICE);
  const b = await te.engine.relay.balance(userKey);
  t.match(b, { available: 20_000_000n }, "the engine kept everything while the bot was dead");
  await startBot();
  t.match(await ask("/balance", /Available/), /Available: 0\.2 BTC/, "the restarted bot sees the same wallet");
  const quote = await ask(`/withdraw ${await te.node.outsideAddress()} 0.05`, /Network fee/);
  t.match(quote, /0\.05 BTC/);
  const kb = (api.calls.at(-1)!.params.reply_markup as { inline_keyboard: Array<Array<{ callback_data: string }>> }).inline_keyboard[0]!;
  const since = api.calls.length;
  api.push({ update_id: updateId++, callback_query: { id: "cb1", chat_instance: "c", from: { id: ALICE, is_bot: false, first_name: "a" }, data: kb[0]!.callback_data, message: { message_id: 1, date: 0, chat: { id: ALICE, type: "private", first_name: "a" }, text: "" } } } as Update);
  await api.waitForCall((c) => /broadcast/.test(String(c.params.text)), since);
  t.pass("the withdrawal went out through the split shape");

  // Another bot, on a new data directory, with another pepper: every user would get a new, empty wallet. The engine
  // pinned the first bot's identity settings and refuses it.
  bot!.kill("SIGKILL");
  await new Promise((r) => bot!.once("exit", r));
  const other = spawn(process.execPath, [runigunBin, "bot"], {
    env: { ...env, RUNIGUN_DATA_DIR: join(dir, "bot2"), RUNIGUN_PEPPER: randomBytes(32).toString("hex") }, stdio: ["ignore", "pipe", "pipe"],
  });
  let said = "";
  other.stdout!.on("data", (d: Buffer) => (said += d.toString()));
  other.stderr!.on("data", (d: Buffer) => (said += d.toString()));
  const code = await new Promise<number | null>((r) => other.once("exit", r));
  t.equal(code, 1, said);
  t.match(said, /the engine refused this bot's identity settings: .*new, empty wallet/);
});
