// The Bot API stand-in in a process of its own, for the Telegram bench: Telegram's servers are not in the
// engine's process, so their cost must not be measured as the engine's. Prints its API root and token as JSON.
//
// The bench drives it with one JSON line per load on stdin: {"load": N, "users": U, "firstUser": F} queues N
// "/balance" messages from U private chats (served to the bot's long polling as Telegram would), and once the bot
// has answered every one of them this prints {"answered": N, "ms", "p50_ms", "p99_ms"}: the time from the first
// update handed out to the last answer, and each update's time from being handed out to its chat's answer
// (answers come in order per chat: the edge sequentializes each chat).
import { createInterface } from "node:readline";
import type { Update } from "grammy/types";
import { BotApiStandIn } from "../../test/support/bot-api.ts";
import { percentile } from "./report.ts";

const api = new BotApiStandIn();
await api.start();
process.stdout.write(JSON.stringify({ apiRoot: api.apiRoot, token: api.token }) + "\n");
process.on("SIGTERM", () => void api.stop().then(() => process.exit(0)));

let run: { n: number; answered: number; first: number; last: number; latencies: Float64Array; served: Set<number>; waiting: Map<number, number[]> } | undefined;

api.onServe = (updates: Update[]) => {
  if (!run) return;
  const now = performance.now();
  for (const u of updates) {
    if (!u.message || run.served.has(u.update_id)) continue;
    run.served.add(u.update_id);
    if (run.first === 0) run.first = now;
    const chat = u.message.chat.id;
    const q = run.waiting.get(chat) ?? [];
    q.push(now);
    run.waiting.set(chat, q);
  }
};

api.onCall = (c) => {
  if (!run || c.method !== "sendMessage") return;
  const servedAt = run.waiting.get(Number(c.params.chat_id))?.shift();
  if (servedAt === undefined) return;
  const now = performance.now();
  run.latencies[run.answered++] = now - servedAt;
  run.last = now;
  if (run.answered < run.n) return;
  const lat = run.latencies.sort();
  process.stdout.write(JSON.stringify({ answered: run.n, ms: run.last - run.first, p50_ms: percentile(lat, 50), p99_ms: percentile(lat, 99) }) + "\n");
  run = undefined;
};

for await (const line of createInterface({ input: process.stdin })) {
  const { load, users, firstUser } = JSON.parse(line) as { load: number; users: number; firstUser: number };
  run = { n: load, answered: 0, first: 0, last: 0, latencies: new Float64Array(load), served: new Set(), waiting: new Map() };
  for (let i = 0; i < load; i++) api.push(api.message(firstUser + (i % users), "/balance"));
}
