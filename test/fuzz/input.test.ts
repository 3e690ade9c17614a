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
import type { WithdrawalQuote } from "../../src/relay.types.ts";
import { changes, json } from "./fixtures/books.ts";

const runs = Number(process.env.FUZZ_RUNS ?? 300);
/** FUZZ_SEED replays a run fast-check reported (its "seed"). */
const seed = process.env.FUZZ_SEED ? { seed: Number(process.env.FUZZ_SEED) } : {};

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

t.test("the relay and the bot: random commands never crash; a refusal changes nothing, an acceptance exactly what it says", async (t) => {
  const te = await startTestEngine();
  t.teardown(() => te.stop());
  const relay = te.engine.relay;
  // Reservations stay queued: the node's wallet has no coins to pay them, and flushing a growing queue of unfundable
  // payouts would only cost time. Nothing the relay or a wallet decides looks at the pause.
  te.engine.payouts.pause("fuzz: reservations stay queued");
  // V is the victim of most commands, O the other user (a recipient, a claimant, the owner of "someone else's" quotes
  // and cheques), F a user who never opened a wallet (a transfer to F opens it).
  const users = { V: "u_fuzzvictim00001", O: "u_fuzzother000001", F: "u_fuzzfresh000001" } as const;
  type Who = "V" | "O";
  type Label = keyof typeof users;
  const otherOf = (w: Who): Who => (w === "V" ? "O" : "V");
  for (const w of ["V", "O"] as const) await relay.start(users[w]);
  let topups = 0;
  /** Money for the next command, credited before its snapshot (never inside one). */
  const topUp = async (w: Who) => {
    const b = await relay.balance(users[w]);
    if (!isRefusal(b) && b.available < 400_000n) await te.engine.registry.send(users[w], "receive_transfer", { id: `topup:${topups++}`, from: "u_bank", amount: 3_000_000n });
  };

  type Parts = { available: bigint; pending: bigint; reserved: bigint; frozen: string | null };
  interface Snapshot {
    /** Each user's balance view part by part, or the refusal (a wallet not opened). */
    users: Record<Label, Parts | string>;
    escrow: bigint;
    chequeBook: string;
    payoutBook: string;
    /**
     * The transfer ids (of all those V and O have tried) the wallets' transfer index holds as sent, as `who:id`: a
     * refusal that marked its id would answer the user's corrected retry "repeated" and never run it.
     */
    sent: string[];
  }
  /**
   * Everything a command could change, read once the engine is still: transfers delivered and acknowledged (courier),
   * cheque payouts credited. An acceptance's effects (a transfer's credit lands after its answer) land before the next
   * command's snapshot, never inside it.
   */
  const snapshot = async (): Promise<Snapshot> => {
    await te.engine.courier.settled();
    await te.engine.cheques.settled();
    const u = {} as Snapshot["users"];
    for (const [label, key] of Object.entries(users) as Array<[Label, string]>) {
      const b = await relay.balance(key);
      u[label] = isRefusal(b) ? `refused: ${b.code}` : { available: b.available, pending: b.pending, reserved: b.reserved, frozen: b.frozen ?? null };
    }
    const sent = (["V", "O"] as const).flatMap((w) => [...tried[w]].filter((id) => te.engine.registry.records.sent(users[w], id)).map((id) => `${w}:${id}`));
    return { users: u, escrow: await te.engine.cheques.escrow(), chequeBook: json(await te.engine.cheques.state()), payoutBook: json((await te.engine.payouts.state()).payouts), sent: sent.sort() };
  };
  /** What an accepted command changes; anything not named here must stay as it was. */
  interface Effect {
    /** Sats added to a user's balance parts (negative: taken). */
    moves?: Partial<Record<Label, { available?: bigint; reserved?: bigint }>>;
    frozen?: string | null;
    escrow?: bigint;
    /** A transfer id newly marked sent (`who:id`). */
    sent?: string;
    chequeBook?: "may change";
    payoutBook?: "may change";
  }
  const expected = (s: Snapshot, e: Effect): Snapshot => {
    const users = { ...s.users };
    for (const [label, m] of Object.entries(e.moves ?? {}) as Array<[Label, { available?: bigint; reserved?: bigint }]>) {
      const cur = users[label];
      const p: Parts = typeof cur === "string" ? { available: 0n, pending: 0n, reserved: 0n, frozen: null } : { ...cur };
      p.available += m.available ?? 0n;
      p.reserved += m.reserved ?? 0n;
      users[label] = p;
    }
    if (e.frozen !== undefined && typeof users.V !== "string") users.V = { ...users.V, frozen: e.frozen };
    return { ...s, users, escrow: s.escrow + (e.escrow ?? 0n), sent: e.sent ? [...s.sent, e.sent].sort() : s.sent };
  };

  // What commands refer to: each user's quotes (open, confirmed, cancelled or expired), transfer ids, cheque codes.
  const open = { V: [] as WithdrawalQuote[], O: [] as WithdrawalQuote[] };
  const confirmed = { V: [] as string[], O: [] as string[] };
  const dead = { V: [] as string[], O: [] as string[] };
  const quotes = new Map<string, WithdrawalQuote & { owner: Who }>();
  /** Ids of commands (transfers and cheques) accepted, and of those refused: "again" names either. */
  const usedIds = { V: [] as string[], O: [] as string[] };
  const refusedIds = { V: [] as string[], O: [] as string[] };
  /** Transfer ids each user sent (accepted), and every transfer id each tried (what the snapshot looks up). */
  const sentIds = { V: new Set<string>(), O: new Set<string>() };
  const tried = { V: new Set<string>(), O: new Set<string>() };
  const codes = new Map<string, Who>();
  /** Who claimed each cheque (by code) that was claimed. */
  const claimedBy = new Map<string, string>();
  const pick = <X>(xs: readonly X[], i: number): X | undefined => (xs.length ? xs[i % xs.length] : undefined);
  const outside = [
    await te.node.outsideAddress(), await te.node.rpc<string>("getnewaddress", ["", "bech32m"], "outside"), await te.node.rpc<string>("getnewaddress", ["", "legacy"], "outside"),
  ];
  const took = (w: Who, q: WithdrawalQuote) => {
    open[w].push(q);
    quotes.set(q.id, { ...q, owner: w });
  };
  const gone = (w: Who, id: string) => {
    open[w] = open[w].filter((q) => q.id !== id);
    dead[w].push(id);
  };
  /** A valid quote of w's: a small one, or one for nearly all it has (which a later command may leave unpayable). */
  const newQuote = async (w: Who, all: boolean): Promise<string | undefined> => {
    await topUp(w);
    const b = await relay.balance(users[w]);
    if (isRefusal(b)) return undefined;
    const amount = all ? b.available - 5_000n : 1_000n + (b.available / 40n) * BigInt(quotes.size % 4);
    const q = await relay.quoteWithdrawal(users[w], pick(outside, quotes.size)!, `${amount} sats`);
    if (isRefusal(q)) return undefined;
    took(w, q);
    return q.id;
  };
  /** Runs f with the clock `ms` ahead (Date.now is what the relay reads for a quote's expiry). */
  const later = async <R>(ms: number, f: () => Promise<R>): Promise<R> => {
    const real = Date.now;
    Date.now = () => real() + ms;
    try {
      return await f();
    } finally {
      Date.now = real;
    }
  };

  const who = fc.constantFrom<Who>("V", "V", "V", "O");
  const amount = fc.oneof(text, fc.integer({ min: 1, max: 500_000 }).map((n) => `${n} sats`), fc.integer({ min: 1, max: 900_000 }).map((n) => `0.${String(n).padStart(8, "0")}`));
  const typo = outside[0]!.slice(0, -1) + (outside[0]!.endsWith("q") ? "p" : "q");
  const address = fc.oneof(text, fc.constantFrom(
    ...outside, outside[0]!.toUpperCase(), typo,
    "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx",
  ));
  /** Which quote a confirm or cancel names: an open one of the user's, one for all they have, a confirmed, cancelled or expired one, someone else's, or any text. */
  const quoteRef = fc.record({ kind: fc.constantFrom("mine", "mine", "mine", "all", "confirmed", "cancelled", "expired", "theirs", "text"), i: fc.nat(), text });
  type QuoteRef = typeof quoteRef extends fc.Arbitrary<infer R> ? R : never;
  const id = fc.oneof(fc.constant({ fresh: true as const }), fc.nat().map((i) => ({ again: i })), text.map((s) => ({ text: s })));
  const code = fc.oneof(fc.nat().map((i) => ({ known: i })), text.map((s) => ({ text: s })));
  const command = fc.oneof(
    { weight: 2, arbitrary: fc.record({ k: fc.constant("quote" as const), who, address, amount }) },
    { weight: 4, arbitrary: fc.record({ k: fc.constant("confirm" as const), who, ref: quoteRef }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant("cancel" as const), who, ref: quoteRef }) },
    { weight: 3, arbitrary: fc.record({ k: fc.constant("transfer" as const), who, id, to: fc.constantFrom("other" as const, "fresh" as const, "self" as const), amount }) },
    { weight: 2, arbitrary: fc.record({ k: fc.constant("cheque" as const), who, id, amount }) },
    { weight: 2, arbitrary: fc.record({ k: fc.constant("claim" as const), who, code }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant("revoke" as const), who, code }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant("history" as const), who, page: fc.integer({ min: -2, max: 1000 }) }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constantFrom("freeze" as const, "unfreeze" as const, "unfreeze" as const) }) },
  );
  type Command = typeof command extends fc.Arbitrary<infer C> ? C : never;

  /** The quote id a reference names, making (or cancelling) the quote it needs first. */
  const resolve = async (w: Who, ref: QuoteRef): Promise<string> => {
    const mine = async () => pick(open[w], ref.i)?.id ?? (await newQuote(w, false)) ?? ref.text;
    switch (ref.kind) {
      case "mine":
      case "expired":
        return mine();
      case "all": {
        // Two quotes for nearly all the user has: this confirm takes one, and the other, left open, finds the money
        // gone when a later command confirms it.
        const q = await newQuote(w, true);
        if (q) await newQuote(w, true);
        return q ?? mine();
      }
      case "confirmed":
        return pick(confirmed[w], ref.i) ?? mine();
      case "cancelled": {
        const q = await newQuote(w, false);
        if (q && !isRefusal(await relay.cancelQuote(users[w], q))) gone(w, q);
        return pick(dead[w], ref.i) ?? ref.text;
      }
      case "theirs":
        return pick(open[otherOf(w)], ref.i)?.id ?? (await newQuote(otherOf(w), false)) ?? ref.text;
      case "text":
        return ref.text;
    }
  };
  let ids = 0;
  const freshId = (w: Who) => `fz:${w}:${ids++}`;
  const commandId = (w: Who, x: { fresh: true } | { again: number } | { text: string }) =>
    "fresh" in x ? freshId(w) : "again" in x ? (pick([...usedIds[w], ...refusedIds[w]], x.again) ?? freshId(w)) : x.text;

  /** `tag` names an acceptance of a kind the counts below report apart ("accepted" otherwise). */
  type Outcome = { what: string; r: unknown; effect: Effect; tag?: string };
  /** Prepares a command (the quotes, cancellations and money it needs: before its snapshot) and returns how to run it. */
  const prepare = async (c: Command): Promise<() => Promise<Outcome>> => {
    switch (c.k) {
      case "quote":
        return async () => {
          const r = await relay.quoteWithdrawal(users[c.who], c.address, c.amount);
          if (!isRefusal(r)) took(c.who, r);
          return { what: `${c.who} quoteWithdrawal(${JSON.stringify(c.address)}, ${JSON.stringify(c.amount)})`, r, effect: {} };
        };
      case "confirm": {
        const qid = await resolve(c.who, c.ref);
        const q = quotes.get(qid);
        const late = c.ref.kind === "expired";
        const what = `${c.who} confirmWithdrawal(${c.ref.kind}: ${q ? `${q.owner}'s quote ${qid} for ${q.total} sats` : JSON.stringify(qid)}${late ? ", 6 minutes later" : ""})`;
        return async () => {
          // An expired quote: the relay reads its clock past the quote's five minutes.
          const r = late ? await later(6 * 60_000, () => relay.confirmWithdrawal(users[c.who], qid)) : await relay.confirmWithdrawal(users[c.who], qid);
          if (isRefusal(r)) {
            if (r.code === "stale" && q?.owner === c.who) gone(c.who, qid);
            return { what, r, effect: {} };
          }
          // "Already done" only for a quote this user confirmed before: never a first confirm that did nothing.
          if (r.repeated) {
            if (!confirmed[c.who].includes(qid)) throw new Error(`${what} was answered "repeated", but that quote was never confirmed: ${json(r)}`);
            return { what, r, effect: {} };
          }
          // A new reservation: only of an open quote of this user's, in time, for exactly what was quoted.
          if (!q || q.owner !== c.who || late || !open[c.who].some((x) => x.id === qid)) throw new Error(`${what} reserved a withdrawal: ${json(r)}`);
          if (r.amount + r.fee !== q.total) throw new Error(`${what} reserved ${r.amount} + ${r.fee} sats, not the ${q.total} quoted`);
          open[c.who] = open[c.who].filter((x) => x.id !== qid);
          confirmed[c.who].push(qid);
          return { what, r, effect: { moves: { [c.who]: { available: -q.total, reserved: q.total } }, payoutBook: "may change" } };
        };
      }
      case "cancel": {
        const qid = await resolve(c.who, c.ref);
        return async () => {
          const r = await relay.cancelQuote(users[c.who], qid);
          if (!isRefusal(r) && r.cancelled) gone(c.who, qid);
          return { what: `${c.who} cancelQuote(${c.ref.kind}: ${JSON.stringify(qid)})`, r, effect: {} };
        };
      }
      case "transfer": {
        await topUp(c.who);
        const tid = commandId(c.who, c.id);
        tried[c.who].add(tid);
        const to: Label = c.to === "fresh" ? "F" : c.to === "self" ? c.who : otherOf(c.who);
        const what = `${c.who} transfer(${JSON.stringify(tid)}, to ${to}, ${JSON.stringify(c.amount)})`;
        return async () => {
          const r = await relay.transfer(users[c.who], tid, users[to], c.amount);
          if (isRefusal(r)) {
            refusedIds[c.who].push(tid);
            return { what, r, effect: {} };
          }
          // "Already sent" only for an id this user's transfer was accepted with: a refused one, sent again (corrected),
          // must run.
          if (r.repeated) {
            if (!sentIds[c.who].has(tid)) throw new Error(`${what} was answered "repeated", but no transfer with that id was accepted before`);
            return { what, r, effect: {}, tag: "repeated" };
          }
          const retried = refusedIds[c.who].includes(tid);
          usedIds[c.who].push(tid);
          sentIds[c.who].add(tid);
          const sats = parseAmount(c.amount);
          if (isRefusal(sats)) throw new Error(`${what} was accepted with an amount the parser refuses`);
          return { what, r, effect: { moves: { [c.who]: { available: -sats }, [to]: { available: sats } }, sent: `${c.who}:${tid}` }, tag: retried ? "accepted with a refused id" : undefined };
        };
      }
      case "cheque": {
        await topUp(c.who);
        const cid = commandId(c.who, c.id);
        const what = `${c.who} createCheque(${JSON.stringify(cid)}, ${JSON.stringify(c.amount)})`;
        return async () => {
          const r = await relay.createCheque(users[c.who], cid, c.amount);
          // A cheque already made (the same command again) is given back as it is: nothing new.
          if (isRefusal(r)) {
            refusedIds[c.who].push(cid);
            return { what, r, effect: {} };
          }
          if (codes.has(r.code)) return { what, r, effect: {} };
          codes.set(r.code, c.who);
          usedIds[c.who].push(cid);
          return { what, r, effect: { moves: { [c.who]: { available: -r.amount } }, escrow: r.amount, chequeBook: "may change" } };
        };
      }
      case "claim":
      case "revoke": {
        const cc = "known" in c.code ? (pick([...codes.keys()], c.code.known) ?? "") : c.code.text;
        const what = `${c.who} ${c.k}Cheque(${codes.has(cc) ? `${codes.get(cc)}'s cheque ` : ""}${JSON.stringify(cc)})`;
        return async () => {
          const r = c.k === "claim" ? await relay.claimCheque(users[c.who], cc) : await relay.revokeCheque(users[c.who], cc);
          if (isRefusal(r)) return { what, r, effect: {} };
          // Its claimant again (as after a lost answer): answered with the amount again, and nothing moves.
          if (c.k === "claim" && claimedBy.get(cc) === c.who) return { what, r, effect: {} };
          if (c.k === "claim") claimedBy.set(cc, c.who);
          return { what, r, effect: { moves: { [c.who]: { available: r.amount } }, escrow: -r.amount, chequeBook: "may change" } };
        };
      }
      case "history":
        return async () => ({ what: `${c.who} history(${c.page})`, r: await relay.history(users[c.who], c.page), effect: {} });
      case "freeze":
      case "unfreeze":
        // An open quote of V's made before the freeze: a later confirm of it meets the frozen wallet, not the relay.
        if (c.k === "freeze") await newQuote("V", false);
        return async () => {
          const r = c.k === "freeze" ? await te.engine.registry.send(users.V, "freeze", { reason: "fuzz", by: "fuzz" }) : await te.engine.registry.send(users.V, "unfreeze", { by: "fuzz" });
          return { what: `operator ${c.k}s V`, r, effect: { frozen: c.k === "freeze" ? "fuzz" : null } };
        };
    }
  };

  const outcomes = new Map<string, number>();
  await fc.assert(fc.asyncProperty(fc.array(command, { minLength: 1, maxLength: 6 }), async (commands) => {
    // Each command on its own: a change made by a refused command is never hidden by an accepted one beside it.
    for (const c of commands) {
      const go = await prepare(c);
      const before = await snapshot();
      const { what, r, effect, tag } = await go();
      if (r === undefined || r === null) throw new Error(`${what} gave no answer`);
      const after = await snapshot();
      const refusal = isRefusal(r) ? r : undefined;
      const key = `${c.k} ${refusal ? refusal.code : (tag ?? "accepted")}`;
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
      // A refusal changes nothing at all; an acceptance changes exactly what it says, and no one else's money.
      const e = refusal ? {} : effect;
      const want = expected(before, e);
      const wrong = changes({ users: want.users, escrow: want.escrow }, { users: after.users, escrow: after.escrow });
      const marked = new Set(after.sent);
      wrong.push(...after.sent.filter((x) => !want.sent.includes(x)).map((x) => `transfer index: ${JSON.stringify(x)} not sent → marked sent`));
      wrong.push(...want.sent.filter((x) => !marked.has(x)).map((x) => `transfer index: ${JSON.stringify(x)} marked sent → not marked`));
      if (!e.chequeBook) wrong.push(...changes(JSON.parse(want.chequeBook), JSON.parse(after.chequeBook)).map((x) => `cheque book ${x}`));
      if (!e.payoutBook) wrong.push(...changes(JSON.parse(want.payoutBook), JSON.parse(after.payoutBook)).map((x) => `payout book ${x}`));
      if (wrong.length > 0) {
        throw new Error(`${what} was ${refusal ? `refused (${refusal.code}: ${refusal.message})` : "accepted"}, yet (expected → found) ${wrong.join("; ")}`);
      }
    }
  }), { numRuns: runs, ...seed });
  t.pass(`outcomes: ${JSON.stringify(Object.fromEntries([...outcomes].sort()))}`);
  // The reservation path is reached, and refused there for the reasons the relay and the wallet have (with enough cases
  // to expect each: a short FUZZ_RUNS only reports them).
  if (runs >= 200) for (const k of ["confirm accepted", "confirm not_allowed", "confirm stale", "confirm frozen", "confirm insufficient_funds", "transfer accepted", "cheque accepted", "claim accepted", "revoke accepted"]) {
    t.ok((outcomes.get(k) ?? 0) > 0, `reached: ${k}`);
  }
  // Then the bot, on the same engine: random updates, each answered by a handler of its own.
  const telegram = new InProcessTelegram();
  // A high per-user limit so the random updates reach the handlers (the limiter has its own test).
  const config = { ...te.config, telegram: { ...te.config.telegram, commandsPerMinute: 10_000 } };
  const edge = buildTelegramEdge({ token: "0:fuzz", config, relay, identity: te.identity, handleKey: te.handleKey, log: silentLogger, transport: telegram.transformer, botInfo: telegram.botInfo, mode: "manual" });
  await edge.start();
  t.teardown(() => edge.stop());
  const sent = telegram.sent;
  await fc.assert(fc.asyncProperty(fc.constantFrom("/withdraw", "/tip", "/cheque", "/start", "/history", "/balance", "/deposit", "/send", "", "/"), text, text, async (cmd, a, b) => {
    await edge.bot.handleUpdate(telegram.message("fuzzer", `${cmd} ${a} ${b}`.slice(0, 4096)));
    await edge.bot.handleUpdate(telegram.callback("fuzzer", `${a}${b}`.slice(0, 64)));
    return true;
  }), { numRuns: runs, ...seed });
  const crashes = telegram.since(sent).filter((m) => /Something went wrong/.test(m.text));
  t.same(crashes.map((m) => m.text), [], "the bot's error boundary never fired: every input had an answer of its own");
  t.ok(telegram.sent - sent >= runs, `${telegram.sent - sent} answers to ${runs * 2} random updates`);
});
