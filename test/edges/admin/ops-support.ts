// The admin edge for the ops-* tests, over real TLS on 127.0.0.1: one operator, a JSON API request with a fresh TOTP
// code each time, and a console page read with a signed-in session (as a security key's login leaves it).
import { join } from "node:path";
import type { Test } from "tap";
import { mtls, type Res } from "../../support/https.ts";
import { buildAdmin, listenAdmin } from "../../../src/edges/admin/server.ts";
import { OperatorStore, addOperator, totpFor } from "../../../src/edges/admin/operators.ts";
import { AuditLog } from "../../../src/edges/admin/audit.ts";
import type { AdminPort } from "../../../src/edges/admin/port.ts";
import { Sessions, COOKIE } from "../../../src/edges/admin/console/session.ts";
import { ensurePki, readPem } from "../../../src/tls/certs.ts";
import type { Config } from "../../../src/config.ts";
import type { EncryptedStore } from "../../../src/store/db.ts";
import { createLogger } from "../../../src/log.ts";

export interface OpsEdge {
  audit: AuditLog;
  /** The admin edge's log lines (warn and above). */
  lines: Array<Record<string, unknown> & { msg: string; level: number }>;
  /** A JSON API request (a JSON body for a POST). */
  api(path: string, o?: { method?: string; body?: unknown }): Promise<Res>;
  /** A console page, signed in. */
  page(path: string): Promise<Res>;
  /** A console form post, signed in, as its page sends it (the session's CSRF token, the console's origin). */
  form(path: string, fields: Record<string, string>): Promise<Res>;
}

export async function opsEdge(t: Test, o: { config: Config; store: EncryptedStore; port: AdminPort }): Promise<OpsEdge> {
  const dir = t.testdir(), pki = join(dir, "pki");
  await ensurePki(pki, { admin: "127.0.0.1", internal: "127.0.0.1" });
  const operators = new OperatorStore(o.store);
  const alice = await addOperator({ pkiDir: pki, store: operators, name: "alice", out: join(dir, "operator-alice") });
  const op = (await operators.get(alice.fingerprint))!;
  const audit = new AuditLog(o.store);
  const lines: OpsEdge["lines"] = [];
  const log = createLogger({ level: "warn", destination: { write: (l: string) => void lines.push(JSON.parse(l)) } });
  let now = Date.now();
  const sessions = new Sessions(15 * 60_000, Date.now);
  const config = { ...o.config, admin: { ...o.config.admin, console: { ...o.config.admin.console, enabled: true } } };
  const app = await buildAdmin({ config, log, tls: { ...readPem(pki, "admin-server"), ca: readPem(pki, "operators-ca").cert }, operators, audit, port: o.port, clock: () => now, consoleSessions: sessions });
  const port = await listenAdmin(app, config);
  t.teardown(() => app.close());
  const ca = readPem(pki, "admin-server-ca").cert, cert = readPem(alice.dir, "alice");
  const session = sessions.open(alice.fingerprint, "alice", true, "key-alice");
  return {
    audit, lines,
    api(path, r = {}) {
      const body = r.body === undefined ? undefined : JSON.stringify(r.body);
      // Each TOTP code is good once: the next 30-second step for each request.
      const code = totpFor(op).generate({ timestamp: (now += 30_000) });
      return mtls(port, ca, path, { client: cert, ...(r.method ? { method: r.method } : {}), ...(body ? { body } : {}), headers: { "x-totp": code, ...(body ? { "content-type": "application/json" } : {}) } });
    },
    page: (path) => mtls(port, ca, path, { client: cert, headers: { cookie: `${COOKIE}=${session.id}` } }),
    form: (path, fields) => mtls(port, ca, path, {
      client: cert, method: "POST", body: new URLSearchParams({ _csrf: session.csrf, ...fields }).toString(),
      headers: { cookie: `${COOKIE}=${session.id}`, origin: `https://localhost:${port}`, "content-type": "application/x-www-form-urlencoded" },
    }),
  };
}
