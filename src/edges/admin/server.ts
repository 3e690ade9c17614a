// The admin edge: HTTPS on the VPN address only, two factors on every request — a client certificate from the
// operators' CA (checked by TLS itself, then by fingerprint against the allowlist) and a one-time TOTP code.
// One plugin per resource, JSON schemas on every route, OpenAPI at /openapi.json, and every operator action
// written to the encrypted audit log before it runs. The operator console (/console, console/) rides on the same
// server and certificate check, with a FIDO2 security key instead of TOTP as its second factor.
import type { TLSSocket } from "node:tls";
import Fastify, { type FastifyInstance, type FastifyPluginAsync, type FastifyRequest } from "fastify";
import rateLimit from "@fastify/rate-limit";
import { Type } from "@sinclair/typebox";
import type { Config } from "../../config.ts";
import { bindAllowed } from "../../config.ts";
import type { Logger } from "../../log.ts";
import { isRefusal, refuse, type Refusal } from "../../domain/refusals.ts";
import { auditRead, type AuditLog } from "./audit.ts";
import { NOT_AN_OPERATOR, type Operator, type OperatorStore } from "./operators.ts";
import type { AdminPort } from "./port.ts";
import { consolePlugin } from "./console/index.ts";
import { Sessions } from "./console/session.ts";
import { AuditQuery, NumberText, auditQuery, numberText, type AuditQueryText } from "./schemas.ts";
import { auditList, hardMaxFeeRate, rateReason } from "./console/views.ts";
import { mtlsServer } from "../../tls/mtls.ts";
import { amountUnit, formatBtc, parseAmount } from "../../domain/money.ts";
import { ADJUST_REASON_MAX } from "../../actors/wallet.ts";

export interface AdminOptions {
  config: Config;
  log: Logger;
  tls: { key: string; cert: string; ca: string };
  operators: OperatorStore;
  audit: AuditLog;
  port: AdminPort;
  /** Requests per minute per operator. */
  rateLimit?: number;
  /** The clock TOTP steps are read from (tests move it; each code is good for one request). */
  clock?: () => number;
  /** The console's clock (sessions, enrollment links); the wall clock unless a test sets it. */
  consoleClock?: () => number;
  /** The console's sessions: made here unless a test brings its own (to sign in without a browser). */
  consoleSessions?: Sessions;
  /** How long a request may take to arrive, headers and body (30 s unless a test shortens it). */
  requestTimeoutMs?: number;
}

const isConsolePath = (url: string) => url === "/console" || url.startsWith("/console/") || url.startsWith("/console?");

declare module "fastify" {
  interface FastifyRequest {
    operator?: Operator;
  }
}

const UserKey = Type.String({ pattern: "^u_[A-Za-z0-9_-]{10,64}$" });
const Reason = Type.String({ minLength: 3, maxLength: 500, pattern: "^\\s*\\S\\s*\\S\\s*\\S" }); // at least three visible characters (linear: no nested quantifier)
const AnyObject = Type.Object({}, { additionalProperties: true });
const Status = Type.Optional(Type.String({ pattern: "^[a-z_]{1,20}$" }));
const Txid = Type.String({ pattern: "^[0-9a-f]{64}$" });
/** A query string's parameters: one not declared is refused (400), never ignored (a mistyped filter would list everything). */
const Query = (props: Parameters<typeof Type.Object>[0]) => Type.Object(props, { additionalProperties: false });

/**
 * An adjustment's amount: "-" (a debit) or "+" (a credit), then the amount with its unit ("-0.001 BTC", "+100000 sats").
 * A sign or a unit left out is refused, not guessed: a bare "100000" would be a hundred thousand bitcoin, and a debit
 * typed without its sign a credit.
 */
export function signedAmount(text: string): bigint | Refusal {
  const m = /^\s*([+-])\s*(\S.*)$/.exec(text);
  if (!m) return refuse("bad_amount", 'Start the amount with "-" (a debit) or "+" (a credit): "-0.001 BTC", "+100000 sats".');
  if (amountUnit(m[2]!) === undefined) return refuse("bad_amount", 'Give the amount with its unit, "BTC" or "sats": "-0.001 BTC", "+100000 sats".');
  const sats = parseAmount(m[2]!);
  if (isRefusal(sats)) return sats;
  return m[1] === "-" ? -sats : sats;
}

