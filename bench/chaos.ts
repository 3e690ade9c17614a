// npm run chaos [-- --kills N] — crash injection. The engine runs as a child process (`runigun engine`) on a real
// regtest node; a mixed workload from simulated users (deposits, transfers, withdrawals, cheques) reaches it
// through its internal TLS API; the harness SIGKILLs it at random moments, and after each kill reads the
// engine's own store (the process is dead, so the store is free) and checks the money invariants. An exit of the
// engine the harness did not cause, or a burst it ended by hanging, is a violation, not a kill. Seeded by
// CHAOS_SEED; prints one summary line. Exported for the CI test, which runs a short version.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createServer, connect, type AddressInfo, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { startRegtest, freePort, type RegtestNode } from "../src/regtest/harness.ts";
import { ensurePki, readPem } from "../src/tls/certs.ts";
import { RemoteRelay } from "../src/edges/internal/client.ts";
import { isRefusal } from "../src/domain/refusals.ts";
import { EncryptedStore, META, POSITION_KEY } from "../src/store/db.ts";
import { restoreArchive } from "../src/backup/restore.ts";
import { WalletRecords, walletSums } from "../src/actors/wallet.records.ts";
import { Journal } from "../src/store/journal.ts";
import { generateKeyRingFile, loadKeyRingFile } from "../src/store/keyring.ts";
import { emptyWallet, evolve, checkInvariants, own, type WalletEvent, type WalletState } from "../src/actors/wallet.ts";
import { emptyPayouts, evolvePayouts, FinishedPayouts, type PayoutEvent, type PayoutStatus } from "../src/actors/payout.ts";
import { chequePayoutId, chequeUserKey, escrowOf, evolveCheques, FinishedCheques, type ChequeEvent } from "../src/actors/cheques.ts";
import type { JournalRecord } from "../src/actors/runtime.ts";

const bin = new URL("../bin/runigun.js", import.meta.url).pathname;

/**
 * A generator of its own for each (seed, round, command), mulberry32 seeded with a hash of the three: an engine that
 * answers differently (a refusal, an early end of a burst) changes what later commands draw from nothing.
 */
function rng(...parts: number[]): () => number {
  let s = 0x9e3779b9;
  for (const p of parts) s = fmix(s ^ fmix(p | 0));
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** MurmurHash3's finaliser: every input bit moves every output bit. */
function fmix(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) | 0;
}

/** A deposit the outside party sent to a user's deposit address; `vout` once read from the outside wallet. */
interface MadeDeposit {
  address: string;
  user: string;
  amount: bigint;
  /** Undefined when the send failed part-way (bitcoind killed under it): it may or may not have gone out. */
  txid?: string;
  vout?: number;
}

/** What the harness knows happened: the commands the engine acknowledged, and the deposits it made. */
interface KnownWithdrawal {
  key: string;
  dest: string;
  amount: bigint;
}

interface Known {
  transfers: Set<string>;
  withdrawals: Map<string, KnownWithdrawal>;
  /**
   * Withdrawals whose confirmation was in flight when the harness killed the engine (the aimed kill often comes
   * first): the engine may have made one. If the wallet has it, it is held to what an acknowledged one is.
   */
  uncertain: Map<string, KnownWithdrawal>;
  /** Cheques whose creation was acknowledged, by code; `claimedBy` once a claim of it was acknowledged. */
  cheques: Map<string, { creator: string; id: string; amount: bigint; claimedBy?: string }>;
  deposits: MadeDeposit[];
}

export interface ChaosResult {
  seed: number;
  /** SIGKILLs that ended a live engine (an engine that had exited by itself is not counted: see `violations`). */
  kills: number;
  /** Of them, the payout rounds' kills that the tap fired at a new batch's broadcast (see rpcTap). */
  aimedKills: number;
  /** Bursts that ended on the relay's 10 s timeout with no kill (the engine hung); each is also a violation. */
  hangs: number;
  acknowledged: number;
  refused: number;
  violations: string[];
  /** Commits the backup (snapshot + segments) was behind the killed store at the final restore drill. */
  restoreLag?: number;
  /** bitcoind SIGKILLed and restarted mid-workload. */
  bitcoindKills: number;
  /**
   * Kills after which the dead engine's store has a payout signed or broadcast since the previous kill's check and
   * not yet confirmed. Most kills do (withdrawals are paid at once and blocks are rare), so this says a payout was
   * unconfirmed at the kill, not that the kill interrupted its signing or broadcast.
   */
  killsWithPayoutInFlight: number;
  /** Kills after which the store has a payout signed and not yet recorded as broadcast: the window the aimed kills hit. */
  killsSignedNotBroadcast: number;
  /** Deposits the outside party made (each must be credited once), and the fees the house paid beyond the quotes. */
  deposits: number;
  housePaid?: bigint;
  /** The master key rotation killed part-way and resumed (once per run). */
  rotation?: { interrupted: boolean; resumed: boolean };
  /** Acknowledged withdrawals, and the finished payouts that left the payout book (its retention is 5 here). */
  withdrawals: number;
  pruned: number;
  /** Paid cheques that left the cheque book (its retention is 3 here). */
  chequesPruned: number;
}

/**
 * The engine's process as the harness sees it. An exit the harness did not cause (an exit code, or a signal it did
 * not send) is written to `unexpected`: without that, an engine that died or exited by itself looked like one more
 * kill (the kill found nothing to kill and said nothing). `kill()` answers whether its SIGKILL ended a live process.
 */
export class EngineProcess {
  readonly #child: ChildProcess;
  readonly #exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The last signal the harness sent; none while the engine is meant to be running. */
  #sent: NodeJS.Signals | undefined;
  #killing: Promise<boolean> | undefined;
  #ready = false;
  /** The output's last 4,000 characters (error-level log lines here), for the messages. */
  #out = "";

