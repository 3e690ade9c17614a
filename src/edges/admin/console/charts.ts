// Charts drawn on the server as SVG: no chart library, no script. Colours come from CSS classes (the
// Content-Security-Policy allows no inline style); each chart carries a <title> and a <desc> with its numbers.
import { Html, html } from "./html.ts";
import type { ChartSeries } from "../port.ts";

export interface Series {
  name: string;
  /** CSS class of the bars or line (s1, s2…). */
  cls: string;
  values: Array<number | null>;
}

const W = 720, H = 220, PAD = { l: 48, r: 12, t: 16, b: 36 };

/** Rounds a maximum up to a readable scale top (1, 2, 5 × 10^n). */
function niceTop(max: number): number {
  if (max <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  return [1, 2, 5, 10].map((m) => m * p).find((v) => v >= max)!;
}

const fmt = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(v < 10 ? 2 : 1));

export function chart(o: { id: string; title: string; unit: string; labels: string[]; series: Series[]; kind: "bars" | "line" }): Html {
  const all = o.series.flatMap((s) => s.values.filter((v): v is number => v !== null));
  const top = niceTop(Math.max(0, ...all));
  const n = Math.max(1, o.labels.length);
  const iw = W - PAD.l - PAD.r, ih = H - PAD.t - PAD.b;
  const x = (i: number) => PAD.l + (iw * (i + 0.5)) / n;
  const y = (v: number) => PAD.t + ih - (ih * v) / top;
  const band = iw / n, bw = Math.min(28, Math.max(1, (band * 0.8) / o.series.length));
  const r1 = (v: number) => Math.round(v * 10) / 10;
  const grid = [0, 0.5, 1].map((f) => html`<line class="grid" x1="${PAD.l}" x2="${W - PAD.r}" y1="${r1(y(top * f))}" y2="${r1(y(top * f))}"/><text class="tick" x="${PAD.l - 6}" y="${r1(y(top * f)) + 4}" text-anchor="end">${fmt(top * f)}</text>`);
  const every = Math.max(1, Math.ceil(n / 8));
  const xlabels = o.labels.map((l, i) => (i % every === 0 ? html`<text class="tick" x="${r1(x(i))}" y="${H - PAD.b + 16}" text-anchor="middle">${l}</text>` : ""));
  const marks = o.series.map((s, si) => {
    if (o.kind === "bars") {
      return s.values.map((v, i) => (v === null || v === 0 ? "" : html`<rect class="${s.cls}" x="${r1(PAD.l + band * i + band * 0.1 + bw * si)}" y="${r1(y(v))}" width="${r1(bw)}" height="${r1(PAD.t + ih - y(v))}"><title>${o.labels[i]}: ${fmt(v)} ${o.unit}</title></rect>`));
    }
    const pts = s.values.map((v, i) => (v === null ? undefined : `${r1(x(i))},${r1(y(v))}`)).filter(Boolean);
    return html`<polyline class="${s.cls} line" points="${pts.join(" ")}"/>${s.values.map((v, i) => (v === null ? "" : html`<circle class="${s.cls}" cx="${r1(x(i))}" cy="${r1(y(v))}" r="3"><title>${o.labels[i]}: ${fmt(v)} ${o.unit}</title></circle>`))}`;
  });
  const desc = o.series.map((s) => `${s.name}: ${s.values.filter((v) => v !== null).length} points, total ${fmt(s.values.reduce<number>((a, v) => a + (v ?? 0), 0))}, max ${fmt(Math.max(0, ...s.values.filter((v): v is number => v !== null)))}`).join("; ");
  return html`<figure class="chart" id="${o.id}"><figcaption>${o.title}</figcaption>
<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" role="img" aria-labelledby="${o.id}-t ${o.id}-d"><title id="${o.id}-t">${o.title}</title><desc id="${o.id}-d">${desc}</desc>
${grid}<line class="axis" x1="${PAD.l}" x2="${W - PAD.r}" y1="${PAD.t + ih}" y2="${PAD.t + ih}"/>${xlabels}${marks}</svg>
<p class="legend">${o.series.map((s) => html`<span class="key ${s.cls}">${s.name}</span> `)}<span class="unit">(${o.unit})</span></p></figure>`;
}

const hhmm = (ms: number) => new Date(ms).toISOString().slice(11, 16);

/** The console's four charts from the port's series. */
export function charts(s: ChartSeries): Html {
  const hourLabels = s.hours.map((h) => hhmm(h.start));
  // Samples are counters: a chart shows what happened between one sample and the next.
  const steps = s.samples.slice(1).map((cur, i) => ({ at: cur.at, prev: s.samples[i]!, cur }));
  const stepLabels = steps.map((d) => hhmm(d.at));
  const latency = s.samples.filter((x) => x.commitMs !== null);
  return html`${chart({ id: "flows", title: "Deposits and payouts per hour (last 24 hours, UTC)", unit: "per hour", labels: hourLabels, kind: "bars", series: [
    { name: "deposits", cls: "s1", values: s.hours.map((h) => h.deposits) },
    { name: "payouts", cls: "s2", values: s.hours.map((h) => h.payouts) },
  ] })}
${chart({ id: "residency", title: `Wallet activations and passivations per ${Math.round(s.sampleMs / 1000)} s sample (since the engine started)`, unit: "wallets", labels: stepLabels, kind: "bars", series: [
    { name: "activations", cls: "s1", values: steps.map((d) => d.cur.activations - d.prev.activations) },
    { name: "passivations", cls: "s3", values: steps.map((d) => d.cur.passivations - d.prev.passivations) },
  ] })}
${chart({ id: "latency", title: "Journal commit latency (the last commit before each sample)", unit: "ms", labels: latency.map((x) => hhmm(x.at)), kind: "line", series: [
    { name: "commit latency", cls: "s2", values: latency.map((x) => x.commitMs) },
  ] })}
<p class="note">${s.samples.length} samples kept (one every ${Math.round(s.sampleMs / 1000)} s, bounded); deposits and payouts per hour come from their records.</p>`;
}
