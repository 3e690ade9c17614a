// Runs isolated regtest bitcoinds for tests, benchmarks and `npm start`: a temp datadir, free loopback
// ports, an `engine` descriptor wallet and an `outside` wallet that plays the miner and the external party.
// This is the test's own JSON-RPC (fetch), not the engine's: only the node actor talks to bitcoind for the engine.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, existsSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveBitcoind } from "./bitcoind.ts";

export interface RegtestOptions {
  /** Use (and keep) this datadir instead of a fresh temp one. */
  dataDir?: string;
  keepDataDir?: boolean;
  extraArgs?: string[];
  walletName?: string;
  log?: (msg: string) => void;
  /** Ports to reuse (a restart of the same node); chosen at run time otherwise. */
  rpcPort?: number;
  p2pPort?: number;
}

export class RpcError extends Error {
  constructor(readonly code: number, message: string, readonly method: string) {
    super(`${method}: ${message} (${code})`);
  }
}

const BTC_AMOUNT = /^\d{1,8}(\.\d{1,8})?$/;
/** A tip from which no anti-fee-sniping nLockTime can be 21 (see ensureMatureCoins): 99 below it is 23. */
export const SAFE_HEIGHT = 122;
const running = new Set<ChildProcess>();
let exitHook = false;

/**
 * How long a node asked to stop by a signal (SIGTERM) has before it is killed (SIGKILL): as long as stop() gives one
 * asked over RPC. A SIGKILLed bitcoind loses what it had not flushed — the last blocks, all of them on a young regtest
 * chain — and the engine's deposit cursor is then above the node's tip (deposit scans stall until an operator rescans).
 */
export const STOP_GRACE_S = 20;

/**
 * Asks every node this process started to stop (last resort on exit; tests and the engine call stop()). SIGTERM, which
 * bitcoind takes as `stop`: it flushes its chain and wallets and exits. An exit hook cannot wait for that, and need not:
 * the node runs in a session of its own, finishes its shutdown after we are gone, and its reaper (#launch) kills it if
 * it is still there STOP_GRACE_S later.
 */
