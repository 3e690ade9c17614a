// `runigun start`: the all-in-one shape. A regtest bitcoind when the node is managed, the engine, and the
// Telegram edge — polling Telegram with a token, or (on regtest only) the local chat in this terminal without one. Ctrl-C
// (SIGINT/SIGTERM/SIGHUP) stops everything it started, bitcoind included.
import { join } from "node:path";
import { pino } from "pino";
import { loadConfig, type Config } from "./config.ts";
import { createLogger, type Logger } from "./log.ts";
import { Engine, storedIdentityPin } from "./engine.ts";
import { openStorage, type EngineStorage } from "./storage.ts";
import { loadEdgeSecrets, loadEngineSecrets, SetupError, type EdgeSecrets, type EngineSecrets } from "./secrets.ts";
import { Identity, identityCheck, pinIdentity } from "./store/identity.ts";
import { startRegtest, type RegtestNode } from "./regtest/harness.ts";
import { buildTelegramEdge, type TelegramEdge } from "./edges/telegram/bot.ts";
import { InProcessTelegram } from "./edges/chat/transport.ts";
import { alertEcho, startLocalChat } from "./edges/chat/local-chat.ts";
import { serveControl } from "./backup/control.ts";

/** The engine alone, as the split shape's `runigun engine` runs it. */
export interface RunningEngine {
  config: Config;
  engine: Engine;
  node?: RegtestNode;
  stop(): Promise<void>;
  /** A crash, for scripts and tests: timers and actors die where they stand; only what reached the disk survives. */
  crash(): Promise<void>;
}

/** The engine with what an in-process Telegram edge needs beside it (the all-in-one shape). */
export interface Running extends RunningEngine {
  identity: Identity;
  handleKey: Buffer;
}

/** Starts node (if managed), storage and engine, with the edge's secrets too. Used by `start`, `simulate` and the chaos harness. */
export async function startEngine(cfg: Config, log: Logger): Promise<Running> {
  // The edge's secrets first: a missing pepper is said before anything is made or opened.
  const edge = loadEdgeSecrets(cfg, log);
  const running = await launch(cfg, log, loadEngineSecrets(cfg, log), edge);
  return { ...running, identity: running.identity!, handleKey: edge.handleKey };
}

/**
 * Starts node (if managed), storage and engine without the edge's secrets: the split shape's engine (`runigun engine`)
 * never holds the pepper nor the edge key. The identity settings are then pinned to the store by the bot, through the
 * relay (Relay.identityPin, before it serves anyone): the first one's are recorded, and a bot with others is refused.
 */
export async function startEngineAlone(cfg: Config, log: Logger): Promise<RunningEngine> {
  return await launch(cfg, log, loadEngineSecrets(cfg, log), undefined);
}

