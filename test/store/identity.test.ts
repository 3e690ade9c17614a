// Identity: keyed argon2id in worker threads, cached by an HMAC of the id.
import t, { type Test } from "tap";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { Identity, pinIdentity } from "../../src/store/identity.ts";
import { createLogger } from "../../src/log.ts";
import { openHandle, sealHandle } from "../../src/store/sealed.ts";

const params = { timeCost: 2, memoryKiB: 8192, parallelism: 1, cacheSize: 100 };

t.test("same id, same key; another pepper, another key; the format is compact", async (t) => {
  const a = new Identity({ ...params, pepper: "pepper-one-0123456789" });
  const b = new Identity({ ...params, pepper: "pepper-two-0123456789" });
  t.teardown(async () => (await a.close(), await b.close()));
  const k1 = await a.userKey(123456789);
  t.match(k1, /^u_[A-Za-z0-9_-]{22}$/);
  t.equal(await a.userKey("123456789"), k1, "number and string ids agree");
  t.not(await b.userKey(123456789), k1);
  t.not(await a.userKey(123456790), k1);
  await t.rejects(a.userKey("-5"), { code: "bad_input" });
  await t.rejects(a.userKey("12ab"), { code: "bad_input" });
  t.throws(() => new Identity({ ...params, pepper: "short" }), /at least 16 bytes/);
});

t.test("a cached lookup is at least 100x faster, and derivation does not block the event loop", async (t) => {
  const id = new Identity({ ...params, memoryKiB: 19456, pepper: "pepper-three-0123456789" });
  t.teardown(() => id.close());
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  let start = performance.now();
  const key = await id.userKey(42);
  const cold = performance.now() - start;
  clearInterval(timer);
  t.ok(ticks > 5, `the event loop ticked ${ticks} times during a ${cold.toFixed(0)} ms derivation`);
  start = performance.now();
  for (let i = 0; i < 1000; i++) await id.userKey(42);
  const warm = (performance.now() - start) / 1000;
  t.equal(await id.userKey(42), key);
  t.ok(cold / warm >= 100, `cold ${cold.toFixed(1)} ms vs cached ${(warm * 1000).toFixed(1)} µs`);
});

t.test("chat handles are sealed with the edge's key", async (t) => {
  const key = Buffer.alloc(32, 9);
  const sealed = sealHandle(key, { chatId: 5550001234 });
  t.notMatch(sealed, /5550001234/);
  t.same(openHandle(key, sealed), { chatId: 5550001234 });
  t.throws(() => openHandle(Buffer.alloc(32, 1), sealed), { code: "tampered" });
  t.equal(sealHandle(key, { chatId: 5550001234 }), sealed, "the same handle seals to the same text (the engine sees \"unchanged\")");
  t.not(sealHandle(key, { chatId: 5550001235 }), sealed, "another handle does not");
  t.not(sealHandle(Buffer.alloc(32, 8), { chatId: 5550001234 }), sealed, "nor the same handle under another edge key");
});

t.test("the identity settings are pinned to the data directory: other settings (every user a new, empty wallet) refuse to start", async (t) => {
  const dir = t.testdir();
  const start = async (o: Partial<typeof params> & { pepper: string }) => {
    const id = new Identity({ ...params, ...o });
    try {
      await pinIdentity(id, dir);
    } finally {
      await id.close();
    }
  };
  await start({ pepper: "pepper-one-0123456789" });
  t.equal((statSync(join(dir, "identity.pin")).mode & 0o777).toString(8), "600", "the check value is written privately");
  await start({ pepper: "pepper-one-0123456789" });
  t.pass("the same settings start again");
  await t.rejects(start({ pepper: "pepper-one-0123456789", timeCost: 3 }), { code: "wrong_key", message: /new, empty wallet/ }, "another cost");
  await t.rejects(start({ pepper: "pepper-two-0123456789" }), { code: "wrong_key" }, "another pepper");
  t.notMatch(readFileSync(join(dir, "identity.pin"), "utf8"), /u_/, "no user key in the file");
});

t.test("the derivation queue is bounded: beyond it a lookup is refused at once as busy; one id being derived is derived once", async (t) => {
  const id = new Identity({ ...params, pepper: "pepper-four-0123456789", maxQueued: 2 });
  t.teardown(() => id.close());
  const a = id.userKey(1001), b = id.userKey(1002);
  // Before: a third (and a thousandth) lookup joined the one worker's queue, each waiting for all before it.
  await t.rejects(id.userKey(1003), { name: "IdentityBusy", code: "busy", message: /busy.*try again in a moment/ }, "a third waiting derivation is refused");
  t.equal(await id.userKey(1001), await a, "a lookup of an id already being derived waits for that derivation, and is no new one in the queue");
  await b;
  t.equal(id.stats.derivations, 2, "1001 derived once");
  t.equal(id.stats.refusedBusy, 1);
  t.match(await id.userKey(1003), /^u_/, "once the queue has room, the refused id is derived");
});

