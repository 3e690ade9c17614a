// A request that fails inside the engine is logged with what was asked: the relay method on the internal API, the
// route and the operator on the admin edge. The caller is told only that it failed.
import t from "tap";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { mtls } from "../support/https.ts";
import { buildAdmin, listenAdmin } from "../../src/edges/admin/server.ts";
import { OperatorStore, addOperator, totpFor } from "../../src/edges/admin/operators.ts";
import { AuditLog } from "../../src/edges/admin/audit.ts";
import type { AdminPort } from "../../src/edges/admin/port.ts";
import { buildInternalEdge, listenInternal } from "../../src/edges/internal/server.ts";
import { createCA, ensurePki, issue, readPem } from "../../src/tls/certs.ts";
import { EncryptedStore } from "../../src/store/db.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { loadConfig } from "../../src/config.ts";
import { createLogger } from "../../src/log.ts";
import type { Relay } from "../../src/relay.types.ts";

type Line = { level: number; msg: string; [k: string]: unknown };
function capture() {
  const lines: Line[] = [];
  return { lines, log: createLogger({ level: "info", destination: { write: (s: string) => void lines.push(JSON.parse(s) as Line) } }) };
}

t.test("internal API: a relay call that throws is logged with its method", async (t) => {
  const ca = await createCA("internal-test");
  const server = await issue(ca, { name: "engine", kind: "server", hosts: ["localhost", "127.0.0.1"] });
  const client = await issue(ca, { name: "bot", kind: "client" });
  const relay = {
    info: () => ({ network: "regtest", confirmations: 1, draining: false }),
    onNotification: () => () => undefined,
    balance: async () => { throw new Error("the wallet registry is gone"); },
  } as unknown as Relay;
  const { lines, log } = capture();
  const app = await buildInternalEdge({ relay, log, tls: { key: server.key, cert: server.cert, ca: ca.cert } });
  const config = loadConfig({ env: {}, overrides: {} });
  const port = await listenInternal(app, { ...config, internal: { ...config.internal, host: "127.0.0.1", port: 0 } });
  t.teardown(() => app.close());
  const r = await mtls(port, ca.cert, "/relay/balance", { client, method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ args: ["u_aaaaaaaaaaaa"] }) });
  t.equal(r.status, 500, r.body);
  t.notMatch(r.body, /registry/, "the bot is not told the engine's insides");
  t.match(lines.find((l) => l.msg === "internal relay call failed"), { level: 50, method: "balance", err: /registry is gone/ });
});

t.test("admin edge: a request that fails is logged with its route and operator", async (t) => {
  const dir = t.testdir();
  const store = await EncryptedStore.open({ path: join(dir, "store"), keyring: new KeyRing(new Map([[1, randomBytes(32)]]), 1), sync: false });
  t.teardown(() => store.close());
  const pki = join(dir, "pki");
  await ensurePki(pki, { admin: "127.0.0.1", internal: "127.0.0.1" });
  const operators = new OperatorStore(store);
  const alice = await addOperator({ pkiDir: pki, store: operators, name: "alice", out: join(dir, "operator-alice") });
  const port = { solvency: async () => { throw new Error("the node actor is gone"); } } as unknown as AdminPort;
  const { lines, log } = capture();
  const config = loadConfig({ env: {}, overrides: {} });
  const app = await buildAdmin({ config, log, tls: { ...readPem(pki, "admin-server"), ca: readPem(pki, "operators-ca").cert }, operators, audit: new AuditLog(store), port });
  const listening = await listenAdmin(app, { ...config, admin: { ...config.admin, host: "127.0.0.1", port: 0 } });
  t.teardown(() => app.close());
  const op = (await operators.get(alice.fingerprint))!;
  const r = await mtls(listening, readPem(pki, "admin-server-ca").cert, "/solvency", { client: readPem(alice.dir, "alice"), headers: { "x-totp": totpFor(op).generate() } });
  t.equal(r.status, 500, r.body);
  t.notMatch(r.body, /node actor/, "the operator's client is not told the engine's insides (the log has them)");
  // A read: it is told that nothing changed (only a failed action may have been applied in part).
  t.match(r.body, /this read changed nothing/);
  t.match(lines.find((l) => l.msg === "admin request failed"), { level: 50, route: "/solvency", method: "GET", operator: "alice", err: /node actor is gone/ });
});
