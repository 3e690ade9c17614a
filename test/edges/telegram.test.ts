// The real grammY bot (runner, auto-retry, throttler, rate limiter) against a Bot API stand-in over HTTP on
// 127.0.0.1, and the real engine on a regtest node: the whole story, and every way a person can get it wrong.
import t from "tap";
import type { Update } from "grammy/types";
import { BotApiStandIn, type RecordedCall } from "../support/bot-api.ts";
import { startTestEngine } from "../support/engine.ts";
import { buildTelegramEdge, type TelegramEdge } from "../../src/edges/telegram/bot.ts";
import { loadConfig } from "../../src/config.ts";
import { silentLogger } from "../../src/log.ts";
import { TIP_NOT_SENT } from "../../src/edges/telegram/render.ts";

const ALICE = 7001, BOB = 7002, MALLORY = 7003, CAROL = 7004, GROUP = -9001;
const api0 = new BotApiStandIn(); // update builders only (ids are per instance; one builder keeps them unique)
const text = (from: number, body: string, opts: Parameters<BotApiStandIn["message"]>[2] = {}): Update => api0.message(from, body, opts);
const press = (from: number, data: string): Update => api0.press(from, data);

async function setup(t: { teardown(f: () => unknown): void }, edgeConfig: Record<string, unknown> = {}) {
  const api = new BotApiStandIn();
  await api.start();
  t.teardown(() => api.stop());
  const te = await startTestEngine({ deposits: { confirmations: 1 } });
  t.teardown(() => te.stop());
  const config = { ...te.config, telegram: { ...te.config.telegram, ...edgeConfig } };
  const edge = buildTelegramEdge({ token: api.token, apiRoot: api.apiRoot, config, relay: te.engine.relay, identity: te.identity, handleKey: te.handleKey, log: silentLogger, mode: "polling" });
  await edge.start();
  t.teardown(() => edge.stop());
  /** Sends an update and waits for the bot's answer to that chat (or a callback answer). */
  const say = (u: Update, match?: (c: RecordedCall) => boolean) => api.exchange(u, match);
  return { api, te, edge, say };
}

const txt = BotApiStandIn.text;

