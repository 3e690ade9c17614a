// The split shape, a bot stopped (SIGTERM, a redeploy) while its notices' Telegram sends are still under way or queued
// behind the throttler: it acknowledges only what settled (sent, or refused for good), so the engine gives the rest to
// the next bot. The engine is real (regtest, store) in this process with its internal TLS API; the bots are
// `runigun bot` processes; Telegram is the local Bot API stand-in, behind a proxy that can hold sendMessage answers.
import t from "tap";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { EventEmitter, once } from "node:events";
import { copyFileSync, mkdirSync } from "node:fs";
import { createServer, request, type IncomingMessage, type Server } from "node:http";
import { join } from "node:path";
import { BotApiStandIn } from "./support/bot-api.ts";
import { startTestEngine } from "./support/engine.ts";
import { runigunBin } from "./support/cli.ts";
import { buildInternalEdge, listenInternal } from "../src/edges/internal/server.ts";
import { ensurePki, readPem } from "../src/tls/certs.ts";
import { freePort } from "../src/regtest/harness.ts";
import { sealHandle } from "../src/store/sealed.ts";
import { silentLogger } from "../src/log.ts";
import type { Notification } from "../src/relay.types.ts";

/**
 * A proxy in front of the stand-in: sendMessage to `holdChat` is taken and never answered (Telegram slow, the send
 * under way); everything else passes, and each answer is told ("answered": method, chat, status).
 */
async function holdingProxy(target: string) {
  const events = new EventEmitter();
  const o = { holdChat: undefined as number | undefined, held: 0 };
  const server: Server = createServer((req, res) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const body = Buffer.concat(chunks);
      const method = /\/(\w+)$/.exec(req.url ?? "")?.[1];
      let chat: number | undefined;
      try {
        chat = Number((JSON.parse(body.toString("utf8")) as { chat_id?: unknown }).chat_id);
      } catch {
        // Not JSON (getMe without a body): no chat.
      }
      if (method === "sendMessage" && chat === o.holdChat) {
        o.held++;
        events.emit("held");
        return;
      }
      const up = request(target + req.url, { method: req.method, headers: { "content-type": String(req.headers["content-type"] ?? "application/json"), "content-length": String(body.length) } }, (answer: IncomingMessage) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
        events.emit("answered", { method, chat, status: answer.statusCode });
      });
      up.on("error", () => res.destroy());
      up.end(body);
    })();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    o, events,
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const received = (text: string) => /received (\S+) BTC/.exec(text)?.[1];

