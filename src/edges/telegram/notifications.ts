// Proactive messages: the engine's wallet notices, delivered to the chat whose handle the edge sealed at /start.
// The engine addresses a notice by user key and sealed handle only; the chat id is opened here, and never logged.
//
// A notice is settled with the relay (the engine deletes its record; in the split shape, the bot acknowledges it)
// once its send settled: sent, or refused for good — the user blocked the bot (403) or the chat is gone (400): settled
// all the same, or the engine would send that notice again for ever. A send that failed otherwise (Telegram
// unreachable, its 5xx or 429 beyond auto-retry's tries) is tried again here, later and later, until it settles or the
// edge stops. Not when it is only queued (behind the throttler): a bot stopped with sends still queued leaves those to
// the engine, which gives them to the next bot (or, all-in-one, sends them after its next start).
//
// At least once: a notice reaches its user twice when its send went out and its answer was lost (a network cut after
// Telegram took the request: tried again here), when it went out after the stop's wait gave up on it (its request was
// already on its way), or when the bot or the engine died between the send and the engine deleting it.
import { GrammyError, type Api } from "grammy";
import type { Logger } from "../../log.ts";
import type { Relay } from "../../relay.types.ts";
import { openHandle } from "../../store/sealed.ts";
import * as say from "./render.ts";

/** A failed send is tried again after this long, doubling, up to RETRY_MAX_MS. */
const RETRY_FIRST_MS = 1_000;
const RETRY_MAX_MS = 60_000;

export interface NoticeForwarder {
  /**
   * Stops taking notices (those that come now are left to the engine), waits at most `waitMs` for the sends under way
   * (and those queued behind the throttler), then lets go of the rest — aborted, not settled: the engine keeps them
   * for the next bot or start — and unsubscribes. Returns how many were left unsent.
   */
  stop(waitMs: number): Promise<number>;
}

interface Send {
  ctl: AbortController;
  /** Waiting to be tried again. */
  timer: NodeJS.Timeout | undefined;
  /** Resolves once it settled, or was given up (stopping). */
  over: Promise<void>;
  end: () => void;
}

/** Telegram will refuse this send every time: the user blocked the bot (403), the chat is gone or the request is bad (400). */
function refusedForGood(e: unknown): e is GrammyError {
  return e instanceof GrammyError && (e.error_code === 403 || e.error_code === 400);
}

export function forwardNotifications(o: { relay: Relay; api: Api; handleKey: Uint8Array; log: Logger }): NoticeForwarder {
  const sends = new Set<Send>();
  let stopping = false;
  const off = o.relay.onNotification((n, given) => {
    const settled = given ?? (() => undefined);
    // Not taken, so not settled: the engine keeps it for the next bot.
    if (stopping) return;
    if (!n.chatHandle) return settled();
    let chatId: unknown;
    try {
      chatId = openHandle<{ chatId: number }>(o.handleKey, n.chatHandle).chatId;
    } catch {
      o.log.warn({ userKey: n.userKey }, "a chat handle did not open with this edge's key; notification skipped");
      return settled();
    }
    if (typeof chatId !== "number" || !Number.isSafeInteger(chatId)) return settled();
    const text = say.notice(n.notice);
    let end!: () => void;
    const send: Send = { ctl: new AbortController(), timer: undefined, over: new Promise<void>((r) => (end = r)), end: () => end() };
    sends.add(send);
    const done = (sent: boolean) => {
      sends.delete(send);
      if (sent) settled();
      send.end();
    };
    const attempt = (tries: number): void => {
      send.timer = undefined;
      o.api.sendMessage(chatId, text, undefined, send.ctl.signal as Parameters<Api["sendMessage"]>[3]).then(() => done(true), (e: unknown) => {
        if (refusedForGood(e)) {
          // Its kind and code only: Telegram's description may name the chat.
          o.log.warn({ userKey: n.userKey, kind: n.notice.kind, err: { name: e.name, code: e.error_code } }, "notification not delivered: refused by Telegram for good (the user blocked the bot, or the chat is gone); not sent again");
          return done(true);
        }
        if (stopping) return done(false);
        if (tries === 0) {
          const err = e instanceof GrammyError ? { name: e.name, code: e.error_code } : { name: (e as Error).name };
          o.log.warn({ userKey: n.userKey, kind: n.notice.kind, err }, "notification not delivered yet; tried again (it may reach the user twice if Telegram took it)");
        }
        send.timer = setTimeout(() => attempt(tries + 1), Math.min(RETRY_FIRST_MS * 2 ** tries, RETRY_MAX_MS));
      });
    };
    attempt(0);
  }, { settles: true });
  return {
    async stop(waitMs) {
      if (stopping) return 0;
      stopping = true;
      // Those waiting to be tried again are not tried again: left to the engine now.
      let unsent = 0;
      for (const s of [...sends]) {
        if (s.timer === undefined) continue;
        clearTimeout(s.timer);
        sends.delete(s);
        s.end();
        unsent++;
      }
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all([...sends].map((s) => s.over)),
        new Promise<void>((r) => (timer = setTimeout(r, waitMs))),
      ]);
      clearTimeout(timer);
      // Past the wait: a queued send is dropped from the throttler's queue when its turn comes; one on its way may
      // still reach Telegram (then told twice: the next bot sends it too).
      unsent += sends.size;
      for (const s of [...sends]) s.ctl.abort();
      off();
      if (unsent > 0) o.log.warn({ unsent }, "notices not sent before the stop: not acknowledged, so the engine keeps them for the next bot (or its next start)");
      return unsent;
    },
  };
}
