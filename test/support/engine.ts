// Starts a whole engine for integration tests: a real regtest bitcoind, a real encrypted store in a temp dir,
// the real actors. `restart()` stops the engine (or simulates its crash) and starts it again on the same
// data and node, which is how tests prove that nothing is lost or done twice.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { loadConfig, type DeepPartial, type ConfigFile, type Config } from "../../src/config.ts";
import { createLogger, silentLogger, type Logger } from "../../src/log.ts";
import { Engine } from "../../src/engine.ts";
import { openStorage, type EngineStorage } from "../../src/storage.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { startRegtest, type RegtestNode } from "../../src/regtest/harness.ts";
import { Identity } from "../../src/store/identity.ts";
import { isRefusal } from "../../src/domain/refusals.ts";
import type { PayoutStep } from "../../src/actors/payout.ts";

export interface TestEngine {
  engine: Engine;
  node: RegtestNode;
  config: Config;
  dataPath: string;
  /** The master key ring the store is sealed under (restore tests need it). */
  keyring: KeyRing;
  identity: Identity;
  handleKey: Buffer;
  /** Scan the chain now and wait for it, scanning again if a scan ends incomplete (instead of waiting for the poll timer). */
  poke(): Promise<void>;
  /** Mine n blocks and let the engine process them. */
  mine(n: number): Promise<void>;
  /** Stop the engine (gracefully, or abruptly without flushing anything) and start it again on the same data. */
  restart(opts?: { crash?: boolean }): Promise<void>;
  /** The abrupt half of a crash restart: the engine dies where it stands (call `restart` later to boot). */
  crash(): Promise<void>;
  stop(): Promise<void>;
}

export interface TestEngineOptions {
  node?: RegtestNode;
  log?: Logger;
  /** Encrypt the node's engine wallet with this passphrase (unlocked only to sign). */
  walletPassphrase?: string;
  /** Called at each payout pipeline step of whichever engine is running (tests crash it there). */
  payoutStep?: (step: PayoutStep) => void;
}

export async function startTestEngine(overrides: DeepPartial<ConfigFile> = {}, opts: TestEngineOptions = {}): Promise<TestEngine> {
  const node = opts.node ?? (await startRegtest());
  const dataPath = mkdtempSync(join(tmpdir(), "runigun-engine-"));
  const base = loadConfig({
    env: {},
    overrides: {
      ...overrides,
      node: { managed: false, addressPoolSize: 20, timeoutMs: 5000, ...overrides.node },
      deposits: { pollMs: 60_000, ...overrides.deposits },
      identity: { timeCost: 1, memoryKiB: 1024, ...overrides.identity },
      // Backups only where a test asks for them (a backup directory of its own).
      backup: { dir: "", ...overrides.backup },
    },
    cwd: dataPath,
  });
  const config: Config = opts.walletPassphrase ? { ...base, secrets: { ...base.secrets, walletPassphrase: opts.walletPassphrase } } : base;
  const keyring = new KeyRing(new Map([[1, randomBytes(32)]]), 1);
  const log = opts.log ?? testLog();
  const identity = new Identity({ ...config.identity, pepper: randomBytes(32) });
  const handleKey = randomBytes(32);
  let storage: EngineStorage;
  let engine: Engine;
  let crashing: Promise<void> | undefined;
  const boot = async () => {
    storage = await openStorage({ dataPath, keyring, sync: false, log });
    engine = await Engine.start({
      config, log, storage, rpc: { url: node.rpcUrl, user: node.user, password: node.password },
      ...(opts.payoutStep ? { payoutStep: opts.payoutStep } : {}),
    });
    t.engine = engine;
  };
  const t: TestEngine = {
    engine: undefined as unknown as Engine,
    node, config, dataPath, keyring, identity, handleKey,
    async poke() {
      // A scan can end incomplete (a node call failed, a wallet did not answer in time on a loaded machine): the
      // engine retries it on a backoff timer, and the deposits of the block wait for that. A test that poked means
      // "the chain is read": it scans again at once, a few times at most, until a scan completes.
      for (let i = 0; i < 5; i++) {
        const s = t.engine.watcher.stats, setbacks = s.failedScans + s.incompleteScans;
        await t.engine.watcher.poke();
        if (s.failedScans + s.incompleteScans === setbacks) break;
      }
      await t.engine.blockWorkDone();
    },
    async mine(n) {
      await node.mine(n);
      await t.poke();
    },
    crash() {
      // A crash: timers and actors die where they stand; only what reached the disk survives.
      crashing ??= (async () => {
        await engine.halt();
        await storage.store.close();
      })();
      return crashing;
    },
    async restart(o = {}) {
      if (o.crash || crashing) {
        await t.crash();
        crashing = undefined;
      } else {
        await engine.close();
        await storage.close();
      }
      await boot();
    },
    async stop() {
      await engine.close().catch(() => undefined);
      await storage.close().catch(() => undefined);
      await identity.close();
      if (!opts.node) await node.stop();
      rmSync(dataPath, { recursive: true, force: true });
    },
  };
  await boot();
  return t;
}

/** Silent, unless TEST_LOG_LEVEL names a level (e.g. `TEST_LOG_LEVEL=warn npm test`): then JSON lines on stderr. */
export function testLog(): Logger {
  const level = process.env.TEST_LOG_LEVEL;
  return level ? createLogger({ level, pretty: false, destination: process.stderr }) : silentLogger;
}

/** Opens a wallet (with a sealed chat handle for notices, if given) and pays its deposit address from the outside wallet (unconfirmed until a block is mined). */
export async function fundedWallet(te: TestEngine, userKey: string, btc: string, chatHandle?: string): Promise<void> {
  await te.engine.relay.start(userKey, chatHandle);
  const a = await te.engine.relay.depositAddress(userKey);
  if (isRefusal(a)) throw new Error(a.message);
  await te.node.fund(a.address, btc);
}

/** Quotes and confirms a withdrawal to the outside wallet; the confirmation's answer (it may be a refusal). */
export async function withdrawToOutside(te: TestEngine, userKey: string, amount: string) {
  const q = await te.engine.relay.quoteWithdrawal(userKey, await te.node.outsideAddress(), amount);
  if (isRefusal(q)) throw new Error(q.message);
  return te.engine.relay.confirmWithdrawal(userKey, q.id);
}
