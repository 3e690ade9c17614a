// The all-in-one shape: the engine's notices are kept in its store until the Telegram edge's send settled. One refused
// for good (403: the user blocked the bot) is settled and never sent again; one made while no edge listened survives a
// restart; one sent is not sent again after the next. Real engine (regtest, store), the Telegram edge in this process
// against the local Bot API stand-in.
import t from "tap";
import { pino } from "pino";
import { BotApiStandIn } from "./support/bot-api.ts";
import { startTestEngine } from "./support/engine.ts";
import { buildTelegramEdge } from "../src/edges/telegram/bot.ts";
import { sealHandle } from "../src/store/sealed.ts";
import type { Notification } from "../src/relay.types.ts";

const received = (text: string) => /received (\S+) BTC/.exec(text)?.[1];

t.test("a notice refused for good (403) is not sent again, across restarts; one held while no edge listened is sent after the restart, once", async (t) => {
  const api = new BotApiStandIn();
  await api.start();
  t.teardown(() => api.stop());
  const te = await startTestEngine();
  t.teardown(() => te.stop());
  const lines: string[] = [];
  let refusedSeen!: () => void;
  const refused = new Promise<void>((r) => (refusedSeen = r));
  const log = pino({ level: "warn" }, {
    write: (s: string) => {
      lines.push(s);
      if (s.includes("notification not delivered")) refusedSeen();
    },
  });
  const BLOCKED = 8_001, CHAT = 8_002;
  const notice = (chatId: number, sats: bigint): Notification => ({
    userKey: "u_durable_ref01", chatHandle: sealHandle(te.handleKey, { chatId }), notice: { kind: "transfer_received", id: `t${sats}`, amount: sats, from: "u_someone_else" },
  });
  const edge = async () => {
    const e = buildTelegramEdge({
      token: api.token, apiRoot: api.apiRoot, config: te.config, relay: te.engine.relay, identity: te.identity, handleKey: te.handleKey, log,
      mode: "manual", noticeStopWaitMs: 500,
    });
    await e.start();
    return e;
  };
  const sentTo = async (chatId: number, sats: string) => {
    await api.waitForCall((c) => Number(c.params.chat_id) === chatId && received(String(c.params.text)) === sats, 0, 30_000);
  };

  const first = await edge();
  api.failNext("sendMessage", { error_code: 403, description: "Forbidden: bot was blocked by the user" });
  te.engine.relay.notify(notice(BLOCKED, 5_000n));
  await refused;
  await first.stop();
  // Made while no edge listens (the bot down, a deploy): held, and kept in the store.
  te.engine.relay.notify(notice(CHAT, 10_000n));
  // A redeploy of the whole process: the edge stopped, the engine stopped, both started again.
  await te.restart();
  const second = await edge();
  te.engine.relay.notify(notice(CHAT, 20_000n));
  await sentTo(CHAT, "0.0002");
  t.same(api.textsTo(CHAT).map(received), ["0.0001", "0.0002"], "the notice held across the restart is sent first, then the new one");
  await second.stop();
  await te.restart();
  const third = await edge();
  t.teardown(() => third.stop());
  te.engine.relay.notify(notice(CHAT, 30_000n));
  await sentTo(CHAT, "0.0003");
  t.same(api.textsTo(CHAT).map(received), ["0.0001", "0.0002", "0.0003"], "what was sent is not sent again after the next restart");
  t.same(api.textsTo(BLOCKED), [], "the notice refused for good was never sent again (a second try would have reached the stand-in)");
  t.notMatch(lines.join("\n"), /8001|8002|You received/, "the log names no chat and no notice text");
});
