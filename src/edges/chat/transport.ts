// Telegram inside the process: builds real Bot API `Update` objects for the very bot that serves Telegram,
// and answers the bot's API calls (an innermost grammY transformer), recording what it said per chat.
// The local chat and the script edge talk to the engine through this, so they exercise what users hit.
import type { Transformer } from "grammy";
import type { Update, UserFromGetMe, Message, InlineKeyboardButton } from "grammy/types";

export interface Outgoing {
  chatId: number;
  messageId: number;
  kind: "message" | "photo" | "edit" | "answer";
  text: string;
  buttons: Array<{ text: string; data: string }>;
}

export const LOCAL_BOT: UserFromGetMe = {
  id: 100_000_001, is_bot: true, first_name: "RuniGun", username: "runigun_local_bot",
  can_join_groups: true, can_read_all_group_messages: false, supports_inline_queries: false,
  can_connect_to_business: false, has_main_web_app: false, has_topics_enabled: false,
} as UserFromGetMe;

/** The first id given to a local person: just past 2^52, beyond every real Telegram account's id. */
export const LOCAL_USER_IDS_FROM = 2 ** 52 + 1;

interface Person {
  id: number;
  name: string;
}

/** The last message id any transport of this process gave. */
let lastMessageId = 0;

export class InProcessTelegram {
  readonly botInfo: UserFromGetMe;
  readonly log: Outgoing[] = [];
  /** How many messages the bot has sent in all (positions for `since`). */
  sent = 0;
  #updateId = 1;
  /**
   * Message ids go on past the last run's: a command's id is derived from its chat and message id
   * (telegram/context.ts), and ids that started at 1 again after a restart made a new `/cheque` or `/withdraw` a
   * repeat of the last run's command with the same number, answered with its old result. They start at the clock in
   * µs (a run would have to send more than a message a µs to overtake it) and past any earlier transport's in this process.
   */
  #messageId = Math.max(Date.now() * 1000, lastMessageId + 1);
  /**
   * Past 2^52, where no Telegram account's id can be (real ids fit in 52 bits): an id below it may be a real
   * person's, whose wallet the terminal would then spend or fill. Still safe integers (up to 2^53 - 1), which the
   * identity code and the notices accept.
   */
  #nextUser = LOCAL_USER_IDS_FROM;
  readonly #people = new Map<string, Person>();
  readonly #groups = new Map<string, number>();
  /** Last message each person sent in each group, to reply to. */
  readonly #lastInGroup = new Map<string, Message>();
  readonly #listeners = new Set<(o: Outgoing) => void>();
  /** Which chat each callback query came from, so its answer is shown there. */
  readonly #callbacks = new Map<string, number>();

  constructor(botInfo: UserFromGetMe = LOCAL_BOT) {
    this.botInfo = botInfo;
  }

  #nextMessageId(): number {
    return (lastMessageId = this.#messageId++);
  }

  /** The grammY transformer that answers every API call locally. */
  readonly transformer: Transformer = async (_prev, method, payload) => {
    const p = payload as Record<string, unknown>;
    const result = this.#answer(method, p);
    return { ok: true, result } as never;
  };

