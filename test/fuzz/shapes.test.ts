// Property tests over the shapes attackers control: admin request bodies (over real mutual TLS with a valid
// certificate and TOTP, so the schemas and handlers are what is tested) and Bot API updates of any shape. Each
// gets a clear refusal or a valid answer — never a 500, never a crash, never a change on refusal.
import t from "tap";
import fc from "fast-check";
import { join } from "node:path";
import { fundedWallet, startTestEngine, withdrawToOutside } from "../support/engine.ts";
import { mtls } from "../support/https.ts";
import { buildAdmin, listenAdmin } from "../../src/edges/admin/server.ts";
import { enginePort } from "../../src/edges/admin/engine-port.ts";
import { OperatorStore, addOperator, totpFor } from "../../src/edges/admin/operators.ts";
import { AuditLog } from "../../src/edges/admin/audit.ts";
import { ensurePki, readPem, type Pem } from "../../src/tls/certs.ts";
import { buildTelegramEdge } from "../../src/edges/telegram/bot.ts";
import { InProcessTelegram } from "../../src/edges/chat/transport.ts";
import { silentLogger } from "../../src/log.ts";
import { isRefusal } from "../../src/domain/refusals.ts";
import { changes, json } from "./fixtures/books.ts";

const runs = Number(process.env.FUZZ_RUNS ?? 300);
/** FUZZ_SEED replays a run fast-check reported (its "seed"). */
const seed = process.env.FUZZ_SEED ? { seed: Number(process.env.FUZZ_SEED) } : {};

const post = (port: number, ca: string, client: Pem, totp: string, path: string, body: string) =>
  mtls(port, ca, path, { client, method: "POST", body, headers: { "x-totp": totp, "content-type": "application/json" } });

