// The real grammY bot (runner, auto-retry, throttler, rate limiter) against a Bot API stand-in over HTTP on
// 127.0.0.1, and the real engine on a regtest node: the whole story, and every way a person can get it wrong.
import t from "tap";
import type { Update } from "grammy/types";
import { BotApiStandIn } from "../support/bot-api.ts";
import { startTestEngine, type TestEngine } from "../support/engine.ts";
import { buildTelegramEdge, type TelegramEdge } from "../../src/edges/telegram/bot.ts";
import { loadConfig } from "../../src/config.ts";
import { silentLogger } from "../../src/log.ts";

let updateId = 1000;
let messageId = 1;
const ALICE = 7001, BOB = 7002, MALLORY = 7003, GROUP = -9001;
const person = (id: number) => ({ id, is_bot: false, first_name: `p${id}` });

function text(from: number, body: string, opts: { chat?: number; replyTo?: { from: number; id: number } } = {}): Update {
  const chatId = opts.chat ?? from;
  const cmd = /^\/\w+/.exec(body);
  return {
    update_id: updateId++,
    message: {
      message_id: messageId++, date: Math.floor(Date.now() / 1000), text: body, from: person(from),
      chat: chatId < 0 ? { id: chatId, type: "group", title: "g" } : { id: chatId, type: "private", first_name: "x" },
      ...(cmd ? { entities: [{ type: "bot_command", offset: 0, length: cmd[0].length }] } : {}),
      ...(opts.replyTo ? { reply_to_message: { message_id: opts.replyTo.id, date: 0, chat: { id: chatId, type: "group", title: "g" }, from: person(opts.replyTo.from), text: "hi" } } : {}),
    },
  } as Update;
}

function press(from: number, data: string): Update {
  return {
    update_id: updateId++,
    callback_query: { id: String(updateId), from: person(from), chat_instance: "c", data, message: { message_id: 1, date: 0, chat: { id: from, type: "private", first_name: "x" }, text: "" } },
  } as Update;
}

async function setup(t: { teardown(f: () => unknown): void }, edgeConfig: Record<string, unknown> = {}) {
  const api = new BotApiStandIn();
  await api.start();
  t.teardown(() => api.stop());
  const te = await startTestEngine({ deposits: { confirmations: 1 } });
  t.teardown(() => te.stop());
  const config = { ...te.config, telegram: { ...te.config.telegram, apiRoot: api.apiRoot, ...edgeConfig } };
  const edge = buildTelegramEdge({ token: api.token, config, relay: te.engine.relay, identity: te.identity, handleKey: te.handleKey, log: silentLogger, mode: "polling" });
  await edge.start();
  t.teardown(() => edge.stop());
  /** Sends an update and waits for the bot's answer to that chat (or a callback answer). */
  const say = async (u: Update, match: (c: { method: string; params: Record<string, unknown> }) => boolean = () => true) => {
    const since = api.calls.length;
    const chat = u.message?.chat.id ?? u.callback_query?.from.id;
    api.push(u);
    return api.waitForCall((c) => (Number(c.params.chat_id) === chat || c.method === "answerCallbackQuery") && c.method !== "setMyCommands" && match(c), since);
  };
  return { api, te, edge, say };
}

const txt = (c: { params: Record<string, unknown> }) => String(c.params.text ?? c.params.caption ?? "");

