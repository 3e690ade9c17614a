// Runs the `runigun` command as a child process, as an operator would, and collects what it printed.
import { spawn } from "node:child_process";

export const runigunBin = new URL("../../bin/runigun.js", import.meta.url).pathname;

export function runigun(args: string[], env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [runigunBin, ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    c.stdout.on("data", (d: Buffer) => (out += d.toString()));
    c.stderr.on("data", (d: Buffer) => (out += d.toString()));
    c.on("exit", (code) => resolve({ code, out }));
  });
}
