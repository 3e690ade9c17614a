// A revocation takes effect on requests already on their way: the operator is checked again once the body is in and
// just before the action runs, a request may take 30 s to arrive (not forever), a revoked operator's console sessions
// end, and two operators revoking each other at once leave one of them. Refused certificates and TOTP pauses are
// audited once each, not per request. The real admin edge over TLS on 127.0.0.1, a real encrypted store, a fake engine.
import t, { type Test } from "tap";
import { connect, type TLSSocket } from "node:tls";
import { join } from "node:path";
import { EncryptedStore } from "../../src/store/db.ts";
import { generateKeyRingFile } from "../../src/store/keyring.ts";
import { buildAdmin, listenAdmin } from "../../src/edges/admin/server.ts";
import { OperatorStore, addOperator, totpFor, type Operator } from "../../src/edges/admin/operators.ts";
import { AuditLog, type AuditEntry } from "../../src/edges/admin/audit.ts";
import { Sessions } from "../../src/edges/admin/console/session.ts";
import type { AdminPort } from "../../src/edges/admin/port.ts";
import { ensurePki, readPem, type Pem } from "../../src/tls/certs.ts";
import { loadConfig } from "../../src/config.ts";
import { silentLogger } from "../../src/log.ts";
import { mtls } from "../support/https.ts";

const COOKIE = "__Host-runigun-console";

