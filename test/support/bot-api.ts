// A stand-in for Telegram's Bot API on 127.0.0.1: the real grammY client talks HTTP to it. It serves queued
// updates to getUpdates (long polling, woken by pushes, honouring offset), records every other call, builds
// the updates people would cause (private text, group reply, button press, edit), and answers 429 on demand.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Update } from "grammy/types";

export interface RecordedCall {
  method: string;
  params: Record<string, unknown>;
  /** For multipart uploads: the raw body, to check what file was sent. */
  raw?: Buffer;
}

export interface InlineButton {
  text: string;
  callback_data: string;
}

const person = (id: number) => ({ id, is_bot: false, first_name: `p${id}` });

export class BotApiStandIn {
  readonly calls: RecordedCall[] = [];
  readonly botInfo = {
    id: 4242, is_bot: true, first_name: "RuniGun", username: "runigun_test_bot", can_join_groups: true,
    can_read_all_group_messages: false, supports_inline_queries: false, can_connect_to_business: false, has_main_web_app: false,
  };
  readonly token = "4242:TEST-TOKEN";
  port = 0;
  #server: Server | undefined;
  #updates: Update[] = [];
  #pollers: Array<() => void> = [];
  #callWaiters: Array<{ match: (c: RecordedCall) => boolean; resolve: (c: RecordedCall) => void }> = [];
  /** Told of every recorded call, and of every batch of updates handed to getUpdates (the bench measures with them). */
  onCall: ((c: RecordedCall) => void) | undefined;
  onServe: ((updates: Update[]) => void) | undefined;
  #fail = new Map<string, { times: number; error: { error_code: number; description: string; parameters?: Record<string, unknown> } }>();
  #cut = new Map<string, number>();
  #messageId = 1;
  #updateId = 1000;
  #userMessageId = 100_000;

