// The Telegram edge's context: grammY's context plus the sender's user key (derived once per update from the
// Telegram id by the keyed KDF) and money-command ids derived from the update. Raw ids never leave the edge.
import { createHmac } from "node:crypto";
import { GrammyError, type Context } from "grammy";
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
  /** The sender's user key (rejects if the update has no sender). */
  userKey(): Promise<string>;
  /**
   * An id for a money command, the same every time Telegram delivers this message (so a redelivered update
   * cannot pay twice), and opaque: an HMAC of chat and message ids, never the raw ids themselves.
   */
  commandId(): string;
  /**
   * Answers in this update's chat. In a private chat the reply is sent before this resolves (the person's next update
   * waits for it: one at a time per person). In a group it is handed to the group's outbox and this resolves at once:
   * a group's replies wait for the group's send budget (~20 a minute), and the update must not wait with them.
   * `moved`: the answer says money moved; in a group whose outbox is full it is sent to the person in private, never
   * dropped (unanswered, they would send the command again: a new command, paid twice).
   */
  tell(text: string, o?: { moved?: boolean }): Promise<void>;
  /** Set once the engine has accepted a money command in this update, so the error boundary tells the truth. */
  moved: boolean;
  deps: EdgeDeps;
}

export type EdgeContext = Context & EdgeFlavor;

/** Command arguments split on white space, with the command itself removed. */
export function args(ctx: Context): string[] {
  const text = ctx.msg?.text ?? "";
  return text.split(/\s+/).slice(1).filter(Boolean);
}

/** A word that is an amount's unit on its own ("sats", "BTC"; "msat" too, so that parseAmount refuses it by name). */
const UNIT_WORD = /^(m?sats?|satoshis?|millisat\w*|btc|₿)$/i;

/**
 * The amount a command's words begin with, as text: the number (with its groups of three digits, "1 000 000") and the
 * unit word after it, if there is one. Words after that are a note ("/tip 1000 sats thanks for the help"): they are
 * not part of the amount, and taking them for it answered "That is not an amount" to a valid one.
 */
export function amountWords(words: readonly string[]): string {
  let n = Math.min(words.length, 1);
  if (/^\d{1,3}$/.test(words[0] ?? "")) while (n < words.length && /^\d{3}$/.test(words[n]!)) n++;
  if (n < words.length && UNIT_WORD.test(words[n]!)) n++;
  return words.slice(0, n).join(" ");
}

/** The key command ids are derived with: bound to the edge's own secret, so ids are stable across restarts. */
export function commandIdKey(handleKey: Uint8Array): Buffer {
  return createHmac("sha256", handleKey).update("runigun/telegram/command-id/v1").digest();
}

export function deriveCommandId(key: Buffer, chatId: number, messageId: number): string {
  return `tg_${createHmac("sha256", key).update(`${chatId}:${messageId}`).digest("base64url").slice(0, 32)}`;
}

/** Editing a message into the text it already has is refused by Telegram; for a repeated page press that is fine. */
export function unlessNotModified(e: unknown): undefined {
  if (e instanceof GrammyError && /message is not modified/i.test(e.description)) return undefined;
  throw e;
}
