// npm run chaos [-- --kills N] — crash injection. The engine runs as a child process (`runigun engine`) on a real
// regtest node; a mixed workload from simulated users (deposits, transfers, withdrawals, cheques) reaches it
// through its internal TLS API; the harness SIGKILLs it at random moments, and after each kill reads the
// engine's own store (the process is dead, so the store is free) and checks the money invariants. Seeded by
// CHAOS_SEED; prints one summary line. Exported for the CI test, which runs a short version.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startRegtest, freePort, type RegtestNode } from "../src/regtest/harness.ts";
import { ensurePki, readPem } from "../src/tls/certs.ts";
import { RemoteRelay } from "../src/edges/internal/client.ts";
import { silentLogger } from "../src/log.ts";
import { isRefusal } from "../src/domain/refusals.ts";
import { EncryptedStore, META, POSITION_KEY } from "../src/store/db.ts";
import { restoreArchive } from "../src/backup/restore.ts";
import { WalletRecords, walletSums } from "../src/actors/wallet.records.ts";
import { Journal } from "../src/store/journal.ts";
import { generateKeyRingFile, loadKeyRingFile } from "../src/store/keyring.ts";
import { emptyWallet, evolve, checkInvariants, own, type WalletEvent, type WalletState } from "../src/actors/wallet.ts";
import { emptyPayouts, evolvePayouts, type PayoutEvent } from "../src/actors/payout.ts";
import { chequePayoutId, chequeUserKey, escrowOf, evolveCheques, type ChequeEvent } from "../src/actors/cheques.ts";
import type { JournalRecord } from "../src/actors/runtime.ts";

const bin = new URL("../bin/runigun.js", import.meta.url).pathname;

function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

export interface ChaosResult {
  seed: number;
  kills: number;
  acknowledged: number;
  refused: number;
  violations: string[];
  /** Commits the backup (snapshot + segments) was behind the killed store at the final restore drill. */
  restoreLag?: number;
  /** bitcoind SIGKILLed and restarted mid-workload. */
  bitcoindKills: number;
  /** Kills that found a payout signed or broadcast and not yet confirmed in the dead engine's store. */
  killsDuringPayout: number;
  /** The master key rotation killed part-way and resumed (once per run). */
  rotation?: { interrupted: boolean; resumed: boolean };
  /** Acknowledged withdrawals, and the finished payouts that left the payout book (its retention is 5 here). */
  withdrawals: number;
  pruned: number;
  /** Paid cheques that left the cheque book (its retention is 3 here). */
  chequesPruned: number;
}

