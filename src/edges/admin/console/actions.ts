// The console's operator actions besides the fee bump (views.ts): freeze / unfreeze a wallet, give back a queued
// payout, pause / resume payouts, drain mode on / off, a backup now. Each one is built the same way as the fee bump: a
// reason on the page that offers it, POST …/review shows exactly what will happen (nothing happens yet), and only the
// confirmation's POST runs it — through server.ts's audited `act` and the same AdminPort method, action name and target
// as the JSON API. The guard in index.ts checks the session, the Origin and the CSRF token of every one of these POSTs
// first. The console adds no rule: a refusal is the port's, shown as its message.
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { Type, type TSchema } from "@sinclair/typebox";
import { isRefusal, type Refusal } from "../../../domain/refusals.ts";
import type { Json } from "../port.ts";
import type { ConsoleContext } from "./index.ts";
import { Html, at, facts, html, page } from "./html.ts";
import { confirmForm } from "./forms.ts";

export const USER_KEY = "^u_[A-Za-z0-9_-]{10,64}$";
/** An operator action's reason: the JSON API's bounds (server.ts). */
export const Reason = Type.String({ minLength: 3, maxLength: 500, pattern: "^\\s*\\S\\s*\\S\\s*\\S" }); // at least three visible characters (linear: no nested quantifier)
const ActionBody = Type.Object({ _csrf: Type.String(), reason: Reason, confirm: Type.Optional(Type.Literal("yes")) });

type Params = Record<string, string>;

interface ActionSpec<P extends Params> {
  /** The confirmed action's route (fastify syntax); its confirmation page is POST `${path}/review`. */
  path: string;
  params?: TSchema;
  /** The navigation entry the pages belong to. */
  page: string;
  /** The audit entry's action and target: the JSON API's, exactly (server.ts). */
  audit(p: P): { action: string; target: string };
  title(p: P): string;
  /** What the confirmation will do, in words. */
  confirm(c: ConsoleContext, p: P): Html | Promise<Html>;
  button(p: P): string;
  run(c: ConsoleContext, p: P, reason: string, operator: string): Promise<Json | Refusal>;
  done(p: P, r: Json): Html;
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
    path: "/console/wallets/:userKey/freeze", params: Type.Object({ userKey: Type.String({ pattern: USER_KEY }) }), page: "wallets",
    audit: (p) => ({ action: "freeze", target: p.userKey }),
    title: (p) => `Freeze ${p.userKey}`,
    confirm: (_c, p) => html`Confirm: freeze the wallet <strong>${p.userKey}</strong>. Its withdrawals and transfers out are refused and its queued withdrawals wait (one already signed still goes) until an operator unfreezes it; deposits are still credited.`,
    button: () => "Confirm freeze",
    run: (c, p, reason, operator) => c.port.freeze(p.userKey, reason, operator),
    done: (p) => html`The wallet ${p.userKey} is frozen.`,
    back: (p) => `/console/wallets?userKey=${encodeURIComponent(p.userKey)}`,
  }),
  action<{ userKey: string }>({
    path: "/console/wallets/:userKey/unfreeze", params: Type.Object({ userKey: Type.String({ pattern: USER_KEY }) }), page: "wallets",
    audit: (p) => ({ action: "unfreeze", target: p.userKey }),
    title: (p) => `Unfreeze ${p.userKey}`,
    confirm: (_c, p) => html`Confirm: unfreeze the wallet <strong>${p.userKey}</strong>. Its owner can withdraw and send again.`,
    button: () => "Confirm unfreeze",
    run: (c, p, _reason, operator) => c.port.unfreeze(p.userKey, operator),
    done: (p) => html`The wallet ${p.userKey} is open again.`,
    back: (p) => `/console/wallets?userKey=${encodeURIComponent(p.userKey)}`,
  }),
  action<{ id: string }>({
    path: "/console/payouts/queued/:id/unqueue", params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 128, pattern: "^[\\w:.-]+$" }) }), page: "payouts",
    audit: (p) => ({ action: "unqueue-payout", target: p.id }),
    title: (p) => `Give back ${p.id}`,
    confirm: (_c, p) => html`Confirm: give back the queued payout <strong>${p.id}</strong>. It is never sent: its wallet gets the amount and the quoted fee back, and its user is told the withdrawal could not be sent. Refused if it is in a batch by now.`,
    button: () => "Confirm give back",
    run: (c, p, _reason, operator) => c.port.unqueuePayout(p.id, operator),
    done: (p) => html`${p.id} is given back to its wallet.`,
    back: () => "/console/payouts?status=queued",
  }),
  action<Params>({
    path: "/console/payouts/pause", page: "overview",
    audit: () => ({ action: "pause-payouts", target: "payouts" }),
    title: () => "Pause payouts",
    confirm: () => html`Confirm: pause payouts. No new batch is built until an operator resumes them (a restart keeps them paused); a batch already signed still goes out, and deposits, transfers and reservations go on. Resuming checks the books against the node first.`,
    button: () => "Confirm pause payouts",
    run: (c, _p, reason, operator) => c.port.pausePayouts(reason, operator),
    done: (_p, r) => (at(r, "already") === true ? html`Payouts were already paused: ${at(r, "paused")}` : html`Payouts are paused.`),
    back: () => "/console/",
  }),
  action<Params>({
    path: "/console/payouts/resume", page: "overview",
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
    run: (c, _p, _reason, operator) => c.port.resumePayouts(operator),
    done: () => html`Payouts are running: the engine found the books and the node in agreement.`,
    back: () => "/console/",
  }),
  action<{ mode: string }>({
    path: "/console/drain/:mode", params: Type.Object({ mode: Type.Union([Type.Literal("on"), Type.Literal("off")]) }), page: "overview",
    audit: (p) => ({ action: p.mode === "on" ? "drain-on" : "drain-off", target: "engine" }),
    title: (p) => `Drain mode ${p.mode}`,
    confirm: (_c, p) => (p.mode === "on"
      ? html`Confirm: switch drain mode <strong>on</strong>. No new wallets or deposit addresses; withdrawals keep working; every existing user is told once how to take their money out.`
      : html`Confirm: switch drain mode <strong>off</strong>. New wallets and deposit addresses are accepted again.`),
    button: (p) => `Confirm drain mode ${p.mode}`,
    run: (c, p, reason, operator) => c.port.setDraining(p.mode === "on", reason, operator),
    done: (_p, r) => html`Drain mode is ${at(r, "draining") === true ? "on" : "off"}.`,
    back: () => "/console/",
  }),
  action<Params>({
    path: "/console/backup", page: "overview",
    audit: () => ({ action: "backup", target: "store" }),
    title: () => "Back up now",
    confirm: () => html`Confirm: write a snapshot archive of the store now (the node wallet's backup included).`,
    button: () => "Confirm backup",
    run: (c) => c.port.backup(),
    done: (_p, r) => html`Snapshot written: <code>${at(r, "path")}</code> (${at(r, "bytes")} bytes in ${at(r, "ms")} ms).`,
    back: () => "/console/",
  }),
];

