// The sealing worker: what it seals opens with the engine's own envelope code, in the order asked, mixed with
// batches sealed on the calling thread; a worker that dies fails its batches by name and the next one works.
import t, { type Test } from "tap";
import { randomBytes } from "node:crypto";
import { open } from "../../src/store/envelope.ts";
import { Sealer, type EncodedOp } from "../../src/store/sealer.ts";

const key = randomBytes(32);
const ops = (tag: string, n: number): EncodedOp[] => Array.from({ length: n }, (_, i) =>
  i % 7 === 3 ? { type: "del", key: `t\u0000${tag}-${i}` }
    : i % 11 === 5 ? { type: "mark", key: `x\u0000${tag}-${i}` }
      : { type: "put", key: `ns${i % 3}\u0000${tag}-${i}\u0000ü`, text: JSON.stringify({ tag, i, pad: "é".repeat(i % 50) }) });

function check(t: Test, asked: EncodedOp[], sealed: Array<{ type: string; key: string; value?: Buffer }>, keyId: number) {
  t.equal(sealed.length, asked.length);
  let good = 0;
  asked.forEach((op, i) => {
    const s = sealed[i]!;
    if (s.key !== op.key) return;
    // A mark goes to disk as a put of an empty value, unsealed.
    if (op.type === "mark") return void (s.type === "put" && s.value?.length === 0 && good++);
    if (s.type !== op.type) return;
    if (op.text === undefined) return void (s.value === undefined && good++);
    const sep = op.key.indexOf("\u0000");
    if (s.value!.readUInt32BE(1) === keyId && open(key, op.key.slice(0, sep), op.key.slice(sep + 1), s.value!).toString("utf8") === op.text) good++;
  });
  t.equal(good, asked.length, "every value opens under its own namespace and key to its text; deletes and marks pass through");
}

t.test("batches sealed by the worker open with envelope.ts, in the order asked, mixed with ones sealed here", async (t) => {
  const sealer = new Sealer({ dataKey: key, keyId: 7, workerFrom: 64 });
  t.teardown(() => sealer.close());
  const asked = [ops("a", 500), ops("b", 3), ops("c", 200), ops("d", 1)];
  const order: number[] = [];
  const sealed = await Promise.all(asked.map((o, i) => sealer.seal(o).then((s) => (order.push(i), s))));
  t.same(order, [0, 1, 2, 3], "answers come in the order of the requests, small ones included");
  for (let i = 0; i < asked.length; i++) check(t, asked[i]!, sealed[i]!, 7);
  t.same(sealer.stats, { inline: 0, offThread: 4 }, "small batches behind a large one went to the worker too");
  const small = ops("e", 5);
  check(t, small, await sealer.seal(small), 7);
  t.same(sealer.stats, { inline: 1, offThread: 4 }, "a small batch with nothing ahead of it is sealed here");
  const idle = ops("f", 500);
  check(t, idle, await sealer.seal(idle, false), 7);
  t.same(sealer.stats, { inline: 2, offThread: 4 }, "a large batch from a thread with nothing else to do is sealed here");
  const values = sealed.flat().filter((s) => s.value?.length);
  t.equal(new Set(values.map((s) => s.value!.subarray(5, 17).toString("hex"))).size, values.length, "no nonce twice");
});

t.test("a worker that dies fails its batches by name; the next batch gets a new worker", async (t) => {
  const sealer = new Sealer({ dataKey: key, keyId: 1, workerFrom: 1 });
  t.teardown(() => sealer.close());
  await sealer.seal(ops("warm", 5));
  const pending = sealer.seal(ops("lost", 5000));
  await sealer.worker!.terminate();
  await t.rejects(pending, { code: "seal_failed" });
  const again = ops("again", 10);
  check(t, again, await sealer.seal(again), 1);
});

t.test("a batch asked while the sealer closes is sealed, after the ones before it, and close waits for it", async (t) => {
  const sealer = new Sealer({ dataKey: key, keyId: 2, workerFrom: 1 });
  const first = ops("first", 2000);
  const order: string[] = [];
  const a = sealer.seal(first).then((s) => (order.push("first"), s));
  const closing = sealer.close().then(() => order.push("closed"));
  const late = ops("late", 300);
  const b = sealer.seal(late).then((s) => (order.push("late"), s));
  check(t, first, await a, 2);
  check(t, late, await b, 2);
  await closing;
  t.same(order, ["first", "late", "closed"], "in order, and the close came last");
  t.equal(sealer.worker, undefined, "the worker has ended");
});
