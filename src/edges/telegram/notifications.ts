// Proactive messages: the engine's wallet notices, delivered to the chat whose handle the edge sealed at /start.
// The engine addresses a notice by user key and sealed handle only; the chat id is opened here, and never logged.
//
// A notice is settled with the relay (the engine deletes its record; in the split shape, the bot acknowledges it)
// once its send settled: sent, or refused for good — the user blocked the bot (403) or the chat is gone (400): settled
// all the same, or the engine would send that notice again for ever. A send that failed otherwise (Telegram
// unreachable, its 5xx or 429 beyond auto-retry's tries) is tried again here, later and later (with jitter, and not
// before Telegram's retry_after), until it settles or the edge stops; at most HELD_NOTICES are kept, past that the
// oldest waiting is given up (the engine keeps it). Not when it is only queued (behind the throttler): a bot stopped
// with sends still queued leaves those to the engine, which gives them to the next bot (or, all-in-one, sends them
// after its next start). In the split shape, a notice is taken back when the stream that brought it closes (a link
// drop, an engine restart): its send is dropped unless it is on its way, as at a stop, since the engine gives it to
// the next stream.
//
// At least once: a notice reaches its user twice when its send went out and its answer was lost (a network cut after
// Telegram took the request: tried again here), when it went out after the stop's wait gave up on it, or after its
// stream closed (its request was already on its way), or when the bot or the engine died between the send and the
// engine deleting it.
import { GrammyError, type Api } from "grammy";
import type { Logger } from "../../log.ts";
import type { Relay } from "../../relay.types.ts";
import { HELD_NOTICES } from "../../held.ts";
import { openHandle } from "../../store/sealed.ts";
import * as say from "./render.ts";

/** A failed send is tried again after about this long (jittered: a half to the whole of it), doubling, up to RETRY_MAX_MS. */
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
  /** Resolves once it settled, or was let go of (stopping, taken back, given up). */
  over: Promise<void>;
  /** Lets go of it, not settled (the engine keeps it): with "given up", tells the relay so. */
  letGo: (outcome?: "given up") => void;
}

/** Telegram will refuse this send every time: the user blocked the bot (403), the chat is gone or the request is bad (400). */
function refusedForGood(e: unknown): e is GrammyError {
  return e instanceof GrammyError && (e.error_code === 403 || e.error_code === 400);
}

/**
 * How long before a failed send is tried again: the backoff, jittered (a half to the whole of it) so that the sends
 * that failed together (Telegram unreachable for everyone) do not come back together; never before Telegram's
 * retry_after (a 429 that auto-retry did not wait out: past its tries, or a wait over its 60 s).
 */
function retryDelay(tries: number, e: unknown): number {
  const backoff = Math.min(RETRY_FIRST_MS * 2 ** tries, RETRY_MAX_MS);
  const jittered = backoff / 2 + Math.random() * (backoff / 2);
  const after = e instanceof GrammyError ? e.parameters?.retry_after : undefined;
  return typeof after === "number" && after > 0 ? Math.max(jittered, after * 1000) : jittered;
}

/** `maxKept`: sends kept (under way, or failed and waiting to be tried again) past which the oldest waiting is given up (HELD_NOTICES; tests pass fewer). */
export function forwardNotifications(o: { relay: Relay; api: Api; handleKey: Uint8Array; log: Logger; maxKept?: number }): NoticeForwarder {
  const maxKept = o.maxKept ?? HELD_NOTICES;
  const sends = new Set<Send>();
  /** Those that failed and are not settled, in the order they first failed (the oldest given up first for room). */
  const failing = new Set<Send>();
  /** Given up for room since sends last went through (one line at the first, the count when they do or at the stop). */
  let givenUp = 0;
  /** A send failed and none has gone through since (the "tried again" line is logged once for it). */
  let outage = false;
  let stopping = false;
  const tellGivenUp = () => {
    if (givenUp === 0) return;
    o.log.warn({ givenUp }, "notices given up while their sends failed (more failed sends than are kept to be tried again): not settled, so the engine keeps them (sent by the next bot, or after the engine's next start)");
    givenUp = 0;
  };
  /**
   * Past `maxKept` sends, the oldest of those waiting to be tried again are given up. Before, each failed send kept
   * its timer and was tried again for ever: Telegram down for a while, the edge held every notice made meanwhile
   * (tens of thousands of timers, and their sends again and again). One being tried right now is not given up (its
   * request may reach Telegram): it waits for the next trim.
   */
  const trim = () => {
    for (const s of failing) {
      if (sends.size <= maxKept) return;
      if (s.timer === undefined) continue;
      if (givenUp++ === 0) o.log.warn({ kept: maxKept }, "more notice sends are failing than are kept to be tried again: the oldest are given up (the engine keeps them)");
      s.letGo("given up");
    }
  };
  const off = o.relay.onNotification((n, given, cancelled) => {
    const settled = given ?? (() => undefined);
    // Not taken, so not settled: the engine keeps it for the next bot.
    if (stopping) return;
    // Taken back already (its stream closed): the engine gives it to the next.
    if (cancelled?.aborted) return;
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
    let finished = false;
    /** Done with it: `outcome` says how (nothing said: let go of, stopping or taken back; the engine keeps it). */
    const done = (outcome?: "settled" | "given up") => {
      if (finished) return;
      finished = true;
      clearTimeout(send.timer);
      send.timer = undefined;
      sends.delete(send);
      failing.delete(send);
      cancelled?.removeEventListener("abort", takenBack);
      if (outcome === "settled") settled();
      else if (outcome === "given up") settled("given up");
      end();
    };
    const send: Send = { ctl: new AbortController(), timer: undefined, over: new Promise<void>((r) => (end = r)), letGo: done };
    sends.add(send);
    // Taken back (its stream closed): not sent if it has not gone out (queued: dropped from the throttler's queue when
    // its turn comes; waiting: not tried again), and not settled — the engine gives it to the next stream.
    const takenBack = () => {
      done();
      send.ctl.abort();
    };
    cancelled?.addEventListener("abort", takenBack, { once: true });
    const attempt = (tries: number): void => {
      send.timer = undefined;
      o.api.sendMessage(chatId, text, undefined, send.ctl.signal as Parameters<Api["sendMessage"]>[3]).then(() => {
        done("settled");
        outage = false;
        tellGivenUp();
      }, (e: unknown) => {
        // Let go of meanwhile (stopping, taken back): nothing more to do.
        if (finished) return;
        if (refusedForGood(e)) {
          // Its kind and code only: Telegram's description may name the chat.
          o.log.warn({ userKey: n.userKey, kind: n.notice.kind, err: { name: e.name, code: e.error_code } }, "notification not delivered: refused by Telegram for good (the user blocked the bot, or the chat is gone); not sent again");
          return done("settled");
        }
        if (stopping) return done();
        // Once while sends fail (the first of an outage): not a line for every notice made while Telegram is down.
        if (tries === 0 && !outage) {
          outage = true;
          const err = e instanceof GrammyError ? { name: e.name, code: e.error_code } : { name: (e as Error).name };
          o.log.warn({ userKey: n.userKey, kind: n.notice.kind, err }, "notification not delivered yet; tried again (it may reach the user twice if Telegram took it)");
        }
        send.timer = setTimeout(() => attempt(tries + 1), retryDelay(tries, e));
        failing.add(send);
        trim();
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
        s.letGo();
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
      tellGivenUp();
      if (unsent > 0) o.log.warn({ unsent }, "notices not sent before the stop: not acknowledged, so the engine keeps them for the next bot (or its next start)");
      return unsent;
    },
  };
}