export function actionRoutes(f: FastifyInstance, c: ConsoleContext): void {
  const send = (req: FastifyRequest, reply: FastifyReply, title: string, pageName: string, body: Html, code = 200) =>
    reply.code(code).type("text/html; charset=utf-8").send(page({ title, page: pageName, csrf: c.session(req)!.csrf, operator: req.operator!.name, nav: true, body }));

  for (const a of ACTIONS as Array<ActionSpec<Params>>) {
    const schema = { ...(a.params ? { params: a.params } : {}), body: ActionBody };

    f.post(`${a.path}/review`, { schema }, async (req, reply) => {
      const p = (req.params ?? {}) as Params;
      const { reason } = req.body as { reason: string };
      const body = html`<p class="warn">${await a.confirm(c, p)}</p>
${facts([["Reason", reason], ["Operator", req.operator!.name]])}
${confirmForm({ action: fill(a.path, p), csrf: c.session(req)!.csrf, reason, button: a.button(p), cancel: a.back(p) })}`;
      return send(req, reply, `Confirm: ${a.title(p)}`, a.page, body);
    });

    f.post(a.path, { schema }, async (req, reply) => {
      const p = (req.params ?? {}) as Params;
      const { reason, confirm } = req.body as { reason: string; confirm?: string };
      const back = html`<p><a href="${a.back(p)}">Back</a></p>`;
      if (confirm !== "yes") return send(req, reply, a.title(p), a.page, html`<p class="error" role="alert">Not confirmed: nothing was done. Review the action first.</p>${back}`, 400);
      const { action: name, target } = a.audit(p);
      // The same action name, target, audit entry and port method as the JSON API's route.
      const r = await c.act(req, name, target, reason, () => a.run(c, p, reason, req.operator!.name));
      if (isRefusal(r)) return send(req, reply, `${a.title(p)}: refused`, a.page, html`<p class="error" role="alert">${r.message}</p>${back}`, 409);
      return send(req, reply, a.title(p), a.page, html`<p class="ok" role="status">${a.done(p, r as Json)}</p>${back}`);
    });
  }
}
