// The console's operator actions besides the fee bump (views.ts): freeze / unfreeze a wallet, give back a queued
// payout, pause / resume payouts, drain mode on / off, a backup now, revoke an operator, and after a restore, record
// which ambiguous payout an unknown spend paid (adopt it). Each one is built the same way as the fee bump: a
// reason on the page that offers it, POST …/review shows exactly what will happen (nothing happens yet), and only the
// confirmation's POST runs it — through server.ts's audited `act` and the same AdminPort method, action name and target
// as the JSON API. The guard in index.ts checks the session, the Origin and the CSRF token of every one of these POSTs
// first. The console adds no rule: a refusal is the port's, shown as its message.
// An action that moves money or changes who can do what (`stepUp: true`) also needs a fresh touch of a security key
// for it (auth.ts, session.ts), as the JSON API needs a fresh TOTP code per request: the confirmation page asks for
// it, and its POST without one is refused before anything is run or audited. Freeze, pause payouts and back up now
// do not: they only stop things or copy the store, and what undoes them (unfreeze, resume) needs the touch.
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { Type, type TSchema } from "@sinclair/typebox";
import { isRefusal, type Refusal } from "../../../domain/refusals.ts";
import type { Json } from "../port.ts";
import type { Operator } from "../operators.ts";
import type { ConsoleContext } from "./index.ts";
import { Html, at, btc, facts, html, page } from "./html.ts";
import { STEP_UP_SCRIPTS, confirmForm } from "./forms.ts";

export const USER_KEY = "^u_[A-Za-z0-9_-]{10,64}$";
/** The JSON API's patterns (server.ts): an operator's name, a payout id, a txid. */
const OPERATOR_NAME = "^[a-z][a-z0-9_-]{1,31}$";
const PAYOUT_ID = Type.String({ minLength: 1, maxLength: 128, pattern: "^[\\w:.-]+$" });
const TXID = /^[0-9a-f]{64}$/;
/** An operator action's reason: the JSON API's bounds (server.ts). */
export const Reason = Type.String({ minLength: 3, maxLength: 500, pattern: "^\\s*\\S\\s*\\S\\s*\\S" }); // at least three visible characters (linear: no nested quantifier)
const ActionBody = Type.Object({ _csrf: Type.String(), reason: Reason, confirm: Type.Optional(Type.Literal("yes")) });

type Params = Record<string, string>;

interface ActionSpec<P extends Params> {
  /** The confirmed action's route (fastify syntax); its confirmation page is POST `${path}/review`. */
  path: string;
  params?: TSchema;
  /** Form fields besides the reason (a txid): they join the parameters, and travel on through the confirmation. */
  fields?: Record<string, TSchema>;
  /** The parameters as the action takes them, or why they are not valid (said on the page; nothing is done). */
  check?(p: P): P | string;
  /** The navigation entry the pages belong to. */
  page: string;
  /** Whether the confirmation needs a fresh touch of a security key (a step-up); see the top of this file. */
  stepUp: boolean;
  /** The audit entry's action and target: the JSON API's, exactly (server.ts). */
  audit(p: P): { action: string; target: string };
  title(p: P): string;
  /** What the confirmation will do, in words (`by`: the signed-in operator). */
  confirm(c: ConsoleContext, p: P, by: Operator): Html | Promise<Html>;
  button(p: P): string;
  run(c: ConsoleContext, p: P, reason: string, by: Operator): Promise<Json | Refusal>;
  done(p: P, r: Json, by: Operator): Html;
  /** Where the operator goes back to. */
  back(p: P): string;
}

/** A route with its parameters filled in. */
export function fill(path: string, p: Params): string {
  return path.replace(/:(\w+)/g, (_m, k: string) => encodeURIComponent(p[k] ?? ""));
}

const action = <P extends Params>(a: ActionSpec<P>) => a;

