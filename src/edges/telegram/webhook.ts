// Webhook mode: a plain node http server handing Telegram's POSTs to grammY. Telegram's secret token header is
// compared in constant time before the body is even read; anything else is refused with 401. While the edge already
// handles as many updates as it takes at once, an update is refused with 503 (before its body is read): Telegram
// delivers it again later, the webhook's way of pacing, as long polling's runner fetches no more.
import { createHash, timingSafeEqual } from "node:crypto";
import { createServer, type Server } from "node:http";
import { webhookCallback, type Bot } from "grammy";
import type { Logger } from "../../log.ts";
import type { EdgeContext } from "./context.ts";

export interface WebhookOptions {
  host: string;
  port: number;
  secret: string;
  log: Logger;
  /** Telegram gets its 200 after this long even if the update is still being handled. */
  timeoutMs: number;
  /** True while the edge handles as many updates as it takes at once. */
  busy: () => boolean;
}

/** Digests first: equal lengths for timingSafeEqual, and no early exit that would leak the secret's length. */
const digest = (s: string) => createHash("sha256").update(s, "utf8").digest();

export async function listenForWebhooks(bot: Bot<EdgeContext>, o: WebhookOptions): Promise<{ server: Server; port: number }> {
  // "return": Telegram gets its 200 in time (no retry storm) while a slow update finishes in the background;
  // a redelivery would be dropped by the edge's update_id dedupe anyway. Such background handlers still count as
  // being handled (`busy`), so they cannot pile up: beyond the bound Telegram is refused and comes back.
  const handle = webhookCallback(bot, "http", { onTimeout: "return", timeoutMilliseconds: o.timeoutMs });
  const expected = digest(o.secret);
  let refusing = false;
  const server = createServer((req, res) => {
    const header = req.headers["x-telegram-bot-api-secret-token"];
    const got = digest(typeof header === "string" ? header : "");
    if (req.method !== "POST" || !timingSafeEqual(got, expected)) {
      res.writeHead(401).end();
      return;
    }
    // Requests accepted meanwhile may overshoot the bound by those whose body is still being read: at most Telegram's
    // max_connections (40 by default).
    if (o.busy()) {
      if (!refusing) o.log.warn("webhook: too many updates being handled; refusing with 503 until some finish (Telegram delivers them again)");
      refusing = true;
      res.writeHead(503, { "retry-after": "5" }).end();
      return;
    }
    refusing = false;
    handle(req, res).catch((e: unknown) => {
      o.log.warn({ err: (e as Error).name }, "webhook request failed");
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.host, () => (server.off("error", reject), resolve()));
  });
  return { server, port: (server.address() as { port: number }).port };
}