function fingerprintOf(req: FastifyRequest): string | undefined {
  const cert = (req.raw.socket as TLSSocket).getPeerCertificate?.();
  return cert?.fingerprint256 ? cert.fingerprint256.replace(/:/g, "").toLowerCase() : undefined;
}

export async function buildAdmin(o: AdminOptions): Promise<FastifyInstance> {
  const requestTimeout = o.requestTimeoutMs ?? 30_000;
  const app = Fastify({
    logger: false,
    // TLS 1.3 with the operator's client certificate, and the request limits (tls/mtls.ts). The factors are checked when
    // the headers arrive: without the limits a request could hold its body back for hours and act after its operator
    // was revoked (it is checked again after the body, but the wait has no purpose).
    ...mtlsServer(o.tls, requestTimeout),
    bodyLimit: 16 * 1024,
    // Bad input is refused, never bent into something else: fastify's default validator turns `null` into 0 or false,
    // `"7"` into 7, `[7]` into 7, and drops unknown keys — `{"height": null}` was a rescan from the genesis block.
    // Query strings are text, so their numbers are declared as digits (NumberText) and read in the handler.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false } },
  });
  const log = o.log.child({ edge: "admin" });
  // Set before any plugin is registered: a plugin keeps the error handler it was registered under (set after them,
  // this one was never used for their routes, and a 500 sent the error's own message).
  app.setErrorHandler((err: { validation?: unknown; statusCode?: number; code?: unknown; message: string }, req, reply) => {
    if (err.validation) return reply.code(400).send({ error: `bad request: ${err.message}` });
    if ((err.statusCode ?? 500) < 500) return reply.code(err.statusCode!).send({ error: err.message });
    // The route's pattern (`/wallets/:userKey/freeze`), not its URL: no user key beside what failed.
    const where = { route: req.routeOptions.url ?? "(no route)", method: req.method, operator: req.operator?.name, err: err.message };
    // An actor the request needs has stopped (the payout actor after repeated crashes; every actor while the engine
    // stops): the ask never reached it. Not an internal error to retry: what to do, as /health says it.
    if (err.code === "actor_stopped") {
      log.warn(where, "admin request refused: an actor it needs has stopped");
      return reply.code(503).send({ error: err.message.endsWith(" is not running") ? `${err.message}: the engine is stopping, or the actor stopped after repeated crashes (see GET /health)` : err.message });
    }
    log.error(where, "admin request failed");
    // A read changed nothing, whatever failed in it.
    if (req.method === "GET" || req.method === "HEAD") return reply.code(500).send({ error: "internal error: this read changed nothing; try it again, and if it keeps failing see the engine's log (\"admin request failed\")" });
    // Not "nothing was changed": an action can fail after part of it was written (a full disk after the payout book's
    // record); the operator looks before trying again.
    return reply.code(500).send({ error: "internal error: this request may have been applied in part or in full; check its state (and GET /audit?action=… for its entry and outcome) before trying again" });
  });
  const consoleOn = o.config.admin.console.enabled;
  const routes: Array<{ method: string; url: string; schema?: unknown }> = [];
  app.addHook("onRoute", (r) => {
    for (const m of [r.method].flat()) if (m !== "HEAD") routes.push({ method: m, url: r.url, schema: r.schema });
  });

  // Not per route (the plugin's default): its route hooks run after the factors are checked below, so a request
  // refused for a wrong TOTP code would never be counted. The limit is taken first, in the same hook.
  await app.register(rateLimit, {
    global: false,
    max: o.rateLimit ?? 120,
    timeWindow: 60_000,
    keyGenerator: (req) => fingerprintOf(req) ?? req.ip,
  });
  const limit = app.rateLimit();

  /** The request certificate's operator as stored now, or undefined when there is none or it is revoked. */
  const current = async (req: FastifyRequest): Promise<Operator | undefined> => {
    const fp = fingerprintOf(req);
    const op = fp ? await o.operators.get(fp) : undefined;
    return op && !op.revoked ? op : undefined;
  };
  const notAnOperator = () => Object.assign(new Error(NOT_AN_OPERATOR), { statusCode: 401 });

  // The first refusal of each unknown or revoked certificate since the start is written to the audit log (a stolen
  // certificate still in use); the rest go to the log only. Only certificates from the operators' CA get this far, so
  // the entries are bounded by the certificates ever issued, and the requests cannot flood the store.
  const refusedCertificates = new Set<string>();
  const auditRefusedCertificate = (fp: string, op: Operator | undefined) => {
    if (refusedCertificates.has(fp)) return;
    refusedCertificates.add(fp);
    o.audit.append({ operator: op?.name ?? "(unknown certificate)", action: "refused-certificate", target: fp.slice(0, 16), reason: op ? "a request with a revoked operator's certificate" : "a request with a certificate from the operators' CA that names no operator" })
      .catch((e: unknown) => log.error({ alert: true, err: (e as Error).message }, "a refused certificate could not be recorded in the audit log"));
  };
  // Wrong TOTP codes, on file: the first from a certificate in each 24 h window, and each pause (the pauses double, so
  // wrong codes cannot flood the store). Never the code itself; the fingerprint shortened as in the logs.
  const unwatch = o.operators.watchTotpFailures((e) => {
    const paused = e.pauseMs > 0;
    o.audit.append({
      operator: e.name, action: paused ? "totp-paused" : "totp-wrong-code", target: e.name,
      reason: paused
        ? `${e.wrongCodes} wrong TOTP codes within 24 h from certificate ${e.fingerprint}; codes are not checked for ${Math.round(e.pauseMs / 1000)} s`
        : `a wrong TOTP code, the first from certificate ${e.fingerprint} within 24 h`,
    }).catch((err: unknown) => log.error({ alert: true, err: (err as Error).message, operator: e.name }, "a wrong TOTP code could not be recorded in the audit log"));
  });
  app.addHook("onClose", async () => unwatch());

  // Both factors, on every request. TLS already refused anyone without a certificate from the operators' CA.
  app.addHook("onRequest", async (req, reply) => {
    if ((req.routeOptions.config as { rateLimit?: unknown }).rateLimit !== false) await limit.call(app, req, reply);
    const fp = fingerprintOf(req);
    const op = fp ? await o.operators.get(fp) : undefined;
    if (!op || op.revoked) {
      log.warn({ fingerprint: fp?.slice(0, 16) }, "admin request with an unknown or revoked certificate");
      if (fp) auditRefusedCertificate(fp, op);
      return reply.code(401).send({ error: NOT_AN_OPERATOR });
    }
    req.operator = op;
    // The console's second factor is a security key, checked by its own guard (console/index.ts); TOTP stays the
    // API's. The certificate check above is the same for both.
    if (consoleOn && isConsolePath(req.url)) return;
    const why = await o.operators.checkTotp(op, req.headers["x-totp"] as string | undefined, (o.clock ?? Date.now)());
    if (why) {
      log.warn({ operator: op.name }, "admin request refused: TOTP");
      delete req.operator;
      return reply.code(401).send({ error: why });
    }
  });

  // Again once the body is in: a request whose headers came before its operator was revoked, and whose body came
  // after, must not act for them. The console's guard (console/index.ts) does the same for its routes, earlier.
  app.addHook("preHandler", async (req, reply) => {
    const op = await current(req);
    if (!op) {
      log.warn({ fingerprint: fingerprintOf(req)?.slice(0, 16) }, "admin request refused: its operator was revoked while it arrived");
      return reply.code(401).send({ error: NOT_AN_OPERATOR });
    }
    req.operator = op;
  });

  const send = (r: unknown | Refusal) => (isRefusal(r) ? { error: r.message, code: r.code } : r);

  const reads: FastifyPluginAsync = async (f) => {
    f.get("/health", { schema: { response: { 200: AnyObject } } }, () => o.port.health());
    f.get("/node", { schema: { response: { 200: AnyObject } } }, () => o.port.node());
    f.get("/actors", { schema: { response: { 200: AnyObject } } }, () => o.port.actors());
    f.get("/solvency", { schema: { response: { 200: AnyObject } } }, () => o.port.solvency());
    f.get("/wallets/:userKey", {
      schema: { params: Type.Object({ userKey: UserKey }), querystring: Query({ page: Type.Optional(NumberText) }) },
    }, async (req, reply) => {
      const { userKey } = req.params as { userKey: string };
      await auditRead(log, o.audit, req.operator!.name, userKey);
      const r = await o.port.wallet(userKey, numberText((req.query as { page?: string }).page, 0, 100_000));
      if (isRefusal(r)) return reply.code(404).send(send(r));
      return r;
    });
    // Every user's keys, addresses and amounts at once: on file like a look at one wallet, one entry per request.
    f.get("/payouts", { schema: { querystring: Query({ status: Status }) } }, async (req) => {
      const { status } = req.query as { status?: string };
      await auditList(log, o.audit, req.operator!.name, "/payouts", status);
      return o.port.payouts(status);
    });
    // Newest first, at most `limit` (100 by default, 1000 at most); `matched` and `truncated` say whether more matched.
    f.get("/deposits", { schema: { querystring: Query({ status: Status, userKey: Type.Optional(UserKey), txid: Type.Optional(Txid), limit: Type.Optional(NumberText) }) } }, async (req) => {
      const q = req.query as { status?: string; userKey?: string; txid?: string; limit?: string };
      await auditList(log, o.audit, req.operator!.name, "/deposits", q.status, { userKey: q.userKey, txid: q.txid });
      return o.port.deposits({ ...(q.status ? { status: q.status } : {}), ...(q.userKey ? { userKey: q.userKey } : {}), ...(q.txid ? { txid: q.txid } : {}), limit: Math.max(1, numberText(q.limit, 100, 1000)) });
    });
    f.get("/metrics", async (_req, reply) => reply.type("text/plain; version=0.0.4").send(await o.port.metrics()));
    // Newest first; `next` is the `before` of the page after (null: the log's first entry is in this one).
    f.get("/audit", { schema: { querystring: AuditQuery } }, async (req) => o.audit.page(auditQuery(req.query as AuditQueryText)));
  };

  /** Runs an operator action: audited first, then done, then its outcome audited. */
  // The action is recorded before it runs (no record, no action); its outcome after. An outcome that cannot be recorded
  // (the store failing meanwhile) never turns a done action into an error answer: the operator would retry a fee bump.
  const act = async (req: FastifyRequest, action: string, target: string, reason: string, run: () => Promise<unknown>) => {
    const entry = await o.audit.append({ operator: req.operator!.name, action, target, reason });
    log.info({ operator: req.operator!.name, action, target }, "operator action");
    const record = (outcome: string) => o.audit.outcome(entry, outcome).catch((e: unknown) => {
      log.error({ alert: true, err: (e as Error).message, operator: req.operator!.name, action, target, outcome }, "an operator action's outcome could not be recorded in the audit log");
    });
    // Checked once more after the entry's write, with nothing awaited between this check and the action: an operator
    // revoked while the request was on its way (or its entry was being written) acts no more.
    if (!(await current(req))) {
      log.warn({ operator: req.operator!.name, action, target }, "operator action refused: its operator was revoked meanwhile");
      await record(`refused: ${NOT_AN_OPERATOR}`);
      throw notAnOperator();
    }
    let r: unknown;
    try {
      r = await run();
    } catch (e) {
      // 401: the operator was found revoked in the action's own turn (revokeOperator), so it did not act.
      await record(`${(e as { statusCode?: number }).statusCode === 401 ? "refused" : "failed"}: ${(e as Error).message}`);
      throw e;
    }
    await record(isRefusal(r) ? `refused: ${r.message}` : "done");
    return r;
  };

  const sessions = consoleOn ? (o.consoleSessions ?? new Sessions(o.config.admin.console.sessionTtlMs, o.consoleClock ?? Date.now)) : undefined;

  /**
   * One revocation at a time: two operators revoking each other at once must not leave nobody, nor both revoked (the
   * one revoked first no longer acts). The revoked operator's console sessions end with it.
   */
  let revoking: Promise<unknown> = Promise.resolve();
  const revokeOperator = (name: string, by: Operator): Promise<{ revoked: string } | Refusal> => {
    const turn = revoking.then(async () => {
      const active = (await o.operators.list()).filter((op) => !op.revoked);
      if (!active.some((op) => op.fingerprint === by.fingerprint)) throw notAnOperator();
      if (!active.some((op) => op.name === name)) return refuse("not_found", `No active operator ${name}.`);
      if (active.every((op) => op.name === name)) {
        return refuse("not_allowed", `${name} is the last active operator: revoking it here would lock every operator out. Add another first (runigun keys operator add NAME --out DIR), or revoke it with the engine stopped (runigun keys operator revoke ${name}).`);
      }
      await o.operators.revoke(name);
      for (const op of active) if (op.name === name) sessions?.closeAllOf(op.fingerprint);
      // An alert, from the API and the console alike: one stolen certificate (and its TOTP or security key) could revoke
      // the other operators.
      log.error({ alert: true, operator: by.name, revoked: name }, "an operator's certificate was revoked online; if nobody meant to, stop the engine and check the operators (runigun keys operator …)");
      return { revoked: name };
    });
    revoking = turn.catch(() => undefined);
    return turn;
  };

  const actions: FastifyPluginAsync = async (f) => {
    // A lost or compromised operator certificate, revoked while the engine runs: refused from the next request on
    // (every request reads the operator's record), console sessions included.
    f.post("/operators/:name/revoke", { schema: { params: Type.Object({ name: Type.String({ pattern: "^[a-z][a-z0-9_-]{1,31}$" }) }), body: Type.Object({ reason: Reason }, { additionalProperties: false }) } },
      async (req, reply) => {
        const { name } = req.params as { name: string };
        const r = await act(req, "revoke-operator", name, (req.body as { reason: string }).reason, () => revokeOperator(name, req.operator!));
        return isRefusal(r) ? reply.code(409).send(send(r)) : r;
      });
    f.post("/wallets/:userKey/freeze", { schema: { params: Type.Object({ userKey: UserKey }), body: Type.Object({ reason: Reason }, { additionalProperties: false }) } },
      async (req, reply) => {
        const { userKey } = req.params as { userKey: string };
        const { reason } = req.body as { reason: string };
        const r = await act(req, "freeze", userKey, reason, () => o.port.freeze(userKey, reason, req.operator!.name));
        return isRefusal(r) ? reply.code(r.code === "not_found" ? 404 : 409).send(send(r)) : r;
      });
    f.post("/wallets/:userKey/unfreeze", { schema: { params: Type.Object({ userKey: UserKey }), body: Type.Object({ reason: Reason }, { additionalProperties: false }) } },
      async (req, reply) => {
        const { userKey } = req.params as { userKey: string };
        const r = await act(req, "unfreeze", userKey, (req.body as { reason: string }).reason, () => o.port.unfreeze(userKey, req.operator!.name));
        return isRefusal(r) ? reply.code(r.code === "not_found" ? 404 : 409).send(send(r)) : r;
      });
    // An operator's correction of a wallet's books (engine.ts, adjustWallet), once per id. The reason goes to the audit
    // log and the wallet's record; its user sees "adjusted by support" and the amount.
    f.post("/wallets/:userKey/adjust", {
      schema: {
        params: Type.Object({ userKey: UserKey }),
        body: Type.Object({
          id: Type.String({ minLength: 1, maxLength: 128, pattern: "^[\\w:.-]+$" }),
          amount: Type.String({ minLength: 2, maxLength: 48 }),
          reason: Type.String({ minLength: 3, maxLength: ADJUST_REASON_MAX, pattern: "^\\s*\\S\\s*\\S\\s*\\S" }),
          outpoint: Type.Optional(Type.String({ pattern: "^[0-9a-f]{64}:[0-9]{1,10}$" })),
        }, { additionalProperties: false }),
      },
    }, async (req, reply) => {
      const { userKey } = req.params as { userKey: string };
      const body = req.body as { id: string; amount: string; reason: string; outpoint?: string };
      const amount = signedAmount(body.amount);
      if (isRefusal(amount)) return reply.code(422).send(send(amount));
      const onFile = `${body.id}: ${amount > 0n ? "+" : ""}${formatBtc(amount)} BTC${body.outpoint ? ` (deposit ${body.outpoint})` : ""}: ${body.reason}`;
      const r = await act(req, "adjust", userKey, onFile, () => o.port.adjustWallet(userKey, { id: body.id, amount, reason: body.reason, ...(body.outpoint ? { outpoint: body.outpoint } : {}) }, req.operator!.name));
      return isRefusal(r) ? reply.code(r.code === "not_found" && r.message === `no wallet ${userKey}` ? 404 : 409).send(send(r)) : r;
    });
    // A batch and a fee rate: the fee bump, and the release of a stuck batch (its cancellation's fee rate). Above the
    // engine's own ceiling for its batches only with `aboveMaxFeeRate: true`: 5000 typed for 500 on a large batch would
    // pay up to bitcoind's -maxtxfee.
    const maxRate = o.config.withdrawals.maxFeeRateSatVb;
    const batchAtRate = {
      params: Type.Object({ batch: Type.String({ pattern: "^b\\d{1,12}$" }) }),
      body: Type.Object({ feeRateSatVb: Type.Integer({ minimum: 1, maximum: hardMaxFeeRate(o.config) }), aboveMaxFeeRate: Type.Optional(Type.Boolean()), reason: Reason }, { additionalProperties: false }),
    };
    type AtRate = { feeRateSatVb: number; aboveMaxFeeRate?: boolean; reason: string };
    const aboveMax = (body: AtRate) => body.feeRateSatVb > maxRate && body.aboveMaxFeeRate !== true
      ? refuse("over_limit", `feeRateSatVb ${body.feeRateSatVb} is above withdrawals.maxFeeRateSatVb (${maxRate} sat/vB), the most the engine pays for its own batches: nothing was done. If you mean ${body.feeRateSatVb} sat/vB, send the request again with "aboveMaxFeeRate": true.`)
      : undefined;
    /** The audit log's reason: an override of the maximum is on file with the rate it let through. */
    const withOverride = (body: AtRate) => rateReason(body.reason, body.feeRateSatVb, maxRate);
    f.post("/payouts/:batch/bump", { schema: batchAtRate }, async (req, reply) => {
      const { batch } = req.params as { batch: string };
      const body = req.body as AtRate;
      const over = aboveMax(body);
      if (over) return reply.code(422).send(send(over));
      const r = await act(req, "bump-fee", batch, withOverride(body), () => o.port.bumpPayout(batch, BigInt(body.feeRateSatVb)));
      return isRefusal(r) ? reply.code(409).send(send(r)) : r;
    });
    f.post("/payouts/:batch/release", { schema: batchAtRate }, async (req, reply) => {
      const { batch } = req.params as { batch: string };
      const body = req.body as AtRate;
      const over = aboveMax(body);
      if (over) return reply.code(422).send(send(over));
      const r = await act(req, "release-payout", batch, withOverride(body), () => o.port.releasePayout(batch, BigInt(body.feeRateSatVb), body.reason));
      return isRefusal(r) ? reply.code(409).send(send(r)) : r;
    });
    f.post("/payouts/adopt", { schema: { body: Type.Object({ id: Type.String({ minLength: 1, maxLength: 128, pattern: "^[\\w:.-]+$" }), txid: Type.String({ pattern: "^[0-9a-f]{64}$" }), reason: Reason }, { additionalProperties: false }) } }, async (req, reply) => {
      const body = req.body as { id: string; txid: string; reason: string };
      const r = await act(req, "adopt-payout", body.id, body.reason, () => o.port.adoptPayout(body.id, body.txid, req.operator!.name));
      return isRefusal(r) ? reply.code(409).send(send(r)) : r;
    });
    f.post("/payouts/unqueue", { schema: { body: Type.Object({ id: Type.String({ minLength: 1, maxLength: 128, pattern: "^[\\w:.-]+$" }), reason: Reason }, { additionalProperties: false }) } }, async (req, reply) => {
      const body = req.body as { id: string; reason: string };
      const r = await act(req, "unqueue-payout", body.id, body.reason, () => o.port.unqueuePayout(body.id, req.operator!.name));
      return isRefusal(r) ? reply.code(409).send(send(r)) : r;
    });
    f.post("/payouts/pause", { schema: { body: Type.Object({ reason: Reason }, { additionalProperties: false }) } }, async (req) => {
      const { reason } = req.body as { reason: string };
      return act(req, "pause-payouts", "payouts", reason, () => o.port.pausePayouts(reason, req.operator!.name));
    });
    f.post("/payouts/resume", { schema: { body: Type.Object({ reason: Reason }, { additionalProperties: false }) } }, async (req, reply) => {
      const r = await act(req, "resume-payouts", "payouts", (req.body as { reason: string }).reason, () => o.port.resumePayouts(req.operator!.name));
      return isRefusal(r) ? reply.code(409).send(send(r)) : r;
    });
    // After a lossy restore, the cheques open in the restored books are held (claims, revokes, expiry wait): released
    // here once the operator has decided (see README, "Restore").
    f.post("/cheques/release-held", { schema: { body: Type.Object({ reason: Reason }, { additionalProperties: false }) } }, async (req, reply) => {
      const r = await act(req, "release-held-cheques", "cheques", (req.body as { reason: string }).reason, () => o.port.releaseHeldCheques(req.operator!.name));
      return isRefusal(r) ? reply.code(409).send(send(r)) : r;
    });
    f.post("/drain", { schema: { body: Type.Object({ on: Type.Boolean(), reason: Reason }, { additionalProperties: false }) } }, async (req) => {
      const body = req.body as { on: boolean; reason: string };
      return act(req, body.on ? "drain-on" : "drain-off", "engine", body.reason, () => o.port.setDraining(body.on, body.reason, req.operator!.name));
    });
    f.post("/backup", { schema: { body: Type.Object({ reason: Reason }, { additionalProperties: false }) } }, async (req, reply) => {
      const r = await act(req, "backup", "store", (req.body as { reason: string }).reason, () => o.port.backup());
      return isRefusal(r) ? reply.code(409).send(send(r)) : r;
    });
    f.post("/deposits/rescan", { schema: { body: Type.Object({ height: Type.Integer({ minimum: 0, maximum: 10_000_000 }), reason: Reason }, { additionalProperties: false }) } },
      async (req, reply) => {
        const body = req.body as { height: number; reason: string };
        const r = await act(req, "rescan", String(body.height), body.reason, () => o.port.rescanFrom(body.height));
        return isRefusal(r) ? reply.code(409).send(send(r)) : r;
      });
  };

  await app.register(reads);
  await app.register(actions);
  if (consoleOn) {
    const cfg = o.config.admin.console;
    const origins = () => {
      if (cfg.origins.length) return cfg.origins;
      const port = (app.server.address() as { port?: number } | null)?.port;
      return port ? [port === 443 ? `https://${cfg.rpId}` : `https://${cfg.rpId}:${port}`] : [];
    };
    await app.register(consolePlugin, { config: o.config, log, operators: o.operators, audit: o.audit, port: o.port, act, revokeOperator, origins, sessions: sessions!, ...(o.consoleClock ? { clock: o.consoleClock } : {}) });
  }
  app.get("/openapi.json", () => openApi(routes));
  return app;
}

