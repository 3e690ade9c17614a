// A group's answers are replies to the commands they answer (found by a review: two people's "/tip 5" at once got two
// bare "Say the unit" lines, and nobody could tell whose was whose). Against a real grammY Api and the Bot API stand-in.
import t from "tap";
import { Api } from "grammy";
import { BotApiStandIn, type RecordedCall } from "../support/bot-api.ts";
import { GroupOutbox } from "../../src/edges/telegram/outbox.ts";
import { botApiFetch } from "../../src/edges/telegram/http.ts";
import { TIP_UNIT } from "../../src/edges/telegram/render.ts";
import { silentLogger } from "../../src/log.ts";

const GROUP = -100777;

t.test("a group answer replies to its command; the same words merge only for the same command", async (t) => {
  const api = new BotApiStandIn();
  await api.start();
  t.teardown(() => api.stop());
  const outbox = new GroupOutbox(new Api(api.token, { apiRoot: api.apiRoot, fetch: botApiFetch(api.apiRoot) }), silentLogger);
  const sends = () => api.calls.filter((c) => c.method === "sendMessage");
  const replyOf = (c: RecordedCall) => (c.params.reply_parameters as { message_id?: number; allow_sending_without_reply?: boolean } | undefined);

  // Two people's mistakes at once, the same words: two answers, each a reply to its own command.
  outbox.post(GROUP, TIP_UNIT, { replyTo: 501 });
  outbox.post(GROUP, TIP_UNIT, { replyTo: 502 });
  // The same command answered twice (a redelivered update): merged into one.
  outbox.post(GROUP, TIP_UNIT, { replyTo: 501 });
  // In a forum topic: its topic and its command.
  outbox.post(GROUP, "🎁 Tip sent: 0.00001 BTC (1,000 sats)", { threadId: 9, replyTo: 503 });
  await api.waitForCall((c) => c.method === "sendMessage" && replyOf(c)?.message_id === 503);
  t.same(sends().map((c) => [BotApiStandIn.text(c), replyOf(c)?.message_id, replyOf(c)?.allow_sending_without_reply, c.params.message_thread_id]), [
    [TIP_UNIT, 501, true, undefined],
    [TIP_UNIT, 502, true, undefined],
    ["🎁 Tip sent: 0.00001 BTC (1,000 sats)", 503, true, 9],
  ]);
  t.match(outbox.stats, { merged: 1 });

  // Posted without the message it answers (a caller from before): no reply, and the same words merge as they did.
  const before = sends().length;
  outbox.post(GROUP, "Only people can receive tips.");
  outbox.post(GROUP, "Only people can receive tips.");
  await api.waitForCall((c) => c.method === "sendMessage" && BotApiStandIn.text(c) === "Only people can receive tips.");
  outbox.post(GROUP, "end");
  await api.waitForCall((c) => c.method === "sendMessage" && BotApiStandIn.text(c) === "end");
  const later = sends().slice(before);
  t.same(later.map((c) => [BotApiStandIn.text(c), c.params.reply_parameters]), [["Only people can receive tips.", undefined], ["end", undefined]]);
  t.match(outbox.stats, { merged: 2 });
});