export const ACTIONS = [
  action<{ userKey: string }>({
    path: "/console/wallets/:userKey/freeze", params: Type.Object({ userKey: Type.String({ pattern: USER_KEY }) }), page: "wallets", stepUp: false,
    audit: (p) => ({ action: "freeze", target: p.userKey }),
    title: (p) => `Freeze ${p.userKey}`,
    confirm: (_c, p) => html`Confirm: freeze the wallet <strong>${p.userKey}</strong>. Its withdrawals and transfers out are refused and its queued withdrawals wait (one already signed still goes) until an operator unfreezes it; deposits are still credited.`,
    button: () => "Confirm freeze",
    run: (c, p, reason, by) => c.port.freeze(p.userKey, reason, by.name),
    // A second freeze keeps the first one's reason (the port says so): shown, so the operator knows which stands.
    done: (p, r) => (at(r, "already") === true ? html`The wallet ${p.userKey} was already frozen, by ${at(r, "by")}: ${at(r, "reason")}. That reason stands.` : html`The wallet ${p.userKey} is frozen.`),
    back: (p) => `/console/wallets?userKey=${encodeURIComponent(p.userKey)}`,
  }),
  action<{ userKey: string }>({
    path: "/console/wallets/:userKey/unfreeze", params: Type.Object({ userKey: Type.String({ pattern: USER_KEY }) }), page: "wallets", stepUp: true,
    audit: (p) => ({ action: "unfreeze", target: p.userKey }),
    title: (p) => `Unfreeze ${p.userKey}`,
    confirm: (_c, p) => html`Confirm: unfreeze the wallet <strong>${p.userKey}</strong>. Its owner can withdraw and send again.`,
    button: () => "Confirm unfreeze",
    run: (c, p, _reason, by) => c.port.unfreeze(p.userKey, by.name),
    done: (p, r) => (at(r, "already") === true ? html`The wallet ${p.userKey} was not frozen: nothing changed.` : html`The wallet ${p.userKey} is open again.`),
    back: (p) => `/console/wallets?userKey=${encodeURIComponent(p.userKey)}`,
  }),
  action<{ id: string }>({
    path: "/console/payouts/queued/:id/unqueue", params: Type.Object({ id: PAYOUT_ID }), page: "payouts", stepUp: true,
    audit: (p) => ({ action: "unqueue-payout", target: p.id }),
    title: (p) => `Give back ${p.id}`,
    confirm: (_c, p) => html`Confirm: give back the queued payout <strong>${p.id}</strong>. It is never sent: its wallet gets the amount and the quoted fee back, and its user is told the withdrawal could not be sent. Refused if it is in a batch by now.`,
    button: () => "Confirm give back",
    run: (c, p, _reason, by) => c.port.unqueuePayout(p.id, by.name),
    done: (p) => html`${p.id} is given back to its wallet.`,
    back: () => "/console/payouts?status=queued",
  }),
  action<Params>({
    path: "/console/payouts/pause", page: "overview", stepUp: false,
    audit: () => ({ action: "pause-payouts", target: "payouts" }),
    title: () => "Pause payouts",
    confirm: () => html`Confirm: pause payouts. No new batch is built until an operator resumes them (a restart keeps them paused); a batch already signed still goes out, and deposits, transfers and reservations go on. Resuming checks the books against the node first.`,
    button: () => "Confirm pause payouts",
    run: (c, _p, reason, by) => c.port.pausePayouts(reason, by.name),
    done: (_p, r) => (at(r, "already") === true ? html`Payouts were already paused: ${at(r, "paused")}` : html`Payouts are paused.`),
    back: () => "/console/",
  }),
  action<Params>({
    path: "/console/payouts/resume", page: "overview", stepUp: true,
    audit: () => ({ action: "resume-payouts", target: "payouts" }),
    title: () => "Resume payouts",
    async confirm(c) {
      // Shown, not decided here: the engine checks the books against the node when the action runs.
      const paused = at(await c.port.health(), "payoutsPaused");
      return paused
        ? html`Confirm: resume payouts, paused because: <strong>${paused}</strong>. The engine compares the books with the node again first and refuses while they disagree.`
        : html`Payouts are not paused: resuming changes nothing.`;
    },
    button: () => "Confirm resume payouts",
    run: (c, _p, _reason, by) => c.port.resumePayouts(by.name),
    done: () => html`Payouts are running: the engine found the books and the node in agreement.`,
    back: () => "/console/",
  }),
  action<{ mode: string }>({
    path: "/console/drain/:mode", params: Type.Object({ mode: Type.Union([Type.Literal("on"), Type.Literal("off")]) }), page: "overview", stepUp: true,
    audit: (p) => ({ action: p.mode === "on" ? "drain-on" : "drain-off", target: "engine" }),
    title: (p) => `Drain mode ${p.mode}`,
    confirm: (_c, p) => (p.mode === "on"
      ? html`Confirm: switch drain mode <strong>on</strong>. No new wallets or deposit addresses; withdrawals keep working; every existing user is told once how to take their money out.`
      : html`Confirm: switch drain mode <strong>off</strong>. New wallets and deposit addresses are accepted again.`),
    button: (p) => `Confirm drain mode ${p.mode}`,
    run: (c, p, reason, by) => c.port.setDraining(p.mode === "on", reason, by.name),
    done: (_p, r) => html`Drain mode is ${at(r, "draining") === true ? "on" : "off"}.`,
    back: () => "/console/",
  }),
  action<Params>({
    path: "/console/backup", page: "overview", stepUp: false,
    audit: () => ({ action: "backup", target: "store" }),
    title: () => "Back up now",
    confirm: () => html`Confirm: write a snapshot archive of the store now (the node wallet's backup included).`,
    button: () => "Confirm backup",
    run: (c) => c.port.backup(),
    done: (_p, r) => html`Snapshot written: <code>${at(r, "path")}</code> (${at(r, "bytes")} bytes in ${at(r, "ms")} ms).`,
    back: () => "/console/",
  }),
  // The JSON API lets an operator revoke any active operator, themself included, but never the last active one
  // (server.ts revokeOperator): the console offers the same, and says so when it is the operator's own name.
  action<{ name: string }>({
    path: "/console/operators/:name/revoke", params: Type.Object({ name: Type.String({ pattern: OPERATOR_NAME }) }), page: "operators", stepUp: true,
    audit: (p) => ({ action: "revoke-operator", target: p.name }),
    title: (p) => `Revoke ${p.name}`,
    async confirm(c, p, by) {
      // Shown, not decided here: revokeOperator checks again in its own turn.
      if (!(await c.operators.list()).some((op) => op.name === p.name && !op.revoked)) return html`There is no active operator <strong>${p.name}</strong>: nothing to revoke.`;
      return html`Confirm: revoke the operator <strong>${p.name}</strong>. Their certificate is refused from the next request on (the JSON API and this console), their console sessions end now, and their requests still on the way do not act. Undoing it means a new certificate, TOTP secret and security key: <code>runigun keys operator add ${p.name} --out DIR</code> with the engine stopped.${p.name === by.name ? html` <strong>This is you:</strong> your own session ends with it, and this certificate opens nothing afterwards.` : ""}`;
    },
    button: (p) => `Confirm revoke ${p.name}`,
    run: (c, p, _reason, by) => c.revokeOperator(p.name, by),
    done: (p, _r, by) => (p.name === by.name
      ? html`You revoked yourself: this certificate opens nothing from now on.`
      : html`${p.name} is revoked: their certificate is refused and their console sessions have ended.`),
    back: () => "/console/operators",
  }),
  action<{ id: string; txid: string }>({
    path: "/console/payouts/ambiguous/:id/adopt", params: Type.Object({ id: PAYOUT_ID }), fields: { txid: Type.String({ maxLength: 200 }) }, page: "overview", stepUp: true,
    // Refused here, as the JSON API's schema refuses it: a txid as bitcoin-cli shows it (spaces around a pasted one aside).
    check: (p) => (TXID.test(p.txid.trim()) ? { ...p, txid: p.txid.trim() } : "A txid is 64 hexadecimal digits (0-9, a-f in lowercase), as bitcoin-cli shows it: nothing was done."),
    audit: (p) => ({ action: "adopt-payout", target: p.id }),
    title: (p) => `Adopt the payout ${p.id}`,
    async confirm(c, p) {
      const queued = at(await c.port.payouts("queued"), "payouts");
      const q = (Array.isArray(queued) ? queued : []).find((x) => at(x, "id") === p.id);
      return html`Confirm: record that the unknown spend <code>${p.txid}</code> paid the queued payout <strong>${p.id}</strong>${q ? html` (${btc(at(q, "amount"))} to <code>${at(q, "address")}</code>, wallet ${at(q, "userKey")})` : html` (not among the queued payouts now)`}. It becomes that transaction's batch and is never sent again. The payouts alike to it leave the ambiguous list once no output alike is left unexplained: they were not paid, stay queued, and go out once payouts resume and their wallets are unfrozen. The engine refuses it unless the incident names the payout as ambiguous and the transaction pays its address and amount.`;
    },
    button: () => "Confirm: it paid this payout",
    run: (c, p, _reason, by) => c.port.adoptPayout(p.id, p.txid, by.name),
    done: (p, r) => {
      const left = at(r, "ambiguous");
      const n = Array.isArray(left) ? left.length : 0;
      return html`${p.id} is recorded as paid by <code>${p.txid}</code> (batch ${at(r, "batch")}). ${n ? `${n} ambiguous payout(s) left to settle.` : "No ambiguous payout is left: resume payouts from the overview once the books and the node agree."}`;
    },
    back: () => "/console/",
  }),
];

