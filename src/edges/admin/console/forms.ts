// Small pure pieces of the console's operator actions: the reason form that starts an action, the confirmation
// form that finishes it, and the restore incident's alert box (with the forms that start an ambiguous payout's
// adoption). No rule lives here: they only render.
import type { Json } from "../port.ts";
import { Html, at, btc, html } from "./html.ts";

/**
 * The first step of an operator action: a reason (it goes into the audit log) and a button that leads to the
 * confirmation page at `${action}/review`. Nothing happens on this step.
 */
export function reasonForm(o: { action: string; csrf: string; button: string; label?: string; danger?: boolean }): Html {
  return html`<form method="post" action="${o.action}/review" class="action compact"><input type="hidden" name="_csrf" value="${o.csrf}">
<label>${o.label ?? "Reason (goes into the audit log)"} <input name="reason" minlength="3" maxlength="500" required></label>
<button type="submit"${new Html(o.danger ? ' class="danger"' : "")}>${o.button}</button></form>`;
}

/**
 * The confirmation step: the reason (and the action's other fields, such as a txid) travel on, with confirm=yes; only
 * this form's POST runs the action. With `stepUp`, the page's script asks for a touch of a security key for this
 * action before it sends the form (the page must load the WebAuthn scripts: STEP_UP_SCRIPTS).
 */
export function confirmForm(o: { action: string; csrf: string; reason: string; button: string; cancel: string; fields?: Record<string, string>; stepUp?: boolean }): Html {
  return html`<form method="post" action="${o.action}" class="action"${new Html(o.stepUp ? " data-step-up" : "")}><input type="hidden" name="_csrf" value="${o.csrf}">
${Object.entries(o.fields ?? {}).map(([k, v]) => html`<input type="hidden" name="${k}" value="${v}">`)}<input type="hidden" name="reason" value="${o.reason}"><input type="hidden" name="confirm" value="yes">
${o.stepUp ? stepUpNote() : ""}<button type="submit" class="danger">${o.button}</button> <a href="${o.cancel}">Cancel</a></form>${o.stepUp ? html`<p id="status" role="status"></p>` : ""}`;
}

/** The scripts a page with a step-up form loads (no inline script: the CSP forbids it). */
export const STEP_UP_SCRIPTS = ["simplewebauthn-browser.js", "webauthn-pages.js"];

/** Said above a confirmation that needs a touch. */
export function stepUpNote(): Html {
  return html`<p class="step-up">Confirming asks for a touch of your security key (with its PIN or fingerprint): the action runs only with it.</p>`;
}

const MAX_LISTED = 50;

/** The store cannot write (health's `store`): every money command is refused until it can again. */
export function storeAlert(store: Json | undefined): Html {
  if (at(store, "failing") !== true) return html``;
  return html`<section class="alert" role="alert" id="store-failing"><h2>The store cannot write</h2>
<p>${String(at(store, "lastError", "message") ?? "an I/O error")}. Commands are refused (nothing of them is stored, their senders are told
so); free disk space or fix the disk — writes resume by themselves. ${String(at(store, "failures") ?? 0)} failed write(s) so far.</p></section>`;
}

/**
 * What the reconciliation after a restore found and could not settle alone (health's `restoreIncident`): the
 * node wallet's spends the restored books do not know, the wallets frozen because of them, and the queued payouts
 * one of those spends paid without the chain saying which. Empty without one. With `adopt` (the page's CSRF token
 * and the queued payouts), each ambiguous payout gets the form that starts its adoption (actions.ts); without it,
 * they are only listed.
 */
