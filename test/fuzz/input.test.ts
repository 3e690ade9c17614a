// Property tests over bad input: every input gets a clear refusal or a valid answer — never a crash, never a
// change on refusal. FUZZ_RUNS sets the cases per property (a few hundred in CI; 10,000+ for the long run).
import t from "tap";
import fc from "fast-check";
import { parseAmount, MAX_SATS } from "../../src/domain/money.ts";
import { checkAddressFor } from "../../src/domain/address.ts";
import { isRefusal } from "../../src/domain/refusals.ts";
import { startTestEngine } from "../support/engine.ts";
import { buildTelegramEdge } from "../../src/edges/telegram/bot.ts";
import { InProcessTelegram } from "../../src/edges/chat/transport.ts";
import { silentLogger } from "../../src/log.ts";

const runs = Number(process.env.FUZZ_RUNS ?? 300);

/** Text a person (or an attacker) might type: amounts, addresses, commands, junk, unicode, huge numbers. */
const text = fc.oneof(
  fc.string({ maxLength: 60 }),
  fc.string({ unit: "grapheme", maxLength: 40 }),
  fc.constantFrom("0", "-1", "NaN", "Infinity", "1e308", "0x10", "1".repeat(40), "0.000000001", "21000001", "100k sats", "1.5m sats", "₿1", " ", "\u0000", "💰"),
  fc.tuple(fc.bigInt({ min: -(10n ** 20n), max: 10n ** 20n }), fc.constantFrom("", " BTC", " sats", "k sats", " btc")).map(([n, u]) => `${n}${u}`),
  fc.tuple(fc.nat(99_999_999), fc.nat(999_999_999)).map(([a, b]) => `${a}.${b}`),
);

t.test("amounts: a bigint in (0, 21M BTC] or a bad_amount refusal, never an exception", async (t) => {
  fc.assert(fc.property(text, (s) => {
    const r = parseAmount(s);
    if (isRefusal(r)) return r.code === "bad_amount" && r.message.length > 0 && r.message.length < 120;
    return typeof r === "bigint" && r > 0n && r <= MAX_SATS;
  }), { numRuns: runs * 10 });
  t.pass(`${runs * 10} amounts`);
});

t.test("addresses: true or a refusal naming the problem, for every network", async (t) => {
  const addr = fc.oneof(text, fc.stringMatching(/^(bc|tb|bcrt)1[02-9ac-hj-np-z]{6,90}$/), fc.stringMatching(/^[123mn][1-9A-HJ-NP-Za-km-z]{20,40}$/));
  fc.assert(fc.property(addr, fc.constantFrom("mainnet" as const, "signet" as const, "regtest" as const), (a, net) => {
    const r = checkAddressFor(net, a);
    return r === true || (["bad_address", "wrong_network"].includes(r.code) && r.message.length < 160);
  }), { numRuns: runs * 10 });
  t.pass(`${runs * 10} addresses`);
});

t.test("the relay and the bot: random commands never crash and a refusal never moves money", async (t) => {
  const te = await startTestEngine();
  t.teardown(() => te.stop());
  const telegram = new InProcessTelegram();
  // A high per-user limit so the random updates reach the handlers (the limiter has its own test).
  const config = { ...te.config, telegram: { ...te.config.telegram, commandsPerMinute: 10_000 } };
  const edge = buildTelegramEdge({ token: "0:fuzz", config, relay: te.engine.relay, identity: te.identity, handleKey: te.handleKey, log: silentLogger, transport: telegram.transformer, botInfo: telegram.botInfo, mode: "manual" });
  await edge.start();
  t.teardown(() => edge.stop());
  const relay = te.engine.relay;
  const key = "u_fuzzvictim00001";
  await relay.start(key);
  await te.engine.registry.send(key, "receive_transfer", { id: "seed", from: "u_bank", amount: 50_000n });
  const total = async () => {
    const b = await relay.balance(key);
    if (isRefusal(b)) throw new Error(b.message);
    return b.available + b.pending + b.reserved;
  };
  let n = 0;
  await fc.assert(fc.asyncProperty(text, text, fc.nat(1000), async (a, b, i) => {
    const before = await total();
    const results = [
      await relay.quoteWithdrawal(key, a, b),
      await relay.transfer(key, `fz:${n++}`, "u_fuzzother000001", a),
      await relay.createCheque(key, `fzc:${n++}`, b),
      await relay.claimCheque(key, a),
      await relay.confirmWithdrawal(key, a),
      await relay.history(key, i),
    ];
    const moved = (await total()) !== before;
    // Only a transfer or a cheque that was accepted may change this user's total.
    const accepted = !isRefusal(results[1]) || !isRefusal(results[2]);
    return results.every((r) => r !== undefined) && (!moved || accepted);
  }), { numRuns: runs });
  const sent = telegram.sent;
  await fc.assert(fc.asyncProperty(fc.constantFrom("/withdraw", "/tip", "/cheque", "/start", "/history", "/balance", "/deposit", "/send", "", "/"), text, text, async (cmd, a, b) => {
    await edge.bot.handleUpdate(telegram.message("fuzzer", `${cmd} ${a} ${b}`.slice(0, 4096)));
    await edge.bot.handleUpdate(telegram.callback("fuzzer", `${a}${b}`.slice(0, 64)));
    return true;
  }), { numRuns: runs });
  const crashes = telegram.since(sent).filter((m) => /Something went wrong/.test(m.text));
  t.same(crashes.map((m) => m.text), [], "the bot's error boundary never fired: every input had an answer of its own");
  t.ok(telegram.sent - sent >= runs, `${telegram.sent - sent} answers to ${runs * 2} random updates`);
});
