// Reading the whole audit log. Found by an operator review: GET /audit took only `limit` (at most 500), so an entry
// older than the newest 500 (a dashboard polling a list writes one per request) could not be read, though the 500
// answer tells operators to check it; unknown parameters were ignored. On a real encrypted LevelDB store.
import t from "tap";
import { loadConfig } from "../../../src/config.ts";
import { EncryptedStore } from "../../../src/store/db.ts";
import { KeyRing } from "../../../src/store/keyring.ts";
import type { AuditEntry } from "../../../src/edges/admin/audit.ts";
import type { AdminPort } from "../../../src/edges/admin/port.ts";
import { opsEdge } from "./ops-support.ts";

t.test("GET /audit: pages back with `before` and `next`, filters by action and target, refuses unknown parameters", async (t) => {
  const store = await EncryptedStore.open({ path: t.testdir(), keyring: new KeyRing(new Map([[1, Buffer.alloc(32, 3)]]), 1) });
  t.teardown(() => store.close());
  const h = await opsEdge(t, { config: loadConfig({ env: {} }), store, port: {} as AdminPort });
  const freeze = await h.audit.append({ operator: "alice", action: "freeze", target: "u_opsaudit_user01", reason: "night freeze" });
  await h.audit.outcome(freeze, "done");
  for (let i = 0; i < 600; i++) await h.audit.append({ operator: "alice", action: "read-list", target: "/payouts", reason: "listed them with status stuck" });
  const get = async (q: string) => {
    const r = await h.api(`/audit${q}`);
    t.equal(r.status, 200, `${q}: ${r.body.slice(0, 200)}`);
    return JSON.parse(r.body) as { entries: AuditEntry[]; next: number | null };
  };

  const first = await get("?limit=500");
  t.same([first.entries.length, first.entries[0]!.seq, first.entries.at(-1)!.seq, first.next], [500, 602, 103, 103], "the newest 500, and where the next page starts");
  t.notOk(first.entries.some((e) => e.action === "freeze"), "the freeze is older than them");
  const second = await get(`?limit=500&before=${first.next}`);
  t.same([second.entries.length, second.entries[0]!.seq, second.next], [102, 102, null], "the rest, down to the first entry");
  t.match(second.entries.slice(-2), [{ action: "freeze:outcome", outcome: "done" }, { seq: 1, action: "freeze", reason: "night freeze" }], "the freeze is read");

  const byAction = await get("?action=freeze");
  t.same(byAction.entries.map((e) => [e.seq, e.action]), [[2, "freeze:outcome"], [1, "freeze"]], "an action with its outcomes");
  t.equal(byAction.next, null);
  const byTarget = await get("?target=u_opsaudit_user01&limit=1");
  t.same([byTarget.entries.map((e) => e.seq), byTarget.next], [[2], 2], "a target, a page at a time");
  t.same((await get(`?target=u_opsaudit_user01&before=${byTarget.next}`)).entries.map((e) => e.seq), [1]);

  for (const q of ["?offset=500", "?before=ten", "?limit=501x", "?action=Freeze!"]) {
    const r = await h.api(`/audit${q}`);
    t.equal(r.status, 400, `${q} is refused, not ignored`);
  }

  // The console's audit page: the same pages and filters.
  const page = await h.page("/console/audit?limit=500");
  t.equal(page.status, 200);
  t.match(page.body, /<a href="\/console\/audit\?limit=500&amp;before=103" id="audit-older">older →<\/a>/, "a link to the older entries");
  const older = await h.page("/console/audit?limit=500&before=103&action=&target=");
  t.equal(older.status, 200, "empty form fields are no filter");
  t.match(older.body, /night freeze/);
  t.notMatch(older.body, /id="audit-older"/, "nothing older");
  const filtered = await h.page("/console/audit?action=freeze");
  t.match(filtered.body, /<td>freeze<\/td>/);
  t.notMatch(filtered.body, /<td>read-list<\/td>/);
});

t.test("a filtered page reads a bounded number of entries, and says where to go on", async (t) => {
  const store = await EncryptedStore.open({ path: t.testdir(), keyring: new KeyRing(new Map([[1, Buffer.alloc(32, 4)]]), 1) });
  t.teardown(() => store.close());
  const h = await opsEdge(t, { config: loadConfig({ env: {} }), store, port: {} as AdminPort });
  await h.audit.append({ operator: "alice", action: "rescan", target: "100", reason: "cursor lost" });
  for (let i = 0; i < 250; i++) await h.audit.append({ operator: "alice", action: "read-wallet", target: "u_opsaudit_user02", reason: "looked at the wallet" });
  const none = await h.audit.page({ limit: 10, action: "rescan", scan: 100 });
  t.same(none, { entries: [], next: 152 }, "none among the 100 newest: go on below 152");
  const found = await h.audit.page({ limit: 10, action: "rescan", scan: 200, before: 152 });
  t.same([found.entries.map((e) => e.seq), found.next], [[1], null], "found further back; the log's start");
});