t.test("the story through Telegram: start, deposit with QR, notifications, withdraw with buttons pressed twice", async (t) => {
  const { api, te, say } = await setup(t);
  t.ok(api.calls.some((c) => c.method === "setMyCommands"), "commands registered at start");
  t.match(txt(await say(text(ALICE, "/start"))), /wallet is ready/);
  const photo = await say(text(ALICE, "/deposit"), (c) => c.method === "sendPhoto");
  t.ok(photo.raw && photo.raw.includes(Buffer.from([0x89, 0x50, 0x4e, 0x47])), "a PNG QR code was uploaded");
  const addrMsg = await api.waitForCall((c) => /Send bitcoin to/.test(txt(c)));
  const address = /(bcrt1[0-9a-z]+)/.exec(txt(addrMsg))![1]!;
  await te.node.ensureMatureCoins();
  const since = api.calls.length;
  await te.node.fund(address, "0.3");
  await te.mine(1);
  await api.waitForCall((c) => /Deposit confirmed/.test(txt(c)), since);
  t.pass("notified: deposit confirmed");
  t.match(txt(await say(text(ALICE, "/balance"))), /Available: 0\.3 BTC/);
  const ext = await te.node.outsideAddress();
  const q = await say(text(ALICE, `/withdraw ${ext} 100k sats`));
  t.match(txt(q), /Network fee/);
  const kb = (q.params.reply_markup as { inline_keyboard: Array<Array<{ text: string; callback_data: string }>> }).inline_keyboard[0]!;
  t.same(kb.map((b) => b.text), ["Confirm", "Cancel"]);
  const confirm = kb[0]!.callback_data;
  t.match(String((await say(press(MALLORY, confirm), (c) => c.method === "answerCallbackQuery")).params.text), /someone else's/, "another user's press is refused");
  const beforeConfirm = api.calls.length;
  t.match(String((await say(press(ALICE, confirm), (c) => c.method === "answerCallbackQuery")).params.text), /Confirmed/);
  t.match(String((await say(press(ALICE, confirm), (c) => c.method === "answerCallbackQuery")).params.text), /Already confirmed/, "a second press does nothing");
  const bal = txt(await say(text(ALICE, "/balance"), (c) => /Available/.test(txt(c))));
  t.match(bal, /Reserved: 0\.001\d* BTC/, "reserved once");
  t.match(String((await say(press(ALICE, "wd:ok:wd_AAAAAAAAAAAAAAAA"), (c) => c.method === "answerCallbackQuery")).params.text), /expired/, "a stale quote");
  t.match(String((await say(press(ALICE, "wd:ok:../../etc"), (c) => c.method === "answerCallbackQuery")).params.text), /no longer valid/, "forged data");
  // The batch window is 0 on regtest: the payout went out right after the confirm.
  await api.waitForCall((c) => /broadcast/.test(txt(c)), beforeConfirm);
  t.pass("notified: payout broadcast");
  const mined = api.calls.length;
  await te.mine(1);
  await te.engine.payouts.sync();
  await api.waitForCall((c) => /Withdrawal of 0\.001 BTC .* confirmed/.test(txt(c)), mined);
  t.pass("notified: payout confirmed");
});

t.test("bad input: one clear line, nothing changes", async (t) => {
  const { say } = await setup(t);
  await say(text(MALLORY, "/start"));
  const cases: Array<[string, RegExp]> = [
    ["/frobnicate", /don't know that command/],
    ["hello there", /don't understand/],
    ["/withdraw bcrt1qw46h2at4w46h2at4w46h2at4w46h2at4zdn3gn -1", /negative/],
    ["/withdraw bcrt1qw46h2at4w46h2at4w46h2at4w46h2at4zdn3gn NaN", /not an amount/],
    ["/withdraw bcrt1qw46h2at4w46h2at4w46h2at4w46h2at4zdn3gn 1000000000000000000000000000000", /more bitcoin than will ever exist/],
    ["/withdraw bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4 0.1", /mainnet address/],
    ["/withdraw 🙈🙈🙈🙈🙈🙈🙈🙈🙈🙈🙈 0.1", /not a Bitcoin address/],
    ["/withdraw bcrt1qw46h2at4w46h2at4w46h2at4w46h2at4zdn3gn 0.1", /Not enough/],
    ["x".repeat(4000), /too long/],
  ];
  for (const [input, expected] of cases) {
    const reply = txt(await say(text(MALLORY, input)));
    t.match(reply, expected, input.slice(0, 40));
    t.notOk(reply.includes("\n\n\n"), "short");
  }
  t.match(txt(await say(text(MALLORY, "/balance"))), /Available: 0\.0 BTC[\s\S]*Reserved: 0\.0 BTC/, "nothing moved");
});

t.test("groups: only /tip as a reply; never a balance or an address", async (t) => {
  const { api, te, say } = await setup(t);
  await say(text(ALICE, "/start"));
  await say(text(BOB, "/start"));
  await te.engine.registry.send(await te.identity.userKey(ALICE), "receive_transfer", { id: "seed", from: "u_bank", amount: 50_000n });
  t.match(txt(await say(text(ALICE, "/balance", { chat: GROUP }))), /only take \/tip/);
  t.match(txt(await say(text(ALICE, "/deposit", { chat: GROUP }))), /only take \/tip/);
  t.match(txt(await say(text(ALICE, "/tip 1000 sats", { chat: GROUP }))), /Reply to someone/);
  const tip = text(ALICE, "/tip 1000 sats", { chat: GROUP, replyTo: { from: BOB, id: 77 } });
  t.match(txt(await say(tip)), /Tip sent/);
  const mark = api.calls.length;
  api.push(tip); // Telegram redelivers the same update
  await say(text(BOB, "/balance"));
  t.equal(api.textsTo(GROUP, mark).length, 0, "a redelivered update is ignored");
  t.match(txt(await say(text(BOB, "/balance"))), /Available: 0\.00001 BTC/, "credited once");
  t.match(txt(await say(text(ALICE, "/tip 1 BTC", { chat: GROUP, replyTo: { from: BOB, id: 78 } }))), /Not enough/);
  t.notMatch(api.textsTo(GROUP).join("\n"), /Available|bcrt1/, "nothing private in the group");
});

t.test("rate limit per user, and 429s from Telegram are retried", async (t) => {
  const { api, say } = await setup(t, { commandsPerMinute: 5 });
  const mark = api.calls.length;
  for (let i = 0; i < 5; i++) await say(text(BOB, "/help"));
  t.match(txt(await say(text(BOB, "/help"))), /Too many requests/);
  t.equal(api.textsTo(BOB, mark).filter((x) => /\/start/.test(x)).length, 5, "five answered, then limited");
  api.failWith429("sendMessage", 1);
  t.match(txt(await say(text(ALICE, "/help"))), /\/deposit/, "delivered after Telegram's retry_after");
});

t.test("webhook mode checks Telegram's secret token", async (t) => {
  const api = new BotApiStandIn();
  await api.start();
  t.teardown(() => api.stop());
  const te = await startTestEngine();
  t.teardown(() => te.stop());
  const config = loadConfig({ env: {}, overrides: { telegram: { apiRoot: api.apiRoot, mode: "webhook", webhookHost: "127.0.0.1", webhookPort: 0 } } });
  const edge: TelegramEdge = buildTelegramEdge({ token: api.token, config, relay: te.engine.relay, identity: te.identity, handleKey: te.handleKey, log: silentLogger, webhookSecret: "s3cret-s3cret-s3cret" });
  const { webhookPort } = await edge.start();
  t.teardown(() => edge.stop());
  const post = (secret: string) => fetch(`http://127.0.0.1:${webhookPort}/`, {
    method: "POST", headers: { "content-type": "application/json", "x-telegram-bot-api-secret-token": secret }, body: JSON.stringify(text(ALICE, "/help")),
  });
  t.equal((await post("wrong")).status, 401, "a wrong secret is refused");
  const mark = api.calls.length;
  t.equal((await post("s3cret-s3cret-s3cret")).status, 200);
  t.match(txt(await api.waitForCall((c) => c.method === "sendMessage", mark)), /\/deposit/);
});
