// Shared bench helpers: timing, percentiles, a printed table, and results files. Benches print figures; they
// never assert on time.
import { mkdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { dirname } from "node:path";

export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export async function timed<T>(f: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const start = performance.now();
  const value = await f();
  return { ms: performance.now() - start, value };
}

export function table(rows: Array<[string, string, string, string]>): string {
  const head: [string, string, string, string] = ["figure", "measured", "baseline (same run)", "ratio"];
  const all = [head, ...rows];
  const w = [0, 1, 2, 3].map((i) => Math.max(...all.map((r) => r[i]!.length)));
  return all.map((r) => r.map((c, i) => c.padEnd(w[i]!)).join("  ")).join("\n");
}

export const fmt = (n: number, digits = 0) => n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });

/** Merges `figures` into a JSON results file under `key` (or at top level without one). */
export function writeResults(path: string, figures: Record<string, unknown>, key?: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const current = existsSync(path) ? (JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>) : {};
  const next = key ? { ...current, [key]: figures } : { ...current, ...figures };
  writeFileSync(path, JSON.stringify(next, null, 2) + "\n");
}
