// What a scenario runs against: an engine with a chain beside it, made fresh per script by an injected
// factory. `regtestEngine` is the default: a fresh regtest bitcoind and a fresh engine in a temp directory.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig, type Config, type ConfigFile, type DeepPartial } from "../../config.ts";
import { createLogger, type Logger } from "../../log.ts";
import type { Relay } from "../../relay.types.ts";
import { startEngine, type Running } from "../../app.ts";
import { startRegtest } from "../../regtest/harness.ts";

/** What the Telegram edge needs from an engine. */
export interface ScriptEngineParts {
  relay: Relay;
  identity: { userKey(telegramUserId: number): Promise<string> };
  /** Must stay the same across restarts: the engine keeps chat handles sealed with it. */
  handleKey: Uint8Array;
  /** The edge's settings (rate limit…); default: the edge's built-in defaults. */
  config?: Pick<Config, "telegram">;
  /** Where the edge logs (default: nowhere). */
  log?: Logger;
}

export interface ScriptEngine extends ScriptEngineParts {
  chain: {
    /** An outside wallet pays `address` `btc` (decimal text). */
    fund(address: string, btc: string): Promise<unknown>;
    /** Mines n blocks and returns once the engine has processed them. */
    mine(n: number): Promise<unknown>;
    /** A fresh address of the outside wallet. */
    address(): Promise<string>;
  };
  /** Kills the engine where it stands (nothing flushed on purpose) and starts it again on the same data. */
  restart(): Promise<ScriptEngineParts>;
  /** The latest warnings and errors of the engine and its edge, one line each, for a failed step's report. */
  warnings?(): string[];
  stop(): Promise<void>;
}

export type MakeEngine = (overrides: DeepPartial<ConfigFile>) => Promise<ScriptEngine>;

export const regtestEngine: MakeEngine = async (overrides) => {
  const node = await startRegtest();
  const dataDir = mkdtempSync(join(tmpdir(), "runigun-script-"));
  let app: Running | undefined;
  try {
    const config = loadConfig({
      env: { RUNIGUN_NODE_RPC_PASSWORD: node.password },
      overrides: {
        ...overrides,
        dataDir,
        node: { ...overrides.node, managed: false, rpcUrl: node.rpcUrl, rpcUser: node.user, addressPoolSize: 20 },
        // Blocks are scanned when a script mines (chain.mine pokes the watcher), not on a timer.
        deposits: { pollMs: 60_000, ...overrides.deposits },
        identity: { timeCost: 1, memoryKiB: 1024 },
        store: { sync: false },
        // Scenarios are about conversations: no backup snapshots or segments (the backup tests cover those).
        backup: { dir: "" },
      },
    });
    await node.ensureMatureCoins();
    const recent = new RecentLog();
    const log = createLogger({ level: "warn", destination: recent });
    app = await startEngine(config, log);
    const parts = (): ScriptEngineParts => ({ relay: app!.engine.relay, identity: app!.identity, handleKey: app!.handleKey, config, log });
    return {
      ...parts(),
      chain: {
        fund: (address, btc) => node.fund(address, btc),
        async mine(n) {
          await node.mine(n);
          await app!.engine.watcher.poke();
        },
        address: () => node.outsideAddress(),
      },
      async restart() {
        // A crash: timers and actors die where they stand; only what reached the disk survives.
        await app!.crash();
        app = undefined;
        app = await startEngine(config, log);
        return parts();
      },
      warnings: () => [...recent.lines],
      async stop() {
        await app?.stop().catch(() => undefined);
        await node.stop();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    await app?.stop().catch(() => undefined);
    await node.stop();
    rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }
};

/** Keeps the last few log lines (already redacted by the logger) as short text: level, message, error. */
class RecentLog {
  readonly lines: string[] = [];

  write(line: string): void {
    let text = line.trim();
    try {
      const o = JSON.parse(line) as { level?: number; msg?: string; err?: { message?: string }; refusal?: string };
      const level = (o.level ?? 0) >= 50 ? "error" : "warn";
      text = `${level}: ${o.msg ?? ""}${o.refusal ? ` (${o.refusal})` : ""}${o.err?.message ? ` — ${o.err.message}` : ""}`;
    } catch {
      // Not JSON: keep the line as it is.
    }
    this.lines.push(text.slice(0, 300));
    if (this.lines.length > 10) this.lines.shift();
  }
}
