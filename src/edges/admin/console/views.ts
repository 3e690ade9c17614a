// The console's pages: reads through the AdminPort (the same views the JSON API serves), and a stuck payout's
// fee bump through the same audited `act` as the API, with a reason and a confirmation step. The other operator
// actions (freeze, resume payouts, drain mode, backup now, revoke an operator, adopt an ambiguous payout after a
// restore) are offered here and run in actions.ts. The fee bump and the release move money: their confirmation needs
// a fresh touch of a security key for it (a step-up, auth.ts), as the JSON API needs a fresh TOTP code.
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { Type } from "@sinclair/typebox";
import type { Config } from "../../../config.ts";
import type { Logger } from "../../../log.ts";
import { isRefusal, type Refusal } from "../../../domain/refusals.ts";
import type { Json } from "../port.ts";
import { auditRead, type AuditLog } from "../audit.ts";
import type { ConsoleContext } from "./index.ts";
import { Html, age, at, badge, btc, facts, html, page, table, when } from "./html.ts";
import { charts } from "./charts.ts";
import { STEP_UP_SCRIPTS, incidentAlert, reasonForm, stepUpNote, storeAlert } from "./forms.ts";
import { ADD_KEY } from "./auth.ts";
import { Reason, USER_KEY } from "./actions.ts";
import { STEP_UP_MAX_AGE_MS } from "./session.ts";

const STEP_UP_MINUTES = STEP_UP_MAX_AGE_MS / 60_000;
import { AuditQuery, NumberText, auditQuery, numberText, type AuditQueryText } from "../schemas.ts";

const BATCH = "^b\\d{1,12}$";
const DEPOSIT_STATUSES = ["pending", "confirmed", "dropped", "reversed", "ignored_dust"];
const PAYOUT_STATUSES = ["queued", "signed", "broadcast", "confirmed", "stuck", "cancelling", "released"];
/** Batches an operator may try to bump or release (the payout actor decides whether it really can). */
const BUMPABLE = new Set(["signed", "broadcast", "stuck"]);
const RELEASABLE = new Set(["stuck", "cancelling"]);

/** An operator action on a batch at a fee rate, offered beside the batches whose status is in `statuses`. */
interface BatchAction {
  path: string;
  /** The audit log's name for it. */
  action: string;
  noun: string;
  title: string;
  rateLabel: string;
  statuses: Set<string>;
  explain: string;
  review: (batch: string, b: Row, rate: number) => Html;
  run: (batch: string, rate: bigint, reason: string) => Promise<Json | Refusal>;
  done: (batch: string, r: Json) => Html;
}
const FeeRate = Type.String({ pattern: "^[0-9]{1,6}$" });

/**
 * The highest fee rate an operator may give a batch at all (sat/vB), with the override for a rate above
 * `withdrawals.maxFeeRateSatVb` (the engine's own ceiling for its batches, which may be configured higher).
 */
export const hardMaxFeeRate = (config: Config): number => Math.max(10_000, config.withdrawals.maxFeeRateSatVb);

/** A fee action's audit reason: the operator's, and, for a rate above the configured maximum, that it was confirmed. */
export const rateReason = (reason: string, rate: number, max: number): string =>
  rate > max ? `${reason} [${rate} sat/vB, above withdrawals.maxFeeRateSatVb ${max}: confirmed]` : reason;

/**
 * An operator listed every user's deposits or payouts (their keys, addresses, amounts): recorded before the answer
 * is sent, as a look at one wallet is (auditRead), one entry per request. A store that cannot write is an alert,
 * and the list is shown all the same.
 */
export async function auditList(log: Pick<Logger, "error">, audit: AuditLog, operator: string, route: string, status: string | undefined, filters: { userKey?: string | undefined; txid?: string | undefined } = {}): Promise<void> {
  const by = [status && `status ${status}`, filters.userKey && `user ${filters.userKey}`, filters.txid && `txid ${filters.txid}`].filter((x): x is string => Boolean(x));
  const reason = by.length ? `listed them with ${by.join(", ")}` : "listed them all";
  await audit.append({ operator, action: "read-list", target: route, reason }).catch((e: unknown) => {
    log.error({ alert: true, err: (e as Error).message, operator, action: "read-list", target: route }, "an operator's list of deposits or payouts could not be recorded in the audit log");
  });
}