export async function chaos(o: { kills: number; seed: number; users?: number; log?: (s: string) => void }): Promise<ChaosResult> {
  const log = o.log ?? (() => undefined);
  const random = rng(o.seed);
  const pick = <T>(xs: T[]) => xs[Math.floor(random() * xs.length)]!;
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
  let child: ChildProcess | undefined;
  let relay: RemoteRelay | undefined;
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
    child = spawn(process.execPath, [bin, "engine"], { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
    const engineLog = process.env.CHAOS_ENGINE_LOG;
    if (engineLog) for (const s of [child.stdout!, child.stderr!]) s.on("data", (d: Buffer) => appendFileSync(engineLog, d));
    await new Promise<void>((resolve, reject) => {
      child!.stdout!.on("data", () => /engine ready/.test(out) && resolve());
      child!.once("exit", (code) => reject(new Error(`the engine exited (${code}): ${out.slice(-400)}`)));
    });
    relay = await RemoteRelay.connect({ url: `https://127.0.0.1:${port}`, log: silentLogger, tls: { ...readPem(pki, "bot-client"), ca: readPem(pki, "internal-ca").cert }, timeoutMs: 10_000 });
  };
  /** A clean stop (SIGTERM): the engine closes its store and ships the rest of its journal to the backup. */
  const stop = async (): Promise<boolean> => {
    relay?.close();
    const c = child!;
    if (c.exitCode !== null || c.signalCode !== null) return true;
    const exited = new Promise((r) => c.once("exit", r));
    c.kill("SIGTERM");
    const clean = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 30_000).unref())]);
    if (!clean) await kill();
    return clean;
  };
  const kill = async () => {
    relay?.close();
    const c = child!;
    if (c.exitCode === null && c.signalCode === null) {
      c.kill("SIGKILL");
      await new Promise((r) => c.once("exit", r));
    }
  };

  const users = Array.from({ length: o.users ?? 12 }, (_, i) => `u_chaos${String(i).padStart(4, "0")}`);
  const acked = { transfers: new Set<string>(), withdrawals: new Map<string, { key: string; dest: string; amount: bigint }>() };
  let acknowledged = 0, refused = 0;
  let restoreLag: number | undefined;
  const final = { payouts: 0, pruned: 0, cheques: 0 };
  let bitcoindKills = 0;
  let killsDuringPayout = 0;
  let rotation: ChaosResult["rotation"];
  /** Payouts confirmed on chain whose wallet had not settled them at the last kill (see check). */
  const unsettled = new Set<string>();
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
    }
    await node.rpc("send", [outputs], "outside");
    await node.mine(1);
    for (let k = 0; k < o.kills; k++) {
      // A burst of work, killed at a random moment: while the command numbered `killAt` is in flight, after a
      // random delay of up to 30 ms (a count rather than a wall-clock window, so a slow machine still does work).
      const killAt = 2 + Math.floor(random() * 30);
      let killing: Promise<void> | undefined;
      // Every fourth round the kill comes instead 0–10 ms after the first withdrawal acknowledged: while its payout is
      // being signed and broadcast (withdrawals are paid at once, `withdrawals.batchWindowMs` 0).
      const payoutRound = k % 4 === 1;
      // Once per run, bitcoind itself dies (SIGKILL, chain flushed, mempool lost) and comes back mid-burst.
      let bounce: Promise<void> | undefined;
      const burst = (async () => {
        for (let i = 0; i < 40 && !killing; i++) {
          if (k === bounceRound && i === 1) bounce = (async () => { await node.flush(); await node.kill(); await node.restart(); bitcoindKills++; })();
          if (i === killAt) killing = new Promise((r) => setTimeout(r, random() * 30)).then(kill);
          const u = pick(users);
          const r = random();
          try {
            if (r < 0.55) {
              const id = `c${o.seed}:${k}:${i}`;
              const t = await relay!.transfer(u, id, pick(users), `${1 + Math.floor(random() * 20_000)} sats`);
              if (isRefusal(t)) refused++;
              else (acked.transfers.add(`${u}|${id}`), acknowledged++);
            } else if (r < 0.75) {
              const dest = await node.outsideAddress();
              const q = await relay!.quoteWithdrawal(u, dest, `${20_000 + Math.floor(random() * 50_000)} sats`);
              if (isRefusal(q)) { refused++; continue; }
              const c = await relay!.confirmWithdrawal(u, q.id);
              if (isRefusal(c)) refused++;
              else {
                acked.withdrawals.set(q.id, { key: u, dest, amount: q.amount });
                acknowledged++;
                if (payoutRound && !killing) killing = new Promise((r) => setTimeout(r, random() * 10)).then(kill);
              }
            } else if (r < 0.85) {
              const ch = await relay!.createCheque(u, `q${o.seed}:${k}:${i}`, "5000 sats");
              if (isRefusal(ch)) refused++;
              else {
                acknowledged++;
                const cl = await relay!.claimCheque(pick(users), ch.code);
                if (isRefusal(cl)) refused++;
              }
            } else if (r < 0.95) {
              const a = await relay!.depositAddress(u);
              if (!isRefusal(a)) await node.fund(a.address, "0.001");
            } else {
              await node.mine(1);
            }
          } catch {
            return; // the engine died under us: an unacknowledged command, nothing to expect
          }
        }
      })();
      await burst;
      await (killing ?? kill());
      await bounce;
      if (k === rotateRound) rotation = await rotateKilled(env, log);
      const inFlight = { payouts: 0, pruned: 0, cheques: 0 };
      violations.push(...(await check(join(dir, "data", "store"), masterKey, node, acked, false, unsettled, inFlight)).map((v) => `kill ${k + 1}: ${v}`));
      if (inFlight.payouts > 0) killsDuringPayout++;
      log(`kill ${k + 1}/${o.kills}: ${acknowledged} acknowledged so far, ${violations.length} violations`);
      await start();
    }
    // Liveness: every acknowledged withdrawal goes out and is settled in its wallet within a few blocks.
    const reserved = await settleAll(relay!, users, node);
    if (reserved.length) violations.push(`final: withdrawals still reserved after ${SETTLE_BLOCKS} blocks for ${reserved.length} users (e.g. ${reserved[0]})`);
    // A clean stop, then the checks once more with payouts confirmed, and the restore drill: a clean stop ships
    // everything, so the backup must hold the store's last commit.
    if (!(await stop())) violations.push("final: the engine did not stop within 30 s of SIGTERM");
    violations.push(...(await check(join(dir, "data", "store"), masterKey, node, acked, true, unsettled, final)).map((v) => `final: ${v}`));
    const drill = await restoreDrill(dir, masterKey, node, acked);
    restoreLag = drill.lag;
    if (drill.lag !== 0) violations.push(`restore drill: the backup is ${drill.lag} commits behind the store after a clean stop`);
    violations.push(...drill.problems.map((v) => `restore drill: ${v}`));
  } finally {
    await kill().catch(() => undefined);
    await node.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return { seed: o.seed, kills: o.kills, acknowledged, refused, violations, bitcoindKills, killsDuringPayout, withdrawals: acked.withdrawals.size, pruned: final.pruned, chequesPruned: final.cheques, ...(rotation ? { rotation } : {}), ...(restoreLag !== undefined ? { restoreLag } : {}) };
}

