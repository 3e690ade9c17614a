// HTML for the console, rendered on the server: one layout, small helpers, every value escaped. No inline script
// and no inline style (the Content-Security-Policy forbids both); behaviour lives in /console/static/*.js.
import type { Json } from "../port.ts";

const ENTITIES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Escapes text for HTML content and attribute values. */
export function esc(v: unknown): string {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

/** A value already escaped (or built from escaped parts). */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

/** Tagged template: interpolations are escaped unless they are Html (or arrays of Html). */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0]!;
  values.forEach((v, i) => {
    out += render(v) + strings[i + 1]!;
  });
  return new Html(out);
}

function render(v: unknown): string {
  if (v instanceof Html) return v.text;
  if (Array.isArray(v)) return v.map(render).join("");
  if (v === undefined || v === null || v === false) return "";
  return esc(v);
}

/** A field of a JSON value by path, or undefined. */
export function at(j: Json | undefined, ...path: string[]): Json | undefined {
  let cur: Json | undefined = j;
  for (const p of path) {
    if (!cur || typeof cur !== "object" || Array.isArray(cur)) return undefined;
    cur = cur[p];
  }
  return cur;
}

/** Satoshis (a decimal string or a number) as BTC with 8 decimals, exact (no float). */
export function btc(v: Json | undefined): string {
  if (v === undefined || v === null || v === "") return "—";
  const s = String(v);
  if (!/^-?\d+$/.test(s)) return s;
  const neg = s.startsWith("-"), digits = (neg ? s.slice(1) : s).padStart(9, "0");
  return `${neg ? "−" : ""}${digits.slice(0, -8)}.${digits.slice(-8)} BTC`;
}

export function when(ms: Json | undefined): string {
  return typeof ms === "number" && ms > 0 ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "—";
}

export function age(seconds: Json | undefined): string {
  if (typeof seconds !== "number") return "never";
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86_400)} days`;
}

/** A table of rows; `cols` maps a header to how a cell is shown. */
export function table<T>(rows: T[], cols: Array<[string, (r: T) => unknown]>, empty = "Nothing to show."): Html {
  if (!rows.length) return html`<p class="empty">${empty}</p>`;
  return html`<table><thead><tr>${cols.map(([h]) => html`<th>${h}</th>`)}</tr></thead><tbody>${rows.map(
    (r) => html`<tr>${cols.map(([, f]) => html`<td>${f(r)}</td>`)}</tr>`,
  )}</tbody></table>`;
}

/** A definition list of label → value. */
export function facts(items: Array<[string, unknown]>): Html {
  return html`<dl class="facts">${items.map(([k, v]) => html`<dt>${k}</dt><dd>${v}</dd>`)}</dl>`;
}

export function badge(ok: boolean, yes: string, no: string): Html {
  return html`<span class="${ok ? "badge ok" : "badge bad"}">${ok ? yes : no}</span>`;
}

const NAV: Array<[string, string]> = [
  ["overview", "Overview"], ["wallets", "Wallets"], ["deposits", "Deposits"], ["payouts", "Payouts"], ["audit", "Audit log"], ["charts", "Charts"], ["operators", "Operators"], ["keys", "Security keys"],
];

export interface PageOptions {
  title: string;
  /** Which nav entry is current (and the body's data-page, read by the page's script). */
  page: string;
  csrf: string;
  operator?: string;
  /** Signed in: show navigation and the logout button. */
  nav: boolean;
  body: Html;
  scripts?: string[];
}

export function page(o: PageOptions): string {
  const href = (p: string) => (p === "overview" ? "/console/" : `/console/${p}`);
  return `<!doctype html>
${html`<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="${o.csrf}">
<title>${o.title} · RuniGun console</title><link rel="stylesheet" href="/console/static/console.css">
${(o.scripts ?? []).map((s) => html`<script src="/console/static/${s}" defer></script>`)}
</head><body data-page="${o.page}">
<header><strong class="brand">RuniGun console</strong>${o.nav ? html`<nav>${NAV.map(([p, label]) => html`<a href="${href(p)}"${new Html(p === o.page ? ' aria-current="page"' : "")}>${label}</a>`)}</nav>
<form method="post" action="/console/logout" class="logout"><input type="hidden" name="_csrf" value="${o.csrf}"><span>${o.operator}</span> <button type="submit">Log out</button></form>` : ""}</header>
<main><h1>${o.title}</h1>
${o.body}
</main></body></html>`.text}
`;
}