export function actionRoutes(f: FastifyInstance, c: ConsoleContext): void {
  const send = (req: FastifyRequest, reply: FastifyReply, title: string, pageName: string, body: Html, code = 200, scripts?: string[]) =>
    reply.code(code).type("text/html; charset=utf-8").send(page({ title, page: pageName, csrf: c.session(req)!.csrf, operator: req.operator!.name, nav: true, body, ...(scripts ? { scripts } : {}) }));

  for (const a of ACTIONS as Array<ActionSpec<Params>>) {
    const fields = Object.keys(a.fields ?? {});
    const schema = { ...(a.params ? { params: a.params } : {}), body: a.fields ? Type.Object({ ...ActionBody.properties, ...a.fields }) : ActionBody };
    const params = (req: FastifyRequest) => ({ ...((req.params ?? {}) as Params) });
    /** The route's parameters and the action's own fields, checked; or why not. */
    const input = (req: FastifyRequest): Params | string => {
      const body = req.body as Params;
      const p: Params = { ...params(req), ...Object.fromEntries(fields.map((k) => [k, body[k]!])) };
      return a.check ? a.check(p) : p;
    };
    const invalid = (req: FastifyRequest, reply: FastifyReply, why: string) =>
      send(req, reply, a.title(params(req)), a.page, html`<p class="error" role="alert">${why}</p><p><a href="${a.back(params(req))}">Back</a></p>`, 400);

    f.post(`${a.path}/review`, { schema }, async (req, reply) => {
      const p = input(req);
      if (typeof p === "string") return invalid(req, reply, p);
      const { reason } = req.body as { reason: string };
      const body = html`<p class="warn">${await a.confirm(c, p, req.operator!)}</p>
${facts([["Reason", reason], ["Operator", req.operator!.name]])}
${confirmForm({ action: fill(a.path, p), csrf: c.session(req)!.csrf, reason, button: a.button(p), cancel: a.back(p), fields: Object.fromEntries(fields.map((k) => [k, p[k]!])), stepUp: a.stepUp })}`;
      return send(req, reply, `Confirm: ${a.title(p)}`, a.page, body, 200, a.stepUp ? STEP_UP_SCRIPTS : undefined);
    });

    f.post(a.path, { schema }, async (req, reply) => {
      const { reason, confirm } = req.body as { reason: string; confirm?: string };
      if (confirm !== "yes") return invalid(req, reply, "Not confirmed: nothing was done. Review the action first.");
      const p = input(req);
      if (typeof p === "string") return invalid(req, reply, p);
      const back = html`<p><a href="${a.back(p)}">Back</a></p>`;
      // The step-up, used up here: for this very path (the route's own parameters), on this session, fresh.
      const why = a.stepUp ? c.stepUp(req, fill(a.path, params(req))) : undefined;
      if (why) return send(req, reply, `${a.title(p)}: refused`, a.page, html`<p class="error" role="alert">${why}</p>${back}`, 403);
      const { action: name, target } = a.audit(p);
      // The same action name, target, audit entry and port method as the JSON API's route.
      const r = await c.act(req, name, target, reason, () => a.run(c, p, reason, req.operator!));
      if (isRefusal(r)) return send(req, reply, `${a.title(p)}: refused`, a.page, html`<p class="error" role="alert">${r.message}</p>${back}`, 409);
      return send(req, reply, a.title(p), a.page, html`<p class="ok" role="status">${a.done(p, r as Json, req.operator!)}</p>${back}`);
    });
  }
}
