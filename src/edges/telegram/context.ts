// The Telegram edge's context: grammY's context plus the user's key, derived once per update from the
// Telegram id by the keyed KDF. The raw id never leaves the edge and is never logged.
import type { Context } from "grammy";
import type { Relay } from "../../relay.types.ts";
import type { Logger } from "../../log.ts";

export interface EdgeDeps {
  relay: Relay;
  identity: { userKey(telegramUserId: number): Promise<string> };
  /** The edge's own key for sealing chat handles (the engine stores them but cannot read them). */
  handleKey: Uint8Array;
  log: Logger;
}

export interface EdgeFlavor {
  /** The sender's user key (throws if the update has no sender). */
  userKey(): Promise<string>;
  deps: EdgeDeps;
}

export type EdgeContext = Context & EdgeFlavor;

/** Command arguments split on white space, with the command itself removed. */
export function args(ctx: Context): string[] {
  const text = ctx.msg?.text ?? "";
  return text.split(/\s+/).slice(1).filter(Boolean);
}
