// RemoteRelay: the Relay interface over the internal API (mutual TLS), so the Telegram edge cannot tell whether
// the engine is in its process or behind a local TLS link.
import { setMaxListeners } from "node:events";
import { Agent, request } from "node:https";
import type { Logger } from "../../log.ts";
import { refuse } from "../../domain/refusals.ts";
import type { Notification, Relay } from "../../relay.types.ts";
import { decode, encode } from "../../store/codec.ts";
import { NOTICE_ACK_PATH, NOTICE_ACKS_HEADER, NOTICE_STREAM_HEADER, type RelayMethod } from "./protocol.ts";
import { Notices, type NoticeListener, type NoticeListening } from "../../held.ts";

export interface RemoteRelayOptions {
  url: string;
  tls: { key: string; cert: string; ca: string };
  log: Logger;
  timeoutMs?: number;
}

/** How often a bot reads the engine's facts (limits, drain mode) again, besides each time its stream reopens. */
const INFO_REFRESH_MS = 30_000;

/**
 * The longest an acknowledgement of notices may take (protocol.ts). A stream whose last edge unsubscribed stays open
 * until its acknowledgement is answered, at most this long; close() ends it at once.
 */
const ACK_TIMEOUT_MS = 5_000;

/** Connection errors before a request goes out: the engine never saw it. */
const NOT_SENT = new Set(["ECONNREFUSED", "ENOTFOUND", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN", "ERR_TLS_CERT_ALTNAME_INVALID", "DEPTH_ZERO_SELF_SIGNED_CERT", "UNABLE_TO_VERIFY_LEAF_SIGNATURE", "SELF_SIGNED_CERT_IN_CHAIN", "CERT_HAS_EXPIRED"]);

export class RemoteRelay implements Relay {
  readonly #o: RemoteRelayOptions;
  readonly #agent: Agent;
  readonly #notices: Notices<Notification>;
  #info: ReturnType<Relay["info"]> = { network: "unknown", confirmations: 1, draining: false };
  #closed = false;
  #stream: import("node:http").ClientRequest | undefined;
  /** The open stream's acknowledgements, once the engine named the stream (an older engine does not). */
  #acks: StreamAcks | undefined;
  /** Streams whose last edge unsubscribed, open until their last acknowledgement is answered. */
  readonly #ending = new Set<import("node:http").ClientRequest>();
  #infoTimer: NodeJS.Timeout | undefined;
  #streamsOpened = 0;
  /** Subscribed edges that deliver notices (not observers): the stream is open while there is one. */
  #deliverers = 0;

  private constructor(o: RemoteRelayOptions) {
    this.#o = o;
    this.#notices = new Notices(o.log);
    // No fixed servername: the engine's certificate is checked against the host in the URL (internal.host), which
    // the certificate names (tls/certs.ts, ensurePki).
    this.#agent = new Agent({ keepAlive: true, key: o.tls.key, cert: o.tls.cert, ca: o.tls.ca, maxSockets: 64 });
  }

  /**
   * Connects: reads the engine's facts (read again every `INFO_REFRESH_MS` and whenever the notification stream
   * opens again, so a bot outliving an engine restart follows its limits and drain mode).
   */
  static async connect(o: RemoteRelayOptions): Promise<RemoteRelay> {
    const r = new RemoteRelay(o);
    r.#info = (await r.#send("GET", "/relay/info")) as ReturnType<Relay["info"]>;
    r.#infoTimer = setInterval(() => r.#refreshInfo(), INFO_REFRESH_MS);
    r.#infoTimer.unref();
    return r;
  }

  /** Reads the engine's facts again; until it answers, the last ones stand. */
  #refreshInfo(): void {
    if (this.#closed) return;
    this.#send("GET", "/relay/info").then(
      (info) => void (this.#info = info as ReturnType<Relay["info"]>),
      (e: unknown) => this.#o.log.warn({ err: (e as Error).message }, "could not read the engine's facts again; the last ones stand"),
    );
  }

  info() {
    return this.#info;
  }

  start(userKey: string, chatHandle?: string) { return this.#call("start", userKey, chatHandle); }
  balance(userKey: string) { return this.#call("balance", userKey); }
  history(userKey: string, page: number, pageSize?: number) { return this.#call("history", userKey, page, pageSize); }
  depositAddress(userKey: string) { return this.#call("depositAddress", userKey); }
  quoteWithdrawal(userKey: string, address: string, amount: string) { return this.#call("quoteWithdrawal", userKey, address, amount); }
  confirmWithdrawal(userKey: string, quoteId: string) { return this.#call("confirmWithdrawal", userKey, quoteId); }
  cancelQuote(userKey: string, quoteId: string) { return this.#call("cancelQuote", userKey, quoteId); }
  transfer(userKey: string, id: string, to: string, amount: string) { return this.#call("transfer", userKey, id, to, amount); }
  createCheque(userKey: string, id: string, amount: string) { return this.#call("createCheque", userKey, id, amount); }
  claimCheque(userKey: string, code: string) { return this.#call("claimCheque", userKey, code); }
  revokeCheque(userKey: string, code: string) { return this.#call("revokeCheque", userKey, code); }
  myCheques(userKey: string) { return this.#call("myCheques", userKey); }
  identityPin(check: string) { return this.#call("identityPin", check); }

  /** Notices received and waiting for an edge to subscribe. */
  get heldNotices(): number {
    return this.#notices.held;
  }

  /**
   * As the engine's relay (Notices). The stream is open while an edge that delivers notices is subscribed, not from
   * connect on: the engine hands its held notices to the first stream, and a bot whose start fails before its edge
   * subscribes must leave them to the next one. It closes when the last such edge unsubscribes (a bot stopping): the
   * engine then holds what comes next for the next bot, instead of sending it here to be dropped. A notice is
   * acknowledged once it is settled (an edge that `settles`: once its send was answered, or refused for good).
   */
  onNotification(listener: NoticeListener<Notification>, o: NoticeListening = {}): () => void {
    const off = this.#notices.subscribe(listener, o);
    if (o.observer) return off;
    this.#deliverers++;
    if (!this.#stream && !this.#closed) this.#listen();
    let subscribed = true;
    return () => {
      off();
      if (!subscribed) return;
      subscribed = false;
      if (--this.#deliverers > 0) return;
      // Handed over and not settled (put back by the edge's unsubscribe), or never handed over: not acknowledged, so the
      // engine gives them to the next stream; kept here too, they would be delivered twice if an edge subscribed again.
      this.#notices.dropHeld();
      const stream = this.#stream;
      const acks = this.#acks;
      this.#stream = undefined;
      this.#acks = undefined;
      if (!stream) return;
      // What reaches it from now on is neither handed over nor acknowledged (#listen): the engine holds it for the next
      // bot once the stream ends. What was settled is acknowledged first: closed before, the engine could see the end
      // before the acknowledgement and send those notices again to the next bot (a user told twice). What was handed
      // over and not settled (a send still queued: the Telegram edge waits for those a few seconds before it
      // unsubscribes) is not acknowledged: the engine gives it to the next bot.
      this.#ending.add(stream);
      void (acks?.push() ?? Promise.resolve()).then(() => {
        acks?.close();
        this.#ending.delete(stream);
        stream.destroy();
      });
    };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#infoTimer);
    this.#stream?.destroy();
    this.#stream = undefined;
    this.#acks?.close();
    for (const stream of this.#ending) stream.destroy();
    this.#ending.clear();
    this.#agent.destroy();
    // Received from the engine while no edge was subscribed (not expected: the stream is open only while one is):
    // never settled, so never acknowledged; the engine gives them to the next bot. A count only: a notice names a user
    // key and carries a sealed chat handle.
    const undelivered = this.#notices.held;
    if (undelivered > 0) this.#o.log.warn({ undelivered }, "notices received from the engine and not delivered before this bot stopped were not acknowledged: the engine sends them to the next bot");
  }

  /**
   * The engine's answer, or a refusal: "unreachable" when the request never reached it (nothing was moved); "busy"
   * when it may have (no answer in time, the connection lost after the request went out): the command may still be
   * carried out, so the user is not told that nothing moved.
   */
  #call<M extends RelayMethod>(method: M, ...args: Parameters<Relay[M]>): ReturnType<Relay[M]> {
    const list: unknown[] = [...args];
    while (list.length && list[list.length - 1] === undefined) list.pop();
    return this.#send("POST", `/relay/${method}`, { args: list }).catch((e: unknown) => {
      const code = (e as NodeJS.ErrnoException).code;
      this.#o.log.warn({ method, err: (e as Error).message }, "engine unreachable");
      if (code !== undefined && NOT_SENT.has(code)) return refuse("node_unavailable", "The wallet service is unreachable right now; nothing was moved. Try again in a minute.");
      return refuse("busy", "The wallet service did not answer; this may still go through. Check /balance before you try again.");
    }) as ReturnType<Relay[M]>;
  }

  #send(method: string, path: string, body?: unknown, timeoutMs = this.#o.timeoutMs ?? 30_000): Promise<unknown> {
    const url = new URL(path, this.#o.url);
    return new Promise((resolve, reject) => {
      const req = request(url, { method, agent: this.#agent, timeout: timeoutMs, headers: body === undefined ? {} : { "content-type": "application/json" } }, (res) => {
        const chunks: Buffer[] = [];
        // An answer cut off mid-body (the engine killed, the link dropped) ends in 'aborted', 'error' or 'close' without
        // 'end', and the request's idle timer went with its socket: without these, the call never settled. A rejection
        // here becomes "busy" (the command may have been carried out). After 'end' they change nothing.
        const cut = (e?: Error) => reject(e ?? new Error("the engine's answer was cut off"));
        res.on("aborted", () => cut());
        res.on("error", cut);
        res.on("close", () => cut());
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const buf = Buffer.concat(chunks);
          if (res.statusCode !== 200) return reject(new Error(`engine answered ${res.statusCode}: ${buf.toString("utf8").slice(0, 200)}`));
          try {
            resolve(decode<{ result: unknown }>(buf).result);
          } catch (e) {
            reject(e);
          }
        });
      });
      req.on("timeout", () => req.destroy(new Error("the engine did not answer in time")));
      req.on("error", reject);
      req.end(body === undefined ? undefined : encode(body));
    });
  }

  #listen(delay = 200): void {
    if (this.#closed) return;
    // Once per stream, however it ended: a clean end, an error, or the engine closing it (a stream it gave up on
    // emits 'close' and no 'end').
    let over = false;
    const again = () => {
      if (over) return;
      over = true;
      // Not when this stream was closed on purpose (the last edge unsubscribed), nor replaced by a newer one.
      if (this.#stream !== req) return;
      this.#stream = undefined;
      this.#retry(delay);
    };
    const req = request(new URL("/relay/notifications", this.#o.url), { agent: this.#agent, headers: { accept: "text/event-stream", [NOTICE_ACKS_HEADER]: "1" } }, (res) => {
      // A stream opened again: the engine may have restarted with other limits, or in drain mode.
      if (this.#streamsOpened++ > 0) this.#refreshInfo();
      const name = res.headers[NOTICE_STREAM_HEADER];
      const acks = typeof name === "string" && this.#stream === req
        ? new StreamAcks((upTo) => this.#send("POST", NOTICE_ACK_PATH, { stream: name, upTo }, Math.min(ACK_TIMEOUT_MS, this.#o.timeoutMs ?? ACK_TIMEOUT_MS)), this.#o.log)
        : undefined;
      if (acks) this.#acks = acks;
      // Aborted when this stream closes: what it handed over and is not settled is taken back (below).
      const taken = new AbortController();
      // One listener a send waiting on it (notifications.ts), thousands while Telegram is down: not a leak.
      setMaxListeners(0, taken.signal);
      let buffer = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        buffer += chunk;
        let i;
        while ((i = buffer.indexOf("\n\n")) >= 0) {
          // Its last edge unsubscribed: not handed over, so not acknowledged; the engine holds these for the next bot.
          if (this.#stream !== req) return;
          const event = buffer.slice(0, i);
          buffer = buffer.slice(i + 2);
          const data: string[] = [];
          let id: number | undefined;
          for (const l of event.split("\n")) {
            if (l.startsWith("data: ")) data.push(l.slice(6));
            else if (l.startsWith("id: ")) id = Number(l.slice(4));
          }
          if (data.length > 0) {
            const handed = id !== undefined && Number.isSafeInteger(id) ? acks?.handedOver(id) : undefined;
            let n: Notification | undefined;
            try {
              n = decode<Notification>(Buffer.from(data.join("\n")));
            } catch {
              // Acknowledged all the same: sent again, it would fail again on every reconnect.
              this.#o.log.warn("a notice from the engine could not be read; skipped");
            }
            // Handed over: given to every edge subscribed. Acknowledged once settled: the Telegram edge settles a
            // notice once its send settled — sent, or refused for good (the user blocked the bot: 403; the chat is
            // gone: 400), which is acknowledged all the same, or the engine would send that notice again for ever —
            // not when its message is only queued (behind the throttler): a bot stopped with sends still queued
            // leaves those to the next bot. Taken back when the stream closes (see 'close').
            if (n) this.#notices.publish(n, handed && (() => acks!.settled(handed)), handed && taken.signal);
            else if (handed) acks!.settled(handed);
          }
        }
      });
      res.on("close", () => {
        // The engine no longer knows this stream: what it did not acknowledge goes to the next (late settles say nothing).
        acks?.close();
        // So what was handed over on it and has not settled is taken back: the Telegram edge drops those sends not gone
        // out yet (queued behind the throttler, or waiting to be tried again), as its stop does, and sends the copies
        // the engine gives the next stream. Before, it sent both: a link drop or an engine restart made most of the
        // bot's queued notices reach their users twice. A send already on its way to Telegram may still go twice (its
        // answer comes after the stream closed: not acknowledged, so the engine sends it again). Not on a stream of an
        // engine that does not acknowledge (no name): it sends nothing again, so nothing is taken back.
        taken.abort();
        again();
      });
    });
    req.on("error", again);
    req.end();
    this.#stream = req;
  }

  #retry(delay: number): void {
    if (this.#closed) return;
    setTimeout(() => {
      // An edge subscribing meanwhile opened one already; with none left, the engine holds the notices.
      if (this.#stream || this.#deliverers === 0) return;
      this.#listen(Math.min(delay * 2, 5000));
    }, delay).unref();
  }
}

/** A notice handed over on a stream, until it is in the settled prefix. */
interface Handed {
  id: number;
  settled: boolean;
}

/**
 * One notice stream's acknowledgements (protocol.ts): cumulative, up to the last id of the notices handed over that are
 * all settled (the engine's protocol acknowledges a prefix: one settled after an unsettled one waits for it), one
 * request at a time, so a burst costs a few requests rather than one a notice, and what settles while one is on its
 * way goes in the next. The window where a notice reaches a user twice is that of one request: sent, and the stream
 * ended before its acknowledgement arrived; and a notice sent after one before it that was not: both come again.
 */
class StreamAcks {
  /** Handed over and not yet in the settled prefix, in the stream's order. */
  readonly #handed: Handed[] = [];
  /** The last id of the settled prefix. */
  #ready = 0;
  #acked = 0;
  #inFlight: Promise<void> | undefined;
  #pushSoon = false;
  #closed = false;

  constructor(private readonly post: (upTo: number) => Promise<unknown>, private readonly log: Logger) {}

  handedOver(id: number): Handed {
    const h = { id, settled: false };
    this.#handed.push(h);
    return h;
  }

  /** `h` is settled: acknowledged with the settled prefix, soon (those settled in the same turn together). */
  settled(h: Handed): void {
    h.settled = true;
    while (this.#handed[0]?.settled) this.#ready = this.#handed.shift()!.id;
    if (this.#pushSoon || this.#closed) return;
    this.#pushSoon = true;
    queueMicrotask(() => {
      this.#pushSoon = false;
      void this.push();
    });
  }

  /** Its stream is gone: nothing more is acknowledged (the engine no longer knows the stream). */
  close(): void {
    this.#closed = true;
  }

  /** Acknowledges what was settled; settles once nothing more is to be sent (never rejects). */
  push(): Promise<void> {
    if (!this.#inFlight && !this.#closed && this.#ready > this.#acked) {
      const upTo = this.#ready;
      this.#inFlight = this.post(upTo).then(
        () => {
          this.#acked = upTo;
          this.#inFlight = undefined;
          return this.push();
        },
        (e: unknown) => {
          // Not again until more settles (or the stream closes): the engine keeps them meanwhile, and the next
          // acknowledgement, cumulative, covers them.
          this.#inFlight = undefined;
          this.log.warn({ err: (e as Error).message }, "could not acknowledge notices to the engine: if their stream ends first, it sends them again (a user may get one twice)");
        },
      );
    }
    return this.#inFlight ?? Promise.resolve();
  }
}
