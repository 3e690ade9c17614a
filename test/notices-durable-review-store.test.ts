// The engine's kept notices (held.ts, KeptNotices) when one record in the store cannot be opened (a flipped byte: it
// fails authentication): it is deleted, counted in one log line, and the records after it are read and sent. A real
// encrypted store (LevelDB) on a temporary directory.
import t from "tap";
import { EncryptedStore } from "../src/store/db.ts";
import { KeyRing } from "../src/store/keyring.ts";
import { KeptNotices, NOTICES_NS } from "../src/held.ts";

const ring = () => new KeyRing(new Map([[1, Buffer.alloc(32, 3)]]), 1);

async function onDisk(store: EncryptedStore): Promise<string[]> {
  const keys: string[] = [];
  for await (const k of store.keys(NOTICES_NS)) keys.push(k);
  return keys;
}

t.test("a kept notice that cannot be opened is deleted and counted; those after it are still loaded, and nothing piles up", async (t) => {
  const dir = t.testdir();
  let store = await EncryptedStore.open({ path: dir, keyring: ring() });
  let kept = new KeptNotices<{ i: number }>(store, { warn: () => undefined, info: () => undefined });
  for (let i = 1; i <= 4; i++) kept.add({ i });
  await kept.close();
  const keys = await onDisk(store);
  t.equal(keys.length, 4);
  // The second record damaged on disk.
  const raw = EncryptedStore.recordKey(NOTICES_NS, keys[1]!);
  const v = Buffer.from((await store.db.get(raw)) as Uint8Array);
  v[v.length - 1]! ^= 1;
  await store.db.put(raw, v);
  await store.close();

  const lines: { msg: string; o: Record<string, unknown> }[] = [];
  const log = { warn: (o: object, msg: string) => void lines.push({ msg, o: o as Record<string, unknown> }), info: () => undefined };
  for (let run = 1; run <= 2; run++) {
    store = await EncryptedStore.open({ path: dir, keyring: ring() });
    kept = new KeptNotices<{ i: number }>(store, log);
    const got = await kept.load();
    if (run === 1) {
      t.same(got.map((g) => g.n.i), [1, 3, 4], "the records before and after the damaged one are loaded, in order");
      const unreadable = lines.filter((l) => /could not be opened/.test(l.msg));
      t.equal(unreadable.length, 1, "one log line");
      t.equal(unreadable[0]?.o.unreadable, 1, "counting the damaged record");
      t.equal(unreadable[0]?.o.reason, "tampered", "with its reason as a code");
      t.notMatch(JSON.stringify(lines), /"i"|notices\u0000/, "no value or raw key in the log");
    } else {
      t.same(got.map((g) => g.n.i), [5, 6], "the next start loads what the last left, and nothing else");
      t.equal(lines.length, 1, "nothing unreadable any more");
    }
    for (const g of got) g.release();
    // Made this run and not delivered before its stop.
    kept.add({ i: 3 + 2 * run });
    kept.add({ i: 4 + 2 * run });
    await kept.close();
    t.equal((await onDisk(store)).length, 2, `after run ${run}: only the two left by that run are in the store (the damaged one was deleted)`);
    await store.close();
  }
});