/** Listens on the configured VPN address only (validated in config; checked again here). */
export async function listenAdmin(app: FastifyInstance, config: Config): Promise<number> {
  const host = config.admin.host;
  if (!bindAllowed(host, config.admin.vpnCidrs)) {
    throw Object.assign(new Error(`admin.host ${host} is not a VPN or loopback address`), { code: "config_invalid" });
  }
  await app.listen({ host, port: config.admin.port });
  return (app.server.address() as { port: number }).port;
}

function openApi(routes: Array<{ method: string; url: string; schema?: unknown }>) {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const path = r.url.replace(/:(\w+)/g, "{$1}");
    const s = (r.schema ?? {}) as { params?: { properties?: Record<string, unknown> }; querystring?: { properties?: Record<string, unknown> }; body?: unknown };
    const parameters = [
      ...Object.entries(s.params?.properties ?? {}).map(([name, schema]) => ({ name, in: "path", required: true, schema })),
      ...Object.entries(s.querystring?.properties ?? {}).map(([name, schema]) => ({ name, in: "query", schema })),
      { name: "X-TOTP", in: "header", required: true, schema: { type: "string", pattern: "^\\d{6}$" } },
    ];
    (paths[path] ??= {})[r.method.toLowerCase()] = {
      parameters,
      ...(s.body ? { requestBody: { required: true, content: { "application/json": { schema: s.body } } } } : {}),
      responses: { 200: { description: "ok" }, 401: { description: "missing or wrong second factor" } },
    };
  }
  return {
    openapi: "3.0.3",
    info: { title: "RuniGun admin edge", version: "1" },
    components: { securitySchemes: { clientCertificate: { type: "mutualTLS" }, totp: { type: "apiKey", in: "header", name: "X-TOTP" } } },
    security: [{ clientCertificate: [], totp: [] }],
    paths,
  };
}
