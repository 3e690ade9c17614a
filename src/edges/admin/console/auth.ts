// Security keys for the console (WebAuthn through @simplewebauthn/server): enrollment through the one-time link
// printed by `runigun keys operator add`, login with a touch of a registered key, more keys added (and removed)
// once signed in. Challenges are single-use and bound to the session; a login gets a fresh session id.
// The step-up: once signed in, a touch of one of the operator's registered keys with user verification (required,
// whatever admin.console.userVerification says), for one named action; see session.ts. A key's addition and removal
// need one, as do the actions that move money or change who can do what (actions.ts, views.ts).
import type { FastifyInstance, FastifyRequest } from "fastify";
import { Type } from "@sinclair/typebox";
import {
  generateAuthenticationOptions, generateRegistrationOptions, verifyAuthenticationResponse, verifyRegistrationResponse,
  type AuthenticationResponseJSON, type AuthenticatorTransport, type RegistrationResponseJSON,
} from "@simplewebauthn/server";
import type { Operator, SecurityKey } from "../operators.ts";
import { refuse, type ConsoleContext } from "./index.ts";
import { html, page } from "./html.ts";
import { Reason } from "./actions.ts";
import { isRefusal } from "../../../domain/refusals.ts";

const Token = Type.String({ minLength: 20, maxLength: 100, pattern: "^[A-Za-z0-9_-]+$" });
const Label = Type.String({ minLength: 1, maxLength: 60 });
/** The browser's response, checked field by field by @simplewebauthn/server. */
const Credential = Type.Object({ id: Type.String({ maxLength: 1024 }), rawId: Type.String({ maxLength: 1024 }), type: Type.Literal("public-key"), response: Type.Object({}, { additionalProperties: true }) }, { additionalProperties: true });
/** What a step-up is for: the POST path of the action it allows (a form's action attribute, as the page has it). */
const StepUpFor = Type.String({ minLength: 10, maxLength: 300, pattern: "^/console/[A-Za-z0-9_.%/-]+$" });
/** The POST path whose step-up a new key's registration takes. */
export const ADD_KEY = "/console/keys/verify";
const REMOVE_KEY = "/console/keys/remove";

const toTransports = (t: string[] | undefined) => t as AuthenticatorTransport[] | undefined;