  onOutgoing(listener: (o: Outgoing) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The person called `name`, created on first use (with `id` as their Telegram id, if given: tests choose one). */
  person(name: string, id?: number): Person {
    let p = this.#people.get(name);
    if (!p) {
      p = { id: id ?? this.#nextUser++, name };
      this.#people.set(name, p);
    }
    return p;
  }

  /** A text message from `user`, in their private chat or in a group (optionally replying to someone there). */
  message(user: string, text: string, opts: { group?: string; replyTo?: string } = {}): Update {
    const from = this.person(user);
    const chat = opts.group
      ? { id: this.#groupId(opts.group), type: "group" as const, title: opts.group }
      : { id: from.id, type: "private" as const, first_name: from.name };
    const msg: Message = {
      message_id: this.#nextMessageId(), date: Math.floor(Date.now() / 1000), chat,
      from: { id: from.id, is_bot: false, first_name: from.name }, text,
    } as Message;
    const cmd = /^\/[A-Za-z0-9_]+(@\w+)?/.exec(text);
    if (cmd) (msg as { entities?: unknown }).entities = [{ type: "bot_command", offset: 0, length: cmd[0].length }];
    if (opts.group && opts.replyTo) {
      // Replying to someone who said nothing the bot saw: in a group with privacy mode the bot does not see
      // ordinary chatter, so a message of theirs is made up for the reply to point at.
      const target = this.#lastInGroup.get(`${opts.group}/${opts.replyTo}`) ?? this.#chatter(opts.group, opts.replyTo);
      (msg as { reply_to_message?: Message }).reply_to_message = target;
    }
    if (opts.group) this.#lastInGroup.set(`${opts.group}/${user}`, msg);
    return { update_id: this.#updateId++, message: msg } as Update;
  }

  /**
   * A press of an inline button (by its label, or its 1-based number) on the newest message that has it, or
   * on message `messageId` when given.
   */
  press(user: string, label: string, messageId?: number): Update {
    const from = this.person(user);
    const msg = [...this.log].reverse().find((o) => o.chatId === from.id && o.buttons.length > 0 && (messageId === undefined || o.messageId === messageId) && this.#button(o, label));
    if (!msg) throw new Error(`no button "${label}" in ${user}'s chat`);
    const button = this.#button(msg, label)!;
    this.#callbacks.set(String(this.#updateId + 1), from.id);
    return {
      update_id: this.#updateId++,
      callback_query: {
        id: String(this.#updateId), chat_instance: String(from.id), data: button.data,
        from: { id: from.id, is_bot: false, first_name: from.name },
        message: { message_id: msg.messageId, date: Math.floor(Date.now() / 1000), chat: { id: from.id, type: "private", first_name: from.name }, text: msg.text },
      },
    } as Update;
  }

  /** A callback with arbitrary data (forged or stale buttons, for tests). */
  callback(user: string, data: string, messageId = 1): Update {
    const from = this.person(user);
    this.#callbacks.set(String(this.#updateId + 1), from.id);
    return {
      update_id: this.#updateId++,
      callback_query: {
        id: String(this.#updateId), chat_instance: String(from.id), data, from: { id: from.id, is_bot: false, first_name: from.name },
        message: { message_id: messageId, date: 0, chat: { id: from.id, type: "private", first_name: from.name }, text: "" },
      },
    } as Update;
  }

  chatOf(user: string): number {
    return this.person(user).id;
  }

  /** The chat id of group `name` (created on first use). */
  groupOf(name: string): number {
    return this.#groupId(name);
  }

  #chatter(group: string, user: string): Message {
    const from = this.person(user);
    const msg = {
      message_id: this.#nextMessageId(), date: Math.floor(Date.now() / 1000), text: "…",
      chat: { id: this.#groupId(group), type: "group", title: group }, from: { id: from.id, is_bot: false, first_name: from.name },
    } as Message;
    this.#lastInGroup.set(`${group}/${user}`, msg);
    return msg;
  }

  #button(o: Outgoing, label: string) {
    const n = Number(label);
    return Number.isInteger(n) && n >= 1 ? o.buttons[n - 1] : o.buttons.find((b) => b.text.toLowerCase() === label.toLowerCase());
  }

  #groupId(name: string): number {
    let id = this.#groups.get(name);
    if (id === undefined) {
      id = -1_000_000 - this.#groups.size;
      this.#groups.set(name, id);
    }
    return id;
  }

  /** What the bot sent from position `n` on (positions count every message ever sent). */
  since(n: number): Outgoing[] {
    const start = this.sent - this.log.length;
    return this.log.slice(Math.max(0, n - start));
  }

  #emit(o: Outgoing): void {
    this.log.push(o);
    this.sent++;
    if (this.log.length > 5000) this.log.splice(0, 1000);
    for (const l of this.#listeners) l(o);
  }

  #answer(method: string, p: Record<string, unknown>): unknown {
    const chatId = Number(p.chat_id);
    const buttons = ((p.reply_markup as { inline_keyboard?: InlineKeyboardButton[][] } | undefined)?.inline_keyboard ?? [])
      .flat().map((b) => ({ text: b.text, data: (b as { callback_data?: string }).callback_data ?? "" }));
    const message = (id: number, text: string) => ({ message_id: id, date: Math.floor(Date.now() / 1000), chat: { id: chatId, type: chatId < 0 ? "group" : "private" }, text });
    switch (method) {
      case "sendMessage": {
        const id = this.#nextMessageId();
        this.#emit({ chatId, messageId: id, kind: "message", text: String(p.text), buttons });
        return message(id, String(p.text));
      }
      case "sendPhoto": {
        const id = this.#nextMessageId();
        this.#emit({ chatId, messageId: id, kind: "photo", text: `[QR code image for ${String(p.caption ?? "")}]`, buttons });
        return { ...message(id, ""), photo: [] };
      }
      case "editMessageText": {
        const id = Number(p.message_id);
        this.#emit({ chatId, messageId: id, kind: "edit", text: String(p.text), buttons });
        return message(id, String(p.text));
      }
      case "answerCallbackQuery":
        if (p.text) this.#emit({ chatId: this.#callbacks.get(String(p.callback_query_id)) ?? 0, messageId: 0, kind: "answer", text: String(p.text), buttons: [] });
        this.#callbacks.delete(String(p.callback_query_id));
        return true;
      case "getMe":
        return this.botInfo;
      default:
        // setMyCommands, deleteWebhook and other housekeeping: accepted.
        return true;
    }
  }
}