t.test("the story through Telegram: start, deposit with QR, notifications, withdraw with buttons pressed twice", async (t) => {
  const { api, te, say } = await setup(t);
  t.ok(api.calls.some((c) => c.method === "setMyCommands"), "commands registered at start");
  t.match(txt(await say(text(ALICE, "/start"))), /wallet is ready/);
  const photo = await say(text(ALICE, "/deposit"), (c) => c.method === "sendPhoto");
  t.ok(photo.raw && photo.raw.includes(Buffer.from([0x89, 0x50, 0x4e, 0x47])), "a PNG QR code was uploaded");
  const addrMsg = await api.waitForCall((c) => /Send bitcoin to/.test(txt(c)));
  const address = /(bcrt1[0-9a-z]+)/.exec(txt(addrMsg))![1]!;
  t.match(txt(addrMsg), /Deposits under 0\.00000546 BTC \(546 sats\) are not credited\./, "the least that is credited, said before anything is sent");
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
  const kb = BotApiStandIn.buttons(q);
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
    ["/withdraw bcrt1qw46h2at4w46h2at4w46h2at4w46h2at4zdn3gn 🙈", /not an amount/],
    ["/withdraw bcrt1qw46h2at4w46h2at4w46h2at4w46h2at4zdn3gn 0.000000001", /8 decimal places/],
    ["/cheque -5 sats", /negative/],
    ["/start notarealchequecode", /does not exist|not a cheque/],
    ["x".repeat(4000), /too long/],
    ["/withdraw " + "9".repeat(3990), /too long/],
  ];
  for (const [input, expected] of cases) {
    const reply = txt(await say(text(MALLORY, input)));
    t.match(reply, expected, input.slice(0, 40));
    t.notOk(reply.includes("\n\n\n"), "short");
  }
  for (const data of ["wd:ok:../../etc", "wd:ok:wd_" + "A".repeat(60), "hist:99999", "hist:-1", "\u0000", "wd:no:"]) {
    const answer = await say(press(MALLORY, data), (c) => c.method === "answerCallbackQuery");
    t.match(String(answer.params.text), /no longer valid/, `forged callback ${JSON.stringify(data)}`);
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
  await api.waitForCall((c) => Number(c.params.chat_id) === BOB && /You received 0\.00001 BTC/.test(txt(c)));
  t.pass("the receiver is notified in private");
  // Short of the amount, without a wallet or frozen: the group hears the same words (the tipper's state is theirs).
  t.equal(txt(await say(text(ALICE, "/tip 1 BTC", { chat: GROUP, replyTo: { from: BOB, id: 78 } }))), TIP_NOT_SENT);
  // The sender is checked before the receiver's key is derived (argon2id, a quarter of a second of a worker): a tip that
  // cannot be paid costs no derivation. Carol has never been seen; Mallory has no wallet.
  await te.identity.userKey(MALLORY);
  const derived = te.identity.stats.derivations;
  t.equal(txt(await say(text(MALLORY, "/tip 1000 sats", { chat: GROUP, replyTo: { from: CAROL, id: 83 } }))), TIP_NOT_SENT);
  t.equal(txt(await say(text(ALICE, "/tip 1 BTC", { chat: GROUP, replyTo: { from: CAROL, id: 84 } }))), TIP_NOT_SENT);
  t.equal(te.identity.stats.derivations, derived, "no derivation for the receiver of a tip that cannot be paid");
  t.match(txt(await say(text(ALICE, "/tip 1000 sats", { chat: GROUP, replyTo: { from: ALICE, id: 79 } }))), /yourself/);
  t.match(txt(await say(text(ALICE, "/tip lots", { chat: GROUP, replyTo: { from: BOB, id: 80 } }))), /not an amount/);
  const anonymous = text(ALICE, "/tip 1000 sats", { chat: GROUP, replyTo: { from: BOB, id: 82 } });
  Object.assign(anonymous.message!, { sender_chat: { id: GROUP, type: "group", title: "g" } });
  t.match(txt(await say(anonymous)), /anonymous admins and channels cannot tip/);
  const inTopic = text(ALICE, "/tip 1000 sats", { chat: GROUP, replyTo: { from: BOB, id: 55 } });
  Object.assign(inTopic.message!, { is_topic_message: true, message_thread_id: 55 });
  t.match(txt(await say(inTopic)), /Reply to someone's message/, "a topic's first message is not a receiver");
  // Commands for other bots in the group are none of this bot's business; an edited /tip never pays;
  // long chatter gets no lecture.
  const quiet = api.calls.length;
  api.push(text(ALICE, "/balance@some_other_bot", { chat: GROUP }));
  api.push(api0.edited(ALICE, "/tip 1000 sats", { chat: GROUP, replyTo: { from: BOB, id: 81 } }));
  api.push(text(BOB, "y".repeat(2000), { chat: GROUP }));
  await say(text(BOB, "/balance"));
  t.equal(api.textsTo(GROUP, quiet).length, 0, "no answer to another bot's command nor to an edit");
  t.match(txt(await say(text(BOB, "/balance"))), /Available: 0\.00001 BTC/, "still credited once");
  t.notMatch(api.textsTo(GROUP).join("\n"), /Available|bcrt1/, "nothing private in the group");
  // A tip in a forum topic (a reply to someone's message there): answered in that topic, not in the group's General.
  const topicTip = text(ALICE, "/tip 1000 sats", { chat: GROUP, replyTo: { from: BOB, id: 90 } });
  Object.assign(topicTip.message!, { is_topic_message: true, message_thread_id: 55 });
  const answered = await say(topicTip);
  t.match(txt(answered), /Tip sent/);
  t.equal(answered.params.message_thread_id, 55, "answered in the topic it was asked in");
});

t.test("rate limit per user, and 429s from Telegram are retried", async (t) => {
  const { api, say } = await setup(t, { commandsPerMinute: 5 });
  const mark = api.calls.length;
  // Bob chatting in a group the bot reads does not count (it is dropped before any limit or line).
  for (let i = 0; i < 10; i++) api.push(text(BOB, `hello everyone ${i}`, { chat: GROUP }));
  for (let i = 0; i < 5; i++) await say(text(BOB, "/help"));
  t.match(txt(await say(text(BOB, "/help"))), /Too many requests/);
  t.equal(api.textsTo(BOB, mark).filter((x) => /\/start/.test(x)).length, 5, "five answered, then limited");
  t.equal(api.textsTo(GROUP, mark).length, 0, "nothing said into the group");
  api.failWith429("sendMessage", 1);
  t.match(txt(await say(text(ALICE, "/help"))), /\/deposit/, "delivered after Telegram's retry_after");
});

t.test("webhook mode checks Telegram's secret token", async (t) => {
  const api = new BotApiStandIn();
  await api.start();
  t.teardown(() => api.stop());
  const te = await startTestEngine();
  t.teardown(() => te.stop());
  const config = loadConfig({ env: {}, overrides: { telegram: { apiRoot: api.apiRoot, mode: "webhook", webhookHost: "127.0.0.1", webhookPort: 0, webhookUrl: "https://bot.example.org/tg" } } });
  const edge: TelegramEdge = buildTelegramEdge({ token: api.token, config, relay: te.engine.relay, identity: te.identity, handleKey: te.handleKey, log: silentLogger, webhookSecret: "s3cret-s3cret-s3cret" });
  const { webhookPort } = await edge.start();
  t.teardown(() => edge.stop());
  const registered = api.calls.find((c) => c.method === "setWebhook");
  t.match(registered?.params, { url: "https://bot.example.org/tg", secret_token: "s3cret-s3cret-s3cret" }, "the webhook is registered with Telegram, with its secret");
  t.throws(() => loadConfig({ env: {}, overrides: { telegram: { webhookUrl: "http://insecure.example.org" } } }), /webhookUrl/, "only an https URL");
  const post = (secret: string) => fetch(`http://127.0.0.1:${webhookPort}/`, {
    method: "POST", headers: { "content-type": "application/json", "x-telegram-bot-api-secret-token": secret }, body: JSON.stringify(text(ALICE, "/help")),
  });
  t.equal((await post("wrong")).status, 401, "a wrong secret is refused");
  const mark = api.calls.length;
  t.equal((await post("s3cret-s3cret-s3cret")).status, 200);
  t.match(txt(await api.waitForCall((c) => c.method === "sendMessage", mark)), /\/deposit/);
});