type Row = { [k: string]: Json };
const rows = (j: Json | undefined): Row[] => (Array.isArray(j) ? (j.filter((x) => x && typeof x === "object" && !Array.isArray(x)) as Row[]) : []);
const short = (s: Json | undefined, n = 16) => (typeof s === "string" && s.length > n ? `${s.slice(0, n)}…` : (s ?? "—"));

export function viewRoutes(f: FastifyInstance, c: ConsoleContext): void {
  const send = (req: FastifyRequest, reply: FastifyReply, title: string, pageName: string, body: Html, code = 200, scripts?: string[]) =>
    reply.code(code).type("text/html; charset=utf-8").send(page({ title, page: pageName, csrf: c.session(req)!.csrf, operator: req.operator!.name, nav: true, body, ...(scripts ? { scripts } : {}) }));

  const filters = (base: string, statuses: string[], current: string | undefined) =>
    html`<p class="filters">Status: ${[undefined, ...statuses].map((st) => html`<a href="${st ? `${base}?status=${st}` : base}"${new Html(st === current ? ' aria-current="true"' : "")}>${st ?? "all"}</a> `)}</p>`;

  f.get("/console/", async (req, reply) => {
    // The solvency check reads the payout book: with the payout actor stopped it cannot answer, and the page that says
    // so (from /health) must still be shown.
    const [health, node, tip, solvency] = await Promise.all([c.port.health(), c.port.node(), c.port.tip(), c.port.solvency().catch((e: unknown): Json => ({ unknown: (e as Error).message }))]);
    const actors = c.port.actors();
    const paused = at(health, "payoutsPaused"), draining = at(health, "draining");
    const csrf = c.session(req)!.csrf;
    const l = (k: string) => at(solvency, "liabilities", k), n = (k: string) => at(solvency, "node", k);
    const incident = at(health, "restoreIncident");
    // The queued payouts only when the incident names ambiguous ones: their forms show what each one is.
    const ambiguous = at(incident, "ambiguous");
    const queued = Array.isArray(ambiguous) && ambiguous.length ? await c.port.payouts("queued") : undefined;
    const stopped = at(health, "singletons", "action");
    // A singleton actor stopped after repeated crashes: its work waits for a restart, whatever else the page says.
    const stoppedAlert = typeof stopped === "string" ? html`<section class="alert" role="alert" id="actor-stopped"><h2>An actor has stopped</h2><p>${stopped}.</p></section>` : "";
    const body = html`${stoppedAlert}${storeAlert(at(health, "store"))}${incidentAlert(incident, { csrf, ...(queued !== undefined ? { queued } : {}) })}<section class="cards">
<article><h2>Chain</h2>${facts([
      ["Network", at(health, "network")], ["Tip height", at(tip, "height") ?? "unknown"],
      ["Tip age", html`${age(at(tip, "ageS") ?? undefined)} <small>(${at(tip, "from") ?? "node unreachable"})</small>`],
      ["Deposit scanner height", at(node, "watcher", "height")],
    ])}</article>
<article><h2>Node actor</h2>${facts([
      ["State", badge(at(node, "actor", "state") === "ready", "ready", String(at(node, "actor", "state") ?? "unknown"))], ["Queue", at(node, "actor", "queue")],
      ["Calls / errors", `${at(node, "actor", "calls") ?? 0} / ${at(node, "actor", "errors") ?? 0}`], ["Deposit address pool", at(node, "actor", "addressPool")],
    ])}</article>
<article><h2>Wallets</h2>${facts([
      ["Resident", at(actors, "wallets", "resident")], ["Activations / passivations", `${at(actors, "wallets", "activations") ?? 0} / ${at(actors, "wallets", "passivations") ?? 0}`],
      ["Commands in flight", at(actors, "wallets", "inFlight")], ["Journal batches", at(actors, "journal", "batches")],
    ])}</article>
<article><h2>Solvency</h2>${facts([
      ["Status", at(solvency, "unknown") !== undefined ? html`<span class="badge warn">unknown</span> ${at(solvency, "unknown")}` : badge(at(solvency, "ok") === true, "solvent", "HOLE")], ...(at(solvency, "reason") ? [["Why", at(solvency, "reason")] as [string, unknown]] : []),
      ...(at(solvency, "warning") ? [["Warning", at(solvency, "warning")] as [string, unknown]] : []),
      ["Users' available", btc(l("available"))], ["Users' pending", btc(l("pending"))], ["Users' reserved", btc(l("reserved"))], ["Cheque escrow", btc(l("escrow"))],
      ["Transfers between users in flight", btc(l("transit"))],
      ["Payouts in flight", btc(l("inFlightPayouts"))], ["Firm liabilities", btc(at(solvency, "firm"))],
      ["Node trusted", btc(n("trusted"))], ["Of it, deposits pending below the target", btc(n("maturingDeposits"))], ["Node untrusted pending", btc(n("untrustedPending"))], ["Surplus", btc(at(solvency, "surplus"))],
    ])}</article>
<article><h2>Safety switches</h2>${facts([
      ["Watchdog / payouts", paused ? html`<span class="badge bad">paused</span> ${paused}` : badge(true, "running", "")],
      ["Drain mode", draining ? html`<span class="badge warn">on</span> ${draining}` : "off"],
      ["Last backup", age(at(health, "lastBackupAgeS") ?? undefined)],
    ])}
${paused ? reasonForm({ action: "/console/payouts/resume", csrf, button: "Resume payouts…", label: "Reason to resume payouts" }) : reasonForm({ action: "/console/payouts/pause", csrf, button: "Pause payouts…", label: "Reason to pause payouts", danger: true })}
${reasonForm({ action: `/console/drain/${draining ? "off" : "on"}`, csrf, button: draining ? "Drain mode off…" : "Drain mode on…", label: `Reason to switch drain mode ${draining ? "off" : "on"}`, danger: !draining })}
${reasonForm({ action: "/console/backup", csrf, button: "Back up now…", label: "Reason for a backup now" })}</article></section>`;
    return send(req, reply, "Overview", "overview", body);
  });
  f.get("/console", async (_req, reply) => reply.redirect("/console/", 303));

  f.get("/console/wallets", {
    schema: { querystring: Type.Object({ userKey: Type.Optional(Type.String({ maxLength: 80 })), page: Type.Optional(NumberText) }) },
  }, async (req, reply) => {
    const q = req.query as { userKey?: string; page?: string };
    const form = html`<form method="get" action="/console/wallets" class="lookup"><label>User key <input name="userKey" value="${q.userKey ?? ""}" pattern="${USER_KEY}" required placeholder="u_…"></label> <button type="submit">Look up</button></form>`;
    if (!q.userKey) return send(req, reply, "Wallets", "wallets", form);
    if (!new RegExp(USER_KEY).test(q.userKey)) return send(req, reply, "Wallets", "wallets", html`${form}<p class="error" role="alert">That is not a user key (u_ followed by 10–64 letters, digits, - or _).</p>`, 400);
    await auditRead(c.log, c.audit, req.operator!.name, q.userKey);
    const w = await c.port.wallet(q.userKey, numberText(q.page, 0, 100_000));
    if (isRefusal(w)) return send(req, reply, "Wallets", "wallets", html`${form}<p class="error" role="alert">${w.message}</p>`, 404);
    const hist = at(w, "history");
    const p = Number(at(hist, "page") ?? 0), pages = Number(at(hist, "pages") ?? 1);
    const link = (n: number, label: string) => html`<a href="/console/wallets?userKey=${encodeURIComponent(q.userKey!)}&amp;page=${n}">${label}</a>`;
    const frozen = at(w, "frozen");
    const body = html`${form}<section class="cards"><article><h2>${q.userKey}</h2>${facts([
      ["State", frozen ? html`<span class="badge bad">frozen</span> by ${at(frozen, "by")}: ${at(frozen, "reason")} (${when(at(frozen, "at"))})` : badge(true, "open", "")],
      ["Opened", when(at(w, "openedAt"))], ["Available", btc(at(w, "available"))], ["Pending", btc(at(w, "pending"))], ["Reserved", btc(at(w, "reserved"))],
      ["Withdrawn today", btc(at(w, "day", "withdrawn"))], ["Deposit addresses", (at(w, "addresses") as Json[] | undefined)?.length ?? 0],
      ["History entries", at(w, "historyTotal")],
    ])}
${frozen
    ? reasonForm({ action: `/console/wallets/${encodeURIComponent(q.userKey)}/unfreeze`, csrf: c.session(req)!.csrf, button: "Unfreeze…", label: "Reason to unfreeze" })
    : reasonForm({ action: `/console/wallets/${encodeURIComponent(q.userKey)}/freeze`, csrf: c.session(req)!.csrf, button: "Freeze…", label: "Reason to freeze", danger: true })}</article></section>
<h2>History (newest first)</h2>
${table(rows(at(hist, "entries")), [["When", (r) => when(r.at)], ["Kind", (r) => r.kind], ["Amount", (r) => btc(r.amount)], ["Status", (r) => r.status], ["Reference", (r) => short(r.ref, 24)], ["Counterparty", (r) => r.counterparty ?? ""]])}
<p class="pager">Page ${p + 1} of ${pages} ${p > 0 ? link(p - 1, "← newer") : ""} ${p + 1 < pages ? link(p + 1, "older →") : ""}</p>`;
    return send(req, reply, "Wallets", "wallets", body);
  });

  // An empty field is no filter (the form sends every field).
  const DepositsQuery = Type.Object({
    status: Type.Optional(Type.Union(DEPOSIT_STATUSES.map((s) => Type.Literal(s)))),
    userKey: Type.Optional(Type.String({ pattern: `^$|${USER_KEY}` })), txid: Type.Optional(Type.String({ pattern: "^([0-9a-f]{64})?$" })),
  }, { additionalProperties: false });
  f.get("/console/deposits", { schema: { querystring: DepositsQuery } }, async (req, reply) => {
    const q = req.query as { status?: string; userKey?: string; txid?: string };
    const status = q.status, userKey = q.userKey || undefined, txid = q.txid || undefined;
    await auditList(c.log, c.audit, req.operator!.name, "/console/deposits", status, { userKey, txid });
    const d = await c.port.deposits({ ...(status ? { status } : {}), ...(userKey ? { userKey } : {}), ...(txid ? { txid } : {}), limit: 100 });
    const listed = rows(at(d, "deposits")).length;
    // The status links keep the other filters.
    const link = (st: string | undefined) => {
      const qs = new URLSearchParams({ ...(st ? { status: st } : {}), ...(userKey ? { userKey } : {}), ...(txid ? { txid } : {}) }).toString();
      return qs ? `/console/deposits?${qs}` : "/console/deposits";
    };
    const statusLinks = html`<p class="filters">Status: ${[undefined, ...DEPOSIT_STATUSES].map((st) => html`<a href="${link(st)}"${new Html(st === status ? ' aria-current="true"' : "")}>${st ?? "all"}</a> `)}</p>`;
    const lookup = html`<form method="get" action="/console/deposits" class="lookup">${status ? html`<input type="hidden" name="status" value="${status}">` : ""}<label>User key <input name="userKey" value="${userKey ?? ""}" pattern="${USER_KEY}" placeholder="u_…"></label> <label>Txid <input name="txid" value="${txid ?? ""}" pattern="[0-9a-f]{64}" placeholder="64 hex digits"></label> <button type="submit">Filter</button></form>`;
    const cut = at(d, "truncated") === true
      ? html`<p class="warn" role="status" id="deposits-truncated">Showing the ${listed} newest of ${at(d, "matched")} deposits that match: narrow the list by user key, txid or status to see the others.</p>`
      : html`<p>${listed} deposit(s).</p>`;
    const body = html`${statusLinks}${lookup}${cut}${table(rows(at(d, "deposits")), [
      ["Seen", (r) => when(r.seenAt)], ["User key", (r) => html`<a href="/console/wallets?userKey=${encodeURIComponent(String(r.userKey))}">${r.userKey}</a>`],
      ["Outpoint", (r) => `${short(r.txid)}:${r.vout}`], ["Amount", (r) => btc(r.amount)], ["Status", (r) => r.status], ["Confirmations", (r) => r.confirmations],
    ], "No deposits match.")}`;
    return send(req, reply, "Deposits", "deposits", body);
  });

  f.get("/console/payouts", { schema: { querystring: Type.Object({ status: Type.Optional(Type.Union(PAYOUT_STATUSES.map((s) => Type.Literal(s)))) }) } }, async (req, reply) => {
    const { status } = req.query as { status?: string };
    await auditList(c.log, c.audit, req.operator!.name, "/console/payouts", status);
    const p = await c.port.payouts(status);
    const body = html`${filters("/console/payouts", PAYOUT_STATUSES, status)}
<h2>Batches (transactions)</h2>${table(rows(at(p, "batches")), [
      ["Batch", (r) => r.id], ["Status", (r) => html`<span class="status-${r.status}">${r.status}</span>`], ["Txid", (r) => html`<code class="txid">${r.txid}</code>`],
      ["Fee", (r) => btc(r.fee)], ["Payouts", (r) => (Array.isArray(r.ids) ? r.ids.length : 0)], ["Fee bumps", (r) => (Array.isArray(r.replaced) ? r.replaced.length : 0)],
      ["Since", (r) => when(r.at)], ["Note", (r) => {
        const cancel = at(r, "cancel");
        if (!cancel) return r.reason ?? "";
        const txid = at(cancel, "txid");
        return html`releasing: ${at(cancel, "reason")} — ${txid ? html`cancellation <code class="txid">${txid}</code>, fee ${btc(at(cancel, "fee"))}` : "its input was spent in a block; waiting for that to be deep enough"}`;
      }],
      ["", (r) => html`${BUMPABLE.has(String(r.status)) ? html`<a class="button" href="/console/payouts/${r.id}/bump">Bump fee…</a>` : ""} ${RELEASABLE.has(String(r.status)) ? html`<a class="button" href="/console/payouts/${r.id}/release">Release…</a>` : ""}`],
    ], "No batches with this status.")}
<h2>Payouts</h2>${table(rows(at(p, "payouts")), [
      ["Id", (r) => short(r.id, 20)], ["User key", (r) => r.userKey], ["Address", (r) => short(r.address, 20)], ["Amount", (r) => btc(r.amount)],
      ["Status", (r) => r.status], ["Batch", (r) => r.batch ?? ""], ["Fee share", (r) => btc(r.fee ?? r.quotedFee)], ["Queued", (r) => when(r.at)],
      ["", (r) => (r.status === "queued" ? reasonForm({ action: `/console/payouts/queued/${encodeURIComponent(String(r.id))}/unqueue`, csrf: c.session(req)!.csrf, button: "Give back…", label: "Reason to give it back", danger: true }) : "")],
    ], "No payouts with this status.")}`;
    return send(req, reply, "Payouts", "payouts", body);
  });

  // The fee bump and the release of a stuck batch: a form, a review page that says exactly what will happen, and only
  // then the action, through the same audited `act` and port method as the JSON API.
  const findBatch = async (id: string): Promise<Row | undefined> => rows(at(await c.port.payouts(), "batches")).find((b) => b.id === id);
  const BatchParams = Type.Object({ batch: Type.String({ pattern: BATCH }) });
  const RateBody = Type.Object({ _csrf: Type.String(), feeRateSatVb: FeeRate, reason: Reason, confirm: Type.Optional(Type.Literal("yes")), aboveMaxFeeRate: Type.Optional(Type.Literal("yes")) });
  // The engine's own ceiling for its batches; above it only with the review page's checkbox (the JSON API's
  // `aboveMaxFeeRate`): 5000 typed for 500 on a large batch pays up to bitcoind's -maxtxfee.
  const maxRate = c.config.withdrawals.maxFeeRateSatVb, hardMax = hardMaxFeeRate(c.config);
  const checkRate = (s: string) => {
    const n = Number(s);
    return Number.isInteger(n) && n >= 1 && n <= hardMax ? n : undefined;
  };
  const aboveMaxText = (rate: number) =>
    html`<strong>${rate} sat/vB is above the configured maximum</strong> of ${maxRate} sat/vB (<code>withdrawals.maxFeeRateSatVb</code>), the most the engine pays for its own batches`;
  const BATCH_ACTIONS: BatchAction[] = [
    {
      path: "bump", action: "bump-fee", noun: "fee bump", title: "Bump a payout's fee", rateLabel: "New fee rate", statuses: BUMPABLE,
      explain: "Replaces the batch's transaction by one paying more (RBF), for a batch in the node's mempool.",
      review: (batch, b, rate) => html`replace the transaction of <strong>${batch}</strong> (<code>${b.txid}</code>, fee ${btc(b.fee)}) by one paying <strong>${rate} sat/vB</strong>${typeof b.vsize === "number" ? html`: a fee of <strong id="bump-fee">${btc(String(BigInt(rate) * BigInt(b.vsize)))}</strong> for its ${b.vsize} vB (more if the node must add a coin to pay it)` : ""}. The service pays the difference; users are never charged above their quotes.`,
      run: (batch, rate) => c.port.bumpPayout(batch, rate),
      done: (batch, r) => html`The fee of ${batch} was bumped: new transaction <code>${at(r, "txid")}</code>, fee ${btc(at(r, "fee"))}.`,
    },
    {
      path: "release", action: "release-payout", noun: "release", title: "Release a stuck payout batch", rateLabel: "Fee rate of the cancellation", statuses: RELEASABLE,
      explain: "Gives up a stuck batch that is in no block and no mempool: its inputs are spent back to the node's wallet, and once that is confirmed its payouts are released (the users get the amounts and quoted fees back). Again while that is unconfirmed: a higher fee rate.",
      review: (batch, b, rate) => html`give up <strong>${batch}</strong> (<code>${b.txid}</code>, ${Array.isArray(b.ids) ? b.ids.length : 0} payouts): its inputs are spent back to the node's wallet at <strong>${rate} sat/vB</strong> (the service pays that fee), and once that is confirmed the users get their reservations back. Nothing is paid to them.`,
      run: (batch, rate, reason) => c.port.releasePayout(batch, rate, reason),
      done: (batch, r) => at(r, "status") === "released"
        ? html`${batch} is released: its payouts are back in their wallets.`
        : html`${batch} is being released${at(r, "txid") ? html`: cancellation <code>${at(r, "txid")}</code>, fee ${btc(at(r, "fee"))}` : ": one of its inputs is already spent in a block"}. Its payouts are released once that is confirmed.`,
    },
  ];
  for (const a of BATCH_ACTIONS) {
    f.get(`/console/payouts/:batch/${a.path}`, { schema: { params: BatchParams } }, async (req, reply) => {
      const { batch } = req.params as { batch: string };
      const b = await findBatch(batch);
      if (!b) return send(req, reply, a.title, "payouts", html`<p class="error" role="alert">No batch ${batch}.</p>`, 404);
      const csrf = c.session(req)!.csrf;
      const body = html`${facts([["Batch", batch], ["Status", b.status], ["Txid", html`<code>${b.txid}</code>`], ["Current fee", btc(b.fee)], ["Payouts in it", Array.isArray(b.ids) ? b.ids.length : 0]])}
<p>${a.explain}</p>
<form method="post" action="/console/payouts/${batch}/${a.path}/review" class="action"><input type="hidden" name="_csrf" value="${csrf}">
<label>${a.rateLabel} (sat/vB; the engine's own batches pay at most ${maxRate}) <input type="number" name="feeRateSatVb" min="1" max="${hardMax}" required></label>
<label>Reason (goes into the audit log) <textarea name="reason" minlength="3" maxlength="500" required></textarea></label>
<button type="submit">Review the ${a.noun}</button></form>`;
      return send(req, reply, `${a.title}: ${batch}`, "payouts", body);
    });

    f.post(`/console/payouts/:batch/${a.path}/review`, { schema: { params: BatchParams, body: RateBody } }, async (req, reply) => {
      const { batch } = req.params as { batch: string };
      const body = req.body as { feeRateSatVb: string; reason: string };
      const rate = checkRate(body.feeRateSatVb);
      const b = await findBatch(batch);
      if (!b || rate === undefined) return send(req, reply, `${a.title}: ${batch}`, "payouts", html`<p class="error" role="alert">${!b ? `No batch ${batch}.` : `A fee rate is 1 to ${hardMax} sat/vB.`}</p>`, 400);
      const csrf = c.session(req)!.csrf;
      const above = rate > maxRate;
      const out = html`<p class="warn">Confirm: ${a.review(batch, b, rate)}</p>
${above ? html`<p class="error" role="alert" id="above-max-fee-rate">${aboveMaxText(rate)}: ${(rate / maxRate).toFixed(1)} times it. Check the rate; to go on anyway, tick the box below.</p>` : ""}
${facts([["Reason", body.reason], ["Operator", req.operator!.name]])}
<form method="post" action="/console/payouts/${batch}/${a.path}" class="action" data-step-up><input type="hidden" name="_csrf" value="${csrf}">
<input type="hidden" name="feeRateSatVb" value="${rate}"><input type="hidden" name="reason" value="${body.reason}"><input type="hidden" name="confirm" value="yes">
${above ? html`<label><input type="checkbox" name="aboveMaxFeeRate" value="yes" required> I mean ${rate} sat/vB, above the configured maximum of ${maxRate} sat/vB</label>` : ""}
${stepUpNote()}<button type="submit" class="danger">Confirm ${a.noun}</button> <a href="/console/payouts">Cancel</a></form><p id="status" role="status"></p>`;
      return send(req, reply, `Confirm the ${a.noun} of ${batch}`, "payouts", out, 200, STEP_UP_SCRIPTS);
    });

    f.post(`/console/payouts/:batch/${a.path}`, { schema: { params: BatchParams, body: RateBody } }, async (req, reply) => {
      const { batch } = req.params as { batch: string };
      const body = req.body as { feeRateSatVb: string; reason: string; confirm?: string; aboveMaxFeeRate?: string };
      const rate = checkRate(body.feeRateSatVb);
      if (body.confirm !== "yes" || rate === undefined) return send(req, reply, a.title, "payouts", html`<p class="error" role="alert">Not confirmed: nothing was done. Review the ${a.noun} first.</p>`, 400);
      if (rate > maxRate && body.aboveMaxFeeRate !== "yes") {
        return send(req, reply, a.title, "payouts", html`<p class="error" role="alert">${aboveMaxText(rate)}: nothing was done. Review the ${a.noun} again, and tick the box if you mean it.</p><p><a href="/console/payouts">Back to payouts</a></p>`, 422);
      }
      // The step-up, used up here: for this batch's bump (or release), on this session, fresh.
      const why = c.stepUp(req, `/console/payouts/${batch}/${a.path}`);
      if (why) return send(req, reply, `${a.title}: refused`, "payouts", html`<p class="error" role="alert">${why}</p><p><a href="/console/payouts">Back to payouts</a></p>`, 403);
      const r = await c.act(req, a.action, batch, rateReason(body.reason, rate, maxRate), () => a.run(batch, BigInt(rate), body.reason));
      if (isRefusal(r)) return send(req, reply, `${a.title}: refused`, "payouts", html`<p class="error" role="alert">${r.message}</p><p><a href="/console/payouts">Back to payouts</a></p>`, 409);
      return send(req, reply, a.title, "payouts", html`<p class="ok" role="status">${a.done(batch, r as Json)}</p><p><a href="/console/payouts">Back to payouts</a></p>`);
    });
  }

  // The JSON API's GET /audit: newest first, a page at a time (older →), by action and target.
  f.get("/console/audit", { schema: { querystring: AuditQuery } }, async (req, reply) => {
    const q = auditQuery(req.query as AuditQueryText);
    const { entries, next } = await c.audit.page(q);
    const keep = { ...(q.action ? { action: q.action } : {}), ...(q.target ? { target: q.target } : {}), ...(q.limit !== 100 ? { limit: String(q.limit) } : {}) };
    const form = html`<form method="get" action="/console/audit" class="lookup"><label>Action <input name="action" value="${q.action ?? ""}" maxlength="40" placeholder="freeze, rescan, read-wallet…"></label> <label>Target <input name="target" value="${q.target ?? ""}" maxlength="200" placeholder="a user key, a batch, …"></label> <button type="submit">Filter</button></form>`;
    const body = html`${form}${table(entries, [
      ["#", (e) => e.seq], ["When", (e) => when(e.at)], ["Operator", (e) => e.operator], ["Action", (e) => e.action], ["Target", (e) => e.target], ["Why", (e) => e.reason], ["Outcome", (e) => e.outcome ?? ""],
    ], q.action || q.target || q.before ? "No entries match here." : "The audit log is empty.")}
<p class="pager">${q.before !== undefined ? html`<a href="/console/audit?${new URLSearchParams(keep).toString()}">← newest</a>` : ""} ${next !== null ? html`<a href="/console/audit?${new URLSearchParams({ ...keep, before: String(next) }).toString()}" id="audit-older">older →</a>` : ""}</p>`;
    return send(req, reply, "Audit log", "audit", body);
  });

  // Who may use the admin edge, never their TOTP secret (nor its time step, nor an enrollment link's hash), and the
  // online revocation (actions.ts). The JSON API's rule: any active operator, yourself included, never the last one.
  f.get("/console/operators", async (req, reply) => {
    const me = req.operator!;
    const all = (await c.operators.list()).sort((a, b) => Number(!!a.revoked) - Number(!!b.revoked) || a.name.localeCompare(b.name) || a.addedAt - b.addedAt);
    const csrf = c.session(req)!.csrf;
    const body = html`<p>A revoked operator's certificate is refused from the next request on (the JSON API and this console), and their
console sessions end at once. Any active operator may be revoked here, yourself included, except the last active one.
Adding an operator, or a new certificate for a revoked one: <code>runigun keys operator add NAME --out DIR</code> with the engine stopped.</p>
${table(all, [
      ["Name", (op) => html`${op.name}${op.fingerprint === me.fingerprint ? html` <span class="badge ok">you</span>` : ""}`],
      ["State", (op) => badge(!op.revoked, "active", "revoked")],
      ["Certificate (SHA-256)", (op) => html`<code>${op.fingerprint.slice(0, 16)}…</code>`],
      ["Added", (op) => when(op.addedAt)],
      ["Security keys", (op) => (op.keys ?? []).length],
      ["", (op) => (op.revoked ? "" : reasonForm({ action: `/console/operators/${encodeURIComponent(op.name)}/revoke`, csrf, button: "Revoke…", label: `Reason to revoke ${op.name}`, danger: true }))],
    ], "No operators.")}`;
    return send(req, reply, "Operators", "operators", body);
  });

  f.get("/console/charts", async (req, reply) => send(req, reply, "Charts", "charts", charts(await c.port.series())));

  f.get("/console/keys", async (req, reply) => {
    const s = c.session(req)!;
    const keys = req.operator!.keys ?? [];
    const body = html`${table(keys, [
      ["Name", (k) => html`${k.label}${k.id === s.keyId ? html` <span class="badge ok">this session</span>` : ""}`], ["Added", (k) => when(k.addedAt)], ["Last used", (k) => when(k.lastUsedAt)],
      ["Remove", (k) => (keys.length > 1 ? html`<form method="post" action="/console/keys/remove" class="inline" data-step-up><input type="hidden" name="_csrf" value="${s.csrf}"><input type="hidden" name="id" value="${k.id}"><input name="reason" required minlength="3" placeholder="reason"> <button type="submit" class="danger">Remove</button></form>` : "your only key")],
    ])}
<p>Removing a key, like adding one, asks for a touch of a key registered for you (with its PIN or fingerprint).</p>
<h2>Add another security key</h2>
<p>First confirm it is you with a key already registered for you (with its PIN or fingerprint); then, within ${STEP_UP_MINUTES} minutes, insert the new key and register it.</p>
<form id="add-key-form" data-step-up-for="${ADD_KEY}"><label>Name <input id="key-label" required maxlength="60" value="spare key"></label>
<button type="button" id="step-up-key">1. Confirm with a registered key</button> <button type="submit" id="add-key" disabled>2. Register the new key</button></form><p id="status" role="status"></p>`;
    return reply.type("text/html; charset=utf-8").send(page({ title: "Security keys", page: "keys", csrf: s.csrf, operator: req.operator!.name, nav: true, body, scripts: ["simplewebauthn-browser.js", "webauthn-pages.js"] }));
  });
}