async function launch(cfg: Config, log: Logger, secrets: EngineSecrets, edge: EdgeSecrets | undefined): Promise<RunningEngine & { identity?: Identity }> {
  const config: Config = secrets.walletPassphrase ? { ...cfg, secrets: { ...cfg.secrets, walletPassphrase: secrets.walletPassphrase } } : cfg;
  let node: RegtestNode | undefined;
  let rpc: { url: string; user: string; password: string };
  if (config.node.managed) {
    if (config.network !== "regtest") throw new SetupError("node.managed starts a regtest node only; point node.rpcUrl at your own node for signet or mainnet");
  } else if (!config.node.rpcUrl || !config.node.rpcUser || !config.secrets.rpcPassword) {
    const missing = [
      !config.node.rpcUrl && "node.rpcUrl (RUNIGUN_NODE_RPC_URL)", !config.node.rpcUser && "node.rpcUser (RUNIGUN_NODE_RPC_USER)",
      !config.secrets.rpcPassword && "RUNIGUN_NODE_RPC_PASSWORD(_FILE)",
    ].filter(Boolean);
    throw new SetupError(`set ${missing.join(", ")} to reach your bitcoind (its -rpcauth user and password); or, on regtest only, node.managed to start one`);
  }
  let storage: EngineStorage | undefined;
  try {
    // The store first: its lock says whether another engine runs on this data directory, before a bitcoind is started.
    storage = await openStorage({ dataPath: config.dataPath, keyring: secrets.keyring, sync: config.store.sync, log }).catch((e: unknown) => {
      const err = e as Error & { cause?: Error };
      if (/LOCK|already held|temporarily unavailable/i.test(`${err.message} ${err.cause?.message ?? ""}`)) {
        throw new SetupError(`another RuniGun engine is running on ${config.dataPath} (its store is locked); stop it first, or give this one another RUNIGUN_DATA_DIR`);
      }
      throw e;
    });
    if (config.node.managed) {
      node = await startRegtest({ dataDir: join(config.dataPath, "bitcoind"), keepDataDir: true, extraArgs: config.node.extraArgs });
      rpc = { url: node.rpcUrl, user: node.user, password: node.password };
    } else {
      rpc = { url: config.node.rpcUrl, user: config.node.rpcUser, password: config.secrets.rpcPassword! };
    }
    const identity = edge ? new Identity({ ...config.identity, pepper: edge.pepper, log: log.child({ actor: "identity" }) }) : undefined;
    let engine: Engine;
    try {
      // Pinned both in the store (it travels in backups: a restore into a new data directory keeps it) and in the data
      // directory; each is checked before either is recorded, so a refused start leaves neither changed. The engine
      // alone has no identity: its bot pins its own (see startEngineAlone).
      let identityPin: string | undefined;
      if (identity) {
        const check = await identityCheck(identity);
        const stored = await storedIdentityPin(storage.store);
        if (stored !== undefined && stored !== check) {
          throw new SetupError("the identity settings differ from those this store's wallets were made with (the pepper, or identity.timeCost / memoryKiB / parallelism): every Telegram user would get a new, empty wallet. Start with the original pepper and settings (the store, and each backup of it, holds their check value)");
        }
        await pinIdentity(identity, config.dataPath);
        if (stored === undefined) identityPin = check;
      }
      // The store's pin is written by the engine once backups ship (a write before that would leave a gap in them).
      engine = await Engine.start({ config, log, storage, rpc, ...(identityPin !== undefined ? { identityPin } : {}) });
    } catch (e) {
      await identity?.close();
      throw (config.node.managed ? undefined : nodeSetupError(e, rpc.url)) ?? e;
    }
    const st = storage;
    // `runigun backup` on this host reaches the running engine here.
    const control = await serveControl(config.dataPath, { backup: (out) => engine.backup.snapshot(out), status: () => engine.backup.status() }, log).catch((e: unknown) => {
      // Not fatal: scheduled snapshots and the admin edge's /backup still work.
      log.warn({ err: (e as Error).message }, "no control socket in the data directory: `runigun backup` cannot reach this engine (use the admin edge's /backup)");
      return { close: async () => undefined };
    });
    return {
      config, engine, ...(identity ? { identity } : {}), ...(node ? { node } : {}),
      async crash() {
        await control.close();
        await engine.halt();
        await st.store.close();
        await identity?.close();
      },
      async stop() {
        await control.close();
        await engine.close();
        await st.close();
        await identity?.close();
        await node?.stop();
      },
    };
  } catch (e) {
    await storage?.close().catch(() => undefined);
    await node?.stop();
    throw e;
  }
}

/** A node URL as it may be shown: without a user or password written into it. */
export function withoutCredentials(url: string): string {
  try {
    const u = new URL(url);
    u.username = "";
    u.password = "";
    return u.toString();
  } catch {
    // Not a URL: shown as configured.
    return url;
  }
}

/** The start's failure to reach an operator's own bitcoind, as what to fix (the URL without any password in it). */
function nodeSetupError(e: unknown, url: string): SetupError | undefined {
  const err = e as Error & { code?: unknown };
  const where = withoutCredentials(url);
  if (err.code === "node_unavailable") {
    return new SetupError(`bitcoind at ${where} is not answering (waited node.waitForNodeMs; the log's "bitcoind is unavailable" line has its last error): start it and let it load, or check node.rpcUrl (RUNIGUN_NODE_RPC_URL) and that bitcoind's -rpcbind and -rpcallowip let this host in`);
  }
  if (err.code === 401) {
    return new SetupError(`bitcoind at ${where} refused the RPC user and password (401): check node.rpcUser (RUNIGUN_NODE_RPC_USER) and RUNIGUN_NODE_RPC_PASSWORD(_FILE) against bitcoind's -rpcauth`);
  }
  if (err.code === 403) return new SetupError(`bitcoind at ${where} refused this host (403): let it in with bitcoind's -rpcallowip (and -rpcbind)`);
  // Already written for the operator (node.ts): the wallet this store was kept with is missing.
  if (err.code === "wallet_missing") return new SetupError(err.message);
  return undefined;
}

/** How long an orderly stop may take before the process gives up on it (see `stopSignals`). */
export const STOP_DEADLINE_MS = 60_000;

export interface StopSignals {
  /** Settles at the first SIGINT, SIGTERM or SIGHUP (the stop then calls `begin`). */
  readonly signalled: Promise<void>;
  /** Names what the stop waits for now: said if the deadline passes or a second signal forces the exit. */
  step(what: string): void;
  /** The stop begins: arms its deadline (a signal during the start does not: the start finishes first). */
  begin(): void;
  /** The stop is done: the deadline is disarmed and the signal handlers removed. */
  done(): void;
}

