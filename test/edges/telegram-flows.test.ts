// More of the Telegram edge through the real grammY client and the Bot API stand-in: step-by-step withdrawal
// and Cancel, history paging, cheque links, private-chat explanations (against the real engine); the error
// boundary, its logs and notification delivery (against a tiny scripted relay, to make failures happen).
import t from "tap";
import { createHash, randomBytes } from "node:crypto";
import { pino } from "pino";
import type { Update } from "grammy/types";
import { BotApiStandIn, type RecordedCall } from "../support/bot-api.ts";
import { startTestEngine } from "../support/engine.ts";
import { buildTelegramEdge, SOMETHING_WRONG, SOMETHING_WRONG_AFTER } from "../../src/edges/telegram/bot.ts";
import { balance, refusalInGroup, CHEQUE_CODE_IN_GROUP, TIP_NOT_SENT, TIP_UNIT } from "../../src/edges/telegram/render.ts";
import { loadConfig } from "../../src/config.ts";
import { silentLogger } from "../../src/log.ts";
import { refuse } from "../../src/domain/refusals.ts";
import { sealHandle } from "../../src/store/sealed.ts";
import { IdentityBusy } from "../../src/store/identity.ts";
import type { Notification, Relay } from "../../src/relay.types.ts";

const ALICE = 7101, BOB = 7102, MALLORY = 7103, CAROL = 7104, DAVE = 7105, ERIN = 7106, FRANK = 7107, GROUP = -9101;
const txt = BotApiStandIn.text;
const answerOf = (c: RecordedCall) => String(c.params.text ?? "");
const isAnswer = (c: RecordedCall) => c.method === "answerCallbackQuery";

async function withStandIn(t: { teardown(f: () => unknown): void }) {
  const api = new BotApiStandIn();
  await api.start();
  t.teardown(() => api.stop());
  return api;
}