  private constructor(args: string[], env: NodeJS.ProcessEnv, unexpected: string[], logFile?: string) {
    this.#child = spawn(process.execPath, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    for (const s of [this.#child.stdout!, this.#child.stderr!]) {
      s.on("data", (d: Buffer) => (this.#out = (this.#out + d.toString()).slice(-4000)));
      if (logFile) s.on("data", (d: Buffer) => appendFileSync(logFile, d));
    }
    this.#exit = new Promise((resolve) => this.#child.once("exit", (code, signal) => {
      // Before it was ready, start() reports the exit (as an error).
      if (this.#ready && !(signal === "SIGKILL" && this.#sent === "SIGKILL") && this.#sent !== "SIGTERM") {
        unexpected.push(`the engine exited by itself (${code !== null ? `exit code ${code}` : `signal ${signal}`}), not killed by the harness: ${this.#out.slice(-400)}`);
      }
      resolve({ code, signal });
    }));
  }

  /** Spawns `node <args>` and waits for its output to match `ready`; an exit or `timeoutMs` first is an error. */
  static async start(args: string[], env: NodeJS.ProcessEnv, unexpected: string[], o: { ready: RegExp; timeoutMs: number; logFile?: string }): Promise<EngineProcess> {
    const p = new EngineProcess(args, env, unexpected, o.logFile);
    let timer: NodeJS.Timeout | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        p.#child.stdout!.on("data", () => o.ready.test(p.#out) && resolve());
        void p.#exit.then(({ code, signal }) => reject(new Error(`the engine exited (${code ?? signal}) before it was ready: ${p.#out.slice(-400)}`)));
        timer = setTimeout(() => reject(new Error(`the engine was not ready within ${o.timeoutMs / 1000} s (it hung at start-up): ${p.#out.slice(-400)}`)), o.timeoutMs);
      });
    } catch (e) {
      if (p.alive) (p.#sent = "SIGKILL", p.#child.kill("SIGKILL"), await p.#exit);
      throw e;
    } finally {
      clearTimeout(timer);
    }
    p.#ready = true;
    return p;
  }

  /** Settles when the process has exited, however. */
  get exited(): Promise<unknown> {
    return this.#exit;
  }

  get alive(): boolean {
    return this.#child.exitCode === null && this.#child.signalCode === null;
  }

  /** Whether the harness has sent it a signal: an error on its connection after that is the harness's doing. */
  get signalled(): boolean {
    return this.#sent !== undefined;
  }

  /**
   * SIGKILL, sent at once (synchronously: a caller that must stop the engine before it does anything more relies on
   * that); true when it ended a live process, false when the engine had already exited (its exit is in `unexpected`).
   */
  kill(): Promise<boolean> {
    if (this.#killing) return this.#killing;
    if (!this.alive) return (this.#killing = Promise.resolve(false));
    this.#sent = "SIGKILL";
    this.#child.kill("SIGKILL");
    return (this.#killing = this.#exit.then(({ signal }) => signal === "SIGKILL"));
  }

  /** A clean stop: SIGTERM, exit code 0 within `ms`; otherwise SIGKILL, and what went wrong. */
  async stop(ms: number): Promise<{ clean: true } | { clean: false; why: string }> {
    if (!this.alive) return { clean: false, why: "the engine had already exited" };
    this.#sent = "SIGTERM";
    this.#child.kill("SIGTERM");
    const r = await Promise.race([this.#exit, new Promise<undefined>((r) => setTimeout(() => r(undefined), ms).unref())]);
    if (!r) {
      await this.kill();
      return { clean: false, why: `the engine did not stop within ${ms / 1000} s of SIGTERM` };
    }
    return r.code === 0 ? { clean: true } : { clean: false, why: `the engine stopped with ${r.code !== null ? `exit code ${r.code}` : `signal ${r.signal}`} after SIGTERM: ${this.#out.slice(-400)}` };
  }
}

/**
 * A TCP relay between the engine and bitcoind's RPC port, to kill the engine at one precise moment. Once armed, a
 * `testmempoolaccept` (the payout book's last call before it commits a new batch's "signed" record) primes it, and
 * the next request carrying a `sendrawtransaction` (that batch's broadcast; the payout actor makes one call at a
 * time) calls `onSend`, which SIGKILLs the engine, and goes no further: bitcoind never receives it. The store
 * syncs each commit, so the kill lands after the signed record is durable and before the broadcast. Everything else
 * passes through byte for byte; a refused connection to bitcoind (killed and restarting) closes the engine's.
 */
async function rpcTap(port: () => number): Promise<{ url: string; arm(onSend: () => void): void; disarm(): void; close(): Promise<void> }> {
  let armed: { onSend: () => void; primed: boolean } | undefined;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(port(), "127.0.0.1");
    for (const s of [client, upstream]) (sockets.add(s), s.once("close", () => sockets.delete(s)));
    const drop = () => (client.destroy(), upstream.destroy());
    // The last bytes of the previous chunk: a method name split between two chunks is still seen.
    let tail = "";
    client.on("data", (d: Buffer) => {
      const text = tail + d.toString("latin1");
      tail = text.slice(-40);
      if (armed) {
        if (/"testmempoolaccept"/.test(text)) armed.primed = true;
        else if (armed.primed && /"sendrawtransaction"/.test(text)) {
          const { onSend } = armed;
          armed = undefined;
          onSend();
          return drop();
        }
      }
      upstream.write(d);
    });
    upstream.on("data", (d: Buffer) => client.write(d));
    client.on("end", () => upstream.end());
    upstream.on("end", () => client.end());
    client.on("error", drop);
    upstream.on("error", drop);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    arm: (onSend) => void (armed = { onSend, primed: false }),
    disarm: () => void (armed = undefined),
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** The engine's answer never came (a timeout) or its connection failed, and the harness had not killed it. */
class EngineUnreachable extends Error {}

export async function chaos(o: { kills: number; seed: number; users?: number; log?: (s: string) => void }): Promise<ChaosResult> {
  const log = o.log ?? (() => undefined);
  const pick = <T>(xs: T[], r: number) => xs[Math.floor(r * xs.length)]!;
  const node: RegtestNode = await startRegtest();
  const dir = mkdtempSync(join(tmpdir(), "runigun-chaos-"));
  const pki = join(dir, "pki");
  await ensurePki(pki, { admin: "127.0.0.1", internal: "127.0.0.1" });
  // A key ring file, so a key rotation (killed part-way, then resumed) can add a key to it.
  const masterKey = join(dir, "master.key");
  generateKeyRingFile(masterKey);
  const port = await freePort();
  const env = {
    ...process.env, NODE_ENV: "production", RUNIGUN_LOG_LEVEL: "error", RUNIGUN_DATA_DIR: join(dir, "data"), RUNIGUN_PKI_DIR: pki,
    RUNIGUN_MASTER_KEY_FILE: masterKey, RUNIGUN_PEPPER: randomBytes(32).toString("hex"), RUNIGUN_EDGE_KEY: randomBytes(32).toString("hex"),
    RUNIGUN_NODE_MANAGED: "false", RUNIGUN_NODE_RPC_URL: node.rpcUrl, RUNIGUN_NODE_RPC_USER: node.user, RUNIGUN_NODE_RPC_PASSWORD: node.password,
    RUNIGUN_NODE_ADDRESS_POOL_SIZE: "20", RUNIGUN_INTERNAL_PORT: String(port), RUNIGUN_ADMIN_ENABLED: "false", RUNIGUN_DEPOSITS_POLL_MS: "100",
    RUNIGUN_STORE_SYNC: "true", RUNIGUN_BACKUP_DIR: join(dir, "backup"), RUNIGUN_BACKUP_SEGMENT_INTERVAL_MS: "200",
    // Finished payouts leave the payout book after five, finished cheques the cheque book after three (10,000 each in
    // production): pruning runs under the kills too; a pruned payout paid twice shows on chain (checked per withdrawal
    // below), a pruned cheque paid twice in the balances.
    RUNIGUN_WITHDRAWALS_RETAIN_FINISHED_PAYOUTS: "5", RUNIGUN_TRANSFERS_RETAIN_FINISHED_CHEQUES: "3",
  };
  // The engine reaches bitcoind through the tap (see rpcTap), which aims the payout rounds' kills.
  const tap = await rpcTap(() => node.rpcPort);
  env.RUNIGUN_NODE_RPC_URL = tap.url;
  let engine: EngineProcess | undefined;
  let relay: RemoteRelay | undefined;
  /** Exits of the engine the harness did not cause; moved into `violations` after each round. */
  const unexpected: string[] = [];
  /**
   * The relay answers a request that failed in transport (no answer within its 10 s, the connection lost or refused)
   * with a refusal, "busy" or "node_unavailable", and logs why: read here, so the burst can tell those from the
   * engine's own refusals and end on them (see `ask`).
   */
  let relayError: string | undefined;
  const relayLog = pino({ level: "warn" }, { write: (line: string) => {
    const m = JSON.parse(line) as { msg?: string; err?: string };
    if (m.msg === "engine unreachable") relayError = String(m.err);
  } });
  const start = async (): Promise<void> => {
    try {
      await startOnce();
    } catch (e) {
      // Another process took the internal API's port while the engine was down: take a fresh one.
      if (!/EADDRINUSE/.test((e as Error).message)) throw e;
      env.RUNIGUN_INTERNAL_PORT = String(await freePort());
      await startOnce();
    }
  };
  const startOnce = async () => {
    const port = Number(env.RUNIGUN_INTERNAL_PORT);
    engine = await EngineProcess.start([bin, "engine"], env, unexpected, { ready: /engine ready/, timeoutMs: 120_000, ...(process.env.CHAOS_ENGINE_LOG ? { logFile: process.env.CHAOS_ENGINE_LOG } : {}) });
    relay = await RemoteRelay.connect({ url: `https://127.0.0.1:${port}`, log: relayLog, tls: { ...readPem(pki, "bot-client"), ca: readPem(pki, "internal-ca").cert }, timeoutMs: 10_000 });
  };
  /** A clean stop (SIGTERM): the engine closes its store and ships the rest of its journal to the backup. */
  const stop = async () => {
    relay?.close();
    return engine!.stop(30_000);
  };
  /** SIGKILL (sent before this returns); true when it ended a live engine. The relay's calls then fail. */
  const kill = (): Promise<boolean> => {
    const killed = engine!.kill();
    relay?.close();
    return killed;
  };

  const users = Array.from({ length: o.users ?? 12 }, (_, i) => `u_chaos${String(i).padStart(4, "0")}`);
  const known: Known = { transfers: new Set(), withdrawals: new Map(), uncertain: new Map(), cheques: new Map(), deposits: [] };
  let acknowledged = 0, refused = 0;
  let restoreLag: number | undefined;
  const final = newFindings();
  let bitcoindKills = 0;
  let kills = 0, aimedKills = 0, hangs = 0;
  let killsWithPayoutInFlight = 0, killsSignedNotBroadcast = 0;
  let rotation: ChaosResult["rotation"];
  /** Payouts confirmed on chain whose wallet had not settled them at the last kill (see check). */
  const unsettled = new Set<string>();
  /** Each payout's status at the last kill's check, to tell the payouts signed or broadcast since. */
  const statuses = new Map<string, PayoutStatus>();
  /** Deposits (by outpoint) the last kill's check found credited and confirmed. */
  let confirmed = new Set<string>();
  const bounceRound = Math.floor(o.kills / 3);
  const rotateRound = Math.floor(o.kills / 2);
  const violations: string[] = [];
  try {
    await node.ensureMatureCoins();
    await start();
    // Everyone opens a wallet and gets a deposit.
    const outputs: Record<string, number> = {};
    for (const u of users) {
      await relay!.start(u);
      const a = await relay!.depositAddress(u);
      if (isRefusal(a)) throw new Error(`no address: ${a.message}`);
      outputs[a.address] = 0.05;
      known.deposits.push({ address: a.address, user: u, amount: 5_000_000n });
    }
    const { txid } = await node.rpc<{ txid: string }>("send", [outputs], "outside");
    for (const d of known.deposits) d.txid = txid;
    await node.mine(1);
    for (let k = 0; k < o.kills; k++) {
      // A burst of work, killed at a random moment: while the command numbered `killAt` is in flight, after a
      // random delay of up to 30 ms (a count rather than a wall-clock window, so a slow machine still does work).
      const killAt = 2 + Math.floor(rng(o.seed, k)() * 30);
      let killing: Promise<boolean> | undefined;
      // Every fourth round the kill is aimed instead: at the first new payout batch's broadcast, after its "signed"
      // record (see rpcTap; withdrawals are paid at once, `withdrawals.batchWindowMs` 0). The burst runs its 40
      // commands until then, and is killed at its end if no batch was built.
      const payoutRound = k % 4 === 1;
      if (payoutRound) tap.arm(() => void (aimedKills++, (killing ??= kill())));
      // Once per run, bitcoind itself dies (SIGKILL, chain flushed, mempool lost) and comes back, while the burst's
      // first command is in flight: started here, not from the loop, which a kill may end before any given command.
      let bouncing = k === bounceRound;
      const bounce = bouncing ? (async () => { await node.flush(); await node.kill(); await node.restart(); bitcoindKills++; })().finally(() => (bouncing = false)) : undefined;
      /** A relay call's answer; a transport failure (which the relay answers as a refusal) thrown, with its cause. */
      const ask = async <T>(call: Promise<T>): Promise<T> => {
        relayError = undefined;
        const r = await call;
        if (relayError !== undefined) throw new EngineUnreachable(relayError);
        return r;
      };
      /** Why the burst ended early, when not by the harness's kill. */
      const burstProblems: string[] = [];
      const burst = (async () => {
        for (let i = 0; i < 40 && !killing; i++) {
          // Every command draws the same values from its own generator, whether it uses them or not.
          const draw = rng(o.seed, k, i);
          const x = { user: draw(), kind: draw(), amount: draw(), other: draw(), delay: draw() };
          if (i === killAt && !payoutRound) killing = new Promise((r) => setTimeout(r, x.delay * 30)).then(kill);
          const u = pick(users, x.user);
          /** A withdrawal whose confirmation is on its way: if a kill cuts its answer off, it may have been made. */
          let confirming: ({ id: string } & KnownWithdrawal) | undefined;
          try {
            if (x.kind < 0.55) {
              const id = `c${o.seed}:${k}:${i}`;
              const t = await ask(relay!.transfer(u, id, pick(users, x.other), `${1 + Math.floor(x.amount * 20_000)} sats`));
              if (isRefusal(t)) refused++;
              else (known.transfers.add(`${u}|${id}`), acknowledged++);
            } else if (x.kind < 0.75) {
              const dest = await node.outsideAddress();
              const q = await ask(relay!.quoteWithdrawal(u, dest, `${20_000 + Math.floor(x.amount * 50_000)} sats`));
              if (isRefusal(q)) { refused++; continue; }
              confirming = { id: q.id, key: u, dest, amount: q.amount };
              const c = await ask(relay!.confirmWithdrawal(u, q.id));
              confirming = undefined;
              if (isRefusal(c)) refused++;
              else {
                known.withdrawals.set(q.id, { key: u, dest, amount: q.amount });
                acknowledged++;
              }
            } else if (x.kind < 0.85) {
              const id = `q${o.seed}:${k}:${i}`;
              const ch = await ask(relay!.createCheque(u, id, "5000 sats"));
              if (isRefusal(ch)) refused++;
              else {
                acknowledged++;
                const cheque = { creator: u, id, amount: ch.amount, claimedBy: undefined as string | undefined };
                known.cheques.set(ch.code, cheque);
                const claimer = pick(users, x.other);
                const cl = await ask(relay!.claimCheque(claimer, ch.code));
                if (isRefusal(cl)) refused++;
                else (cheque.claimedBy = claimer, acknowledged++);
              }
            } else if (x.kind < 0.95) {
              const a = await ask(relay!.depositAddress(u));
              if (!isRefusal(a)) {
                // Known before the send: a send that fails part-way may still have gone out.
                const d: MadeDeposit = { address: a.address, user: u, amount: 100_000n };
                known.deposits.push(d);
                d.txid = await node.fund(a.address, "0.001");
              }
            } else {
              await node.mine(1);
            }
          } catch (e) {
            // Killed under us: an unacknowledged command, nothing to expect (but a withdrawal it may have made).
            if (engine!.signalled) {
              if (confirming) known.uncertain.set(confirming.id, confirming);
              return;
            }
            // Nobody killed it: the engine stopped answering (a hang), or its connection failed (its exit, if it
            // exited, is reported as well). Either ends the burst, and is a finding, not a kill.
            if (e instanceof EngineUnreachable) {
              const hung = /did not answer in time/.test(e.message);
              if (hung) hangs++;
              burstProblems.push(hung ? `the engine did not answer within 10 s and had not been killed: it hung (command ${i} of the burst)` : `the engine's connection failed and it had not been killed (command ${i} of the burst): ${e.message}`);
              return;
            }
            // bitcoind, killed on purpose, failed one of the harness's own calls to it.
            if (bouncing) return;
            burstProblems.push(`the burst ended on an error at command ${i}: ${(e as Error).message}`);
            return;
          }
        }
      })();
      await burst;
      if (await (killing ?? kill())) kills++;
      tap.disarm();
      await bounce;
      violations.push(...[...burstProblems, ...unexpected.splice(0)].map((v) => `kill ${k + 1}: ${v}`));
      if (k === rotateRound) rotation = await rotateKilled(env, log);
      const found = newFindings();
      violations.push(...(await check(join(dir, "data", "store"), masterKey, node, known, { unsettled, statuses, found })).map((v) => `kill ${k + 1}: ${v}`));
      if (found.payouts > 0) killsWithPayoutInFlight++;
      if (found.signed > 0) killsSignedNotBroadcast++;
      confirmed = found.confirmed;
      log(`kill ${k + 1}/${o.kills}: ${acknowledged} acknowledged so far, ${violations.length} violations`);
      await start();
    }
    // What the run was meant to go through: one bitcoind kill, and a key rotation killed part-way and then finished.
    if (bounceRound < o.kills && bitcoindKills !== 1) violations.push(`bitcoind was killed ${bitcoindKills} times, not once`);
    if (rotation && !rotation.interrupted) violations.push("the key rotation finished before its kill landed: nothing was resumed");
    if (rotation && !rotation.resumed) violations.push("the key rotation's --resume did not complete it");
    // Liveness: every acknowledged withdrawal goes out and is settled in its wallet, and every deposit is credited
    // and confirmed, within a few blocks.
    const waiting = new Map<string, Set<string>>();
    for (const d of known.deposits) {
      const op = await outpointOf(node, d);
      if (op && !confirmed.has(op)) waiting.set(d.user, (waiting.get(d.user) ?? new Set()).add(op));
    }
    const reserved = await settleAll(relay!, users, node, waiting);
    if (reserved.length) violations.push(`final: withdrawals still reserved after ${SETTLE_BLOCKS} blocks for ${reserved.length} users (e.g. ${reserved[0]})`);
    // A clean stop, then the checks once more with payouts confirmed, and the restore drill: a clean stop ships
    // everything, so the backup must hold the store's last commit.
    const stopped = await stop();
    if (!stopped.clean) violations.push(`final: ${stopped.why}`);
    violations.push(...unexpected.splice(0).map((v) => `final: ${v}`));
    violations.push(...(await check(join(dir, "data", "store"), masterKey, node, known, { final: true, unsettled, found: final })).map((v) => `final: ${v}`));
    const drill = await restoreDrill(dir, masterKey, node, known);
    restoreLag = drill.lag;
    if (drill.lag !== 0) violations.push(`restore drill: the backup is ${drill.lag} commits behind the store after a clean stop`);
    violations.push(...drill.problems.map((v) => `restore drill: ${v}`));
  } finally {
    await engine?.kill();
    await tap.close();
    await node.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return {
    seed: o.seed, kills, aimedKills, hangs, acknowledged, refused, violations, bitcoindKills, killsWithPayoutInFlight, killsSignedNotBroadcast, deposits: known.deposits.length,
    withdrawals: known.withdrawals.size, pruned: final.pruned, chequesPruned: final.cheques,
    ...(final.housePaid !== undefined ? { housePaid: final.housePaid } : {}), ...(rotation ? { rotation } : {}), ...(restoreLag !== undefined ? { restoreLag } : {}),
  };
}

const SETTLE_BLOCKS = 6;

/**
 * Mines a block at a time until no user has anything reserved (every withdrawal broadcast, confirmed and settled in
 * its wallet) and every deposit in `deposits` (outpoints by user, taken off as they are seen) shows confirmed in its
 * user's history, reading through the engine every 50 ms, at most 2 s per block. Returns who still has a reservation;
 * a deposit never credited is the final check's to report. Only the newest 200 entries of a history are read: the
 * deposits waited for are those not yet confirmed at the last kill, made or seen in the last round or two.
 */
async function settleAll(relay: RemoteRelay, users: string[], node: RegtestNode, deposits: Map<string, Set<string>>): Promise<string[]> {
  let waiting: string[] = [];
  for (let block = 0; block < SETTLE_BLOCKS; block++) {
    await node.mine(1);
    for (let poll = 0; poll < 40; poll++) {
      waiting = [];
      for (const u of users) {
        const b = await relay.balance(u);
        if (isRefusal(b) || b.reserved > 0n) waiting.push(u);
      }
      for (const [u, outpoints] of deposits) {
        for (let page = 0; page < 4 && outpoints.size > 0; page++) {
          const h = await relay.history(u, page, 50);
          if (isRefusal(h)) break;
          for (const e of h.entries) if (e.kind === "deposit" && e.status === "confirmed") outpoints.delete(e.ref);
          if (page + 1 >= h.pages) break;
        }
        if (outpoints.size === 0) deposits.delete(u);
      }
      if (waiting.length === 0 && deposits.size === 0) return [];
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return waiting;
}

/**
 * A master key rotation (`runigun keys rotate`, engine stopped) SIGKILLed as soon as it reports its first
 * durable batch, then finished with `--resume`. The next round's engine and checks run on the rotated store.
 */
async function rotateKilled(env: NodeJS.ProcessEnv, log: (s: string) => void): Promise<{ interrupted: boolean; resumed: boolean }> {
  const run = (args: string[], killOnBatch: boolean) => new Promise<{ out: string; killed: boolean }>((resolve) => {
    const c = spawn(process.execPath, [bin, "keys", "rotate", ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let killed = false;
    const onData = (d: Buffer) => {
      out += d.toString();
      if (killOnBatch && !killed && /re-encrypted/.test(out) && !/complete/.test(out)) {
        killed = true;
        c.kill("SIGKILL");
      }
    };
    c.stdout!.on("data", onData);
    c.stderr!.on("data", onData);
    // "close", not "exit": the output may still be on its way when the process has exited.
    c.once("close", () => resolve({ out, killed }));
  });
  const first = await run([], true);
  const interrupted = first.killed && !/complete/.test(first.out);
  const second = await run(["--resume"], false);
  const resumed = /rotation to key \d+ complete/.test(second.out);
  log(`key rotation: ${interrupted ? "killed part-way" : "finished before the kill landed"}, resume ${resumed ? "completed" : `failed: ${second.out.slice(-300)}`}`);
  return { interrupted, resumed };
}

/**
 * The restore drill after the run's SIGKILLs and a final clean stop: the newest snapshot plus the journal segments,
 * restored into a new data directory, must pass the same checks and hold the store's records byte for byte.
 * `lag` is how many commits the backup is behind the store (the caller requires 0 after a clean stop).
 */
async function restoreDrill(dir: string, masterKey: string, node: RegtestNode, known: Known): Promise<{ problems: string[]; lag: number }> {
  const snapshots = readdirSync(join(dir, "backup", "snapshots")).filter((n) => n.endsWith(".rga")).sort();
  const newest = snapshots.at(-1);
  if (!newest) return { problems: ["no snapshot was ever taken"], lag: -1 };
  const keyring = loadKeyRingFile(masterKey);
  const r = await restoreArchive({ archive: join(dir, "backup", "snapshots", newest), segmentsDir: join(dir, "backup", "segments"), dataPath: join(dir, "restored"), keyring, network: "regtest" });
  const problems: string[] = [];
  if (r.segments?.stop) problems.push(`segments stopped early: ${r.segments.stop.file}: ${r.segments.stop.reason}`);
  // After the clean stop the segments end on its record: the restore must know it reaches the stop (else a restored
  // engine keeps payouts paused and holds cheques for an operator, as after a crash).
  if (r.lost) problems.push(`a restore after a clean stop is taken as lossy: ${r.lost}`);
  // Backups carry the sealed bytes themselves: a faithful restore is byte-identical, record by record.
  const records = async (path: string) => {
    const st = await EncryptedStore.open({ path, keyring, sync: false });
    const m = new Map<string, string>();
    let position = 0;
    for await (const [k, v] of st.db.iterator()) {
      if (k === POSITION_KEY) position = st.openValue<number>(META, "position", v);
      else if (!k.startsWith(META + "\u0000")) m.set(k, Buffer.from(v).toString("hex"));
    }
    await st.close();
    return { m, position };
  };
  const live = await records(join(dir, "data", "store"));
  const restored = await records(join(dir, "restored", "store"));
  const lag = live.position - (r.segments?.last ?? r.manifest.position);
  if (lag === 0) {
    const differ = [...new Set([...live.m.keys(), ...restored.m.keys()])].filter((k) => live.m.get(k) !== restored.m.get(k));
    if (differ.length) problems.push(`${differ.length} records differ from the killed store (e.g. ${differ[0]!.split("\u0000")[0]})`);
  }
  problems.push(...(await check(join(dir, "restored", "store"), masterKey, node, known, { final: lag === 0 })));
  return { problems, lag };
}

/** JSON.stringify's replacer for bigint amounts (in messages). */
const big = (_k: string, v: unknown) => (typeof v === "bigint" ? v.toString() : v);

/** What a check found besides its problems. */
interface Findings {
  /**
   * Payouts signed or broadcast and not yet confirmed that were neither at the previous check (the last kill came
   * while they were being paid); `signed` those of them not yet recorded as broadcast.
   */
  payouts: number;
  signed: number;
  /** Payouts that have left the payout book, paid cheques that have left the cheque book. */
  pruned: number;
  cheques: number;
  /** Deposits credited and confirmed, by outpoint. */
  confirmed: Set<string>;
  /** At the end: what the payout transactions paid in fees beyond their users' charges (the house's part). */
  housePaid?: bigint;
}

const newFindings = (): Findings => ({ payouts: 0, signed: 0, pruned: 0, cheques: 0, confirmed: new Set() });

/** A deposit's outpoint, read once from the outside wallet's own record of its send; none when the send failed part-way. */
async function outpointOf(node: RegtestNode, d: MadeDeposit): Promise<string | undefined> {
  if (d.txid === undefined) return undefined;
  if (d.vout === undefined) {
    const tx = await node.rpc<{ decoded: { vout: Array<{ n: number; scriptPubKey: { address?: string } }> } }>("gettransaction", [d.txid, false, true], "outside");
    const out = tx.decoded.vout.find((v) => v.scriptPubKey.address === d.address);
    if (!out) throw new Error(`deposit transaction ${d.txid} pays nothing to ${d.address}`);
    d.vout = out.n;
  }
  return `${d.txid}:${d.vout}`;
}

interface CheckOptions {
  /** After the clean stop at the end: everything must have landed, and the books must equal the node. */
  final?: boolean;
  /** Payouts confirmed on chain whose wallet had not settled them at the last kill (see below). */
  unsettled?: Set<string>;
  /** Each payout's status at the previous check; replaced by this check's. */
  statuses?: Map<string, PayoutStatus>;
  found?: Findings;
}

/** Reads the dead engine's store and checks the invariants against it, the node, and what the harness knows. */
async function check(path: string, masterKey: string, node: RegtestNode, known: Known, o: CheckOptions = {}): Promise<string[]> {
  const { final = false, unsettled, statuses, found } = o;
  const problems: string[] = [];
  const store = await EncryptedStore.open({ path, keyring: loadKeyRingFile(masterKey), sync: false });
  try {
    const journal = new Journal(store);
    // The transfer index is what the engine relies on to apply a transfer id once: the checks read it too.
    const records = new WalletRecords(store, 1000);
    const wallets = new Map<string, WalletState>();
    const keys = new Set<string>();
    for await (const k of store.keys("journal")) keys.add(k.slice(0, k.indexOf("\u0001")));
    let payouts = emptyPayouts();
    let cheques = { cheques: {} } as Parameters<typeof escrowOf>[0];
    /** Each deposit's credits by wallet, from the wallets' own events: seen adds one, dropped takes it back. */
    const credits = new Map<string, { address: string; amount: bigint; by: Map<string, number> }>();
    /** Every settlement the wallets journalled: the transaction and the fee charged. */
    const settled: Array<{ userKey: string; id: string; txid: string; fee: bigint }> = [];
    /** Every cheque ever made, by creator and command id (the book keeps the id; a pruned one has left the state). */
    const chequeHashes = new Map<string, string>();
    for (const key of keys) {
      const records = await journal.readEvents(key);
      if (key.startsWith("wallet:")) {
        const userKey = key.slice(7);
        let s = emptyWallet(userKey);
        for (const r of records) {
          for (const e of (r.data as JournalRecord<WalletEvent>).e) {
            s = evolve(s, e);
            if (e.t === "deposit_seen") {
              const c = credits.get(e.outpoint) ?? { address: e.address, amount: BigInt(e.amount), by: new Map<string, number>() };
              credits.set(e.outpoint, c);
              c.by.set(userKey, (c.by.get(userKey) ?? 0) + 1);
            } else if (e.t === "deposit_dropped") {
              // Seen in this wallet before (evolve has just taken it from the wallet's pending deposits).
              const by = credits.get(e.outpoint)!.by;
              by.set(userKey, by.get(userKey)! - 1);
            } else if (e.t === "withdrawal_settled") settled.push({ userKey, id: e.id, txid: e.txid, fee: BigInt(e.fee) });
          }
        }
        const broken = checkInvariants(s);
        if (broken) problems.push(`${userKey}: ${broken}`);
        wallets.set(userKey, s);
      } else if (key === "payouts") {
        for (const r of records) {
          const events = (r.data as JournalRecord<PayoutEvent>).e;
          for (const e of events) if (e.t === "pruned" && found) found.pruned += e.ids.length;
          payouts = events.reduce(evolvePayouts, payouts);
        }
      } else if (key === "cheques") {
        for (const r of records) {
          const events = (r.data as JournalRecord<ChequeEvent>).e;
          for (const e of events) {
            if (e.t === "pruned" && found) found.cheques += e.hashes.length;
            if (e.t === "created" && e.id !== undefined) chequeHashes.set(`${e.creator}\u0000${e.id}`, e.hash);
          }
          cheques = events.reduce(evolveCheques, cheques);
        }
      }
    }
    // A withdrawal, open in its wallet's state or finished in the wallet's records.
    const withdrawalIn = (u: string, id: string) => own(wallets.get(u)?.withdrawals ?? {}, id) ?? records.withdrawal(u, id);
    // A cheque in the book, or in its finished record once paid and pruned from the book.
    const finishedCheques = new FinishedCheques(store);
    const chequeIn = (hash: string) => own(cheques.cheques, hash) ?? finishedCheques.get(hash);
    // No acknowledged command lost.
    for (const t of known.transfers) {
      const [u, id] = t.split("|") as [string, string];
      const w = wallets.get(u);
      if (!w || !(w.outgoing[id] || records.sent(u, id))) problems.push(`acknowledged transfer ${id} is not in ${u}'s journal`);
    }
    for (const [id, w] of known.withdrawals) if (!withdrawalIn(w.key, id)) problems.push(`acknowledged withdrawal ${id} is not in ${w.key}'s journal`);
    // An acknowledged cheque is made (its funding debited), funded by the end, and claimed by whoever's claim was
    // acknowledged, who is paid by the end.
    for (const c of known.cheques.values()) {
      const hash = chequeHashes.get(`${c.creator}\u0000${c.id}`);
      const x = hash === undefined ? undefined : chequeIn(hash);
      if (hash === undefined || !x) {
        problems.push(`acknowledged cheque ${c.id} of ${c.creator} is not in the cheque book`);
        continue;
      }
      if (x.amount !== c.amount) problems.push(`acknowledged cheque ${c.id} of ${c.amount} sats is in the cheque book for ${x.amount}`);
      // Until its funding lands, the debit waits in the creator's outbox (a transfer to the cheque, re-sent at start).
      if (x.status === "awaiting_funds" && (final || !Object.values(wallets.get(c.creator)?.outgoing ?? {}).some((t) => t.to === chequeUserKey(hash)))) {
        problems.push(`acknowledged cheque ${c.id} of ${c.creator} awaits its funds, ${final ? "at the end" : "and its creator's journal has no debit for it"}`);
      }
      if (c.claimedBy === undefined) continue;
      if (x.status !== "claimed" || x.payee !== c.claimedBy) problems.push(`cheque ${c.id} of ${c.creator}, whose claim by ${c.claimedBy} was acknowledged, is ${x.status}${x.payee ? ` to ${x.payee}` : ""}`);
      else if (final && !records.received(c.claimedBy, chequeUserKey(hash), chequePayoutId(hash))) problems.push(`cheque ${c.id} of ${c.creator}, claimed by ${c.claimedBy}, was never paid to them`);
    }
    // Each payout on chain once: a destination never received more than its amount. At the end, every acknowledged
    // withdrawal is paid: sent in its wallet, and its amount on chain exactly. Nobody plays operator here, so none
    // may have been given back (released) instead; one whose confirmation our kill cut off is held to the same
    // once its wallet has it, and without it nothing may have gone out.
    for (const [id, w] of [...known.withdrawals, ...known.uncertain]) {
      const got = BigInt(Math.round((await node.rpc<number>("getreceivedbyaddress", [w.dest, 0], "outside")) * 1e8));
      if (got > w.amount) problems.push(`withdrawal ${id} paid ${got} sats for ${w.amount}`);
      if (!final) continue;
      const status = withdrawalIn(w.key, id)?.status;
      if (known.withdrawals.has(id) || status !== undefined) {
        if (status !== "sent" || got !== w.amount) problems.push(`${known.withdrawals.has(id) ? "acknowledged" : "unacknowledged"} withdrawal ${id} of ${w.amount} sats is ${status ?? "missing"} in its wallet at the end, and the chain shows ${got} sats paid`);
      } else if (got !== 0n) problems.push(`withdrawal ${id}, never made in its wallet, was paid ${got} sats on chain`);
    }
    // Each deposit credited at most once, to the user it was made to (a send that failed part-way is known by its
    // address only), and every deposit exactly once and confirmed at the end.
    const made = new Map<string, MadeDeposit>();
    for (const d of known.deposits) {
      const op = await outpointOf(node, d);
      if (op) made.set(op, d);
    }
    const times = (op: string) => [...(credits.get(op)?.by.values() ?? [])].reduce((a, b) => a + b, 0);
    for (const [op, c] of credits) {
      const to = [...c.by].filter(([, n]) => n > 0).map(([u]) => u);
      if (times(op) > 1) problems.push(`deposit ${op} is credited ${times(op)} times (${to.join(", ")})`);
      const d = made.get(op) ?? known.deposits.find((x) => x.txid === undefined && x.address === c.address);
      if (!d) {
        if (to.length) problems.push(`deposit ${op} of ${c.amount} sats credited to ${to.join(", ")} was never made`);
        continue;
      }
      if (to.some((u) => u !== d.user)) problems.push(`deposit ${op} made to ${d.user} is credited to ${to.join(", ")}`);
      if (c.amount !== d.amount) problems.push(`deposit ${op} of ${d.amount} sats is credited as ${c.amount}`);
    }
    for (const [op, d] of made) {
      const pending = own(wallets.get(d.user)?.deposits ?? {}, op)?.status === "pending";
      const record = records.deposit(d.user, op);
      // What a wallet answers a deposit seen again from: pending in its state, or its record once confirmed. One
      // credited and in neither would be credited again by the next scan that lists it.
      if (times(op) === 1 && !pending && record?.status !== "confirmed") problems.push(`deposit ${op} is credited to ${d.user}, whose wallet has it neither pending nor confirmed (${record?.status ?? "no record"})`);
      if (times(op) === 1 && record?.status === "confirmed") found?.confirmed.add(op);
      else if (final) problems.push(`deposit ${op} of ${d.amount} sats to ${d.user} is credited ${times(op)} times and ${pending ? "pending" : (record?.status ?? "unknown to its wallet")} at the end`);
    }
    // No satoshi created: what the books owe never exceeds what the node holds. Money in flight between two
    // journals after a kill (a debit whose credit is not acknowledged yet) must be counted exactly once.
    let owed = escrowOf(cheques);
    let inFlight = 0n;
    const confirmedUnsettled = new Set<string>();
    for (const [id, p] of Object.entries(payouts.payouts)) {
      // Paid by the node and still reserved in the wallet: signed or broadcast, or confirmed with the wallet's
      // settlement not journalled yet when the engine died (the payout book re-sends it at the next start).
      if (p.status === "confirmed" && ["reserved", "broadcast"].includes(withdrawalIn(p.userKey, id)?.status ?? "")) confirmedUnsettled.add(id);
      if (p.status === "signed" || p.status === "broadcast" || confirmedUnsettled.has(id)) inFlight += p.amount + (p.fee ?? p.quotedFee);
      // Being paid when the engine died: signed or broadcast since the previous check (one broadcast in an earlier
      // round, waiting for a block, says nothing about this kill).
      const before = statuses?.get(id);
      if (found && (p.status === "signed" || p.status === "broadcast") && before !== "signed" && before !== "broadcast") {
        found.payouts++;
        if (p.status === "signed") found.signed++;
      }
      // The payout book records a wallet's settlement only once the wallet has journalled it.
      const inWallet = withdrawalIn(p.userKey, id)?.status;
      if (p.walletSettled && inWallet !== "sent") problems.push(`payout ${id} is recorded as settled in its wallet, whose journal has it ${inWallet ?? "missing"}`);
    }
    if (statuses) {
      statuses.clear();
      for (const [id, p] of Object.entries(payouts.payouts)) statuses.set(id, p.status);
    }
    // ...and re-sent it is: one left over from the previous kill must be settled after the restart in between.
    if (unsettled) {
      for (const id of unsettled) if (confirmedUnsettled.has(id)) problems.push(`payout ${id} was confirmed before the last restart and its wallet has still not settled it`);
      unsettled.clear();
      for (const id of confirmedUnsettled) unsettled.add(id);
    }
    // What the store's sums count as sent between users and not yet credited: the debits found in flight here.
    let inTransit = 0n;
    for (const w of wallets.values()) {
      owed += w.available + w.pending + w.reserved;
      for (const [id, t] of Object.entries(w.outgoing)) {
        // Debited for a cheque the cheque book has not recorded as funded (the escrow does not count it yet), or for a
        // user whose credit is not applied yet: in flight, counted here once. A cheque missing from the book has
        // landed only if it was paid and pruned (its finished record); one never made has not.
        const landed = t.to.startsWith("cheque:") ? (chequeIn(t.to.slice(7))?.status ?? "awaiting_funds") !== "awaiting_funds" : records.received(t.to, w.userKey, id);
        if (landed) continue;
        owed += t.amount;
        inTransit += t.amount;
        // Liveness: a debit's credit is re-sent after every restart until it lands, so none is left at the end.
        if (final) problems.push(`transfer ${id} from ${w.userKey} to ${t.to} was debited and never credited`);
      }
    }
    // The running sums the watchdog reads are written in the same batches as the journals: always equal to them.
    const replayed = { available: 0n, pending: 0n, reserved: 0n, wallets: 0n, transit: inTransit };
    for (const w of wallets.values()) {
      replayed.available += w.available;
      replayed.pending += w.pending;
      replayed.reserved += w.reserved;
      if (w.opened) replayed.wallets++;
    }
    const sums = walletSums(store.sums);
    if (Object.keys(replayed).some((k) => sums[k as keyof typeof sums] !== replayed[k as keyof typeof replayed])) {
      problems.push(`the store's running sums (${JSON.stringify(sums, big)}) differ from the journals' (${JSON.stringify(replayed, big)})`);
    }
    // A cheque payout the payee already holds, whose "paid" the cheque book had not recorded: counted in the payee.
    for (const [hash, c] of Object.entries(cheques.cheques)) {
      if (c.payee && c.paid === false && records.received(c.payee, chequeUserKey(hash), chequePayoutId(hash))) owed -= c.amount;
    }
    // Liveness: nobody plays operator here, so nothing may have paused payouts (a pause lasts until an operator
    // resumes them, and every later withdrawal would wait in the queue).
    const paused = await store.get<{ reason: string }>("engine", "payouts_paused");
    if (paused) problems.push(`payouts are paused (${paused.reason}); withdrawals queued: ${Object.values(payouts.payouts).filter((p) => p.status === "queued").length}`);
    const b = await node.rpc<{ mine: { trusted: number; untrusted_pending: number } }>("getbalances", [], node.walletName);
    const held = BigInt(Math.round(b.mine.trusted * 1e8)) + BigInt(Math.round(b.mine.untrusted_pending * 1e8));
    if (owed - inFlight > held) problems.push(`the books owe ${owed - inFlight} sats but the node holds ${held}`);
    if (final) {
      // At the end nothing is in flight, and the books and the node agree to the satoshi but for the house's part: the
      // fee of a payout transaction beyond its users' shares (a share is capped at its user's quote, payout.ts
      // feeShares), read from the node's record of each transaction the wallets settled. The users pay their shares,
      // nothing else: each charge is compared with its payout's share, so the house's part cannot hide another loss.
      const finishedPayouts = new FinishedPayouts(store);
      const charged = new Map<string, bigint>();
      for (const w of settled) {
        const share = own(payouts.payouts, w.id)?.fee ?? finishedPayouts.get(w.id)?.fee;
        if (share !== w.fee) problems.push(`withdrawal ${w.id} of ${w.userKey} was charged a fee of ${w.fee} sats, its payout's share is ${share ?? "unknown"}`);
        charged.set(w.txid, (charged.get(w.txid) ?? 0n) + w.fee);
      }
      let housePaid = 0n;
      for (const [txid, fees] of charged) {
        const tx = await node.rpc<{ fee: number }>("gettransaction", [txid], node.walletName);
        const fee = BigInt(Math.round(-tx.fee * 1e8));
        if (fee < fees) problems.push(`payout transaction ${txid} paid a fee of ${fee} sats, less than its users were charged (${fees})`);
        housePaid += fee - fees;
      }
      if (found) found.housePaid = housePaid;
      const gap = held + housePaid - (owed - inFlight);
      if (gap !== 0n) problems.push(`the books owe ${owed - inFlight} sats, the node holds ${held} and the house paid ${housePaid} in fees: ${gap > 0n ? `${gap} sats more than anyone is owed` : `${-gap} sats missing`}`);
    }
  } finally {
    await store.close();
  }
  return problems;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf("--kills");
  const kills = i > 0 ? Number(process.argv[i + 1]) : 20;
  const seed = Number(process.env.CHAOS_SEED ?? Date.now() % 100_000);
  const r = await chaos({ kills, seed, log: (s) => process.stderr.write(s + "\n") });
  for (const v of r.violations.slice(0, 20)) console.log(`VIOLATION ${v}`);
  console.log(`chaos: seed ${r.seed}, ${r.kills} of ${kills} kills delivered to a live engine (${r.aimedKills} aimed at a payout's broadcast), ${r.hangs} hangs, ${r.acknowledged} acknowledged commands (${r.withdrawals} withdrawals; ${r.pruned} finished payouts left the payout book, ${r.chequesPruned} paid cheques the cheque book), ${r.deposits} deposits, ${r.refused} refusals, ${r.violations.length} invariant violations; fees paid by the house ${r.housePaid ?? "?"} sats; restore drill: backup ${r.restoreLag ?? "?"} commits behind the store after a clean stop; bitcoind killed ${r.bitcoindKills}×; ${r.killsSignedNotBroadcast} kills between a payout's signed record and its broadcast; ${r.killsWithPayoutInFlight} kills with a payout signed or broadcast in the round and not yet confirmed (most are: withdrawals go out at once, blocks are rare); key rotation ${r.rotation ? `${r.rotation.interrupted ? "killed part-way" : "not interrupted"}, resumed ${r.rotation.resumed}` : "not run"}`);
  process.exit(r.violations.length ? 1 : 0);
}
