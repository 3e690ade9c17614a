// The Telegram edge under load, through the real grammY client (runner, throttler, rate limiter) and the Bot API
// stand-in on 127.0.0.1: a busy group, one sender's flood, and webhook handlers that outlive Telegram's timeout must
// not keep anyone else waiting. A scripted relay answers at once, so what is measured is the edge's own queueing.
import t from "tap";
import { randomBytes } from "node:crypto";
import { pino } from "pino";
import { BotApiStandIn, type RecordedCall } from "../support/bot-api.ts";
import { buildTelegramEdge, type TelegramEdgeOptions } from "../../src/edges/telegram/bot.ts";
import { loadConfig } from "../../src/config.ts";
import { silentLogger } from "../../src/log.ts";
import { refuse } from "../../src/domain/refusals.ts";
import type { Relay } from "../../src/relay.types.ts";

const ALICE = 7201, BOB = 7202, MALLORY = 7203, GROUP = -9201;
const txt = BotApiStandIn.text;
const FUNDS = { available: 100_000_000n, pending: 0n, reserved: 0n };

/** A relay where everyone has a wallet with 1 BTC and every tip goes through; the rest refuse. */
function richRelay(over: Partial<Relay> = {}): Relay {
  const no = async () => refuse("not_found", "no");
  return {
    start: async () => ({ created: false, balance: FUNDS }),
    balance: async () => FUNDS,
    transfer: async () => ({ repeated: false, balance: FUNDS }),
    history: no, depositAddress: no, quoteWithdrawal: no, confirmWithdrawal: no, cancelQuote: no,
    createCheque: no, claimCheque: no, revokeCheque: no, myCheques: no, identityPin: no,
    onNotification: () => () => undefined,
    info: () => ({ network: "regtest", confirmations: 1, draining: false }),
    ...over,
  };
}

/**
 * A logger keeping its lines. `seen(text)` resolves with the first line containing `text` (already written or later);
 * `until(holds)` resolves once `holds()` is true, checked now and after every line written.
 */
function watchedLog() {
  const lines: string[] = [];
  let checks: Array<() => boolean> = [];
  const log = pino({ level: "debug" }, {
    write: (s: string) => {
      lines.push(s);
      checks = checks.filter((done) => !done());
    },
  });
  const until = (holds: () => boolean) => new Promise<void>((resolve) => {
    const done = () => (holds() ? (resolve(), true) : false);
    if (!done()) checks.push(done);
  });
  const seen = async (text: string) => (await until(() => lines.some((l) => l.includes(text))), lines.find((l) => l.includes(text))!);
  return { log, lines, seen, until };
}

async function polling(t: { teardown(f: () => unknown): void }, o: Partial<TelegramEdgeOptions> = {}) {
  const api = new BotApiStandIn();
  await api.start();
  t.teardown(() => api.stop());
  const edge = buildTelegramEdge({
    token: api.token, apiRoot: api.apiRoot, config: loadConfig({ env: {}, overrides: {} }), relay: richRelay(),
    identity: { userKey: async (id: number) => `u_${id}` }, handleKey: randomBytes(32), log: silentLogger, mode: "polling", ...o,
  });
  await edge.start();
  t.teardown(() => edge.stop());
  return { api, edge };
}

/** Resolves with whichever comes first, from call index `since` on: a call matching `a` ("a"), or the point where `b` holds ("b"). */
function first(api: BotApiStandIn, since: number, a: (c: RecordedCall) => boolean, b: () => boolean): Promise<"a" | "b"> {
  return new Promise((resolve) => {
    const done = (w: "a" | "b") => {
      api.onCall = undefined;
      resolve(w);
    };
    if (api.calls.slice(since).some(a)) return done("a");
    if (b()) return done("b");
    api.onCall = (c) => {
      if (a(c)) done("a");
      else if (b()) done("b");
    };
  });
}