const SETTLE_BLOCKS = 6;

/**
 * Mines a block at a time until no user has anything reserved (every withdrawal broadcast, confirmed and settled in
 * its wallet), reading the balances through the engine every 50 ms, at most 2 s per block. Returns who still has.
 */
async function settleAll(relay: RemoteRelay, users: string[], node: RegtestNode): Promise<string[]> {
  let waiting: string[] = [];
  for (let block = 0; block < SETTLE_BLOCKS; block++) {
    await node.mine(1);
    for (let poll = 0; poll < 40; poll++) {
      waiting = [];
      for (const u of users) {
        const b = await relay.balance(u);
        if (isRefusal(b) || b.reserved > 0n) waiting.push(u);
      }
      if (waiting.length === 0) return [];
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
    c.once("exit", () => resolve({ out, killed }));
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
async function restoreDrill(dir: string, masterKey: string, node: RegtestNode, acked: Parameters<typeof check>[3]): Promise<{ problems: string[]; lag: number }> {
  const snapshots = readdirSync(join(dir, "backup", "snapshots")).filter((n) => n.endsWith(".rga")).sort();
  const newest = snapshots.at(-1);
  if (!newest) return { problems: ["no snapshot was ever taken"], lag: -1 };
  const keyring = loadKeyRingFile(masterKey);
  const r = await restoreArchive({ archive: join(dir, "backup", "snapshots", newest), segmentsDir: join(dir, "backup", "segments"), dataPath: join(dir, "restored"), keyring, network: "regtest" });
  const problems: string[] = [];
  if (r.segments?.stop) problems.push(`segments stopped early: ${r.segments.stop.file}: ${r.segments.stop.reason}`);
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
  problems.push(...(await check(join(dir, "restored", "store"), masterKey, node, acked, lag === 0)));
  return { problems, lag };
}

/** JSON.stringify's replacer for bigint amounts (in messages). */
const big = (_k: string, v: unknown) => (typeof v === "bigint" ? v.toString() : v);

/**
 * Reads the dead engine's store and checks the invariants; `found.payouts` counts the payouts it had in flight,
 * `found.pruned` those that had left the payout book, `found.cheques` the cheques that had left the cheque book.
 */
async function check(path: string, masterKey: string, node: RegtestNode, acked: { transfers: Set<string>; withdrawals: Map<string, { key: string; dest: string; amount: bigint }> }, final = false, unsettled?: Set<string>, found?: { payouts: number; pruned: number; cheques: number }): Promise<string[]> {
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
    for (const key of keys) {
      const records = await journal.readEvents(key);
      if (key.startsWith("wallet:")) {
        const userKey = key.slice(7);
        let s = emptyWallet(userKey);
        for (const r of records) for (const e of (r.data as JournalRecord<WalletEvent>).e) s = evolve(s, e);
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
          for (const e of events) if (e.t === "pruned" && found) found.cheques += e.hashes.length;
          cheques = events.reduce(evolveCheques, cheques);
        }
      }
    }
    // A withdrawal, open in its wallet's state or finished in the wallet's records.
    const withdrawalIn = (u: string, id: string) => own(wallets.get(u)?.withdrawals ?? {}, id) ?? records.withdrawal(u, id);
    // No acknowledged command lost.
    for (const t of acked.transfers) {
      const [u, id] = t.split("|") as [string, string];
      const w = wallets.get(u);
      if (!w || !(w.outgoing[id] || records.sent(u, id))) problems.push(`acknowledged transfer ${id} is not in ${u}'s journal`);
    }
    for (const [id, w] of acked.withdrawals) if (!withdrawalIn(w.key, id)) problems.push(`acknowledged withdrawal ${id} is not in ${w.key}'s journal`);
    // Each payout on chain once: a destination never received more than its amount.
    for (const [id, w] of acked.withdrawals) {
      const got = BigInt(Math.round((await node.rpc<number>("getreceivedbyaddress", [w.dest, 0], "outside")) * 1e8));
      if (got > w.amount) problems.push(`withdrawal ${id} paid ${got} sats for ${w.amount}`);
      if (final && withdrawalIn(w.key, id)?.status === "sent" && got !== w.amount) problems.push(`withdrawal ${id} settled but the chain shows ${got}`);
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
      if (found && (p.status === "signed" || p.status === "broadcast")) found.payouts++;
      // The payout book records a wallet's settlement only once the wallet has journalled it.
      const inWallet = withdrawalIn(p.userKey, id)?.status;
      if (p.walletSettled && inWallet !== "sent") problems.push(`payout ${id} is recorded as settled in its wallet, whose journal has it ${inWallet ?? "missing"}`);
    }
    // ...and re-sent it is: one left over from the previous kill must be settled after the restart in between.
    if (unsettled) {
      for (const id of unsettled) if (confirmedUnsettled.has(id)) problems.push(`payout ${id} was confirmed before the last restart and its wallet has still not settled it`);
      unsettled.clear();
      for (const id of confirmedUnsettled) unsettled.add(id);
    }
    for (const w of wallets.values()) {
      owed += w.available + w.pending + w.reserved;
      for (const [id, t] of Object.entries(w.outgoing)) {
        // Debited for a cheque the cheque book has not recorded as funded (the escrow does not count it yet), or for a
        // user whose credit is not applied yet: in flight, counted here once.
        const landed = t.to.startsWith("cheque:") ? cheques.cheques[t.to.slice(7)]?.status !== "awaiting_funds" : records.received(t.to, w.userKey, id);
        if (landed) continue;
        owed += t.amount;
        // Liveness: a debit's credit is re-sent after every restart until it lands, so none is left at the end.
        if (final) problems.push(`transfer ${id} from ${w.userKey} to ${t.to} was debited and never credited`);
      }
    }
    // The running sums the watchdog reads are written in the same batches as the journals: always equal to them.
    const replayed = { available: 0n, pending: 0n, reserved: 0n, wallets: 0n };
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
    const b = await node.rpc<{ mine: { trusted: number; untrusted_pending: number } }>("getbalances", [], "engine");
    const held = BigInt(Math.round(b.mine.trusted * 1e8)) + BigInt(Math.round(b.mine.untrusted_pending * 1e8));
    if (owed - inFlight > held) problems.push(`the books owe ${owed - inFlight} sats but the node holds ${held}`);
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
  console.log(`chaos: seed ${r.seed}, ${r.kills} kills, ${r.acknowledged} acknowledged commands (${r.withdrawals} withdrawals; ${r.pruned} finished payouts left the payout book, ${r.chequesPruned} paid cheques the cheque book), ${r.refused} refusals, ${r.violations.length} invariant violations; restore drill: backup ${r.restoreLag ?? "?"} commits behind the store after a clean stop; bitcoind killed ${r.bitcoindKills}×; ${r.killsDuringPayout} kills with a payout signed or broadcast, not yet confirmed; key rotation ${r.rotation ? `${r.rotation.interrupted ? "killed part-way" : "not interrupted"}, resumed ${r.rotation.resumed}` : "not run"}`);
  process.exit(r.violations.length ? 1 : 0);
}