t.test("split: a bot stopped with notice sends under way and queued acknowledges none of them; the next bot sends them, in order; one refused for good (403) is not sent again", async (t) => {
  const api = new BotApiStandIn();
  await api.start();
  t.teardown(() => api.stop());
  const proxy = await holdingProxy(api.apiRoot);
  t.teardown(() => proxy.close());
  const te = await startTestEngine();
  t.teardown(() => te.stop());
  const dir = t.testdir({ pki: {}, bot: {}, "bot-pki": {} });
  const pki = join(dir, "pki");
  await ensurePki(pki, { admin: "127.0.0.1", internal: "127.0.0.1" });
  const port = await freePort();
  const internal = await buildInternalEdge({ relay: te.engine.relay, log: silentLogger, tls: { ...readPem(pki, "internal-server"), ca: readPem(pki, "internal-ca").cert } });
  await listenInternal(internal, { ...te.config, internal: { host: "127.0.0.1", port } });
  t.teardown(() => internal.close());
  // Every notice stream the engine serves (its socket's close is when the engine knows a bot is gone).
  const streams: IncomingMessage[] = [];
  internal.server.on("request", (req: IncomingMessage) => void (req.url === "/relay/notifications" && streams.push(req)));
  const botPki = join(dir, "bot-pki");
  mkdirSync(botPki, { recursive: true, mode: 0o700 });
  for (const f of ["internal-ca.crt", "bot-client.crt", "bot-client.key"]) copyFileSync(join(pki, f), join(botPki, f));
  const edgeKey = randomBytes(32);
  const env = {
    ...process.env, RUNIGUN_TELEGRAM_TOKEN: api.token, RUNIGUN_TELEGRAM_API_ROOT: proxy.url, RUNIGUN_PKI_DIR: botPki,
    RUNIGUN_INTERNAL_PORT: String(port), RUNIGUN_DATA_DIR: join(dir, "bot"), RUNIGUN_PEPPER: randomBytes(32).toString("hex"), RUNIGUN_EDGE_KEY: edgeKey.toString("hex"),
    RUNIGUN_IDENTITY_MEMORY_KI_B: "1024", RUNIGUN_IDENTITY_TIME_COST: "1", RUNIGUN_LOG_LEVEL: "warn", NODE_ENV: "production",
  };
  const bots: ChildProcess[] = [];
  t.teardown(() => bots.forEach((b) => b.kill("SIGKILL")));
  const startBot = async () => {
    const bot = spawn(process.execPath, [runigunBin, "bot"], { env, stdio: ["ignore", "pipe", "pipe"] });
    bots.push(bot);
    let out = "";
    bot.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    bot.stderr!.on("data", (d: Buffer) => (out += d.toString()));
    await new Promise<void>((resolve, reject) => {
      bot.stdout!.on("data", () => /bot ready/.test(out) && resolve());
      bot.once("exit", (code) => reject(new Error(`the bot exited (${code}): ${out}`)));
    });
    return { bot, out: () => out };
  };

  const BLOCKED = 9_001, CHAT = 9_002;
  const notice = (chatId: number, sats: bigint): Notification => ({
    userKey: "u_durable_stop1", chatHandle: sealHandle(edgeKey, { chatId }), notice: { kind: "transfer_received", id: `t${sats}`, amount: sats, from: "u_someone_else" },
  });
  const first = await startBot();
  // The user of BLOCKED blocked the bot: Telegram refuses its send for good. CHAT's sends are taken and not answered.
  api.failNext("sendMessage", { error_code: 403, description: "Forbidden: bot was blocked by the user" });
  proxy.o.holdChat = CHAT;
  const refused = new Promise<void>((resolve) => proxy.events.on("answered", (a: { chat?: number; status?: number }) => a.chat === BLOCKED && a.status === 403 && resolve()));
  const held = once(proxy.events, "held");
  te.engine.relay.notify(notice(BLOCKED, 5_000n));
  for (const sats of [10_000n, 20_000n, 30_000n]) te.engine.relay.notify(notice(CHAT, sats));
  await refused;
  await held;
  // The first of CHAT's is on its way to Telegram, the others queued behind it (one a second per chat). A redeploy:
  // SIGTERM. Before, all four were acknowledged once handed to the edge, and the stop did not wait for the sends.
  first.bot.kill("SIGTERM");
  const [code] = await Promise.race([once(first.bot, "exit"), new Promise<[string]>((r) => setTimeout(() => r(["hung"]), 30_000))]);
  if (code === "hung") first.bot.kill("SIGKILL");
  t.equal(code, 0, "the bot stopped cleanly, within its stop deadline");
  t.equal(proxy.o.held, 1, "one send was under way at the stop (the others queued behind it)");
  // The engine has seen the first bot's stream end (what it did not acknowledge is held again), before the next bot.
  if (!streams[0]!.socket.destroyed) await once(streams[0]!.socket, "close");
  t.match(first.out(), /notices not sent before the stop/, "the bot said it left notices to the engine");
  t.notMatch(first.out(), /9002|9001|You received|0\.000[1-4]/, "its log names no chat and no notice text");

  // Telegram answers again; the next bot starts.
  proxy.o.holdChat = undefined;
  await startBot();
  te.engine.relay.notify(notice(CHAT, 40_000n));
  await api.waitForCall((c) => Number(c.params.chat_id) === CHAT && received(String(c.params.text)) === "0.0004", 0, 30_000);
  t.same(api.textsTo(CHAT).map(received), ["0.0001", "0.0002", "0.0003", "0.0004"], "the next bot sent each once, in order, then the new one");
  t.same(api.textsTo(BLOCKED), [], "the notice refused for good was not sent again");
});