t.test("a busy group does not delay anyone else: a private /help is answered long before the group's backlog of tips", async (t) => {
  const { log, lines, until } = watchedLog();
  const { api } = await polling(t, { log });
  const mark = api.calls.length;
  // 520 members tip Bob at once (each another amount, so no two replies are the same): more than the runner's slots,
  // and far more replies than the group may be sent in a minute (Telegram: about 20).
  const TIPS = 520;
  for (let i = 0; i < TIPS; i++) api.push(api.message(100_000 + i, `/tip ${1000 + i} sats`, { chat: GROUP, replyTo: { from: BOB, id: 5 } }));
  // Chatter in the group is none of the bot's business, and costs nothing.
  for (let i = 0; i < 50; i++) api.push(api.message(200_000 + i, `hello ${i}`, { chat: GROUP }));
  api.push(api.message(ALICE, "/help"));
  const toGroup = () => api.textsTo(GROUP, mark).length;
  // Before: every group update waited behind the group's previous one, whose reply waited for the group's budget;
  // the backlog held the runner's slots, and Alice's /help came after the group's budget ran out (a minute or more).
  const winner = await first(api, mark, (c) => Number(c.params.chat_id) === ALICE, () => toGroup() >= 15);
  if (!t.equal(winner, "a", `Alice's /help was answered before the group's 15th reply (the group had ${toGroup()} replies then)`)) return;
  t.match(api.textsTo(ALICE, mark).join("\n"), /\/deposit/, "and it was the help");
  // The group's outbox is bounded, but a tip's answer says money moved: never dropped, the tippers the group's outbox
  // could not take are told in private (unanswered, they would tip again: a new command, paid twice).
  const inPrivate = () => api.calls.slice(mark).filter((c) => {
    const to = Number(c.params.chat_id);
    return to >= 100_000 && to < 100_000 + TIPS && /^🎁 Tip sent: .* \(in /.test(String(c.params.text));
  }).length;
  // Waited for by the calls the stand-in records (the private answers write no log line).
  await first(api, mark, () => false, () => toGroup() + inPrivate() >= TIPS);
  t.equal(toGroup() + inPrivate(), TIPS, "each tip answered once: in the group, or in private");
  t.equal(lines.filter((l) => l.includes("group replies dropped")).length, 0, "none dropped");
  t.ok(toGroup() <= 10, `the group was sent ${toGroup()} replies, not one per tip`);
  t.ok(api.textsTo(GROUP, mark).every((x) => /Tip sent/.test(x)), "each a tip's answer");
});

t.test("one person's flood does not delay anyone else: what would wait beyond their line's bound is dropped", async (t) => {
  const { log, seen } = watchedLog();
  const { api, edge } = await polling(t, { log });
  const mark = api.calls.length;
  for (let i = 0; i < 520; i++) api.push(api.message(MALLORY, "/help"));
  api.push(api.message(ALICE, "/help"));
  // Before: Mallory's 520 updates, waiting in line behind each other for his chat's one message a second, held the
  // runner's slots; Alice waited for twenty of his answers.
  const winner = await first(api, mark, (c) => Number(c.params.chat_id) === ALICE, () => api.textsTo(MALLORY, mark).length >= 15);
  if (!t.equal(winner, "a", `Alice was answered before Mallory's 15th answer (he had ${api.textsTo(MALLORY, mark).length} then)`)) return;
  const line = JSON.parse(await seen("updates dropped")) as { dropped: number };
  t.ok(line.dropped > 0, `the flood's excess was dropped (${line.dropped}), counted in the log`);
  t.ok(edge.stats.droppedUpdates > 0);
});

t.test("a person's updates are still handled one at a time, in private and in a group alike (the same wallet answers both)", async (t) => {
  let active = 0, most = 0;
  const balance = async () => {
    most = Math.max(most, ++active);
    // Long enough for another update of the same person to start, were it allowed to.
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    active--;
    return FUNDS;
  };
  const { api } = await polling(t, { relay: richRelay({ balance }) });
  const mark = api.calls.length;
  for (let i = 0; i < 4; i++) {
    api.push(api.message(ALICE, "/balance"));
    api.push(api.message(ALICE, `/tip ${1000 + i} sats`, { chat: GROUP, replyTo: { from: BOB, id: 5 } }));
  }
  await api.waitForCall(() => api.textsTo(ALICE, mark).length === 4 && api.textsTo(GROUP, mark).length === 4, mark);
  t.equal(most, 1, "never two of Alice's updates at once");
});

t.test("webhook: handlers that outlive Telegram's timeout are bounded; beyond the bound Telegram is told to come back later", async (t) => {
  const api = new BotApiStandIn();
  await api.start();
  t.teardown(() => api.stop());
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  t.teardown(() => release());
  const relay = richRelay({ balance: async () => (await held, FUNDS) });
  const config = loadConfig({ env: {}, overrides: { telegram: { apiRoot: api.apiRoot, mode: "webhook", webhookHost: "127.0.0.1", webhookPort: 0 } } });
  const edge = buildTelegramEdge({
    token: api.token, config, relay, identity: { userKey: async (id: number) => `u_${id}` }, handleKey: randomBytes(32), log: silentLogger,
    webhookSecret: "s3cret-s3cret-s3cret", maxUpdatesInFlight: 2, webhookTimeoutMs: 200,
  });
  // Each update's handling, as the webhook hands it to grammY: over once the edge's own middleware (its count of
  // updates in flight) has unwound.
  const handling: Array<Promise<void>> = [];
  const handleUpdate = edge.bot.handleUpdate.bind(edge.bot);
  edge.bot.handleUpdate = (...a) => {
    const p = handleUpdate(...a);
    handling.push(p);
    return p;
  };
  const { webhookPort } = await edge.start();
  t.teardown(() => edge.stop());
  const post = (from: number) => fetch(`http://127.0.0.1:${webhookPort}/`, {
    method: "POST", headers: { "content-type": "application/json", "x-telegram-bot-api-secret-token": "s3cret-s3cret-s3cret" },
    body: JSON.stringify(api.message(from, "/balance")),
  }).then((r) => r.status);
  // Two handlers stuck in the engine: Telegram gets its 200 after the timeout, the handlers go on.
  t.equal(await post(1), 200);
  t.equal(await post(2), 200);
  // Before: every further update started another handler that would outlive its request, without any bound.
  t.equal(await post(3), 503, "a third is refused while two are still running: Telegram delivers it again later");
  const mark = api.calls.length;
  release();
  await api.waitForCall((c) => Number(c.params.chat_id) === 1, mark);
  await api.waitForCall((c) => Number(c.params.chat_id) === 2, mark);
  // A handler is over once its reply's answer is back, a little after the stand-in records the call.
  t.equal(handling.length, 2, "the refused third never reached a handler");
  await Promise.all(handling);
  t.equal(edge.stats.inFlight, 0, "both stuck handlers finished, and are no longer counted");
  t.equal(await post(3), 200, "taken once the stuck ones finished");
  t.match(txt(await api.waitForCall((c) => Number(c.params.chat_id) === 3, mark)), /Available/);
});
