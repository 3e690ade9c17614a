// A stand-in for Telegram's Bot API on 127.0.0.1: the real grammY client talks HTTP to it. It serves queued
// updates to getUpdates (long polling, woken by pushes), records every call, and can answer 429 on demand.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Update } from "grammy/types";

export interface RecordedCall {
  method: string;
  params: Record<string, unknown>;
  /** For multipart uploads: the raw body, to check what file was sent. */
  raw?: Buffer;
}

export class BotApiStandIn {
  readonly calls: RecordedCall[] = [];
  readonly botInfo = { id: 4242, is_bot: true, first_name: "RunIGun", username: "runigun_test_bot", can_join_groups: true, can_read_all_group_messages: false, supports_inline_queries: false };
  readonly token = "4242:TEST-TOKEN";
  #server: Server | undefined;
  #updates: Update[] = [];
  #pollers: Array<() => void> = [];
  #callWaiters: Array<{ match: (c: RecordedCall) => boolean; resolve: (c: RecordedCall) => void }> = [];
  #fail = new Map<string, number>();
  #messageId = 1;
  port = 0;

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

  push(update: Update): void {
    this.#updates.push(update);
    for (const p of this.#pollers.splice(0)) p();
  }

  /** The next `times` calls of `method` answer 429 with retry_after. */
  failWith429(method: string, times = 1): void {
    this.#fail.set(method, times);
  }

  /** Resolves with the first call (already made from `since` on, or future) that matches. Bounded. */
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
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(payload));
    };
    if (!m || m[1] !== this.token) return send(401, { ok: false, error_code: 401, description: "Unauthorized" });
    const method = m[2]!;
    const type = String(req.headers["content-type"] ?? "");
    let params: Record<string, unknown> = {};
    if (type.includes("application/json") && body.length) params = JSON.parse(body.toString("utf8")) as Record<string, unknown>;
    else if (type.includes("multipart/form-data")) {
      for (const part of body.toString("latin1").split(/--[-\w]+\r\n/)) {
        const f = /name="([^"]+)"(?:; filename="[^"]*")?\r\n(?:[^\r\n]+\r\n)*\r\n([\s\S]*?)\r\n$/.exec(part);
        if (f && !/filename=/.test(part)) params[f[1]!] = f[2];
      }
    }
    const failing = this.#fail.get(method);
    if (failing) {
      this.#fail.set(method, failing - 1);
      return send(429, { ok: false, error_code: 429, description: "Too Many Requests: retry after 1", parameters: { retry_after: 1 } });
    }
    if (method === "getUpdates") return this.#getUpdates(params, send);
    const call: RecordedCall = { method, params, ...(type.includes("multipart") ? { raw: body } : {}) };
    this.calls.push(call);
    for (const w of [...this.#callWaiters]) {
      if (w.match(call)) {
        this.#callWaiters = this.#callWaiters.filter((x) => x !== w);
        w.resolve(call);
      }
    }
    const chat = { id: Number(params.chat_id), type: Number(params.chat_id) < 0 ? "group" : "private" };
    const message = { message_id: this.#messageId++, date: Math.floor(Date.now() / 1000), chat, text: params.text };
    switch (method) {
      case "getMe":
        return send(200, { ok: true, result: this.botInfo });
      case "sendMessage":
      case "sendPhoto":
      case "editMessageText":
        return send(200, { ok: true, result: message });
      default:
        return send(200, { ok: true, result: true });
    }
  }

  #getUpdates(params: Record<string, unknown>, send: (s: number, p: unknown) => void): void {
    const offset = Number(params.offset ?? 0);
    this.#updates = this.#updates.filter((u) => u.update_id >= offset);
    if (this.#updates.length > 0) return send(200, { ok: true, result: this.#updates.slice(0, 100) });
    // Long poll: answer as soon as an update is pushed, or empty after a short hold.
    let done = false;
    const answer = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      send(200, { ok: true, result: this.#updates.filter((u) => u.update_id >= offset).slice(0, 100) });
    };
    const timer = setTimeout(answer, Math.min(1000, Number(params.timeout ?? 0) * 1000));
    this.#pollers.push(answer);
  }
}