/**
 * Writes to this process's terminal (stdout, stderr) are best-effort: a reader that went away (`npm start | tee x.log`
 * with tee killed by the same Ctrl-C: EPIPE; a closed terminal: EIO) must not crash the engine part-way through its
 * stop with an unhandled 'error' event. What could not be said is lost; the log file or journal still has it.
 */
export function terminalWritesBestEffort(): void {
  if (terminalErrorsIgnored) return;
  terminalErrorsIgnored = true;
  for (const stream of [process.stdout, process.stderr]) stream.on("error", () => undefined);
}
let terminalErrorsIgnored = false;

/**
 * SIGINT, SIGTERM and SIGHUP (a closed terminal, a dropped SSH session), once each process: the first asks for an
 * orderly stop (said on `say`, the operator's terminal or journal). A stop that hangs (a node call that never returns,
 * a connection that never closes) must not leave a service manager waiting without a word: after `deadlineMs` the
 * process says what it was still waiting for and exits with 1, and a second signal, of any of them, does the same at
 * once (as the operator asked). The exit is abrupt: the store's journal is written before each answer, so only what
 * was not yet acknowledged is lost.
 */
export function stopSignals(log: Logger, o: { deadlineMs?: number; say?: (line: string) => void; signals?: NodeJS.EventEmitter; exit?: (code: number) => void } = {}): StopSignals {
  const deadlineMs = o.deadlineMs ?? STOP_DEADLINE_MS;
  const say = o.say ?? ((line: string) => void process.stderr.write(`${line}\n`));
  const events: NodeJS.EventEmitter = o.signals ?? process;
  const exit = o.exit ?? ((code: number) => process.exit(code));
  // The stop says its steps on the terminal: a terminal gone must not cut it short.
  if (!o.signals) terminalWritesBestEffort();
  let waitingFor = "the start to finish";
  let timer: NodeJS.Timeout | undefined;
  let signalled!: () => void;
  const signalledOnce = new Promise<void>((resolve) => (signalled = resolve));
  let received = 0;
  const giveUp = (why: string) => {
    log.error({ waitingFor }, `${why}: exiting without finishing the stop`);
    say(`${why}; was waiting for ${waitingFor}. Exiting now.`);
    exit(1);
  };
  // Not unref'd: a stop stuck on a promise that nothing will settle (no socket, no timer left) would otherwise end the
  // process without a word, as if it had stopped.
  const begin = () => void (timer ??= setTimeout(() => giveUp(`the stop took longer than ${Math.round(deadlineMs / 1000)} s`), deadlineMs));
  // The deadline is armed by the stop itself (begin), not by the signal: a signal during the start is acted on once the
  // start is done, and a start that takes long (bitcoind warming up, a store upgrade) must not be cut off part-way by
  // the stop's deadline. A second signal still forces the exit at any time.
  const onSignal = (signal: string) => {
    if (++received > 1) return giveUp(`${signal} again: stop forced`);
    log.info({ signal }, "stopping (send SIGINT or SIGTERM again to force)");
    say(`stopping (${signal}; send it again to force)…`);
    signalled();
  };
  const onInt = () => onSignal("SIGINT");
  const onTerm = () => onSignal("SIGTERM");
  // Its default would end the process at once, leaving bitcoind and the store unstopped.
  const onHup = () => onSignal("SIGHUP");
  events.on("SIGINT", onInt);
  events.on("SIGTERM", onTerm);
  events.on("SIGHUP", onHup);
  return {
    signalled: signalledOnce,
    step: (what) => void (waitingFor = what),
    begin,
    done() {
      clearTimeout(timer);
      events.off("SIGINT", onInt);
      events.off("SIGTERM", onTerm);
      events.off("SIGHUP", onHup);
    },
  };
}

