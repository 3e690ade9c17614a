// Small pure pieces of the console's operator actions: the reason form that starts an action, the confirmation
// form that finishes it, and the restore incident's alert box. No rule lives here: they only render.
import type { Json } from "../port.ts";
import { Html, at, html } from "./html.ts";

/**
 * The first step of an operator action: a reason (it goes into the audit log) and a button that leads to the
 * confirmation page at `${action}/review`. Nothing happens on this step.
 */
export function reasonForm(o: { action: string; csrf: string; button: string; label?: string; danger?: boolean }): Html {
  return html`<form method="post" action="${o.action}/review" class="action compact"><input type="hidden" name="_csrf" value="${o.csrf}">
<label>${o.label ?? "Reason (goes into the audit log)"} <input name="reason" minlength="3" maxlength="500" required></label>
<button type="submit"${new Html(o.danger ? ' class="danger"' : "")}>${o.button}</button></form>`;
}

/** The confirmation step: the reason travels on, with confirm=yes; only this form's POST runs the action. */
export function confirmForm(o: { action: string; csrf: string; reason: string; button: string; cancel: string }): Html {
  return html`<form method="post" action="${o.action}" class="action"><input type="hidden" name="_csrf" value="${o.csrf}">
<input type="hidden" name="reason" value="${o.reason}"><input type="hidden" name="confirm" value="yes">
<button type="submit" class="danger">${o.button}</button> <a href="${o.cancel}">Cancel</a></form>`;
}

const MAX_LISTED = 50;

/**
 * What the reconciliation after a restore found and could not settle alone (health's `restoreIncident`): the
 * node wallet's spends the restored books do not know, and the wallets frozen because of them. Empty without one.
 */
/** The store cannot write (health's `store`): every money command is refused until it can again. */
export function storeAlert(store: Json | undefined): Html {
  if (at(store, "failing") !== true) return html``;
  return html`<section class="alert" role="alert" id="store-failing"><h2>The store cannot write</h2>
<p>${String(at(store, "lastError", "message") ?? "an I/O error")}. Commands are refused (nothing of them is stored, their senders are told
so); free disk space or fix the disk — writes resume by themselves. ${String(at(store, "failures") ?? 0)} failed write(s) so far.</p></section>`;
}

export function incidentAlert(incident: Json | undefined): Html {
  if (!incident || typeof incident !== "object" || Array.isArray(incident)) return html``;
  const spends = at(incident, "unknownSpends"), frozen = at(incident, "frozen");
  const txids = (Array.isArray(spends) ? spends : []).map((s) => at(s, "txid")).filter((x): x is string => typeof x === "string");
  const wallets = (Array.isArray(frozen) ? frozen : []).filter((x): x is string => typeof x === "string");
  const when = at(incident, "at");
  return html`<section class="alert" role="alert" id="restore-incident"><h2>Restore incident: payouts stay paused</h2>
<p>After the restore from <code>${at(incident, "archive") ?? "a backup"}</code>${typeof when === "number" ? ` (${new Date(when).toISOString().replace("T", " ").slice(0, 19)} UTC)` : ""}, the node wallet shows
<strong>${txids.length} spend(s)</strong> the restored books do not know, and <strong>${wallets.length} wallet(s)</strong> were frozen because of them.
Review them, settle the books, then resume payouts (refused while the books and the node disagree).</p>
<h3>Unknown spends</h3>${txids.length ? html`<ul class="txids">${txids.map((t) => html`<li><code class="txid">${t}</code></li>`)}</ul>` : html`<p class="empty">None listed.</p>`}
<h3>Frozen wallets (${wallets.length})</h3>${wallets.length ? html`<p>${wallets.slice(0, MAX_LISTED).map((k) => html`<a href="/console/wallets?userKey=${encodeURIComponent(k)}">${k}</a> `)}${wallets.length > MAX_LISTED ? `and ${wallets.length - MAX_LISTED} more` : ""}</p>` : html`<p class="empty">None.</p>`}
</section>`;
}