/** Tells the test when a request's factors were checked (its headers are in, its body not yet). */
class WatchedOperators extends OperatorStore {
  #totp: Array<() => void> = [];
  #reads: Array<() => void> = [];
  /** The next TOTP check has been answered: the API's onRequest hook is done. */
  nextTotpCheck(): Promise<void> {
    return new Promise((resolve) => this.#totp.push(resolve));
  }
  /** The next read of an operator's record has been answered: the console's onRequest hook is done. */
  nextRead(): Promise<void> {
    return new Promise((resolve) => this.#reads.push(resolve));
  }
  override async checkTotp(...a: Parameters<OperatorStore["checkTotp"]>): Promise<string | undefined> {
    const why = await super.checkTotp(...a);
    this.#totp.shift()?.();
    return why;
  }
  override async get(fp: string): Promise<Operator | undefined> {
    const op = await super.get(fp);
    this.#reads.shift()?.();
    return op;
  }
}

/** Counts appends as they are asked for, and can hold one entry's append until the test lets it go. */
class WatchedAudit extends AuditLog {
  asked: Array<Omit<AuditEntry, "seq" | "at">> = [];
  hold: { match: (e: Omit<AuditEntry, "seq" | "at">) => boolean; reached: () => void; release: Promise<void> } | undefined;
  override async append(e: Omit<AuditEntry, "seq" | "at">): Promise<AuditEntry> {
    this.asked.push(e);
    const h = this.hold;
    if (h?.match(e)) {
      this.hold = undefined;
      h.reached();
      await h.release;
    }
    return super.append(e);
  }
}

async function setup(t: Test, names: string[], o: { requestTimeoutMs?: number } = {}) {
  const dir = t.testdir();
  const store = await EncryptedStore.open({ path: join(dir, "store"), keyring: generateKeyRingFile(join(dir, "master.key")) });
  const pki = join(dir, "pki");
  await ensurePki(pki, { admin: "127.0.0.1", internal: "127.0.0.1" });
  const operators = new WatchedOperators(store);
  const audit = new WatchedAudit(store);
  let now = Date.now();
  const ops: Record<string, { fp: string; cert: Pem; code: () => string; wrong: () => string }> = {};
  for (const name of names) {
    const added = await addOperator({ pkiDir: pki, store: operators, name, out: join(dir, `operator-${name}`) });
    const rec = (await operators.get(added.fingerprint))!;
    ops[name] = {
      fp: added.fingerprint, cert: readPem(added.dir, name),
      // A fresh code for the next 30-second step (each code is good once).
      code: () => totpFor(rec).generate({ timestamp: (now += 30_000) }),
      // A code that is wrong now (none of the three accepted steps'), the clock left where it is.
      wrong: () => {
        const valid = new Set([-30_000, 0, 30_000].map((d) => totpFor(rec).generate({ timestamp: now + d })));
        for (let i = 0; ; i++) if (!valid.has(String(i).padStart(6, "0"))) return String(i).padStart(6, "0");
      },
    };
  }
  const calls: string[] = [];
  const did = (name: string) => async () => (calls.push(name), { ok: name });
  const port = { health: async () => ({ ok: true }), freeze: did("freeze"), unfreeze: did("unfreeze"), pausePayouts: did("pause") } as unknown as AdminPort;
  const sessions = new Sessions(15 * 60_000);
  const config = loadConfig({ env: {} });
  const app = await buildAdmin({
    config, log: silentLogger, tls: { ...readPem(pki, "admin-server"), ca: readPem(pki, "operators-ca").cert }, operators, audit, port,
    clock: () => now, consoleSessions: sessions, ...(o.requestTimeoutMs ? { requestTimeoutMs: o.requestTimeoutMs } : {}),
  });
  const listening = await listenAdmin(app, config);
  t.teardown(async () => {
    await app.close();
    await store.close();
  });
  const ca = readPem(pki, "admin-server-ca").cert;
  /** A whole API request with a fresh TOTP code. */
  const api = (who: string, path: string, body?: unknown) => mtls(listening, ca, path, {
    client: ops[who]!.cert, ...(body ? { method: "POST", body: JSON.stringify(body) } : {}),
    headers: { "x-totp": ops[who]!.code(), ...(body ? { "content-type": "application/json" } : {}) },
  });
  /**
   * A request whose headers (and the body's first byte) are sent now, and the rest of its body when the test says:
   * returns once the edge has checked its factors.
   */
  const stage = async (who: string, path: string, body: unknown, headers: Record<string, string> = {}) => {
    const text = JSON.stringify(body);
    const checked = path.startsWith("/console/") ? operators.nextRead() : operators.nextTotpCheck();
    const s = await new Promise<TLSSocket>((resolve, reject) => {
      const c = connect({ host: "127.0.0.1", port: listening, ca, servername: "localhost", key: ops[who]!.cert.key, cert: ops[who]!.cert.cert }, () => resolve(c));
      c.on("error", reject); // stays on: a connection the edge cuts must not throw in the test
    });
    const answer = new Promise<string>((resolve) => {
      let got = "";
      s.on("data", (d: Buffer) => (got += d.toString()));
      s.on("close", () => resolve(got));
    });
    const head = { ...(path.startsWith("/console/") ? {} : { "x-totp": ops[who]!.code() }), ...headers, "content-type": "application/json", "content-length": String(Buffer.byteLength(text)), connection: "close" };
    s.write(`POST ${path} HTTP/1.1\r\nhost: localhost\r\n${Object.entries(head).map(([k, v]) => `${k}: ${v}\r\n`).join("")}\r\n${text.slice(0, 1)}`);
    await checked;
    const status = answer.then((a) => ({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(a)?.[1] ?? 0), body: a.slice(a.indexOf("\r\n\r\n") + 4) }));
    return { finish: () => s.write(text.slice(1)), answer: status };
  };
  return { app, store, operators, audit, ops, calls, sessions, port: listening, ca, api, stage };
}

const active = async (operators: OperatorStore) => (await operators.list()).filter((o) => !o.revoked).map((o) => o.name).sort();

t.test("requests sent before a revocation and finished after it do nothing", async (t) => {
  const h = await setup(t, ["alice", "bob", "carol"]);
  // alice's certificate and TOTP seed are stolen: two requests wait with their bodies held back.
  const unfreeze = await h.stage("alice", "/wallets/u_victimwallet01/unfreeze", { reason: "staged before the revocation" });
  const revokeCarol = await h.stage("alice", "/operators/carol/revoke", { reason: "staged before the revocation too" });
  const revoked = await h.api("bob", "/operators/alice/revoke", { reason: "alice's laptop was stolen" });
  t.equal(revoked.status, 200, revoked.body);
  unfreeze.finish();
  revokeCarol.finish();
  t.match(await unfreeze.answer, { status: 401, body: /no longer\) an operator's/ }, "the unfreeze is refused");
  t.match(await revokeCarol.answer, { status: 401 }, "the revocation of carol is refused");
  t.same(h.calls, [], "the engine was asked nothing");
  t.same(await active(h.operators), ["bob", "carol"]);
  t.notOk(h.audit.asked.some((e) => e.operator === "alice" && e.action !== "refused-certificate"), "no action of alice's was even recorded as attempted");
});

t.test("an operator revoked while its action's audit entry is written does not act", async (t) => {
  const h = await setup(t, ["alice", "bob"]);
  let reached!: () => void, release!: () => void;
  const atEntry = new Promise<void>((r) => (reached = r));
  h.audit.hold = { match: (e) => e.operator === "alice" && e.action === "freeze", reached, release: new Promise((r) => (release = r)) };
  const freeze = h.api("alice", "/wallets/u_victimwallet01/freeze", { reason: "held at its audit entry" });
  await atEntry;
  t.equal((await h.api("bob", "/operators/alice/revoke", { reason: "alice's laptop was stolen" })).status, 200);
  release();
  t.match(await freeze, { status: 401, body: /no longer\) an operator's/ });
  t.same(h.calls, [], "the freeze did not run");
  const outcome = (await h.audit.list(10)).find((e) => e.action === "freeze:outcome");
  t.match(outcome, { operator: "alice", outcome: /^refused: this certificate is not \(or no longer\) an operator's/ }, "the attempt and its refusal are on file");
});

t.test("two operators revoking each other at once: one of them is revoked, never both", async (t) => {
  const h = await setup(t, ["alice", "bob", "carol"]);
  const a = await h.stage("alice", "/operators/bob/revoke", { reason: "bob went rogue" });
  const b = await h.stage("bob", "/operators/alice/revoke", { reason: "alice went rogue" });
  a.finish();
  b.finish();
  const statuses = [(await a.answer).status, (await b.answer).status].sort();
  t.same(statuses, [200, 401], "the second one is refused: its operator was revoked by the first");
  const left = await active(h.operators);
  t.equal(left.length, 2, `one of alice and bob is left (${left.join(", ")})`);
  t.ok(left.includes("carol"));
});

t.test("a request that holds its body back is cut off at the request timeout", async (t) => {
  const h = await setup(t, ["alice"], { requestTimeoutMs: 300 });
  const held = await h.stage("alice", "/wallets/u_victimwallet01/unfreeze", { reason: "never finished" });
  t.match(await held.answer, { status: 408 }, "408 Request Timeout, and the connection closed");
  t.same(h.calls, []);
  t.equal(h.audit.asked.length, 0, "nothing was recorded: nothing was attempted");
});

t.test("the edge's own request timeout: 30 s, the headers' no longer (Node would swap a longer one in as the request's)", async (t) => {
  const { server } = (await setup(t, ["bob"])).app;
  t.equal(server.requestTimeout, 30_000);
  t.ok(server.headersTimeout <= 30_000, `headers timeout ${server.headersTimeout} ms`);
});

t.test("console: a revocation ends the operator's sessions; a session whose operator is revoked is refused", async (t) => {
  const h = await setup(t, ["alice", "bob", "carol"]);
  const aliceSession = h.sessions.open(h.ops.alice!.fp, "alice", true, "key-a");
  const bobSession = h.sessions.open(h.ops.bob!.fp, "bob", true, "key-b");
  t.equal((await h.api("bob", "/operators/alice/revoke", { reason: "alice's laptop was stolen" })).status, 200);
  t.equal(h.sessions.find(aliceSession.id, h.ops.alice!.fp), undefined, "alice's console session ended with the revocation");
  t.equal(h.sessions.find(bobSession.id, h.ops.bob!.fp), bobSession, "bob's did not");

  // A session that outlived its operator's revocation (revoked while the request was on its way; here, straight in the
  // store): the console's guard refuses it once the body is in, and ends it.
  const carolSession = h.sessions.open(h.ops.carol!.fp, "carol", true, "key-c");
  const post = await h.stage("carol", "/console/wallets/u_victimwallet01/unfreeze", { _csrf: carolSession.csrf, reason: "staged before the revocation", confirm: "yes" }, {
    cookie: `${COOKIE}=${carolSession.id}`, origin: `https://localhost:${h.port}`, "x-csrf-token": carolSession.csrf, accept: "application/json",
  });
  await h.operators.revoke("carol");
  post.finish();
  t.match(await post.answer, { status: 401, body: /no longer\) an operator's/ });
  t.same(h.calls, [], "the unfreeze did not run");
  t.equal(h.sessions.find(carolSession.id, h.ops.carol!.fp), undefined, "carol's session is ended");
});

t.test("audited once: a revoked certificate's first refusal, a TOTP pause's start", async (t) => {
  const h = await setup(t, ["alice", "bob"]);
  t.equal((await h.api("bob", "/operators/alice/revoke", { reason: "alice's laptop was stolen" })).status, 200);
  for (let i = 0; i < 3; i++) t.equal((await h.api("alice", "/health")).status, 401);
  t.match(h.audit.asked.filter((e) => e.action === "refused-certificate"), [{ operator: "alice", target: h.ops.alice!.fp.slice(0, 16), reason: /revoked operator's certificate/ }]);
  t.equal(h.audit.asked.filter((e) => e.action === "refused-certificate").length, 1, "once, however many requests");

  for (let i = 0; i < 7; i++) {
    const r = await mtls(h.port, h.ca, "/health", { client: h.ops.bob!.cert, headers: { "x-totp": h.ops.bob!.wrong() } });
    t.equal(r.status, 401);
  }
  // Five wrong codes start a pause; the two after it fall in it (not checked, so no new pause).
  t.match(h.audit.asked.filter((e) => e.action === "totp-paused"), [{ operator: "bob", target: "bob", reason: /5 wrong TOTP codes within 24 h from certificate [0-9a-f]{16}; codes are not checked for 60 s/ }]);
  // Found by a review: single wrong codes went to the log only, so guesses mixed with the operator's own requests left
  // nothing on file. The first of a window is audited (once: the pause above is the next entry).
  t.match(h.audit.asked.filter((e) => e.action === "totp-wrong-code"), [{ operator: "bob", target: "bob", reason: /the first from certificate [0-9a-f]{16} within 24 h/ }]);
  t.notOk(JSON.stringify(h.audit.asked).includes(h.ops.bob!.fp), "the fingerprint only shortened");
});