  get apiRoot(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.#server = createServer((req, res) => void this.#handle(req, res));
    await new Promise<void>((r) => this.#server!.listen(0, "127.0.0.1", r));
    this.port = (this.#server.address() as { port: number }).port;
  }

  async stop(): Promise<void> {
    for (const p of this.#pollers.splice(0)) p();
    this.#server?.closeAllConnections();
    await new Promise((r) => this.#server?.close(r));
  }

  /** Queues an update for the next getUpdates (and wakes a waiting long poll). */
  push(update: Update): void {
    this.#updates.push(update);
    for (const p of this.#pollers.splice(0)) p();
  }

  // --- updates people cause ---------------------------------------------------------------------------------

  /** A text message from user `from`: in their private chat, or in group `chat` (< 0), maybe replying to someone. */
  message(from: number, text: string, opts: { chat?: number; replyTo?: { from: number; id: number } } = {}): Update {
    const chatId = opts.chat ?? from;
    const cmd = /^\/[\w@]+/.exec(text);
    const chat = chatId < 0 ? { id: chatId, type: "group", title: "g" } : { id: chatId, type: "private", first_name: "x" };
    return {
      update_id: this.#updateId++,
      message: {
        message_id: this.#userMessageId++, date: Math.floor(Date.now() / 1000), text, from: person(from), chat,
        ...(cmd ? { entities: [{ type: "bot_command", offset: 0, length: cmd[0].length }] } : {}),
        ...(opts.replyTo ? { reply_to_message: { message_id: opts.replyTo.id, date: 0, chat, from: person(opts.replyTo.from), text: "hi" } } : {}),
      },
    } as Update;
  }

  /** The same message, edited (Telegram sends `edited_message`). */
  edited(from: number, text: string, opts: { chat?: number; replyTo?: { from: number; id: number } } = {}): Update {
    const m = this.message(from, text, opts).message!;
    return { update_id: this.#updateId++, edited_message: { ...m, edit_date: m.date } } as Update;
  }

  /** A press of an inline button with `data`, by user `from`, on message `messageId` of their private chat. */
  press(from: number, data: string, messageId = 1): Update {
    return {
      update_id: this.#updateId++,
      callback_query: {
        id: String(this.#updateId), from: person(from), chat_instance: "c", data,
        message: { message_id: messageId, date: 0, chat: { id: from, type: "private", first_name: "x" }, text: "" },
      },
    } as Update;
  }

  /** The inline keyboard of a recorded call, flattened. */
  static buttons(c: RecordedCall): InlineButton[] {
    const markup = c.params.reply_markup;
    const parsed = (typeof markup === "string" ? JSON.parse(markup) : markup) as { inline_keyboard?: InlineButton[][] } | undefined;
    return parsed?.inline_keyboard?.flat() ?? [];
  }

  /** Text or caption of a recorded call. */
  static text(c: RecordedCall): string {
    return String(c.params.text ?? c.params.caption ?? "");
  }

  // --- what the bot did -------------------------------------------------------------------------------------

  /**
   * Pushes `update` and resolves with the bot's first call about it: a call to the update's chat or a callback
   * answer (housekeeping such as setMyCommands is skipped), further narrowed by `match`.
   */
  exchange(update: Update, match: (c: RecordedCall) => boolean = () => true, timeoutMs?: number): Promise<RecordedCall> {
    const since = this.calls.length;
    const chat = update.message?.chat.id ?? update.callback_query?.from.id;
    this.push(update);
    return this.waitForCall((c) => (Number(c.params.chat_id) === chat || c.method === "answerCallbackQuery") && c.method !== "setMyCommands" && match(c), since, timeoutMs);
  }

  /** The next `times` calls of `method` answer 429 with `retry_after` seconds. */
  failWith429(method: string, times = 1, retryAfter = 1): void {
    this.failNext(method, { error_code: 429, description: `Too Many Requests: retry after ${retryAfter}`, parameters: { retry_after: retryAfter } }, times);
  }

  /** The next `times` calls of `method` fail with this Bot API error (e.g. 400 "message is not modified"). */
  failNext(method: string, error: { error_code: number; description: string; parameters?: Record<string, unknown> }, times = 1): void {
    this.#fail.set(method, { times, error });
  }

  /**
   * The next `times` calls of `method` are taken (recorded, as Telegram would carry them out) and never answered: the
   * connection is cut, as when a network fails after the request arrived.
   */
  cutAfterTaking(method: string, times = 1): void {
    this.#cut.set(method, times);
  }

  /** Resolves with the first call (already made from index `since` on, or future) that matches. Bounded. */
  waitForCall(match: (c: RecordedCall) => boolean, since = 0, timeoutMs = 15_000): Promise<RecordedCall> {
    const found = this.calls.slice(since).find(match);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const waiter = { match, resolve: (c: RecordedCall) => (clearTimeout(timer), resolve(c)) };
      const timer = setTimeout(() => {
        this.#callWaiters = this.#callWaiters.filter((w) => w !== waiter);
        reject(new Error(`no matching Bot API call within ${timeoutMs} ms; calls so far: ${this.calls.slice(since).map((c) => c.method).join(", ")}`));
      }, timeoutMs);
      this.#callWaiters.push(waiter);
    });
  }

  /** Text sent to a chat from call index `since` on. */
  textsTo(chatId: number, since = 0): string[] {
    return this.calls.slice(since).filter((c) => Number(c.params.chat_id) === chatId && typeof c.params.text === "string").map((c) => String(c.params.text));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const m = /^\/bot([^/]+)\/(\w+)/.exec(req.url ?? "");
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const send = (status: number, payload: unknown) => {
      if (res.writableEnded) return;
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(payload));
    };
    if (!m || m[1] !== this.token) return send(401, { ok: false, error_code: 401, description: "Unauthorized" });
    const method = m[2]!;
    const type = String(req.headers["content-type"] ?? "");
    let params: Record<string, unknown> = {};
    if (type.includes("application/json") && body.length) params = JSON.parse(body.toString("utf8")) as Record<string, unknown>;
    else if (type.includes("multipart/form-data")) params = multipartFields(body);
    const failing = this.#fail.get(method);
    if (failing && failing.times > 0) {
      failing.times--;
      return send(failing.error.error_code, { ok: false, ...failing.error });
    }
    if (method === "getUpdates") return this.#getUpdates(params, send);
    const call: RecordedCall = { method, params, ...(type.includes("multipart") ? { raw: body } : {}) };
    this.calls.push(call);
    this.onCall?.(call);
    for (const w of [...this.#callWaiters]) {
      if (w.match(call)) {
        this.#callWaiters = this.#callWaiters.filter((x) => x !== w);
        w.resolve(call);
      }
    }
    const cut = this.#cut.get(method) ?? 0;
    if (cut > 0) {
      this.#cut.set(method, cut - 1);
      req.socket.destroy();
      return;
    }
    const chat = { id: Number(params.chat_id), type: Number(params.chat_id) < 0 ? "group" : "private" };
    const message = { message_id: this.#messageId++, date: Math.floor(Date.now() / 1000), chat, text: params.text };
    switch (method) {
      case "getMe":
        return send(200, { ok: true, result: this.botInfo });
      case "sendMessage":
      case "editMessageText":
        return send(200, { ok: true, result: message });
      case "sendPhoto":
        return send(200, { ok: true, result: { ...message, text: undefined, caption: params.caption, photo: [{ file_id: "f", file_unique_id: "u", width: 1, height: 1 }] } });
      default:
        // setMyCommands, deleteWebhook, answerCallbackQuery, …
        return send(200, { ok: true, result: true });
    }
  }

  #getUpdates(params: Record<string, unknown>, send: (s: number, p: unknown) => void): void {
    const offset = Number(params.offset ?? 0);
    // Telegram forgets updates below the offset: they were confirmed by the client.
    this.#updates = this.#updates.filter((u) => u.update_id >= offset);
    const limit = Math.min(100, Math.max(1, Number(params.limit ?? 100)));
    const serve = (updates: Update[]) => {
      this.onServe?.(updates);
      send(200, { ok: true, result: updates });
    };
    if (this.#updates.length > 0) return serve(this.#updates.slice(0, limit));
    // Long poll: answer as soon as an update is pushed, or empty after a short hold.
    let done = false;
    const answer = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      serve(this.#updates.filter((u) => u.update_id >= offset).slice(0, limit));
    };
    const timer = setTimeout(answer, Math.min(1000, Number(params.timeout ?? 0) * 1000));
    this.#pollers.push(answer);
  }
}

/** The plain fields of a multipart/form-data body (grammY sends chat_id, caption, reply_markup… beside the file). */
function multipartFields(body: Buffer): Record<string, unknown> {
  const params: Record<string, unknown> = {};
  for (const part of body.toString("latin1").split(/--[-\w]+\r\n/)) {
    if (/filename=/.test(part)) continue;
    const f = /name="([^"]+)"\r\n(?:[^\r\n]+\r\n)*\r\n([\s\S]*?)\r\n(?:--[-\w]+--\r\n)?$/.exec(part);
    if (f) params[f[1]!] = Buffer.from(f[2]!, "latin1").toString("utf8");
  }
  return params;
}
