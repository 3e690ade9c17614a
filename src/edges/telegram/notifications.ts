// Proactive messages: the engine's wallet notices, delivered to the chat whose handle the edge sealed at /start.
// The engine addresses a notice by user key and sealed handle only; the chat id is opened here, and never logged.
import type { Api } from "grammy";
import type { Logger } from "../../log.ts";
import type { Relay } from "../../relay.types.ts";
import { openHandle } from "../../store/sealed.ts";
import * as say from "./render.ts";

export function forwardNotifications(o: { relay: Relay; api: Api; handleKey: Uint8Array; log: Logger }): () => void {
  return o.relay.onNotification((n) => {
    if (!n.chatHandle) return;
    let chatId: unknown;
    try {
      chatId = openHandle<{ chatId: number }>(o.handleKey, n.chatHandle).chatId;
    } catch {
      o.log.warn({ userKey: n.userKey }, "a chat handle did not open with this edge's key; notification skipped");
      return;
    }
    if (typeof chatId !== "number" || !Number.isSafeInteger(chatId)) return;
    o.api.sendMessage(chatId, say.notice(n.notice))
      .catch((e: unknown) => o.log.warn({ userKey: n.userKey, kind: n.notice.kind, err: (e as Error).name }, "notification not delivered"));
  });
}
