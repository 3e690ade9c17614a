// The Telegram edge's notice sends while Telegram fails (notifications.ts): the failed sends kept to be tried again are
// bounded (past the bound the oldest waiting is given up, not settled: the engine keeps it), a 429's retry_after is
// honoured, and the retries of sends that failed together are spread out. The relay is the engine's notice hub
// (Notices, as in the all-in-one shape); Telegram is a stand-in api.
import t from "tap";
import { randomBytes } from "node:crypto";
import { GrammyError } from "grammy";
import { Notices } from "../src/held.ts";
import { createLogger } from "../src/log.ts";
import { forwardNotifications } from "../src/edges/telegram/notifications.ts";
import { sealHandle } from "../src/store/sealed.ts";
import type { Notification, Relay } from "../src/relay.types.ts";

type Line = { msg: string; kept?: number; givenUp?: number };

function setup(api: { sendMessage: (chat: number, text: string, other: unknown, signal?: AbortSignal) => Promise<unknown> }, maxKept?: number) {
  const lines: Line[] = [];
  const log = createLogger({ level: "warn", destination: { write: (l: string) => void lines.push(JSON.parse(l) as Line) } });
  const notices = new Notices<Notification>(log);
  const relay = { onNotification: (l: never, o?: { settles?: boolean }) => notices.subscribe(l, o) } as unknown as Relay;
  const handleKey = randomBytes(32);
  const fwd = forwardNotifications({ relay, api: api as never, handleKey, log, ...(maxKept ? { maxKept } : {}) });
  let released = 0;
  const publish = (i: number, chatId = 42) => notices.publish({ userKey: "u_reviewgrowth1", chatHandle: sealHandle(handleKey, { chatId }), notice: { kind: "deposit_seen", amount: BigInt(i) * 1000n, txid: "ab".repeat(32) } } as Notification, () => void released++);
  return { lines, fwd, publish, released: () => released };
}

const unreachable = () => Object.assign(new Error("Network request for 'sendMessage' failed!"), { name: "HttpError" });

t.test("Telegram unreachable: no more failed sends are kept than the bound; the oldest are given up, not settled, counted", async (t) => {
  const calls: Promise<unknown>[] = [];
  const api = { sendMessage: () => {
    const p = Promise.reject(unreachable());
    calls.push(p.catch(() => undefined));
    return p;
  } };
  const { lines, fwd, publish, released } = setup(api, 10);
  for (let i = 1; i <= 30; i++) publish(i);
  // Each failure is handled by the forwarder before this (its handler was attached first).
  await Promise.all(calls);
  t.equal(calls.length, 30, "each tried once");
  t.equal(lines.filter((l) => /not delivered yet/.test(l.msg)).length, 1, "one line for the outage, not one a notice");
  const cap = lines.filter((l) => /more notice sends are failing/.test(l.msg));
  t.equal(cap.length, 1, "one line when the first is given up");
  t.equal(cap[0]?.kept, 10);
  t.equal(await fwd.stop(0), 10, "ten kept to be tried again, left unsent at the stop (before the fix: all 30)");
  t.equal(lines.find((l) => /given up while/.test(l.msg))?.givenUp, 20, "the count of those given up, at the stop");
  t.equal(released(), 0, "none settled: the engine keeps them all");
});

t.test("a 429 beyond auto-retry: tried again no sooner than Telegram's retry_after", async (t) => {
  const at: number[] = [];
  let second!: () => void;
  const again = new Promise<void>((r) => (second = r));
  const api = { sendMessage: () => {
    at.push(Date.now());
    if (at.length === 1) return Promise.reject(new GrammyError("Call to 'sendMessage' failed!", { ok: false, error_code: 429, description: "Too Many Requests: retry after 2", parameters: { retry_after: 2 } }, "sendMessage", {}));
    second();
    return Promise.resolve({});
  } };
  const { fwd, publish, released } = setup(api);
  publish(1);
  await again;
  t.ok(at[1]! - at[0]! >= 1_950, `tried again after ${at[1]! - at[0]!} ms, not before retry_after (2 s; before the fix: 1 s)`);
  await fwd.stop(1_000);
  t.equal(released(), 1, "settled once sent");
});

t.test("sends that failed together are tried again spread out (jitter), not all at once", async (t) => {
  const first = new Map<string, number>();
  const retried: number[] = [];
  let all!: () => void;
  const done = new Promise<void>((r) => (all = r));
  const api = { sendMessage: (_chat: number, text: string) => {
    if (!first.has(text)) {
      first.set(text, Date.now());
      return Promise.reject(unreachable());
    }
    retried.push(Date.now() - first.get(text)!);
    if (retried.length === 10) all();
    return Promise.resolve({});
  } };
  const { fwd, publish, released } = setup(api);
  for (let i = 1; i <= 10; i++) publish(i);
  await done;
  const spread = Math.max(...retried) - Math.min(...retried);
  t.ok(retried.every((ms) => ms >= 450 && ms <= 1_100), `each tried again within half to the whole of the first backoff (${retried.join(", ")} ms)`);
  t.ok(spread >= 50, `the retries are spread over ${spread} ms (before the fix: all about 1 s after their failure)`);
  await fwd.stop(1_000);
  t.equal(released(), 10);
});
