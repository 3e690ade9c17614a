// What the Telegram bot says to people, found by a review that used it as customers (the real grammY client, the Bot
// API stand-in, the real engine on regtest): a tipped person's first /start, /withdraw with its words the wrong way
// round or a wrong address at a step, a bare number read as bitcoin, /history naming cheques and tips, a tip with a
// note after its amount, and "1 sat". Refusals move nothing.
import t from "tap";
import type { Update } from "grammy/types";
import { BotApiStandIn, type RecordedCall } from "../support/bot-api.ts";
import { startTestEngine } from "../support/engine.ts";
import { buildTelegramEdge } from "../../src/edges/telegram/bot.ts";
import { TIP_UNIT, welcome } from "../../src/edges/telegram/render.ts";
import { silentLogger } from "../../src/log.ts";
import { isRefusal } from "../../src/domain/refusals.ts";

const ALICE = 7301, BOB = 7302, CAROL = 7303, GROUP = -9301;
const txt = BotApiStandIn.text;
const ASK_ADDRESS = "Which address should I send to? (/cancel to stop)";
const ASK_AMOUNT = "How much? (e.g. 0.001 BTC or 100000 sats, /cancel to stop)";
const NOT_UNDERSTOOD = "❓ I don't understand that. Send /help for what I can do.";
/** A history line without its date and time ("2026-11-29 13:32  "). */
const lines = (history: string) => history.split("\n").slice(1).map((l) => l.replace(/^\d{4}-\d\d-\d\d \d\d:\d\d {2}/, ""));

