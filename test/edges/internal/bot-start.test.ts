// A bot whose start fails after Telegram's first calls (a webhook Telegram will not drop, a busy webhook port) must
// leave the engine's held notices to the next start: its edge subscribes to notices only once it can serve.
import t from "tap";
import { randomBytes } from "node:crypto";
import { BotApiStandIn } from "../../support/bot-api.ts";
import { buildTelegramEdge } from "../../../src/edges/telegram/bot.ts";
import { loadConfig } from "../../../src/config.ts";
import { Notices } from "../../../src/held.ts";
import { silentLogger } from "../../../src/log.ts";
import type { Notification, Relay } from "../../../src/relay.types.ts";

t.test("a start refused at deleteWebhook takes none of the held notices", async (t) => {
  const api = new BotApiStandIn();
  await api.start();
  t.teardown(() => api.stop());
  // The engine's notice hub (in the split shape, the bot's RemoteRelay opens its stream at the same subscription).
  const notices = new Notices<Notification>(silentLogger);
  const relay = { info: () => ({ network: "regtest", confirmations: 1, draining: false }), onNotification: (l: (n: Notification) => void, o?: { observer?: boolean }) => notices.subscribe(l, o) } as unknown as Relay;
  notices.publish({ userKey: "u_abcdefghijkl", chatHandle: "a sealed handle", notice: { kind: "deposit_confirmed", amount: 150_000n, txid: "ab".repeat(32) } });
  const config = loadConfig({ env: {}, overrides: {} });
  const edge = buildTelegramEdge({ token: api.token, apiRoot: api.apiRoot, config, relay, identity: { userKey: async (id: number) => `u_${id}` }, handleKey: randomBytes(32), log: silentLogger, mode: "polling" });
  api.failNext("deleteWebhook", { error_code: 400, description: "Bad Request: refused" });
  await t.rejects(edge.start(), /refused/);
  await edge.stop();
  // Found by a review: the edge subscribed before deleteWebhook, so the held notice went to an edge that never served.
  t.equal(notices.held, 1, "the notice is still held for the next start");
});
