// The operator console: web pages on the admin edge (same bind, same client-certificate TLS), with a FIDO2
// security key (WebAuthn) as the second factor instead of TOTP. Everything the page needs ships with the project.
// Every state-changing request needs the session cookie (HttpOnly, Secure, SameSite=Strict), an allowed Origin
// and the session's CSRF token. Operator actions go through the same AdminPort methods and the same audited
// `act` as the JSON API: the console adds no rule of its own. Those that move money or change who can do what also
// need a step-up (auth.ts): a fresh touch of a registered key for that action, as the JSON API needs a fresh TOTP code
// for each request; without it the action is refused before anything is run or audited.
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import cookie from "@fastify/cookie";
import type { Config } from "../../../config.ts";
import type { Logger } from "../../../log.ts";
import type { AuditLog } from "../audit.ts";
import type { Refusal } from "../../../domain/refusals.ts";
import { NOT_AN_OPERATOR, type Operator, type OperatorStore } from "../operators.ts";
import type { AdminPort } from "../port.ts";
import { COOKIE, STEP_UP_MAX_AGE_MS, Sessions, sameToken, type Session } from "./session.ts";
import { authRoutes } from "./auth.ts";
import { viewRoutes } from "./views.ts";
import { actionRoutes } from "./actions.ts";
import { esc } from "./html.ts";

/** The admin edge's audited way of running an operator action (server.ts `act`). */
export type Act = (req: FastifyRequest, action: string, target: string, reason: string, run: () => Promise<unknown>) => Promise<unknown>;

export interface ConsoleDeps {
  config: Config;
  log: Logger;
  operators: OperatorStore;
  audit: AuditLog;
  port: AdminPort;
  act: Act;
  /**
   * The admin edge's online revocation (server.ts, the JSON API's own): one at a time, never the last active operator,
   * the revoked operator's sessions closed. Run inside `act`, as the API runs it.
   */
  revokeOperator(name: string, by: Operator): Promise<{ revoked: string } | Refusal>;
  /** The origins the console accepts (config, or https://<rpId>:<listening port>). */
  origins: () => string[];
  /** Shared with the admin edge, which ends an operator's sessions when it revokes them. */
  sessions: Sessions;
  clock?: () => number;
}

export interface ConsoleContext extends ConsoleDeps {
  /** The request's session (set by the guard) or undefined. */
  session(req: FastifyRequest): Session | undefined;
  /** Starts (or keeps) an unauthenticated session for the login and enrollment pages. */
  ensureSession(req: FastifyRequest, reply: FastifyReply): Session;
  setCookie(reply: FastifyReply, s: Session): void;
  clearCookie(reply: FastifyReply): void;
  /**
   * The step-up for `forPath` (the POST path of the action about to run): undefined when the session has a fresh one,
   * made with a key the operator still has; otherwise why not, to show (nothing may run then). `take` (the default)
   * uses it up, so one touch allows one action.
   */
  stepUp(req: FastifyRequest, forPath: string, o?: { take?: boolean }): string | undefined;
}

/** What an action refused for want of a step-up says. */
export const STEP_UP_NEEDED = `This action needs a fresh touch of one of your security keys (with its PIN or fingerprint) within ${STEP_UP_MAX_AGE_MS / 60_000} minutes before it is confirmed, on this page, for this action: nothing was done. Review it again and confirm it with your security key.`;

declare module "fastify" {
  interface FastifyContextConfig {
    /** Console routes that work without a signed-in session (login, enrollment, static files). */
    consolePublic?: boolean;
  }
  interface FastifyRequest {
    consoleSession?: Session;
  }
}

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

