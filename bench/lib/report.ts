// Shared bench helpers: timing, percentiles, a printed table, and results files. Benches print figures; they
// never assert on time.
import { mkdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { dirname } from "node:path";
import { execFileSync } from "node:child_process";

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

/** The commit the figures were measured on (`git rev-parse --short HEAD`), or "unknown" outside a git checkout. */
function commitOf(dir: string): string {
  try {
    return execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim() || "unknown";
  } catch {
    return "unknown";
  }
}

const isFigure = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Merges `figures` into a JSON results file under `key` (or at top level without one). A run may measure only some
 * figures (BENCH_ONLY), so the file mixes runs: each figure written is stamped with when (`measured_at`, ISO 8601)
 * and on which commit (`commit`) it was measured, so a reader can tell a figure from an older run. A figure is each
 * object among `figures` (or `figures` under `key`); `figures` holding no object is one figure, stamped whole.
 */
export function writeResults(path: string, figures: Record<string, unknown>, key?: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const stamp = { measured_at: new Date().toISOString(), commit: commitOf(dirname(path)) };
  const stamped = key
    ? { [key]: { ...figures, ...stamp } }
    : Object.values(figures).some(isFigure)
      ? Object.fromEntries(Object.entries(figures).map(([k, v]) => [k, isFigure(v) ? { ...v, ...stamp } : v]))
      : { ...figures, ...stamp };
  const current = existsSync(path) ? (JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>) : {};
  writeFileSync(path, JSON.stringify({ ...current, ...stamped }, null, 2) + "\n");
}
