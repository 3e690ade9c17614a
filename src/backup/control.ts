// The local control socket: how `runigun backup` on the engine's host asks the running engine for an online
// snapshot (LevelDB lets one process hold the store). A Unix socket in the data directory, mode 0600 — a
// file, not a network interface: only the engine's own user reaches it. One JSON line in, one out.
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { createConnection, createServer, type Server } from "node:net";
import { join } from "node:path";
import type { Logger } from "../log.ts";

/** Unix socket paths are limited to about 107 bytes; a longer data directory gets a private temp directory. */
const MAX_SOCKET_PATH = 100;
const POINTER = "control.sock.path";

/** Where the running engine of this data directory listens (the pointer file wins when the path was too long). */
export function controlSocketPath(dataPath: string): string {
  try {
    return readFileSync(join(dataPath, POINTER), "utf8").trim();
  } catch {
    return join(dataPath, "control.sock");
  }
}

export interface ControlHandlers {
  backup(out?: string): Promise<unknown>;
  status(): unknown;
}

export async function serveControl(dataPath: string, h: ControlHandlers, log: Logger): Promise<{ close(): Promise<void> }> {
  // A socket or pointer left by an engine that died: this process holds the store's lock, so nobody listens there.
  rmSync(join(dataPath, POINTER), { force: true });
  let path = join(dataPath, "control.sock");
  rmSync(path, { force: true });
  let privateDir: string | undefined;
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
    // mkdtemp makes it 0700: nobody else can reach, replace or pre-create the socket inside.
    privateDir = mkdtempSync(join(tmpdir(), "runigun-ctl-"));
    path = join(privateDir, "s");
    writeFileSync(join(dataPath, POINTER), path + "\n", { mode: 0o600 });
  }
  const server: Server = createServer((sock) => {
    let buf = "";
    sock.setEncoding("utf8");
    sock.on("data", (d: string) => {
      buf += d;
      if (buf.length > 4096) return sock.destroy();
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      let req: { cmd?: string; out?: string };
      try {
        req = JSON.parse(buf.slice(0, nl)) as { cmd?: string; out?: string };
      } catch {
        return void sock.end(JSON.stringify({ ok: false, error: "one JSON object per line" }) + "\n");
      }
      const answer = (p: Promise<unknown>) => p.then(
        (r) => sock.end(JSON.stringify({ ok: true, result: r }) + "\n"),
        (e: unknown) => sock.end(JSON.stringify({ ok: false, error: (e as Error).message }) + "\n"),
      );
      if (req.cmd === "backup") void answer(h.backup(typeof req.out === "string" ? req.out : undefined));
      else if (req.cmd === "status") void answer(Promise.resolve(h.status()));
      else sock.end(JSON.stringify({ ok: false, error: `unknown command ${String(req.cmd)}` }) + "\n");
    });
    sock.on("error", () => undefined);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
  chmodSync(path, 0o600);
  log.debug({ path }, "control socket listening");
  return {
    close: () => new Promise<void>((resolve) => server.close(() => {
      if (privateDir) {
        rmSync(join(dataPath, POINTER), { force: true });
        rmSync(privateDir, { recursive: true, force: true });
      }
      resolve();
    })),
  };
}

/** Asks the running engine; undefined when no engine listens in this data directory. */
export function askControl(dataPath: string, req: { cmd: string; out?: string }, timeoutMs = 30 * 60_000): Promise<{ ok: boolean; result?: unknown; error?: string } | undefined> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(controlSocketPath(dataPath));
    let buf = "";
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`the engine did not answer within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    sock.setEncoding("utf8");
    sock.on("connect", () => sock.write(JSON.stringify(req) + "\n"));
    sock.on("data", (d: string) => (buf += d));
    sock.on("end", () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(buf) as { ok: boolean; result?: unknown; error?: string });
      } catch {
        reject(new Error("the engine's answer was cut short"));
      }
    });
    sock.on("error", (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (e.code === "ENOENT" || e.code === "ECONNREFUSED") resolve(undefined);
      else reject(e);
    });
  });
}