export async function runAllInOne(): Promise<number> {
  const config = loadConfig();
  const token = config.secrets.telegramToken;
  // The local chat is a tester's tool: its people are not Telegram accounts, so off regtest it would keep real money
  // in wallets no one can reach from Telegram. Refused before anything starts (no log file, no engine).
  if (!token && config.network !== "regtest") {
    throw new SetupError(`the local chat (what start opens without RUNIGUN_TELEGRAM_TOKEN) runs on regtest only: on ${config.network}, set RUNIGUN_TELEGRAM_TOKEN (or RUNIGUN_TELEGRAM_TOKEN_FILE) to serve the bot on Telegram, or RUNIGUN_NETWORK=regtest to try it locally`);
  }
  const out = process.stdout;
  // With the local chat on this terminal, engine logs go to a file so they do not interleave with the chat; alert
  // lines are said on the terminal too, the message only (in the chat once it is open: sayAlert).
  const logFile = join(config.dataPath, "engine.log");
  let sayAlert: (line: string) => void = (line) => void out.write(`${line}\n`);
  const log = token ? createLogger({ level: config.log.level }) : createLogger({
    level: config.log.level,
    destination: pino.multistream([
      { level: "trace", stream: pino.destination({ dest: logFile, mkdir: true, sync: false }) },
      { level: "warn", stream: alertEcho((line) => sayAlert(line)) },
    ]),
  });
  // What the edge will need, checked before anything starts (bitcoind, the engine).
  if (token && config.telegram.mode === "webhook" && (config.secrets.telegramWebhookSecret ?? "").length < 16) {
    throw new SetupError("webhook mode needs RUNIGUN_TELEGRAM_WEBHOOK_SECRET (16+ characters)");
  }
  // A signal during the start is acted on once it is done (the engine closed in order), not by dying part-way; a
  // second one, or a stop past its deadline, ends the process anyway (stopSignals).
  const signals = stopSignals(log, { say: (line) => void out.write(`\n${line}\n`) });
  const app = await startEngine(config, log).catch((e: unknown) => {
    signals.done();
    throw e;
  });
  const telegram = token ? undefined : new InProcessTelegram();
  const edge: TelegramEdge = buildTelegramEdge({
    token: token ?? "0:local", config, relay: app.engine.relay, identity: app.identity, handleKey: app.handleKey, log,
    ...(telegram ? { transport: telegram.transformer, botInfo: telegram.botInfo, mode: "manual" as const } : {}),
  });
  let admin: Awaited<ReturnType<typeof import("./split.ts")["startAdmin"]>> | undefined;
  try {
    await edge.start();
    admin = config.admin.enabled ? await (await import("./split.ts")).startAdmin(config, app.engine, log) : undefined;
  } catch (e) {
    // A start that fails after the engine is up (a refused token, a busy port) stops what did start: else the process
    // stays up without a bot, holding bitcoind, the store and the control socket.
    await edge.stop().catch(() => undefined);
    await app.stop().catch(() => undefined);
    signals.done();
    throw e;
  }
  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= (async () => {
    signals.begin();
    try {
      signals.step("the Telegram edge to stop (updates being handled, notices being sent: a few seconds at most)");
      await edge.stop();
      signals.step("the admin edge to close (requests being answered)");
      await admin?.app.close();
      signals.step("the engine to stop (actors, the store, bitcoind)");
      await app.stop();
    } finally {
      signals.done();
    }
    out.write("stopped (bitcoind included).\n");
  })());
  out.write([
    `RuniGun on ${config.network}`,
    `  data:        ${config.dataPath}`,
    app.node ? `  bitcoind:    regtest, RPC on 127.0.0.1:${app.node.rpcPort} (started by RuniGun)` : `  bitcoind:    ${withoutCredentials(config.node.rpcUrl ?? "")}`,
    token ? `  telegram:    polling as @${edge.bot.botInfo.username}` : `  local chat:  this terminal (no RUNIGUN_TELEGRAM_TOKEN set)`,
    token ? "" : `  logs:        ${logFile}`,
    admin ? `  admin edge:  https://${config.admin.host}:${admin.port} (client certificate + TOTP; add an operator with \`runigun keys operator add NAME --out DIR\`)` : "  admin edge:  off",
    admin && config.admin.console.enabled ? `  console:     https://${config.admin.console.rpId}:${admin.port}/console/ (client certificate + FIDO2 security key)` : "",
    config.backup.dir ? `  backups:     ${config.backup.dir} (segments every ${config.backup.segmentIntervalMs} ms; \`runigun backup\` for a snapshot now)` : "  backups:     off (set RUNIGUN_BACKUP_DIR)",
    "",
  ].filter((l) => l !== "").join("\n") + "\n\n");
  if (telegram) {
    const chat = startLocalChat({
      bot: edge.bot, telegram, input: process.stdin, output: out,
      ...(app.node ? { chain: { mine: async (n: number) => { await app.node!.mine(n); await app.engine.watcher.poke(); }, fund: (a: string, b: string) => app.node!.fund(a, b), address: () => app.node!.outsideAddress() } } : {}),
    });
    sayAlert = (line) => chat.say(line);
    // :quit ends the run; so does the end of input on a terminal. Input piped in and ended without :quit leaves
    // the engine serving (a service manager with no terminal must not stop it by closing stdin).
    const quit = chat.done.then((why) => {
      if (why === "quit" || process.stdin.isTTY) return;
      return new Promise<void>(() => undefined);
    });
    const how = await Promise.race([signals.signalled.then(() => "signal"), quit.then(() => "quit")]);
    chat.close();
    if (how === "quit") out.write("\nstopping…\n");
  } else {
    await signals.signalled;
  }
  await stop();
  return 0;
}

export async function runSimulate(files: string[]): Promise<number> {
  const { runScripts } = await import("./edges/script/runner.ts");
  return runScripts(files, { output: process.stdout });
}