t.test("admin request bodies: random JSON to every action gets 2xx/4xx, never a 500, and a refusal changes nothing", async (t) => {
  // The victim's sats are credited without bitcoin behind them: the watchdog would rightly pause payouts after the
  // first accepted /deposits/rescan, a change that a later refusal would be blamed for. It tolerates them here.
  const te = await startTestEngine({ watchdog: { toleranceSats: "1000000" } });
  t.teardown(() => te.stop());
  const base = t.testdir(), pki = join(base, "pki");
  await ensurePki(pki, { admin: "127.0.0.1", internal: "127.0.0.1" });
  const operators = new OperatorStore(te.engine.storage.store);
  const alice = await addOperator({ pkiDir: pki, store: operators, name: "alice", out: join(base, "operator-alice") });
  let now = Date.now();
  const app = await buildAdmin({
    config: te.config, log: silentLogger, tls: { ...readPem(pki, "admin-server"), ca: readPem(pki, "operators-ca").cert },
    operators, audit: new AuditLog(te.engine.storage.store), port: enginePort(te.engine), clock: () => now, rateLimit: 1_000_000,
  });
  const port = await listenAdmin(app, te.config);
  t.teardown(() => app.close());
  const ca = readPem(pki, "admin-server-ca").cert;
  const cert = readPem(alice.dir, "alice");
  const op = (await operators.get(alice.fingerprint))!;
  const code = () => totpFor(op).generate({ timestamp: (now += 30_000) });
  const victim = "u_fuzzadminvictim1";
  // A victim with money on chain and a withdrawal in a broadcast batch, so the bodies that name a batch, a payout
  // or a transaction reach a real one (a fee bump may be accepted; a refused one must leave the book as it was).
  await fundedWallet(te, victim, "0.01");
  await te.mine(1);
  await te.engine.registry.send(victim, "receive_transfer", { id: "seed", from: "u_bank", amount: 1_000n });
  const withdrawal = await withdrawToOutside(te, victim, "0.001");
  if (isRefusal(withdrawal)) throw new Error(withdrawal.message);
  await te.engine.payouts.flush();
  const [batch, signed] = Object.entries((await te.engine.payouts.state()).batches)[0]!;
  const tip = await te.node.rpc<number>("getblockcount");
  // Every rescan the admin edge asks the deposit watcher for (the one it takes at its next scan is not readable).
  const rescans: number[] = [];
  const watcher = te.engine.watcher;
  const rescanFrom = watcher.rescanFrom.bind(watcher);
  watcher.rescanFrom = (height: number) => (rescans.push(height), rescanFrom(height));
  /**
   * What an operator action can change, read once the engine is still (an accepted rescan's block work done): the
   * victim's balance view part by part and its freeze, drain mode, the payout pause, the whole payout book, and the
   * deposit scan's cursor with the rescans asked of it.
   */
  const state = async () => {
    await te.engine.blockWorkDone();
    await te.engine.courier.settled();
    const b = await te.engine.relay.balance(victim);
    return {
      victim: isRefusal(b) ? `refused: ${b.code}` : { available: b.available, pending: b.pending, reserved: b.reserved, frozen: b.frozen ?? null },
      draining: te.engine.draining ?? null, paused: te.engine.payouts.paused ?? null,
      payoutBook: JSON.parse(json(await te.engine.payouts.state())) as unknown,
      depositScan: { cursor: te.engine.watcher.cursor ?? null, rescans: [...rescans] },
    };
  };
  const paths = fc.constantFrom(
    `/wallets/${victim}/freeze`, `/wallets/${victim}/unfreeze`, "/wallets/u_nobodyhere0001/freeze", "/wallets/%00/freeze", "/wallets/../../etc/freeze",
    `/payouts/${batch}/bump`, "/payouts/x/bump", `/payouts/${batch}/release`, "/payouts/b999/release", "/payouts/x/release", "/payouts/adopt", "/payouts/unqueue", "/payouts/pause", "/payouts/resume", "/drain", "/deposits/rescan", "/backup", "/nope",
  );
  /** The fields each action takes: a well-shaped body carries those only (the schemas refuse any other). */
  const fieldsOf = (path: string): string[] =>
    /\/(bump|release)$/.test(path) ? ["feeRateSatVb", "reason"] : path === "/payouts/adopt" ? ["id", "txid", "reason"] : path === "/payouts/unqueue" ? ["id", "reason"] : path === "/drain" ? ["on", "reason"]
      : path === "/deposits/rescan" ? ["height", "reason"] : ["reason"];
  const bodies: fc.Arbitrary<(path: string) => string> = fc.oneof(
    fc.jsonValue().map((v) => () => JSON.stringify(v)),
    fc.string({ maxLength: 200 }).map((v) => () => v),
    fc.record({
      reason: fc.string({ maxLength: 4 }), on: fc.anything(), feeRateSatVb: fc.oneof(fc.integer(), fc.double(), fc.string()), height: fc.oneof(fc.integer(), fc.string()),
      id: fc.string({ maxLength: 20 }), txid: fc.oneof(fc.string({ maxLength: 70 }), fc.stringMatching(/^[0-9a-f]{64}$/)),
    }, { requiredKeys: [] }).map((v) => () => JSON.stringify(v)),
    // Well shaped, with real names: past the schemas, to the engine's own refusals (and some acceptances).
    fc.record({
      reason: fc.oneof(fc.constant("fuzzing the admin edge"), fc.string({ minLength: 3, maxLength: 40 })), on: fc.boolean(),
      feeRateSatVb: fc.oneof(fc.integer({ min: 1, max: 10_000 }), fc.integer({ min: 1, max: 200 })), height: fc.oneof(fc.integer({ min: 0, max: tip }), fc.integer({ min: tip + 1, max: tip + 1000 })),
      id: fc.oneof(fc.constant(withdrawal.id), fc.stringMatching(/^[\w:.-]{1,20}$/)), txid: fc.oneof(fc.constant(signed.txid), fc.stringMatching(/^[0-9a-f]{64}$/)),
    }).map((v) => (path: string) => JSON.stringify(Object.fromEntries(fieldsOf(path).map((k) => [k, v[k as keyof typeof v]])))),
  );
  const statuses = new Map<number, number>();
  /** Past the schemas: what each action answered. */
  const reached = new Map<string, number>();
  const requests = fc.tuple(paths, bodies).map(([path, bodyFor]) => ({ path, body: bodyFor(path) }));
  await fc.assert(fc.asyncProperty(requests, async ({ path, body }) => {
    const before = await state();
    const r = await post(port, ca, cert, code(), path, body);
    statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    if (r.status !== 400) reached.set(`${path} ${r.status}`, (reached.get(`${path} ${r.status}`) ?? 0) + 1);
    if (r.status >= 500) return false;
    if (r.status !== 200) {
      const changed = changes(before, await state());
      if (changed.length > 0) throw new Error(`POST ${path} ${body} was refused (${r.status} ${r.body.slice(0, 200)}), yet (before → after) ${changed.join("; ")}`);
    }
    return r.body.length > 0;
  }), { numRuns: runs, ...seed });
  t.ok([...statuses.keys()].every((s) => s < 500), `statuses seen: ${JSON.stringify(Object.fromEntries(statuses))}`);
  t.ok((statuses.get(400) ?? 0) > runs / 4, "most random bodies are refused by the schemas");
  t.pass(`past the schemas: ${JSON.stringify(Object.fromEntries([...reached].sort()))}`);
});

