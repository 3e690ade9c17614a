// GET /deposits as an operator needs it. Found by an operator review: it answered an arbitrary 100 of the records
// (keyed by a MAC, in no order), with no sign that it was cut and no way to look for one user's or one transaction's
// deposits. Now: newest first, `matched` and `truncated`, filters by user key and txid, unknown parameters refused.
import t from "tap";
import { startTestEngine } from "../../support/engine.ts";
import { enginePort } from "../../../src/edges/admin/engine-port.ts";
import { isRefusal } from "../../../src/domain/refusals.ts";
import { loadConfig } from "../../../src/config.ts";
import { EncryptedStore } from "../../../src/store/db.ts";
import { KeyRing } from "../../../src/store/keyring.ts";
import type { AdminPort } from "../../../src/edges/admin/port.ts";
import { opsEdge } from "./ops-support.ts";

interface Row { userKey: string; txid: string; vout: number; status: string; seenAt: number }

t.test("deposits: newest first, cut at the limit and said so, filtered by user key and txid", async (t) => {
  const te = await startTestEngine();
  t.teardown(() => te.stop());
  const h = await opsEdge(t, { config: te.config, store: te.engine.storage.store, port: enginePort(te.engine) });
  await te.node.ensureMatureCoins();
  const owners = new Map<string, string>();
  const keys: string[] = [];
  for (let i = 0; i < 6; i++) {
    const key = `u_opsdeposits_u${i}`;
    await te.engine.relay.start(key);
    const ad = await te.engine.relay.depositAddress(key);
    if (isRefusal(ad)) throw new Error(ad.message);
    owners.set(ad.address, key);
    keys.push(key);
  }
  // One transaction paying the six, then a later one paying the first user again.
  const many = await te.node.rpc<string>("sendmany", ["", Object.fromEntries([...owners.keys()].map((a) => [a, 0.001]))], "outside");
  await te.mine(1);
  const again = await te.engine.relay.depositAddress(keys[0]!);
  if (isRefusal(again)) throw new Error(again.message);
  const later = await te.node.fund(again.address, "0.002");
  await te.mine(1);

  const all = JSON.parse((await h.api("/deposits")).body) as { deposits: Row[]; matched: number; truncated: boolean };
  t.same([all.deposits.length, all.matched, all.truncated], [7, 7, false], "every deposit, and not cut");
  const cut = JSON.parse((await h.api("/deposits?limit=3")).body) as typeof all;
  t.same([cut.deposits.length, cut.matched, cut.truncated], [3, 7, true], "cut at the limit, and said so");
  t.equal(cut.deposits[0]!.txid, later, "the newest first");
  t.ok(cut.deposits.every((d, i) => i === 0 || d.seenAt <= cut.deposits[i - 1]!.seenAt), "in order of when they were seen");

  const mine = JSON.parse((await h.api(`/deposits?userKey=${keys[0]}`)).body) as typeof all;
  t.same(mine.deposits.map((d) => d.txid).sort(), [many, later].sort(), "one user's deposits");
  t.same([mine.matched, mine.truncated], [2, false]);
  const tx = JSON.parse((await h.api(`/deposits?txid=${many}&status=confirmed`)).body) as typeof all;
  t.same(tx.deposits.map((d) => d.userKey).sort(), [...keys].sort(), "one transaction's outputs");
  t.ok(tx.deposits.every((d) => d.txid === many));

  for (const q of ["?offset=100", "?userKey=nobody", "?txid=abc", "?limit=-1", "?status=confirmed&status=pending"]) {
    t.equal((await h.api(`/deposits${q}`)).status, 400, `${q} is refused, not ignored`);
  }
  const listed = (await h.audit.list(20)).filter((e) => e.action === "read-list").map((e) => e.reason);
  t.ok(listed.includes(`listed them with status confirmed, txid ${many}`), "the filters are on file with the look");

  const page = await h.page(`/console/deposits?userKey=${keys[0]}`);
  t.equal(page.status, 200);
  t.match(page.body, /2 deposit\(s\)\./);
  t.notMatch(page.body, new RegExp(keys[1]!), "only that user's");
  t.match(page.body, new RegExp(`href="/console/deposits\\?status=confirmed&amp;userKey=${keys[0]}"`), "the status links keep the user filter");
});

t.test("the console's deposits page says when the list was cut", async (t) => {
  const store = await EncryptedStore.open({ path: t.testdir(), keyring: new KeyRing(new Map([[1, Buffer.alloc(32, 7)]]), 1) });
  t.teardown(() => store.close());
  const rows = Array.from({ length: 100 }, (_, i) => ({ userKey: `u_opsdepositscut${i}`, txid: "ab".repeat(32), vout: i, amount: "1000", status: "confirmed", confirmations: 1, seenAt: 1_000 + i }));
  const port = { deposits: async () => ({ deposits: rows, matched: 250, truncated: true }) } as unknown as AdminPort;
  const h = await opsEdge(t, { config: loadConfig({ env: {} }), store, port });
  const page = await h.page("/console/deposits");
  t.equal(page.status, 200);
  t.match(page.body, /id="deposits-truncated">Showing the 100 newest of 250 deposits that match: narrow the list/);
});
