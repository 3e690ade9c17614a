// A group's outbox (src/edges/telegram/outbox.ts) against a real grammY Api and the Bot API stand-in: an answer that
// money moved is never lost — refused by the group or still waiting when the outbox closes, it goes the other way.
import t from "tap";
import { Api } from "grammy";
import { BotApiStandIn } from "../support/bot-api.ts";
import { GroupOutbox } from "../../src/edges/telegram/outbox.ts";
import { botApiFetch } from "../../src/edges/telegram/http.ts";
import { silentLogger } from "../../src/log.ts";

const GROUP = -100123;

t.test("an answer that money moved goes the other way when the group refuses it or the outbox closes first; others are dropped", async (t) => {
  const api = new BotApiStandIn();
  await api.start();
  t.teardown(() => api.stop());
  // The edge's own HTTP client (http.ts), as the bot uses it.
  const outbox = new GroupOutbox(new Api(api.token, { apiRoot: api.apiRoot, fetch: botApiFetch(api.apiRoot) }), silentLogger);
  const redirected: string[] = [];
  // The topic was closed since the tip: the group refuses the answer.
  api.failNext("sendMessage", { error_code: 400, description: "Bad Request: TOPIC_CLOSED" });
  await new Promise<void>((resolve) => outbox.post(GROUP, "🎁 Tip sent: 1000 sats", { threadId: 7, otherwise: () => (redirected.push("refused"), resolve()) }));
  t.same(redirected, ["refused"], "refused by the group: said the other way");
  t.match(outbox.stats, { failed: 1 });
  // Still waiting when the outbox closes (the bot stops): the moved answer is not dropped; the other one is.
  outbox.post(GROUP, "Reply to someone's message with /tip <amount> to tip them.");
  outbox.post(GROUP, "🎁 Tip sent: 2000 sats", { otherwise: () => redirected.push("closed") });
  outbox.close();
  t.same(redirected, ["refused", "closed"], "closed before it was sent: said the other way");
  t.match(outbox.stats, { redirected: 2 });
});