export function authRoutes(f: FastifyInstance, c: ConsoleContext): void {
  const cfg = c.config.admin.console;
  const rp = { rpName: "RuniGun operator console", rpID: cfg.rpId };
  const requireUv = cfg.userVerification === "required";
  const op = (req: FastifyRequest) => req.operator!;

  const registrationOptions = (o: Operator) => generateRegistrationOptions({
    ...rp, userName: o.name, userDisplayName: o.name, userID: new Uint8Array(Buffer.from(o.fingerprint, "hex").subarray(0, 16)), attestationType: "none",
    excludeCredentials: (o.keys ?? []).map((k) => ({ id: k.id, ...(k.transports ? { transports: toTransports(k.transports)! } : {}) })),
    authenticatorSelection: { residentKey: "discouraged", userVerification: cfg.userVerification },
  });

  /** Verifies a registration against the session's challenge; returns the new key or why not. */
  const verifyNewKey = async (req: FastifyRequest, purpose: "enroll" | "add-key", response: RegistrationResponseJSON, label: string): Promise<SecurityKey | string> => {
    const s = c.session(req)!;
    const challenge = c.sessions.takeChallenge(s, purpose);
    if (!challenge) return "no registration in progress (or it took too long); start again";
    try {
      const v = await verifyRegistrationResponse({ response, expectedChallenge: challenge, expectedOrigin: c.origins(), expectedRPID: cfg.rpId, requireUserVerification: requireUv });
      if (!v.verified) return "the security key's answer did not verify";
      const cred = v.registrationInfo.credential;
      return { id: cred.id, publicKey: Buffer.from(cred.publicKey).toString("base64url"), counter: cred.counter, ...(cred.transports ? { transports: cred.transports } : {}), label, addedAt: c.clock!() };
    } catch (e) {
      return `the security key's answer did not verify: ${(e as Error).message}`;
    }
  };

  // Enrollment: the one-time link's token (from the URL fragment, so it never reaches a log) + a new key.
  f.get("/console/enroll", { config: { consolePublic: true } }, async (req, reply) => {
    const s = c.ensureSession(req, reply);
    return reply.type("text/html; charset=utf-8").send(page({
      title: "Register a security key", page: "enroll", csrf: s.csrf, nav: false, scripts: ["simplewebauthn-browser.js", "webauthn-pages.js"],
      body: html`<p>Operator <strong>${op(req).name}</strong>: register the FIDO2 security key you will sign in with. The link works once and expires.</p>
<form id="enroll-form"><label>Name for this key <input id="key-label" name="label" required maxlength="60" value="security key"></label>
<button type="submit" id="enroll">Register security key</button></form><p id="status" role="status"></p>`,
    }));
  });

  f.post("/console/enroll/options", { config: { consolePublic: true }, schema: { body: Type.Object({ token: Token }) } }, async (req, reply) => {
    const { token } = req.body as { token: string };
    const why = c.operators.checkEnrollment(op(req), token, c.clock!());
    if (why) {
      c.log.warn({ operator: op(req).name }, "console enrollment refused");
      return refuse(req, reply, 403, why);
    }
    const options = await registrationOptions(op(req));
    c.sessions.setChallenge(c.session(req)!, "enroll", options.challenge);
    return options;
  });

  f.post("/console/enroll/verify", { config: { consolePublic: true }, schema: { body: Type.Object({ token: Token, label: Label, response: Credential }) } }, async (req, reply) => {
    const body = req.body as { token: string; label: string; response: RegistrationResponseJSON };
    const why = c.operators.checkEnrollment(op(req), body.token, c.clock!());
    if (why) return refuse(req, reply, 403, why);
    const key = await verifyNewKey(req, "enroll", body.response, body.label);
    if (typeof key === "string") return refuse(req, reply, 400, key);
    const added = await c.act(req, "console-key-enroll", op(req).name, `security key "${body.label}" registered through the enrollment link`, () => c.operators.addKey(op(req).fingerprint, key, { enrollment: { token: body.token, now: c.clock!() } }));
    if (isRefusal(added)) return refuse(req, reply, 403, added.message);
    return { ok: true, next: "/console/login" };
  });

  /** Options for an assertion by one of the operator's registered keys. */
  const assertionOptions = (o: Operator, userVerification: "required" | "preferred" | "discouraged") => generateAuthenticationOptions({
    rpID: cfg.rpId, userVerification,
    allowCredentials: (o.keys ?? []).map((k) => ({ id: k.id, ...(k.transports ? { transports: toTransports(k.transports)! } : {}) })),
  });

  /**
   * Verifies an assertion against a challenge already taken from the session: the key must be one of the operator's
   * (read afresh by the guard). Its new counter is stored. Returns the key, or why not.
   */
  const verifyAssertion = async (req: FastifyRequest, challenge: string | undefined, response: AuthenticationResponseJSON, requireUserVerification: boolean, none: string): Promise<SecurityKey | string> => {
    const key = (op(req).keys ?? []).find((k) => k.id === response.id);
    if (!challenge) return none;
    if (!key) return `this security key is not registered for ${op(req).name}`;
    let v;
    try {
      v = await verifyAuthenticationResponse({
        response, expectedChallenge: challenge, expectedOrigin: c.origins(), expectedRPID: cfg.rpId, requireUserVerification,
        credential: { id: key.id, publicKey: new Uint8Array(Buffer.from(key.publicKey, "base64url")), counter: key.counter, ...(key.transports ? { transports: toTransports(key.transports)! } : {}) },
      });
    } catch (e) {
      return `the security key's signature did not verify: ${(e as Error).message}`;
    }
    if (!v.verified) return "the security key's signature did not verify";
    await c.operators.touchKey(op(req).fingerprint, key.id, v.authenticationInfo.newCounter, c.clock!());
    return key;
  };

  // Login: a touch of one of the operator's keys, for the certificate's operator only.
  f.get("/console/login", { config: { consolePublic: true } }, async (req, reply) => {
    const s = c.ensureSession(req, reply);
    if (s.authenticated) return reply.redirect("/console/", 303);
    const hasKeys = (op(req).keys ?? []).length > 0;
    return reply.type("text/html; charset=utf-8").send(page({
      title: "Sign in", page: "login", csrf: s.csrf, nav: false, scripts: ["simplewebauthn-browser.js", "webauthn-pages.js"],
      body: html`<p>Certificate of operator <strong>${op(req).name}</strong>. Sign in with your security key.</p>
${hasKeys ? html`<button type="button" id="login">Sign in with security key</button>` : html`<p class="error">No security key is registered for ${op(req).name} yet: open the enrollment link printed by <code>runigun keys operator add</code>.</p>`}
<p id="status" role="status"></p>`,
    }));
  });

  f.post("/console/login/options", { config: { consolePublic: true } }, async (req, reply) => {
    const keys = op(req).keys ?? [];
    if (!keys.length) return refuse(req, reply, 403, "no security key is registered for this operator; use the enrollment link");
    const options = await assertionOptions(op(req), cfg.userVerification);
    c.sessions.setChallenge(c.session(req)!, "login", options.challenge);
    return options;
  });

  f.post("/console/login/verify", { config: { consolePublic: true }, schema: { body: Type.Object({ response: Credential }) } }, async (req, reply) => {
    const s = c.session(req)!;
    const response = (req.body as { response: AuthenticationResponseJSON }).response;
    // Taken before anything else: a challenge answers one attempt, right or wrong, so an assertion cannot be replayed.
    const challenge = c.sessions.takeChallenge(s, "login");
    const key = await verifyAssertion(req, challenge, response, requireUv, "no sign-in in progress (or it was used already); start again");
    if (typeof key === "string") {
      c.log.warn({ operator: op(req).name, why: key }, "console login refused");
      return refuse(req, reply, 401, key);
    }
    const next = c.sessions.promote(s, key.id);
    c.setCookie(reply, next);
    await c.audit.append({ operator: op(req).name, action: "console-login", target: key.label, reason: "signed in with a security key" });
    c.log.info({ operator: op(req).name }, "console login");
    return { ok: true, next: "/console/" };
  });

  f.post("/console/logout", { config: { consolePublic: true } }, async (req, reply) => {
    const s = c.session(req);
    if (s) c.sessions.close(s);
    c.clearCookie(reply);
    return reply.redirect("/console/login", 303);
  });

  // The step-up: a touch of a registered key, with user verification, for the action named (`for`, its POST path).
  // Signed-in sessions only (not consolePublic). A new step-up replaces the session's last one.
  f.post("/console/step-up/options", { schema: { body: Type.Object({ for: StepUpFor }) } }, async (req, reply) => {
    if (!(op(req).keys ?? []).length) return refuse(req, reply, 403, "no security key is registered for this operator");
    const options = await assertionOptions(op(req), "required");
    c.sessions.setChallenge(c.session(req)!, "step-up", options.challenge, (req.body as { for: string }).for);
    return options;
  });

  f.post("/console/step-up/verify", { schema: { body: Type.Object({ response: Credential }) } }, async (req, reply) => {
    const s = c.session(req)!;
    // Taken first, as a login's: one challenge answers one attempt, so an assertion is never replayed.
    const challenge = c.sessions.takeStepUpChallenge(s);
    const key = await verifyAssertion(req, challenge?.value, (req.body as { response: AuthenticationResponseJSON }).response, true,
      "no confirmation with a security key in progress (or it took too long, or it was used already); start again");
    if (typeof key === "string") {
      c.log.warn({ operator: op(req).name, why: key }, "console step-up refused");
      return refuse(req, reply, 401, key);
    }
    c.sessions.recordStepUp(s, key.id, challenge!.for);
    c.log.info({ operator: op(req).name }, "console step-up: a security key touched for an action");
    return { ok: true };
  });

  // More keys, once signed in (a second key in the safe is how an operator survives losing one): only after a step-up
  // with a key the operator has already, so a session left open cannot give someone else a lasting second factor.
  f.post("/console/keys/options", async (req, reply) => {
    const why = c.stepUp(req, ADD_KEY, { take: false });
    if (why) return refuse(req, reply, 403, why);
    const options = await registrationOptions(op(req));
    c.sessions.setChallenge(c.session(req)!, "add-key", options.challenge);
    return options;
  });

  f.post("/console/keys/verify", { schema: { body: Type.Object({ label: Label, response: Credential }) } }, async (req, reply) => {
    const body = req.body as { label: string; response: RegistrationResponseJSON };
    // Taken here, where the key is added, and checked before the registration is: still fresh, still the operator's key.
    const why = c.stepUp(req, ADD_KEY);
    if (why) {
      c.sessions.takeChallenge(c.session(req)!, "add-key");
      return refuse(req, reply, 403, why);
    }
    const key = await verifyNewKey(req, "add-key", body.response, body.label);
    if (typeof key === "string") return refuse(req, reply, 400, key);
    const added = await c.act(req, "console-key-add", op(req).name, `security key "${body.label}" added`, () => c.operators.addKey(op(req).fingerprint, key));
    if (isRefusal(added)) return refuse(req, reply, 409, added.message);
    return { ok: true, next: "/console/keys" };
  });

  f.post(REMOVE_KEY, { schema: { body: Type.Object({ _csrf: Type.String(), id: Type.String({ minLength: 1, maxLength: 1024 }), reason: Reason }) } }, async (req, reply) => {
    const { id, reason } = req.body as { id: string; reason: string };
    if (!(op(req).keys ?? []).some((k) => k.id === id)) return refuse(req, reply, 404, "no such security key");
    const why = c.stepUp(req, REMOVE_KEY);
    if (why) return refuse(req, reply, 403, why);
    const removed = await c.act(req, "console-key-remove", op(req).name, reason, () => c.operators.removeKey(op(req).fingerprint, id));
    if (isRefusal(removed)) return refuse(req, reply, 409, removed.message);
    // Sessions opened with that key end now, this one included if it was.
    c.sessions.closeAllOf(op(req).fingerprint, id);
    return reply.redirect(c.session(req)?.keyId === id ? "/console/login" : "/console/keys", 303);
  });
}