t.test("the bot's answers, against the real engine", async (t) => {
  const api = new BotApiStandIn();
  await api.start();
  t.teardown(() => api.stop());
  const te = await startTestEngine({ telegram: { commandsPerMinute: 1000 } } as never);
  t.teardown(() => te.stop());
  const edge = buildTelegramEdge({
    token: api.token, apiRoot: api.apiRoot, config: te.config, relay: te.engine.relay, identity: te.identity, handleKey: te.handleKey,
    log: silentLogger, mode: "polling",
  });
  await edge.start();
  t.teardown(() => edge.stop());
  const say = (u: Update, match?: (c: RecordedCall) => boolean) => api.exchange(u, match);
  const dm = (from: number, body: string) => say(api.message(from, body)).then(txt);
  let groupMessage = 60_000;
  /** `from` replies in the group to a message `to` wrote; resolves with the group's answer. */
  const tipIn = (from: number, to: number, body: string) => say(api.message(from, body, { chat: GROUP, replyTo: { from: to, id: groupMessage++ } })).then(txt);
  const available = async (who: number) => {
    const b = await te.engine.relay.balance(await te.identity.userKey(who));
    return isRefusal(b) ? b.code : b.available;
  };

  t.match(await dm(ALICE, "/start"), /^Your wallet is ready\.\n/);
  t.match(await dm(BOB, "/start"), /^Your wallet is ready\.\n/);
  const alice = await te.identity.userKey(ALICE);
  await te.engine.registry.send(alice, "receive_transfer", { id: "seed", from: "u_bank", amount: 300_000n });
  await api.waitForCall((c) => Number(c.params.chat_id) === ALICE && /You received/.test(txt(c)));
  const ext = await te.node.outsideAddress();

  await t.test("a tip's note after its amount is not part of it; a tipped person's first /start says what they hold", async (t) => {
    t.equal(await tipIn(ALICE, CAROL, "/tip 1000 sats thanks for the help"), "🎁 Tip sent: 0.00001 BTC (1,000 sats)", "the amount, not the note");
    t.equal(await available(CAROL), 1000n);
    t.equal(await available(ALICE), 299_000n);
    t.equal(await tipIn(ALICE, CAROL, "/tip 5 thanks"), TIP_UNIT, "a bare number with a note is still a bare number");
    t.equal(await tipIn(ALICE, CAROL, "/tip 0.5 sats for you"), "⚠️ Satoshis are whole numbers: write 100000 sats, not a fraction.", "the amount's own fault, said precisely");
    t.equal(await available(CAROL), 1000n, "refused tips moved nothing");
    t.equal(await available(ALICE), 299_000n);
    // Carol never started the bot: nobody told her of the tip. Her first /start (the engine says it is her first: her
    // wallet, made by the tip, had no chat) greets her as new and says what waits for her; her second is a return.
    const first = await dm(CAROL, "/start");
    t.equal(first.split("\n")[0], "Your wallet is ready. You have 0.00001 BTC (1,000 sats) waiting: received before you started the bot.");
    t.notMatch(first, /Welcome back/);
    t.match(await dm(CAROL, "/start"), /^Welcome back/, "her second /start is a return");
    // With the engine's word that it is the first /start, and without money: the greetings as they read.
    const b = { available: 1000n, pending: 0n, reserved: 0n };
    t.equal(welcome(true, b, "regtest", 1).split("\n")[0], "Your wallet is ready. You have 0.00001 BTC (1,000 sats) waiting: received before you started the bot.");
    t.equal(welcome(true, { available: 0n, pending: 0n, reserved: 0n }, "regtest", 1).split("\n")[0], "Your wallet is ready.");
    t.equal(welcome(false, b, "regtest", 1).split("\n")[0], "Welcome back.");
  });

  await t.test("/withdraw with its words the other way round: said so, nothing quoted", async (t) => {
    const before = await available(ALICE);
    for (const wrong of [`/withdraw 0.001 ${ext}`, `/withdraw 1000 sats ${ext}`]) {
      const answer = await say(api.message(ALICE, wrong));
      t.equal(txt(answer), "⚠️ Address first, then amount: /withdraw <address> <amount>", wrong);
      t.same(BotApiStandIn.buttons(answer), [], "no quote");
    }
    // A wrong address and a wrong amount: the address is what is said (the amount was, before).
    t.equal(await dm(ALICE, "/withdraw 0x742d35Cc6634C0532925a3b844Bc454e4438f44e 0,1"), "⚠️ That is not a Bitcoin address, or it has a typo (its checksum does not match).");
    t.equal(await available(ALICE), before, "nothing moved");
  });

  await t.test("step by step: the address is checked at its step and asked again; another command ends it", async (t) => {
    const before = await available(ALICE);
    t.equal(await dm(ALICE, "/withdraw"), ASK_ADDRESS);
    t.equal(await dm(ALICE, "oops what is this"), `⚠️ That is not a Bitcoin address (it has characters addresses never have).\n${ASK_ADDRESS}`);
    t.equal(await dm(ALICE, "0.001"), `⚠️ That is not a Bitcoin address (wrong length).\n${ASK_ADDRESS}`);
    t.equal(await dm(ALICE, "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"), `⚠️ That is a mainnet address; this service runs on regtest. Send an address for regtest.\n${ASK_ADDRESS}`);
    t.equal(await dm(ALICE, ext), ASK_AMOUNT);
    t.equal(await dm(ALICE, ext), `⚠️ That is an address; I have the address already and need the amount now.\n${ASK_AMOUNT}`);
    t.equal(await dm(ALICE, "0,1"), `⚠️ That is not an amount. Write it like 0.001 BTC or 100000 sats.\n${ASK_AMOUNT}`);
    // A command answered before the withdrawal's own feature (/balance), and one after it (/tip in private): each ends it.
    t.match(await dm(ALICE, "/balance"), /^Available: /);
    t.equal(await dm(ALICE, "10000 sats"), NOT_UNDERSTOOD, "the conversation ended at /balance");
    t.equal(await dm(ALICE, `/withdraw ${ext}`), ASK_AMOUNT);
    t.match(await dm(ALICE, "/tip 1000 sats"), /^Tips work in groups/);
    t.equal(await dm(ALICE, "10000 sats"), NOT_UNDERSTOOD, "the conversation ended at /tip");
    t.equal(await dm(ALICE, "/withdraw"), ASK_ADDRESS);
    t.match(await dm(ALICE, "/history"), /^History/);
    t.equal(await dm(ALICE, ext), NOT_UNDERSTOOD, "the conversation ended at /history");
    t.equal(await dm(ALICE, "/cancel"), "Nothing to cancel.");
    t.equal(await available(ALICE), before, "nothing moved");
  });

  await t.test("an amount without a unit: the answer says it was read as bitcoin", async (t) => {
    const short = (await dm(ALICE, `/withdraw ${ext} 1000`)).split("\n");
    t.match(short[0], /^💸 Not enough available/);
    t.equal(short[1], "(1000 has no unit, so it was read as 1000.0 BTC (100,000,000,000 sats): for satoshis, write 1000 sats.)");
    // An amount alone: kept, and the address asked for; the quote says how the amount was read.
    t.equal(await dm(ALICE, "/withdraw 0.001"), "Which address should I send 0.001 BTC (100,000 sats) to? (/cancel to stop)");
    const q = await say(api.message(ALICE, ext));
    t.match(txt(q), new RegExp(`^Withdrawal quote\\nTo: ${ext}\\nAmount: 0\\.001 BTC \\(100,000 sats\\)\\n`));
    t.ok(txt(q).includes("\n(0.001 has no unit, so it was read as 0.001 BTC (100,000 sats): write sats for satoshis (100000 sats).)\n"), "the reading, in the quote");
    t.equal(BotApiStandIn.buttons(q).length, 2, "a quote with its buttons");
    const withUnit = await dm(ALICE, `/withdraw ${ext} 1000 sats`);
    t.notMatch(withUnit, /no unit/, "an amount with its unit gets no such line");
  });

  await t.test("/history names cheques and tips; one sat is a sat", async (t) => {
    const made = await dm(ALICE, "/cheque 2000 sats for the team");
    const code = /start=([\w-]+)/.exec(made)?.[1];
    t.match(made, /^🧾 Cheque for 0\.00002 BTC \(2,000 sats\) — /, "the note after the amount is not part of it");
    // Enough entries after the cheque that its making is on an older page than its return.
    const since = api.calls.length;
    for (let i = 0; i < 5; i++) await te.engine.registry.send(alice, "receive_transfer", { id: `more${i}`, from: "u_bank", amount: 1000n });
    // Each credit is announced to Alice: those arrive before the next answers are awaited.
    const told = new Set<RecordedCall>();
    for (let i = 0; i < 5; i++) told.add(await api.waitForCall((c) => !told.has(c) && Number(c.params.chat_id) === ALICE && /You received/.test(txt(c)), since));
    t.match(await dm(ALICE, `/cheque revoke ${code}`), /^↩️ Cheque revoked: 0\.00002 BTC \(2,000 sats\) is back/);
    const claimed = /start=([\w-]+)/.exec(await dm(ALICE, "/cheque 1 sat"))?.[1];
    const claim = api.calls.length;
    t.match(await dm(BOB, `/start ${claimed}`), /^🎁 Cheque claimed: 0\.00000001 BTC \(1 sat\) is yours\./);
    t.equal(txt(await api.waitForCall((c) => Number(c.params.chat_id) === ALICE && /was claimed/.test(txt(c)), claim)), "🧾 Your cheque for 0.00000001 BTC (1 sat) was claimed");
    await te.engine.cheques.settled();
    t.same(lines(await dm(ALICE, "/history")), [
      "−0.00000001 BTC (1 sat)  cheque made",
      "+0.00002 BTC (2,000 sats)  cheque returned",
      "+0.00001 BTC (1,000 sats)  tip received",
      "+0.00001 BTC (1,000 sats)  tip received",
      "+0.00001 BTC (1,000 sats)  tip received",
    ], "the return is told from a claim though its making is on an older page");
    const page2 = await say(api.press(ALICE, "hist:1"), (c) => c.method === "editMessageText");
    t.same(lines(txt(page2)).slice(0, 4), [
      "+0.00001 BTC (1,000 sats)  tip received",
      "+0.00001 BTC (1,000 sats)  tip received",
      "−0.00002 BTC (2,000 sats)  cheque made",
      "−0.00001 BTC (1,000 sats)  tip sent",
    ]);
    t.same(lines(await dm(BOB, "/history")), ["+0.00000001 BTC (1 sat)  cheque claimed"]);
    t.same(lines(await dm(CAROL, "/history")), ["+0.00001 BTC (1,000 sats)  tip received"]);
  });
});