/** The files the console serves, read once at start; nothing else is reachable under /console/static. */
function staticFiles(): Map<string, { type: string; body: Buffer }> {
  const own = (f: string, type: string) => [f, { type, body: readFileSync(join(here, "static", f)) }] as const;
  // @simplewebauthn/browser's own bundle (it exposes window.SimpleWebAuthnBrowser); its package exports only
  // the module entry points, so the bundle is found beside its package.json.
  const BUNDLE = join("dist", "bundle", "index.umd.min.js");
  let browserPkg = dirname(require.resolve("@simplewebauthn/browser"));
  while (!existsSync(join(browserPkg, BUNDLE)) && dirname(browserPkg) !== browserPkg) browserPkg = dirname(browserPkg);
  return new Map([
    own("console.css", "text/css; charset=utf-8"),
    own("webauthn-pages.js", "text/javascript; charset=utf-8"),
    ["simplewebauthn-browser.js", { type: "text/javascript; charset=utf-8", body: readFileSync(join(browserPkg, BUNDLE)) }],
  ]);
}

const CSP = [
  "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self'", "connect-src 'self'",
  "form-action 'self'", "frame-ancestors 'none'", "base-uri 'none'",
].join("; ");

export async function consolePlugin(f: FastifyInstance, deps: ConsoleDeps): Promise<void> {
  const cfg = deps.config.admin.console;
  const clock = deps.clock ?? Date.now;
  const sessions = deps.sessions;
  const log = deps.log.child({ edge: "console" });
  await f.register(cookie);
  f.addContentTypeParser("application/x-www-form-urlencoded", { parseAs: "string", bodyLimit: 16 * 1024 }, (_req, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });

  const ctx: ConsoleContext = {
    ...deps, log, sessions, clock,
    session: (req) => req.consoleSession,
    ensureSession(req, reply) {
      if (req.consoleSession) return req.consoleSession;
      const s = sessions.open(req.operator!.fingerprint, req.operator!.name);
      req.consoleSession = s;
      ctx.setCookie(reply, s);
      return s;
    },
    setCookie(reply, s) {
      reply.setCookie(COOKIE, s.id, { path: "/", httpOnly: true, secure: true, sameSite: "strict", maxAge: Math.ceil(cfg.sessionTtlMs / 1000) });
    },
    clearCookie(reply) {
      reply.clearCookie(COOKIE, { path: "/", httpOnly: true, secure: true, sameSite: "strict" });
    },
    stepUp(req, forPath, o = {}) {
      const s = req.consoleSession;
      const up = s && (o.take === false ? sessions.peekStepUp(s, forPath) : sessions.takeStepUp(s, forPath));
      // The key that was touched must still be the operator's (req.operator is read afresh by the guard).
      if (up && (req.operator!.keys ?? []).some((k) => k.id === up.keyId)) return undefined;
      log.warn({ operator: req.operator!.name, url: req.routeOptions.url }, "console action refused: no fresh touch of a security key for it");
      return STEP_UP_NEEDED;
    },
  };

  f.addHook("onSend", async (_req, reply, payload) => {
    reply.header("content-security-policy", CSP);
    reply.header("x-content-type-options", "nosniff");
    reply.header("x-frame-options", "DENY");
    // same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on form posts, and the origin
    // check needs the real one; other sites still learn nothing.
    reply.header("referrer-policy", "same-origin");
    reply.header("cross-origin-opener-policy", "same-origin");
    reply.header("cross-origin-resource-policy", "same-origin");
    reply.header("cache-control", "no-store");
    return payload;
  });

  // The guard: the client certificate was checked by the admin edge already (req.operator), when the headers came.
  // Here: the operator again (the body is in, and the operator may have been revoked since), the session, and for
  // anything that changes state, the Origin and the CSRF token.
  // preValidation: before the body schema, so a forged request is told "forbidden", not "bad request".
  f.addHook("preValidation", async (req, reply) => {
    const fresh = await deps.operators.get(req.operator!.fingerprint);
    if (!fresh || fresh.revoked) {
      // Its sessions end here too, should one have been opened while the revocation was under way.
      sessions.closeAllOf(req.operator!.fingerprint);
      ctx.clearCookie(reply);
      log.warn({ operator: req.operator!.name, url: req.routeOptions.url }, "console request refused: the operator was revoked");
      return refuse(req, reply, 401, NOT_AN_OPERATOR);
    }
    const op = (req.operator = fresh);
    const s = sessions.find(req.cookies[COOKIE], op.fingerprint);
    if (s) req.consoleSession = s;
    const changes = req.method !== "GET" && req.method !== "HEAD";
    if (changes) {
      const origin = req.headers.origin;
      if (!origin || !deps.origins().includes(origin) || (req.headers["sec-fetch-site"] && req.headers["sec-fetch-site"] !== "same-origin")) {
        log.warn({ operator: op.name, url: req.routeOptions.url }, "console request refused: cross-origin");
        return refuse(req, reply, 403, "cross-origin request refused");
      }
      const token = (req.headers["x-csrf-token"] as string | undefined) ?? (req.body as { _csrf?: string } | undefined)?._csrf;
      if (!s || !sameToken(token, s.csrf)) {
        log.warn({ operator: op.name, url: req.routeOptions.url }, "console request refused: CSRF token");
        return refuse(req, reply, 403, "missing or wrong CSRF token (reload the page)");
      }
    }
    if (req.routeOptions.config.consolePublic) return;
    if (!s?.authenticated) {
      if (changes) return refuse(req, reply, 401, "sign in with your security key first");
      return reply.redirect("/console/login", 303);
    }
  });

  const files = staticFiles();
  f.get("/console/static/:file", { config: { consolePublic: true, rateLimit: false } }, async (req, reply) => {
    const file = files.get((req.params as { file: string }).file);
    if (!file) return reply.code(404).type("text/plain").send("not found");
    return reply.type(file.type).send(file.body);
  });

  authRoutes(f, ctx);
  viewRoutes(f, ctx);
  actionRoutes(f, ctx);

  f.setErrorHandler((err: { validation?: unknown; statusCode?: number; code?: unknown; message: string }, req, reply) => {
    if (err.validation) return refuse(req, reply, 400, `bad request: ${err.message}`);
    if ((err.statusCode ?? 500) < 500) return refuse(req, reply, err.statusCode!, err.message);
    // An actor the page or action needs has stopped (the JSON API's answer, server.ts): what to do, not a retry.
    if (err.code === "actor_stopped") {
      log.warn({ err: err.message, url: req.routeOptions.url }, "console request refused: an actor it needs has stopped");
      return refuse(req, reply, 503, err.message.endsWith(" is not running") ? `${err.message}: the engine is stopping, or the actor stopped after repeated crashes (see the overview)` : err.message);
    }
    log.error({ err: err.message, url: req.routeOptions.url }, "console request failed");
    if (req.method === "GET" || req.method === "HEAD") return refuse(req, reply, 500, "internal error: this page changed nothing; load it again, and if it keeps failing see the engine's log (\"console request failed\")");
    // Not "nothing was changed": an action can fail after part of it was written.
    return refuse(req, reply, 500, "internal error: this action may have been applied in part or in full; check its state (and the audit log) before trying again");
  });
}

/** JSON for the console's script calls, a small page for form posts and page loads. */
export function refuse(req: FastifyRequest, reply: FastifyReply, code: number, message: string): FastifyReply {
  if (wantsJson(req)) return reply.code(code).send({ error: message });
  return reply.code(code).type("text/html; charset=utf-8").send(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Refused · RuniGun console</title><link rel="stylesheet" href="/console/static/console.css"></head><body><main><h1>Refused</h1><p class="error" role="alert">${esc(message)}</p><p><a href="/console/">Back to the console</a></p></main></body></html>`);
}

export function wantsJson(req: FastifyRequest): boolean {
  return (req.headers["content-type"] ?? "").startsWith("application/json") || (req.headers.accept ?? "").startsWith("application/json");
}
