// Identity: keyed argon2id in worker threads, cached by an HMAC of the id.
import t from "tap";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { Identity, pinIdentity } from "../../src/store/identity.ts";
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