export function stopAllRegtest(): void {
  for (const c of running) c.kill("SIGTERM");
  running.clear();
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

export class RegtestNode {
  readonly walletName: string;
  readonly user = "runigun";
  readonly password = randomBytes(16).toString("hex");
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #outsideAddr: string | undefined;

  private constructor(
    readonly dataDir: string,
    public rpcPort: number,
    public p2pPort: number,
    private readonly o: RegtestOptions,
  ) {
    this.walletName = o.walletName ?? "engine";
  }

  static async start(o: RegtestOptions = {}): Promise<RegtestNode> {
    const dataDir = o.dataDir ?? mkdtempSync(join(tmpdir(), "runigun-regtest-"));
    mkdirSync(dataDir, { recursive: true });
    const node = new RegtestNode(dataDir, o.rpcPort ?? (await freePort()), o.p2pPort ?? (await freePort()), o);
    // A port found free can be taken by another process before bitcoind binds it: try again on fresh ports.
    for (let attempt = 1; ; attempt++) {
      try {
        await node.#launch();
        break;
      } catch (e) {
        if (attempt >= 3 || o.rpcPort || o.p2pPort || !/exited during start-up/.test(String(e))) throw e;
        node.rpcPort = await freePort();
        node.p2pPort = await freePort();
      }
    }
    try {
      await node.#ensureWallet(node.walletName);
      await node.#ensureWallet("outside");
    } catch (e) {
      // A bitcoind left running would keep the caller's process alive (a test file then waits for its time limit).
      await node.stop().catch(() => undefined);
      throw e;
    }
    return node;
  }

  get rpcUrl(): string {
    return `http://127.0.0.1:${this.rpcPort}`;
  }

  get running(): boolean {
    return this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  async rpc<T = unknown>(method: string, params: unknown[] = [], wallet: string | null = null): Promise<T> {
    const url = wallet ? `${this.rpcUrl}/wallet/${encodeURIComponent(wallet)}` : this.rpcUrl;
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Basic ${Buffer.from(`${this.user}:${this.password}`).toString("base64")}` },
      body: JSON.stringify({ jsonrpc: "1.0", id: 1, method, params }),
    });
    const body = (await res.json().catch(() => undefined)) as { result?: T; error?: { code: number; message: string } } | undefined;
    if (!body) throw new RpcError(res.status, `HTTP ${res.status}`, method);
    if (body.error) throw new RpcError(body.error.code, body.error.message, method);
    return body.result as T;
  }

  async outsideAddress(): Promise<string> {
    return this.rpc<string>("getnewaddress", ["", "bech32"], "outside");
  }

  async mine(blocks: number, toAddress?: string): Promise<string[]> {
    const addr = toAddress ?? (this.#outsideAddr ??= await this.outsideAddress());
    return this.rpc<string[]>("generatetoaddress", [blocks, addr]);
  }

  /**
   * Mines 101 blocks to the outside wallet once, so it has spendable coins, and at least up to SAFE_HEIGHT. A
   * wallet's anti-fee-sniping sets a transaction's nLockTime to the tip's height or, one time in ten, up to 99 blocks
   * below it; Knots' parasite filter (`-rejectparasites`, on by default) refuses nLockTime 21 as a CAT-21 mint. So
   * below height 122 about one wallet transaction in a thousand stays out of the mempool and out of every block:
   * a deposit that never confirms, a test that fails once in a few runs.
   */
  async ensureMatureCoins(): Promise<void> {
    const b = await this.rpc<{ mine: { trusted: number } }>("getbalances", [], "outside");
    const height = await this.rpc<number>("getblockcount");
    const blocks = Math.max(b.mine.trusted < 50 ? 101 : 0, SAFE_HEIGHT - height);
    if (blocks > 0) await this.mine(blocks);
  }

  /**
   * The outside party (the test's external payer, not the engine) pays an address. `btc` is decimal text;
   * Number(text) is exact for 8-decimal amounts, validated first.
   */
  async fund(address: string, btc: string): Promise<string> {
    if (!BTC_AMOUNT.test(btc)) throw new Error(`fund: "${btc}" is not a BTC amount with at most 8 decimals`);
    await this.ensureMatureCoins();
    const r = await this.rpc<{ txid: string; complete: boolean }>("send", [{ [address]: Number(btc) }], "outside");
    // A wallet keeps and returns a transaction its node's mempool did not take (see ensureMatureCoins): say so here,
    // with the node's reason, rather than as a deposit missing from the next block.
    if (!(await this.rpc("getmempoolentry", [r.txid]).then(() => true, () => false))) {
      const { hex } = await this.rpc<{ hex: string }>("gettransaction", [r.txid], "outside");
      const [test] = await this.rpc<Array<{ allowed: boolean; "reject-reason"?: string }>>("testmempoolaccept", [[hex]]);
      throw new Error(`fund: the node's mempool does not hold transaction ${r.txid}: ${test?.["reject-reason"] ?? "it would take it now"}`);
    }
    return r.txid;
  }

  async stop(): Promise<void> {
    if (this.running) {
      await this.rpc("stop").catch(() => undefined);
      const timeout = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), STOP_GRACE_S * 1000).unref());
      if ((await Promise.race([this.#exited.then(() => "done" as const), timeout])) === "timeout") this.#child?.kill("SIGKILL");
      await this.#exited;
    }
    if (!this.o.keepDataDir && !this.o.dataDir) rmSync(this.dataDir, { recursive: true, force: true });
  }

  /**
   * Forces bitcoind to write its chainstate and block index (gettxoutsetinfo flushes them). Without it, a
   * SIGKILL can roll the node back to its last flush — a real crash does that too.
   */
  async flush(): Promise<void> {
    await this.rpc("gettxoutsetinfo", ["none"]);
  }

  /** SIGKILL, keeping the datadir: a crash of the node. */
  async kill(): Promise<void> {
    this.#child?.kill("SIGKILL");
    await this.#exited;
  }

  /**
   * SIGKILL and start again on the same datadir, as a service manager would; `extraArgs` for this start only (e.g. a
   * higher relay fee floor). The engine's wallet is left to bitcoind (it loads wallets flagged load_on_startup) and to
   * the engine; only the test's outside wallet is loaded here.
   */
  async restart(extraArgs: string[] = []): Promise<void> {
    if (this.running) await this.kill();
    await this.#launch(extraArgs);
    await this.#ensureWallet("outside");
  }

  async #launch(extraArgs: string[] = []): Promise<void> {
    const cmd = resolveBitcoind();
    const args = [
      ...cmd.bitcoind.slice(1),
      "-regtest", `-datadir=${this.dataDir}`, "-server=1", "-listen=1", `-bind=127.0.0.1:${this.p2pPort}`, "-discover=0", "-dnsseed=0",
      `-rpcport=${this.rpcPort}`, "-rpcbind=127.0.0.1", "-rpcallowip=127.0.0.1", `-rpcuser=${this.user}`, `-rpcpassword=${this.password}`,
      "-fallbackfee=0.0002", "-addresstype=bech32", "-changetype=bech32", "-unsafesqlitesync=1", "-printtoconsole=0",
      "-txindex=0", "-rpcworkqueue=256", "-rpcthreads=8", "-debuglogfile=debug.log",
      ...(this.o.extraArgs ?? []), ...extraArgs,
    ];
    // A process group of its own: a terminal's Ctrl-C reaches the engine, which stops bitcoind after itself, in order.
    const child = spawn(cmd.bitcoind[0]!, args, { stdio: "ignore", detached: true });
    this.#child = child;
    running.add(child);
    // A reaper outside this process: if we die in a way that runs no exit hook (SIGKILL, a test runner's
    // timeout), it stops the bitcoind we started instead of leaving it behind. It ends with either of us. SIGTERM
    // first, so the node flushes its blocks (a SIGKILL loses them); SIGKILL only if it is still there after the grace.
    if (child.pid) {
      const alive = `kill -0 ${child.pid} 2>/dev/null`;
      spawn("sh", ["-c", `while kill -0 ${process.pid} 2>/dev/null && ${alive}; do sleep 1; done; ${alive} || exit 0; kill -TERM ${child.pid}; ` +
        `i=0; while ${alive} && [ $i -lt ${STOP_GRACE_S} ]; do sleep 1; i=$((i+1)); done; ${alive} && kill -9 ${child.pid}`], {
        detached: true, stdio: "ignore",
      }).unref();
    }
    if (!exitHook) {
      exitHook = true;
      process.on("exit", stopAllRegtest);
    }
    this.#exited = new Promise((resolve) => child.once("exit", () => (running.delete(child), resolve())));
    const spawnError = new Promise<never>((_, reject) => child.once("error", reject));
    const deadline = Date.now() + 60_000;
    // bitcoind has no readiness signal: poll its RPC (bounded) until it answers, or report why it died.
    for (;;) {
      if (!this.running) throw new Error(`bitcoind exited during start-up: ${this.#debugTail()}`);
      try {
        await Promise.race([this.rpc("getblockchaininfo"), spawnError]);
        return;
      } catch (e) {
        if (e instanceof RpcError && e.code !== -28 && e.code !== 401 && e.code !== 503) throw e;
        if (Date.now() > deadline) throw new Error(`bitcoind did not answer RPC within 60 s: ${this.#debugTail()}`);
        if ((e as { code?: string }).code === "ENOENT") throw e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  /** Loaded or created with load_on_startup, as the engine does with its own: bitcoind loads it again when it restarts. */
  async #ensureWallet(name: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const loaded = await this.rpc<string[]>("listwallets");
      if (loaded.includes(name)) return;
      try {
        await this.rpc("loadwallet", [name, true]);
        return;
      } catch (e) {
        if (!(e instanceof RpcError) || (e.code !== -18 && e.code !== -4)) throw e;
      }
      try {
        await this.rpc("createwallet", [name, false, false, "", false, true, true]);
        return;
      } catch (e) {
        // -4 (a wallet error: seen once on a loaded machine, its reason not kept) is tried again twice, then said with
        // bitcoind's own log.
        if (!(e instanceof RpcError) || e.code !== -4 || attempt >= 3) {
          throw new Error(`the regtest node could not load or create wallet "${name}": ${(e as Error).message} (debug.log: ${this.#debugTail()})`, { cause: e });
        }
        await new Promise((r) => setTimeout(r, 200 * attempt));
      }
    }
  }

  #debugTail(): string {
    const f = join(this.dataDir, "regtest", "debug.log");
    if (!existsSync(f)) return "(no debug.log)";
    return readFileSync(f, "utf8").trim().split("\n").slice(-5).join(" | ");
  }
}

export const startRegtest = (o?: RegtestOptions) => RegtestNode.start(o);