t.test("with the real engine", async (t) => {
  const api = await withStandIn(t);
  const te = await startTestEngine();
  t.teardown(() => te.stop());
  const edge = buildTelegramEdge({
    token: api.token, apiRoot: api.apiRoot, config: te.config, relay: te.engine.relay, identity: te.identity, handleKey: te.handleKey,
    log: silentLogger, mode: "polling",
  });
  await edge.start();
  t.teardown(() => edge.stop());
  const say = (u: Update, match?: (c: RecordedCall) => boolean) => api.exchange(u, match);
  const dm = (from: number, body: string) => api.exchange(api.message(from, body)).then(txt);
  for (const who of [ALICE, BOB, MALLORY]) await dm(who, "/start");
  const alice = await te.identity.userKey(ALICE);
  for (let i = 0; i < 12; i++) await te.engine.registry.send(alice, "receive_transfer", { id: `seed${i}`, from: "u_bank", amount: 20_000n });
  // Each credit is announced to Alice; let those arrive before replies are awaited.
  const announced = new Set<RecordedCall>();
  for (let i = 0; i < 12; i++) {
    announced.add(await api.waitForCall((c) => !announced.has(c) && Number(c.params.chat_id) === ALICE && /You received/.test(txt(c))));
  }

  await t.test("/withdraw step by step, Cancel, and a quote cancelled cannot be confirmed", async (t) => {
    const ext = await te.node.outsideAddress();
    t.match(await dm(ALICE, "/withdraw"), /Which address/);
    t.match(await dm(ALICE, ext), /How much/);
    const q = await say(api.message(ALICE, "50k sats"));
    t.match(txt(q), /Withdrawal quote[\s\S]*Network fee/);
    const [confirm, cancel] = BotApiStandIn.buttons(q);
    t.same([confirm?.text, cancel?.text], ["Confirm", "Cancel"]);
    t.match(answerOf(await say(api.press(MALLORY, cancel!.callback_data), isAnswer)), /someone else's/, "another user cannot cancel it either");
    const since = api.calls.length;
    t.match(answerOf(await say(api.press(ALICE, cancel!.callback_data), isAnswer)), /Cancelled/);
    t.match(txt(await api.waitForCall((c) => c.method === "editMessageText", since)), /cancelled\. Nothing was moved/);
    t.match(answerOf(await say(api.press(ALICE, confirm!.callback_data), isAnswer)), /expired/, "Confirm after Cancel does nothing");
    t.match(await dm(ALICE, "/balance"), /Available: 0\.0024 BTC[\s\S]*Reserved: 0\.0 BTC/, "nothing reserved");

    t.match(await dm(ALICE, `/withdraw ${ext}`), /How much/);
    t.match(await dm(ALICE, "/cancel"), /Withdrawal cancelled/);
    t.match(await dm(ALICE, "0.001"), /don't understand/, "the conversation is over");
    t.match(await dm(ALICE, "/cancel"), /Nothing to cancel/);
    t.match(await dm(ALICE, "/withdraw"), /Which address/);
    // The address is checked at the step that asks for it, and asked for again (it was taken, and refused a step later).
    t.match(await dm(ALICE, "not-an-address"), /^⚠️ .*not a Bitcoin address.*\nWhich address/);
    t.match(await dm(ALICE, "/cancel"), /Withdrawal cancelled/);
  });

  await t.test("/history pages with small, checked buttons", async (t) => {
    const first = await say(api.message(ALICE, "/history"));
    t.match(txt(first), /History — page 1 of 3/);
    t.same(BotApiStandIn.buttons(first).map((b) => [b.text, b.callback_data]), [["Older ▶", "hist:1"]]);
    let since = api.calls.length;
    await say(api.press(ALICE, "hist:1"), isAnswer);
    const second = await api.waitForCall((c) => c.method === "editMessageText", since);
    t.match(txt(second), /page 2 of 3/);
    t.same(BotApiStandIn.buttons(second).map((b) => b.callback_data), ["hist:0", "hist:2"]);
    since = api.calls.length;
    await say(api.press(ALICE, "hist:9999"), isAnswer);
    t.match(txt(await api.waitForCall((c) => c.method === "editMessageText", since)), /page 3 of 3/, "a page past the end shows the last one");
    t.match(await dm(BOB, "/history"), /No transactions yet/);
    // Two quick presses of the same page: Telegram refuses to edit a message into the same text. Not an error.
    api.failNext("editMessageText", { error_code: 400, description: "Bad Request: message is not modified" });
    since = api.calls.length;
    await say(api.press(ALICE, "hist:2"), isAnswer);
    await dm(ALICE, "/balance");
    t.notMatch(api.calls.slice(since).map((c) => answerOf(c)).join("\n"), /went wrong/, "no error shown for an unchanged page");
  });

  await t.test("a cheque link is claimed once, through /start deep links", async (t) => {
    const made = await dm(ALICE, "/cheque 10k sats");
    const code = /https:\/\/t\.me\/runigun_test_bot\?start=([\w-]+)/.exec(made)?.[1];
    t.ok(code, "a t.me link with the bot's username");
    const listed = await dm(ALICE, "/cheque list");
    t.match(listed, /Your open cheques[\s\S]*0\.0001 BTC/, "the creator's list shows it");
    t.ok(listed.includes(`https://t.me/runigun_test_bot?start=${code}`) && listed.includes(`/cheque revoke ${code}`), "with its link and how to take it back");
    t.match(await dm(BOB, "/cheque list"), /no open cheques/, "not in anyone else's");
    // The claimant has the answer only (found by a review: a "You received" came on top of it); the creator is told,
    // once, that it was claimed (found by the same review: never before).
    const bob = await te.identity.userKey(BOB);
    const toBob: string[] = [];
    const off = te.engine.relay.onNotification((n) => void (n.userKey === bob && toBob.push(n.notice.kind)), { observer: true });
    t.teardown(off);
    const since = api.calls.length;
    t.match(txt(await say(api.message(BOB, `/start ${code}`), (c) => /Cheque claimed/.test(txt(c)))), /Cheque claimed: 0\.0001 BTC/);
    t.equal(txt(await api.waitForCall((c) => Number(c.params.chat_id) === ALICE && /was claimed/.test(txt(c)), since)), "🧾 Your cheque for 0.0001 BTC (10,000 sats) was claimed", "the creator told");
    await te.engine.cheques.settled();
    t.same(toBob, [], "no notice for the claimant: the payout is credited");
    t.match(await dm(MALLORY, `/start ${code}`), /already been claimed/);
    t.match(await dm(ALICE, `/cheque revoke ${code}`), /already been claimed/);
    t.match(await dm(ALICE, "/cheque list"), /no open cheques/, "a claimed cheque leaves the list");
    t.match(await dm(ALICE, "/cheque revoke"), /Which cheque/);
    t.match(await dm(ALICE, "/cheque"), /How much/);
    t.same(api.textsTo(ALICE, since).filter((x) => /was claimed/.test(x)).length, 1, "told once");
    t.notOk(api.textsTo(BOB, since).some((x) => /You received/.test(x)), "the claimant got one message");
  });

  await t.test("private chat explains what only works elsewhere; non-text gets one line", async (t) => {
    t.match(await dm(ALICE, "/send"), /reply to their message in a group with \/tip .*\/cheque/);
    t.match(await dm(ALICE, "/send 1000 sats"), /\/tip/);
    t.match(await dm(ALICE, "/tip 1000 sats"), /groups/);
    t.match(await dm(ALICE, "/help"), /\/withdraw[\s\S]*\/cheque[\s\S]*\/tip/);
    const sticker = api.message(ALICE, "");
    delete (sticker.message as { text?: string }).text;
    (sticker.message as unknown as { sticker: unknown }).sticker = { file_id: "s", file_unique_id: "s", type: "regular", width: 1, height: 1, is_animated: false, is_video: false };
    t.match(txt(await say(sticker)), /don't understand/);
    const commands = api.calls.filter((c) => c.method === "setMyCommands").map((c) => (c.params.scope as { type: string }).type);
    t.same(commands.sort(), ["all_group_chats", "all_private_chats"], "commands registered for private chats and for groups");
  });

  /** A user with a wallet holding `sats`, its credit's notice already delivered (so it is not taken for an answer). */
  const funded = async (who: number, sats: bigint) => {
    await dm(who, "/start");
    const since = api.calls.length;
    await te.engine.registry.send(await te.identity.userKey(who), "receive_transfer", { id: `seed-${who}`, from: "u_bank", amount: sats });
    await api.waitForCall((c) => Number(c.params.chat_id) === who && /You received/.test(txt(c)), since);
  };
  const chequeOf = async (who: number, amount: string) => {
    const code = /start=([\w-]+)/.exec(await dm(who, `/cheque ${amount}`))?.[1];
    if (!code) throw new Error("no cheque made");
    return code;
  };
  let groupMessageId = 7000;
  const inGroup = (from: number, body: string, replyTo?: number) => api.message(from, body, { chat: GROUP, ...(replyTo ? { replyTo: { from: replyTo, id: groupMessageId++ } } : {}) });

  // Each user below is new here: Alice has used up most of her commands a minute (telegram.commandsPerMinute).
  await t.test("a tip says its unit: a bare number is refused, never read as bitcoin", async (t) => {
    await funded(ERIN, 150_000_000n);
    t.equal(txt(await say(inGroup(ERIN, "/tip 1", MALLORY))), TIP_UNIT, "/tip 1 sends nothing, and says what to type");
    t.equal(txt(await say(inGroup(ERIN, "/tip 0.0001", MALLORY))), TIP_UNIT);
    t.match(await dm(ERIN, "/balance"), /^Available: 1\.5 BTC/, "nothing moved");
    t.match(txt(await say(inGroup(ERIN, "/tip 1k sats", MALLORY))), /Tip sent: 0\.00001 BTC \(1,000 sats\)/, "with its unit it goes");
    t.match(txt(await say(inGroup(ERIN, "/tip 0.00001 btc", MALLORY))), /Tip sent: 0\.00001 BTC/);
    t.match(await dm(ERIN, "/help"), /\/tip <amount> and its unit/);
  });

  await t.test("a tip redelivered after a restart, its tipper since short of its amount or frozen, is answered as sent, and paid once", async (t) => {
    await funded(FRANK, 30_000n);
    const mallory = await dm(MALLORY, "/balance");
    const tip = inGroup(FRANK, "/tip 20k sats", MALLORY);
    const sinceTip = api.calls.length;
    t.match(txt(await say(tip)), /Tip sent: 0\.0002 BTC/);
    // Frank spends the rest: he now has less than the tip.
    await chequeOf(FRANK, "10k sats");
    t.match(await dm(FRANK, "/balance"), /^Available: 0\.0 BTC/);
    // Telegram sends the same message again (the edge restarted before it acknowledged the update: its memory of
    // update ids is gone, so only the message's own ids say it is the same).
    const again = () => ({ ...api.message(FRANK, "-"), message: tip.message });
    // Found by a review: answered "That tip could not be sent" though it had gone, and Frank could tip again.
    t.equal(txt(await say(again())), "That tip was already sent.", "short of the amount: the truth");
    await te.engine.registry.send(await te.identity.userKey(FRANK), "freeze", { reason: "test", by: "op" });
    t.equal(txt(await say(again())), "That tip was already sent.", "frozen since: the same");
    await te.engine.registry.send(await te.identity.userKey(FRANK), "unfreeze", { by: "op" });
    // Paid once: Mallory has the 20k once more than before, no more (its notice in first, not taken for an answer).
    await api.waitForCall((c) => Number(c.params.chat_id) === MALLORY && /You received 0\.0002 BTC/.test(txt(c)), sinceTip);
    const before = /Available: ([\d.]+) BTC/.exec(mallory)![1]!;
    const after = /Available: ([\d.]+) BTC/.exec(await dm(MALLORY, "/balance"))![1]!;
    t.equal(Math.round((Number(after) - Number(before)) * 1e8), 20_000, "Mallory credited once");
    // A tip that never went, short of its amount, is refused as before.
    t.equal(txt(await say(inGroup(FRANK, "/tip 20k sats", MALLORY))), TIP_NOT_SENT, "a new tip: not enough");
  });

  await t.test("a frozen creator's cheques: no list, no revoke, and a claim is on hold until unfrozen", async (t) => {
    await funded(DAVE, 50_000n);
    const code = await chequeOf(DAVE, "20k sats");
    const dave = await te.identity.userKey(DAVE);
    await te.engine.registry.send(dave, "freeze", { reason: "account takeover reported", by: "op" });
    const listed = await dm(DAVE, "/cheque list");
    t.match(listed, /^🧊 This wallet is frozen by an operator/, "no list");
    t.notOk(listed.includes(code), "no link handed out again");
    t.match(await dm(DAVE, `/cheque revoke ${code}`), /^🧊 This wallet is frozen by an operator/, "no revoke");
    const bob = await dm(BOB, "/balance");
    const held = await dm(BOB, `/start ${code}`);
    t.match(held, /This cheque is on hold; ask the person who sent it/, "the claim is on hold");
    t.notMatch(held, /frozen|operator|takeover/i, "nothing about the creator's wallet");
    t.equal(await dm(BOB, "/balance"), bob, "Bob got nothing from it");
    await te.engine.registry.send(dave, "unfreeze", { by: "op" });
    t.match(txt(await say(api.message(BOB, `/start ${code}`), (c) => /Cheque claimed|on hold/.test(txt(c)))), /Cheque claimed: 0\.0002 BTC/, "claimed once unfrozen");
  });

  await t.test("a cheque code posted in a group: its sender's cheque is revoked, told in private, the code never repeated", async (t) => {
    await funded(CAROL, 50_000n);
    const code = await chequeOf(CAROL, "20k sats");
    const carol = await te.identity.userKey(CAROL);
    const toCarol: string[] = [];
    t.teardown(te.engine.relay.onNotification((n) => void (n.userKey === carol && toCarol.push(n.notice.kind)), { observer: true }));
    let since = api.calls.length;
    const groupLine = txt(await say(inGroup(CAROL, `/cheque revoke ${code}`)));
    t.equal(groupLine, CHEQUE_CODE_IN_GROUP, "the group hears the same words whatever happened");
    const told = txt(await api.waitForCall((c) => Number(c.params.chat_id) === CAROL && /Cheque|cheque code/.test(txt(c)), since));
    t.match(told, /Cheque revoked: You posted a cheque code in a group, where others can see it, so I took it back[\s\S]*0\.0002 BTC[\s\S]*Available: 0\.0005 BTC/, "revoked, said in private, with why");
    await te.engine.cheques.settled();
    t.same(toCarol, [], "the private answer only: no \"You received\" besides (found by a review)");
    t.match(await dm(MALLORY, `/start ${code}`), /revoked/, "nobody in the group can claim it");

    // Someone else's code (a link), posted by Bob: not his to revoke; he is told generically, in private.
    const other = await chequeOf(CAROL, "10k sats");
    since = api.calls.length;
    t.equal(txt(await say(inGroup(BOB, `/cheque https://t.me/runigun_test_bot?start=${other}`))), CHEQUE_CODE_IN_GROUP);
    const toBob = txt(await api.waitForCall((c) => Number(c.params.chat_id) === BOB && /cheque code/.test(txt(c)), since));
    t.match(toBob, /It was not taken back: it is not one of your open cheques/);
    t.match(await dm(CAROL, "/cheque list"), /0\.0001 BTC/, "Carol's cheque is untouched");
    t.notOk(told.includes(code) || toBob.includes(other), "the private answers do not repeat the code");
    t.notOk(api.textsTo(GROUP).some((x) => x.includes(code) || x.includes(other)), "nor does anything said in the group");
    t.match(txt(await say(inGroup(CAROL, "/cheque list"))), /only take \/tip/, "a /cheque without a code in a group: as before");
  });
});

t.test("polling: a webhook left registered is removed first; a 409 from getUpdates stops this edge with an alert, never the process", async (t) => {
  const api = await withStandIn(t);
  const lines: string[] = [];
  const config = loadConfig({ env: {}, overrides: {} });
  const identity = { userKey: async (id: number) => `u_${id}` };
  // Another process polls with the same token: Telegram answers 409 for good.
  api.failNext("getUpdates", { error_code: 409, description: "Conflict: terminated by other getUpdates request" }, 1000);
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => void unhandled.push(e);
  process.on("unhandledRejection", onUnhandled);
  t.teardown(() => void process.off("unhandledRejection", onUnhandled));
  const { log: logger, seen } = watchedLog("Telegram polling stopped", lines);
  const edge = buildTelegramEdge({ token: api.token, apiRoot: api.apiRoot, config, relay: scriptedRelay({}), identity, handleKey: randomBytes(32), log: logger, mode: "polling" });
  await edge.start();
  t.teardown(() => edge.stop());
  t.ok(api.calls.some((c) => c.method === "deleteWebhook"), "deleteWebhook was called before polling");
  await seen;
  const line = JSON.parse(lines.find((l) => l.includes("Telegram polling stopped"))!) as { level: number; alert: boolean };
  t.match(line, { level: 50, alert: true }, "one error line, an alert");
  await new Promise((r) => setImmediate(r));
  t.same(unhandled, [], "no unhandled rejection: the process goes on");
});

t.test("a refusal said in a group never tells the state of anyone's wallet", async (t) => {
  const frozen = refusalInGroup(refuse("frozen", "This wallet is frozen by an operator: suspicious login"));
  t.notMatch(frozen, /frozen|operator|suspicious/i, frozen);
  t.match(frozen, /private chat/);
  t.same(new Set([frozen, refusalInGroup(refuse("not_found", "no wallet")), refusalInGroup(refuse("insufficient_funds", "short"))]).size, 1, "frozen, no wallet and not enough sound the same");
});

t.test("a frozen wallet's balance says it is frozen, not the freeze's reason (written for operators: after a restore it names other users' transactions)", async (t) => {
  const txid = "ab".repeat(32);
  const shown = balance({ available: 1n, pending: 0n, reserved: 0n, frozen: `restored from a backup: spend ${txid} is not in the restored books and may have paid this wallet's money` });
  t.match(shown, /Frozen for review/);
  t.notMatch(shown, /[0-9a-f]{64}|restored|spend/, shown);
});

t.test("a notice whose sendMessage Telegram took but whose answer was lost (the network cut) is sent again once, then settled: at least once (the user may be told twice)", async (t) => {
  const api = await withStandIn(t);
  const lines: string[] = [];
  const { log, seen: reported } = watchedLog("notification not delivered", lines);
  const handleKey = randomBytes(32);
  const relay = scriptedRelay({});
  const config = loadConfig({ env: {}, overrides: {} });
  const edge = buildTelegramEdge({ token: api.token, apiRoot: api.apiRoot, config, relay, identity: { userKey: async (id: number) => `u_${id}` }, handleKey, log, mode: "polling" });
  await edge.start();
  t.teardown(() => edge.stop());
  api.cutAfterTaking("sendMessage");
  const since = api.calls.length;
  // Settled (the engine forgets it, or the bot acknowledges it) only once a send was answered. Before, a notice was
  // never sent again after a network error, and one that had not reached Telegram was lost.
  let settled!: () => void;
  const done = new Promise<void>((r) => (settled = r));
  relay.emit({ userKey: "u_x", chatHandle: sealHandle(handleKey, { chatId: 812345678 }), notice: { kind: "deposit_confirmed", amount: 150_000n, txid: "ab".repeat(32) } }, settled);
  const sends = () => api.calls.slice(since).filter((c) => c.method === "sendMessage").length;
  await reported;
  t.equal(sends(), 1, "not settled by the failure");
  await done;
  t.equal(sends(), 2, "sent again once, answered, then settled");
  t.ok(lines.some((l) => l.includes("notification not delivered")), "the lost answer is logged");
});

/** A logger keeping its lines in `lines`; `seen` resolves at the first line that contains `text`. */
function watchedLog(text: string, lines: string[]) {
  let saw!: () => void;
  const seen = new Promise<void>((r) => (saw = r));
  const log = pino({ level: "debug" }, {
    write: (s: string) => {
      lines.push(s);
      if (s.includes(text)) saw();
    },
  });
  return { log, seen };
}

/** A relay whose every answer is scripted by the test; the rest refuse. */
function scriptedRelay(over: Partial<Relay>): Relay & { emit(n: Notification, settled?: () => void): void } {
  const listeners = new Set<(n: Notification, settled?: () => void) => void>();
  const no = async () => refuse("not_found", "no");
  const base: Relay = {
    start: async () => ({ created: true, balance: { available: 0n, pending: 0n, reserved: 0n } }),
    balance: no, history: no, depositAddress: no, quoteWithdrawal: no, confirmWithdrawal: no, cancelQuote: no,
    transfer: no, createCheque: no, claimCheque: no, revokeCheque: no, myCheques: no, identityPin: no,
    onNotification: (l) => (listeners.add(l), () => listeners.delete(l)),
    info: () => ({ network: "regtest", confirmations: 1, draining: false }),
  };
  return { ...base, ...over, emit: (n, settled) => listeners.forEach((l) => l(n, settled)) };
}

t.test("the error boundary answers one line and logs nothing personal; notifications use the sealed handle", async (t) => {
  const api = await withStandIn(t);
  const lines: string[] = [];
  const log = pino({ level: "debug" }, { write: (s: string) => void lines.push(s) });
  const handleKey = randomBytes(32);
  const WHO = 812345678;
  const relay = scriptedRelay({
    balance: async () => {
      throw new Error(`wallet of ${WHO} exploded reading "/balance please"`);
    },
    confirmWithdrawal: async () => {
      throw new Error("confirm exploded");
    },
    // Accepted by the engine, then the rendering fails: the person must not be told "nothing was moved".
    createCheque: async () => ({ code: "abc", amount: 1000n, expiresAt: Number.NaN }),
  });
  const config = loadConfig({ env: {}, overrides: { telegram: { commandsPerMinute: 1000 } } });
  const identity = { userKey: async (id: number) => `u_${createHash("sha256").update(String(id)).digest("hex").slice(0, 16)}` };
  const edge = buildTelegramEdge({ token: api.token, apiRoot: api.apiRoot, config, relay, identity, handleKey, log, mode: "polling" });
  await edge.start();
  t.teardown(() => edge.stop());

  t.equal(txt(await api.exchange(api.message(WHO, "/balance please"))), SOMETHING_WRONG);
  const pressed = await api.exchange(api.press(WHO, "wd:ok:wd_AAAAAAAAAAAA"), isAnswer);
  t.equal(answerOf(pressed), SOMETHING_WRONG, "a failed button press is answered on the button");
  t.equal(pressed.params.show_alert, true);
  t.equal(txt(await api.exchange(api.message(WHO, "/cheque 1000 sats"))), SOMETHING_WRONG_AFTER, "after the engine accepted, it says so");

  const since = api.calls.length;
  relay.emit({ userKey: "u_x", chatHandle: sealHandle(randomBytes(32), { chatId: WHO }), notice: { kind: "transfer_received", id: "t1", amount: 5n, from: "u_y" } });
  relay.emit({ userKey: "u_x", chatHandle: sealHandle(handleKey, { chatId: WHO }), notice: { kind: "deposit_confirmed", amount: 150_000n, txid: "ab".repeat(32) } });
  const sent = await api.waitForCall((c) => c.method === "sendMessage", since);
  t.equal(Number(sent.params.chat_id), WHO, "delivered to the chat sealed in the handle");
  t.match(txt(sent), /Deposit confirmed: 0\.0015 BTC \(150,000 sats\)/);
  t.equal(api.calls.slice(since).filter((c) => c.method === "sendMessage").length, 1, "a handle sealed with another key is skipped");

  const all = lines.join("");
  t.match(all, /update failed/);
  t.match(all, /a chat handle did not open/);
  t.notMatch(all, new RegExp(String(WHO)), "no Telegram id in the logs");
  t.notMatch(all, /please|\/balance|\/cheque/, "no message text in the logs");
  t.notMatch(all, /TEST-TOKEN/, "no token in the logs");
});

t.test("when the identity's derivation queue is full, the person is told to try again in a moment", async (t) => {
  const api = await withStandIn(t);
  const config = loadConfig({ env: {}, overrides: {} });
  // Every lookup refused as busy (store/identity.ts: the queue of derivations is bounded).
  const identity = { userKey: () => Promise.reject(new IdentityBusy()) };
  const edge = buildTelegramEdge({ token: api.token, apiRoot: api.apiRoot, config, relay: scriptedRelay({}), identity, handleKey: randomBytes(32), log: silentLogger, mode: "polling" });
  await edge.start();
  t.teardown(() => edge.stop());
  t.match(txt(await api.exchange(api.message(ALICE, "/balance"))), /^⏳ .*busy.*try again in a moment\. Nothing was moved\.$/);
  const tip = api.message(ALICE, "/tip 1000 sats", { chat: GROUP, replyTo: { from: BOB, id: 9 } });
  t.match(txt(await api.exchange(tip)), /^⏳ .*busy.*try again in a moment/, "in a group too");
});

t.test("/history says a cheque's payout came 'from a cheque' when the funding may lie beyond the entries kept, not 'cheque claimed'", async (t) => {
  const api = await withStandIn(t);
  const WHO = 812345679;
  const payout = { at: Date.UTC(2026, 10, 29), kind: "transfer_in" as const, amount: 5_000n, ref: "c_payout", status: "received", counterparty: "cheque:abc" };
  // The last page of the kept entries (a thousand of 1,500): the cheque's funding, older, is not among them.
  const relay = scriptedRelay({ history: async (_u, page, size) => ({ entries: page === 0 && (size ?? 5) === 5 ? [payout] : [], page: 0, pages: 1, total: 1_500 }) });
  const config = loadConfig({ env: {}, overrides: {} });
  const edge = buildTelegramEdge({ token: api.token, apiRoot: api.apiRoot, config, relay, identity: { userKey: async (id: number) => `u_${id}` }, handleKey: randomBytes(32), log: silentLogger, mode: "polling" });
  await edge.start();
  t.teardown(() => edge.stop());
  const shown = txt(await api.exchange(api.message(WHO, "/history")));
  t.match(shown, /from a cheque/, shown);
  t.notMatch(shown, /cheque claimed/, "not said claimed: this wallet may have made that cheque");
});