t.test("Bot API updates of any shape: handled or ignored, never a crash, never money moved", async (t) => {
  const te = await startTestEngine();
  t.teardown(() => te.stop());
  const telegram = new InProcessTelegram();
  const config = { ...te.config, telegram: { ...te.config.telegram, commandsPerMinute: 100_000 } };
  const edge = buildTelegramEdge({ token: "0:fuzz", config, relay: te.engine.relay, identity: te.identity, handleKey: te.handleKey, log: silentLogger, transport: telegram.transformer, botInfo: telegram.botInfo, mode: "manual" });
  await edge.start();
  t.teardown(() => edge.stop());
  // A real user with money, whose balance must not move however the updates are shaped.
  await edge.bot.handleUpdate(telegram.message("rich", "/start"));
  const richKey = await te.identity.userKey(telegram.message("rich", "x").message!.from!.id);
  await te.engine.registry.send(richKey, "receive_transfer", { id: "seed", from: "u_bank", amount: 2_500_000n });
  // Rich's own balance, part by part, and the service's: the cheque escrow and every wallet's parts summed (a tip or a
  // reservation from rich leaves the sum of the three parts as it was; rich's own view does not).
  const books = async () => {
    await te.engine.courier.settled();
    await te.engine.cheques.settled();
    const b = await te.engine.relay.balance(richKey);
    const l = await te.engine.liabilities();
    return {
      rich: isRefusal(b) ? `refused: ${b.code}` : { available: b.available, pending: b.pending, reserved: b.reserved },
      all: { available: l.available, pending: l.pending, reserved: l.reserved, escrow: l.escrow },
    };
  };
  const start = await books();
  const user = fc.record({ id: fc.oneof(fc.integer(), fc.constant(telegram.message("rich", "x").message!.from!.id)), is_bot: fc.boolean(), first_name: fc.string() }, { requiredKeys: [] });
  const chat = fc.record({ id: fc.oneof(fc.integer(), fc.string()), type: fc.constantFrom("private", "group", "supergroup", "channel", "nonsense") }, { requiredKeys: [] });
  const message = fc.record({
    message_id: fc.oneof(fc.nat(), fc.string()), date: fc.nat(), chat, from: user,
    text: fc.oneof(fc.string(), fc.constantFrom("/withdraw", "/tip 1", "/cheque 5000 sats", "/send", "/balance", "/deposit", "/start")),
    entities: fc.array(fc.record({ type: fc.constantFrom("bot_command", "mention", "url", "bogus"), offset: fc.integer({ min: -5, max: 50 }), length: fc.integer({ min: -5, max: 50 }) })),
    reply_to_message: fc.anything(), sender_chat: fc.option(chat, { nil: undefined }),
  }, { requiredKeys: [] });
  const update = fc.oneof(
    fc.record({ update_id: fc.nat(), message }, { requiredKeys: ["update_id"] }),
    fc.record({ update_id: fc.nat(), edited_message: message }, { requiredKeys: ["update_id"] }),
    fc.record({ update_id: fc.nat(), callback_query: fc.record({ id: fc.string(), from: user, data: fc.string({ maxLength: 80 }), message, chat_instance: fc.string() }, { requiredKeys: [] }) }, { requiredKeys: ["update_id"] }),
    fc.record({ update_id: fc.nat(), my_chat_member: fc.anything(), inline_query: fc.anything(), poll: fc.anything() }, { requiredKeys: [] }),
    fc.anything().map((v) => ({ update_id: 1, ...(typeof v === "object" && v !== null ? v : { v }) })),
  );
  let threw = 0;
  // Telegram's update ids are unique and the edge drops repeats (redeliveries): give each random update its own,
  // far from the ids the in-process Telegram hands out.
  let nextId = 1_000_000_000;
  await fc.assert(fc.asyncProperty(update, async (u) => {
    const before = await books();
    const shaped = { ...(u as object), update_id: nextId++ };
    try {
      await edge.bot.handleUpdate(shaped as never);
    } catch (e) {
      // grammY refuses an update it cannot read at all (its own check): a clean error, not a crash of the edge.
      threw++;
      if (!(e instanceof Error)) return false;
    }
    // Checked after every update: one that moved money is named, not hidden by a later one that moved it back.
    const changed = changes(before, await books());
    if (changed.length > 0) throw new Error(`update ${json(shaped).slice(0, 600)} moved money (before → after): ${changed.join("; ")}`);
    return true;
  }), { numRuns: runs, ...seed });
  t.same(start.rich, { available: 2_500_000n, pending: 0n, reserved: 0n }, "rich holds 0.025 BTC, all of it available");
  t.same(await books(), start, "no satoshi moved by malformed updates: rich's balance parts, every wallet's, the cheque escrow");
  t.ok(threw < runs, `${threw} of ${runs} updates were refused by grammY itself; the rest were handled`);
  // And the bot still serves a well-formed update afterwards.
  const sent = telegram.sent;
  await edge.bot.handleUpdate(telegram.message("rich", "/balance"));
  const answers = telegram.since(sent).map((m) => m.text);
  t.ok(answers.some((m) => /BTC/.test(m)), `still answering: ${JSON.stringify(answers).slice(0, 300)}`);
});