// Worker deaths are simulated the way they reach the identity: the next derivation posted to a worker makes it die (a
// crash: `error` then `exit`; a kill from outside: `exit` only) or vanish unanswered (a hung worker). Identity's own
// workers are private, so the hook sits on Worker.prototype for the length of one test, and takes only derivation
// requests (they carry the pepper): Node's module loader posts to its hooks thread through the same prototype (with a
// transfer list), and a fault injected there (an import made meanwhile) killed the loader and threw an `error` nobody
// listens to.
type Fault = "crash" | "killed" | "silent";
function injectFaults(t: Test): { next: Fault[]; always?: Fault } {
  const faults: { next: Fault[]; always?: Fault } = { next: [] };
  const post = Worker.prototype.postMessage;
  Worker.prototype.postMessage = function (this: Worker, m: unknown, transfer?: Parameters<Worker["postMessage"]>[1]) {
    if (m === null || typeof m !== "object" || !("pepper" in m)) return post.call(this, m, transfer);
    const fault = faults.next.shift() ?? faults.always;
    if (fault === "silent") return;
    post.call(this, m);
    if (fault === undefined) return;
    void this.terminate();
    // Not once its identity has closed and stopped listening (a crash injected by a test's last lookup, whose
    // setImmediate ran after that test's teardown, was an uncaught error in the next test).
    if (fault === "crash") setImmediate(() => this.listenerCount("error") > 0 && this.emit("error", new Error("worker died (simulated)")));
  };
  t.teardown(() => void (Worker.prototype.postMessage = post));
  return faults;
}

function logLines(): { log: ReturnType<typeof createLogger>; lines: Record<string, unknown>[]; text: () => string } {
  const lines: Record<string, unknown>[] = [];
  let raw = "";
  const log = createLogger({ level: "info", destination: { write: (l: string) => void (raw += l, lines.push(JSON.parse(l))) } });
  return { log, lines, text: () => raw };
}

/**
 * A failure bound, not a synchronisation: before the fix, lookups after a worker's death never settled. Generous, as a
 * worker started under tap loads its TypeScript hooks too and takes seconds to come up on a busy machine.
 */
function answered<T>(p: Promise<T>, what: string, ms = 60_000): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

const PEPPER = "pepper-five-0123456789";
// Ids with digits that appear nowhere else in a log line, to show none is logged.
const A = 7770001111, B = 7770002222, C = 7770003333;

for (const fault of ["crash", "killed"] as const) {
  t.test(`a worker that dies (${fault}) is replaced: only its own lookups are refused, as busy; new and repeated lookups are answered`, async (t) => {
    const faults = injectFaults(t);
    const { log, lines, text } = logLines();
    const id = new Identity({ ...params, pepper: PEPPER, workers: 2, log });
    t.teardown(() => id.close());
    const first = id.userKey(A);
    faults.next.push(fault);
    const dying = id.userKey(B);
    await t.rejects(answered(dying, "the lookup on the dying worker"), { name: "IdentityBusy", code: "busy", message: /lost with its worker; try again in a moment/ });
    const keyA = await answered(first, "the lookup on the other worker");
    t.match(keyA, /^u_/, "the other worker's lookup is answered, not refused with it");
    // Before: the dead worker stayed in the round-robin and B stayed in #deriving, so these never settled.
    const keyB = await answered(id.userKey(B), "the same id again");
    t.match(keyB, /^u_/, "the same id, looked up again, is derived");
    t.match(await answered(id.userKey(C), "a new id"), /^u_/, "a new id is derived");
    const many = await answered(Promise.all(Array.from({ length: 12 }, (_, i) => id.userKey(8880000000 + i))), "12 more ids");
    t.equal(new Set([keyA, keyB, ...many]).size, 14, "and a queue's worth more, on both workers");
    t.equal(id.stats.workerDeaths, 1, "one death, whether it emitted error and exit or exit alone");
    const alerts = lines.filter((l) => l.alert === true);
    t.equal(alerts.length, 1, "one alert line for the death");
    t.match(alerts[0], { level: 50, replacedInMs: 0, msg: /identity KDF worker stopped/ });
    t.notMatch(text(), /777000|888000/, "no Telegram id in the log");
    t.notMatch(text(), new RegExp(PEPPER), "nor the pepper");
  });
}

t.test("a worker that does not answer in time: the lookup is refused, its worker replaced, and the id's next lookup derived", async (t) => {
  const faults = injectFaults(t);
  const { log, lines, text } = logLines();
  // The limit counts from a worker's start (its `online`), so a replacement taking seconds to start under tap is not
  // stuck: only the dropped request times out.
  const id = new Identity({ ...params, pepper: PEPPER, timeoutMs: 1_000, log });
  t.teardown(() => id.close());
  faults.next.push("silent");
  await t.rejects(answered(id.userKey(A), "the unanswered lookup"), { name: "IdentityBusy" }, "refused after the timeout, not left hanging");
  t.match(await answered(id.userKey(A), "the same id again"), /^u_/, "the same id's next lookup is derived (it left #deriving)");
  t.match(lines.filter((l) => l.alert === true), [{ msg: /no answer within 1000 ms/ }]);
  t.notMatch(text(), /777000/, "no Telegram id in the log");
});

t.test("workers that keep dying are replaced after a growing pause, never in a loop; meanwhile lookups are refused at once", async (t) => {
  const faults = injectFaults(t);
  const { log, lines } = logLines();
  const id = new Identity({ ...params, pepper: PEPPER, log });
  t.teardown(() => id.close());
  faults.always = "crash";
  await t.rejects(answered(id.userKey(A), "first"), { name: "IdentityBusy" });
  await t.rejects(answered(id.userKey(B), "second"), { name: "IdentityBusy" });
  t.same(lines.filter((l) => l.alert === true).map((l) => l.replacedInMs), [0, 100], "the first death is replaced at once, the next after a pause");
  await t.rejects(id.userKey(C), { name: "IdentityBusy", message: /replacing its workers/ }, "no worker during the pause: refused at once");
  t.equal(id.stats.workerDeaths, 2, "and no worker was started and killed meanwhile");
});