export function incidentAlert(incident: Json | undefined, adopt?: { csrf: string; queued?: Json }): Html {
  if (!incident || typeof incident !== "object" || Array.isArray(incident)) return html``;
  const spends = at(incident, "unknownSpends"), frozen = at(incident, "frozen");
  const txids = (Array.isArray(spends) ? spends : []).map((s) => at(s, "txid")).filter((x): x is string => typeof x === "string");
  const wallets = (Array.isArray(frozen) ? frozen : []).filter((x): x is string => typeof x === "string");
  const listed = at(incident, "ambiguous");
  const ambiguous = (Array.isArray(listed) ? listed : []).filter((x): x is string => typeof x === "string");
  const when = at(incident, "at");
  const lost = at(incident, "lost"), held = at(incident, "heldCheques");
  return html`<section class="alert" role="alert" id="restore-incident"><h2>Restore incident: payouts stay paused</h2>
<p>After the restore from <code>${at(incident, "archive") ?? "a backup"}</code>${typeof when === "number" ? ` (${new Date(when).toISOString().replace("T", " ").slice(0, 19)} UTC)` : ""}, the node wallet shows
<strong>${txids.length} spend(s)</strong> the restored books do not know, and <strong>${wallets.length} wallet(s)</strong> were frozen because of them.
Review them, settle the books (a payout the restored books lost: debit its wallet, <code>POST /wallets/&lt;userKey&gt;/adjust</code>), then resume payouts (refused while the books and the node disagree).</p>
${typeof lost === "string" ? html`<p><strong>The backup may not reach the crash</strong> (${lost}): a payout sent after it and not mined yet is in no chain this node sees, so finding no unknown spend proves nothing. Wait until the old engine's last payouts would be mined, compare again, then resume.${typeof held === "number" && held > 0 ? html` <strong>${held} cheque(s)</strong> open in the restored books are held (no claim, revoke or expiry) until you release them (<code>POST /cheques/release-held</code>).` : ""}</p>` : ""}
<h3>Unknown spends</h3>${txids.length ? html`<ul class="txids">${txids.map((t) => html`<li><code class="txid">${t}</code></li>`)}</ul>` : html`<p class="empty">None listed.</p>`}
<h3>Frozen wallets (${wallets.length})</h3>${wallets.length ? html`<p>${wallets.slice(0, MAX_LISTED).map((k) => html`<a href="/console/wallets?userKey=${encodeURIComponent(k)}">${k}</a> `)}${wallets.length > MAX_LISTED ? `and ${wallets.length - MAX_LISTED} more` : ""}</p>` : html`<p class="empty">None.</p>`}
${ambiguous.length ? html`<h3>Ambiguous payouts (${ambiguous.length})</h3>
<p>Queued payouts of several wallets alike (address and amount) to an output of an unknown spend: one of them was paid by
it, and the chain cannot say which. Record which one (once per output): payouts do not resume until then.</p>
${adopt ? ambiguous.map((id) => adoptForm(id, Array.isArray(spends) ? spends : [], adopt)) : html`<ul>${ambiguous.map((id) => html`<li><code>${id}</code></li>`)}</ul>`}` : ""}
</section>`;
}

/**
 * The first step of an ambiguous payout's adoption: which unknown spend paid it — a choice among the incident's spends
 * with an output to the payout's address and amount (all of them when the payout is not in the queued list), or a
 * txid typed in when the incident lists none — and a reason. Nothing happens on this step.
 */
function adoptForm(id: string, spends: Json[], o: { csrf: string; queued?: Json }): Html {
  const queued = at(o.queued, "payouts");
  const p = (Array.isArray(queued) ? queued : []).find((q) => at(q, "id") === id);
  const pays = (s: Json) => {
    const outputs = at(s, "outputs");
    return Array.isArray(outputs) && outputs.some((x) => at(x, "address") === at(p, "address") && String(at(x, "sats")) === String(at(p, "amount")));
  };
  const all = spends.filter((s) => typeof at(s, "txid") === "string");
  const alike = p ? all.filter(pays) : [];
  const candidates = alike.length ? alike : all;
  const choice = candidates.length
    ? html`<label>The unknown spend that paid it <select name="txid" required><option value="">choose its txid</option>${candidates.map((s) => html`<option value="${at(s, "txid")}">${at(s, "txid")}${typeof at(s, "confirmations") === "number" ? ` (${at(s, "confirmations")} conf.)` : ""}</option>`)}</select></label>`
    : html`<label>Txid of the spend that paid it (64 hex digits) <input name="txid" required minlength="64" maxlength="64" pattern="[0-9a-f]{64}" autocomplete="off"></label>`;
  return html`<form method="post" action="/console/payouts/ambiguous/${encodeURIComponent(id)}/adopt/review" class="action compact adopt"><input type="hidden" name="_csrf" value="${o.csrf}">
<p><strong><code>${id}</code></strong>${p ? html`: ${btc(at(p, "amount"))} to <code>${at(p, "address")}</code>, wallet <a href="/console/wallets?userKey=${encodeURIComponent(String(at(p, "userKey")))}">${at(p, "userKey")}</a>` : html` <small>(not among the queued payouts now)</small>`}</p>
${choice}
<label>Reason (goes into the audit log) <input name="reason" minlength="3" maxlength="500" required></label>
<button type="submit">Review: it paid this payout…</button></form>`;
}
