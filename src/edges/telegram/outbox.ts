// Replies into groups, without making the update that caused them wait. Telegram lets a bot post about 20 messages a
// minute into one group (the throttler holds a group's sends to that); an update that awaited its group reply held
// its runner slot — and, in order, every later update of its sender — until the group's budget allowed it. Here a
// group reply is queued in that group's small outbox and sent from there, one at a time at the group's pace; the
// update's handler goes on at once. Each is sent as a reply to the command it answers, so the group sees whose it is.
// The outbox is bounded: a reply the same as one still waiting for the same message is merged into it, one beyond the
// bound is dropped, and both are counted in a log line when the group's outbox empties (and every
// hundred or so while it never does).
import { GrammyError, type Api } from "grammy";
import type { Logger } from "../../log.ts";

/**
 * Replies waiting per group. At 20 a minute (one a second at best), the fifth waits some seconds to a minute: a
 * reply later than that answers a question nobody in the group still sees, so more are dropped, not queued.
 */
export const GROUP_OUTBOX_SIZE = 5;
/** Replies waiting in all groups together: a bound on memory however many groups are busy at once. */
export const ALL_OUTBOXES_SIZE = 5_000;

interface Reply {
  text: string;
  /** The forum topic the update came from: the reply goes there, not to the group's General topic. */
  threadId: number | undefined;
  /** The message (the command) this answers: the group sees it as a reply to that. */
  replyTo: number | undefined;
  /** For an answer that money moved: how else to say it when it cannot be said in the group (see PostOptions). */
  otherwise: (() => void) | undefined;
}

interface GroupBox {
  waiting: Reply[];
  dropped: number;
  merged: number;
}

/** How a reply that must not be lost is handled when the group's outbox cannot take it. */
export interface PostOptions {
  threadId?: number;
  /**
   * The id of the message this answers (the command): sent as a reply to it, so the group can tell whose command it
   * answers ("Say the unit" to two people at once read as one answer to nobody), and merged only with the same text
   * answering the same message. Sent even if that message was deleted meanwhile.
   */
  replyTo?: number;
  /**
   * The reply says money moved (a tip sent): it is never merged with another (each tipper's own) nor dropped; when the
   * outbox is full, when the outbox closes before sending it, or when the group refuses it (a topic closed since),
   * this is called instead (the edge tells the tipper in private), so that nobody sends it again for want of an answer.
   */
  otherwise?: () => void;
}

export class GroupOutbox {
  readonly #api: Api;
  readonly #log: Logger;
  readonly #boxes = new Map<number, GroupBox>();
  #waiting = 0;
  #closed = false;
  readonly stats = { queued: 0, sent: 0, dropped: 0, merged: 0, failed: 0, redirected: 0 };

  constructor(api: Api, log: Logger) {
    this.#api = api;
    this.#log = log;
  }

  /** Queues `text` for group `chatId` and returns at once (the reply goes out when the group's budget allows). */
  post(chatId: number, text: string, o: PostOptions = {}): void {
    const full = () => {
      if (o.otherwise) {
        this.stats.redirected++;
        o.otherwise();
        return true;
      }
      return false;
    };
    if (this.#closed) {
      full();
      return;
    }
    let box = this.#boxes.get(chatId);
    if (!box) {
      box = { waiting: [], dropped: 0, merged: 0 };
      this.#boxes.set(chatId, box);
      void this.#pump(chatId, box);
    }
    const { threadId, replyTo } = o;
    if (!o.otherwise && box.waiting.some((r) => r.text === text && r.threadId === threadId && r.replyTo === replyTo)) {
      box.merged++;
      this.stats.merged++;
    } else if (box.waiting.length >= GROUP_OUTBOX_SIZE || this.#waiting >= ALL_OUTBOXES_SIZE) {
      if (full()) return;
      box.dropped++;
      this.stats.dropped++;
    } else {
      box.waiting.push({ text, threadId, replyTo, otherwise: o.otherwise });
      this.#waiting++;
      this.stats.queued++;
    }
  }

  /** Stops sending; what still waits is dropped (it would come too late after a restart anyway). */
  close(): void {
    this.#closed = true;
    for (const box of this.#boxes.values()) {
      this.#waiting -= box.waiting.length;
      for (const r of box.waiting) {
        if (r.otherwise) this.#redirect(r);
        else box.dropped++;
      }
      box.waiting.length = 0;
    }
  }

  /** Sends a group's replies one at a time (its throttler paces them) until none waits, then forgets the group. */
  async #pump(chatId: number, box: GroupBox): Promise<void> {
    // Posted replies are pushed right after this starts: begin on the next turn.
    await Promise.resolve();
    while (!this.#closed) {
      const reply = box.waiting.shift();
      if (reply === undefined) break;
      this.#waiting--;
      // A group that never quiets down is reported as it goes, not only when its outbox empties.
      if (box.dropped + box.merged >= 100) this.#report(box);
      try {
        await this.#api.sendMessage(chatId, reply.text, sendOptions(reply));
        this.stats.sent++;
      } catch (e) {
        this.stats.failed++;
        if (reply.otherwise) this.#redirect(reply);
        // Its kind and code only: an error may quote the chat.
        this.#log.warn({ err: e instanceof GrammyError ? { name: e.name, code: e.error_code } : { name: (e as Error).name } }, "a group reply was not delivered");
      }
    }
    this.#boxes.delete(chatId);
    this.#report(box);
  }

  #redirect(r: Reply): void {
    this.stats.redirected++;
    r.otherwise!();
  }

  /** One line for what a group's outbox dropped and merged; no chat id (which group was busy is no log's business). */
  #report(box: GroupBox): void {
    if (box.dropped === 0 && box.merged === 0) return;
    this.#log.warn({ dropped: box.dropped, merged: box.merged }, "group replies dropped: the group's outbox was full (Telegram takes ~20 messages a minute per group)");
    box.dropped = 0;
    box.merged = 0;
  }
}

/** Where a group reply goes: its topic, and the message it answers (even if deleted since: the answer still counts). */
function sendOptions(r: Reply): { message_thread_id?: number; reply_parameters?: { message_id: number; allow_sending_without_reply: true } } | undefined {
  if (r.threadId === undefined && r.replyTo === undefined) return undefined;
  return {
    ...(r.threadId !== undefined ? { message_thread_id: r.threadId } : {}),
    ...(r.replyTo !== undefined ? { reply_parameters: { message_id: r.replyTo, allow_sending_without_reply: true as const } } : {}),
  };
}
