// Breaks in continuous backup, on real LevelDB and real files: frames dropped because the backup disk could not
// keep up (the shipper's buffer overflowed). Every break is reported, repaired by a snapshot that starts after it
// (another one when a snapshot was already running), and the broken state clears once it is repaired — the second
// break as much as the first, so a restore from the newest archive and the segments loses nothing acknowledged.
// And a node wallet that bitcoind could not write where the engine asks it to is an alert off regtest.
import t from "tap";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { EncryptedStore, META } from "../../src/store/db.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { BackupService } from "../../src/backup/service.ts";
import { SegmentShipper } from "../../src/backup/segments.ts";
import { restoreArchive } from "../../src/backup/restore.ts";
import { loadConfig } from "../../src/config.ts";
import { createLogger, silentLogger } from "../../src/log.ts";

const ring = new KeyRing(new Map([[1, randomBytes(32)]]), 1);
const GAP_KEY = "backup-gap";

/** `p`, or a failure saying what was waited for once `ms` have passed (a deadline: nothing waits for time to pass). */
function within<T>(what: string, p: Promise<T>, ms = 20_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out waiting for: ${what}`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/**
 * The node wallet's backup (backupNodeWallet), the first step of every snapshot the service takes, as the moment a
 * snapshot starts: `next(what)`, asked before what starts one, resolves when the next one does. From then on until it
 * ends it is the snapshot in progress, which `svc.snapshot()` returns (one at a time: a second caller gets it), so
 * that call waits for a snapshot the service took by itself. Made right after the step runs, with nothing between but
 * promise callbacks: the snapshot cannot end before (it reads the file and writes the archive after it).
 */
function snapshotStarts(step: (path: string) => Promise<void> = async (path) => writeFileSync(path, "node wallet")) {
  const waiting: Array<() => void> = [];
  return {
    backupNodeWallet: async (path: string) => {
      for (const started of waiting.splice(0)) started();
      await step(path);
    },
    next: (what: string) => within(what, new Promise<void>((r) => waiting.push(r))),
  };
}

function serviceConfig(dir: string, o: { nodeWallet?: boolean; network?: "regtest" | "signet" } = {}) {
  return loadConfig({
    env: {}, cwd: dir,
    overrides: { ...(o.network ? { network: o.network, dataDir: join(dir, "data", o.network) } : {}), backup: { dir: join(dir, "backup"), segmentIntervalMs: 60_000, snapshotIntervalMs: 0, keep: 10, nodeWallet: o.nodeWallet ?? false } },
  });
}

/** Writes one record at a time until the shipper drops frames (its buffer overflows, as a long outage of the backup disk makes it). */
async function overflow(store: EncryptedStore, broken: () => boolean, tag: string, acked: Map<string, string>): Promise<number> {
  for (let i = 0; !broken(); i++) {
    if (i > 1000) throw new Error("the buffer never overflowed");
    await put(store, `${tag}:${i}`, acked);
  }
  return store.position;
}

async function put(store: EncryptedStore, key: string, acked: Map<string, string>): Promise<void> {
  const v = randomBytes(64).toString("hex");
  await store.put("journal", key, { v });
  acked.set(key, v);
}

t.test("the shipper: an overflow after a repair is a break of its own, reported again; only a snapshot past the lost positions repairs it", async (t) => {
  const dir = t.testdir();
  const store = await EncryptedStore.open({ path: join(dir, "store"), keyring: ring });
  let breaks = 0;
  const shipper = new SegmentShipper({ dir: join(dir, "segments"), keyring: ring, intervalMs: 60_000, log: silentLogger, maxBufferedBytes: 2000, onBroken: () => breaks++ });
  await shipper.attach(store);
  const acked = new Map<string, string>();
  const lost1 = await overflow(store, () => breaks > 0, "a", acked);
  t.ok(shipper.broken, "broken at the first overflow");
  await shipper.flush();
  t.ok(shipper.broken, "a flush does not repair it: the dropped frames are still missing");
  shipper.repaired(lost1 - 1);
  t.ok(shipper.broken, "nor does a snapshot from before the lost positions");
  shipper.repaired(lost1);
  t.notOk(shipper.broken, "a snapshot at or past them does");

  const seen = breaks;
  await overflow(store, () => breaks > seen, "b", acked);
  t.equal(breaks, seen + 1, "the second overflow is reported too");
  t.ok(shipper.broken, "and is broken again");
  shipper.repaired(store.position);
  t.notOk(shipper.broken);
  await shipper.close();
  await store.close();
});

t.test("two breaks: each repaired by a snapshot taken after it, broken cleared after each; a restore from the newest archive and the segments has every acknowledged write", async (t) => {
  const dir = t.testdir();
  // With a node wallet: its backup step tells when the repair starts.
  const config = serviceConfig(dir, { nodeWallet: true });
  const starts = snapshotStarts();
  const store = await EncryptedStore.open({ path: join(dir, "store"), keyring: ring });
  const svc = new BackupService({ config, store, log: silentLogger, backupNodeWallet: starts.backupNodeWallet, segments: { maxBufferedBytes: 4000 } });
  await svc.start();
  await svc.snapshot();
  const acked = new Map<string, string>();
  const repairs: number[] = [];
  for (const round of [1, 2]) {
    for (let i = 0; i < 5; i++) await put(store, `before-${round}:${i}`, acked);
    await svc.flush();
    t.notOk(svc.status().shippingBroken, `round ${round}: continuity holds before the break`);
    const started = starts.next(`round ${round}: the repair to start`);
    const lost = await overflow(store, () => svc.status().shippingBroken === true, `burst-${round}`, acked);
    t.equal(svc.status().shippingBroken, true, `round ${round}: broken (runigun_backup_segments_broken 1)`);
    await started;
    await svc.snapshot(); // the repair, in progress
    t.equal(svc.status().shippingBroken, false, `round ${round}: not broken once the repair is written`);
    t.notOk(svc.status().snapshotInProgress, `round ${round}: no other snapshot running or waiting`);
    const repair = svc.status().lastGood!.position;
    t.ok(repair >= lost, `round ${round}: repaired by a snapshot at ${repair}, past the lost positions (up to ${lost})`);
    t.equal(await store.get(META, GAP_KEY), undefined, `round ${round}: the gap record is gone`);
    repairs.push(repair);
    for (let i = 0; i < 5; i++) await put(store, `after-${round}:${i}`, acked);
  }
  t.ok(repairs[1]! > repairs[0]!, "two repairs, one per break");
  await svc.close();
  await store.close();

  const archive = svc.status().lastGood!.path;
  const r = await restoreArchive({ archive, segmentsDir: join(dir, "backup", "segments"), dataPath: join(dir, "restored"), keyring: ring, network: "regtest" });
  t.notOk(r.segments?.stop, "the segments after the newest archive have no gap");
  t.ok(r.replayed >= 5, `${r.replayed} batches replayed after the archive`);
  const restored = await EncryptedStore.open({ path: join(dir, "restored", "store"), keyring: ring });
  const missing: string[] = [];
  for (const [key, v] of acked) if ((await restored.get<{ v: string }>("journal", key))?.v !== v) missing.push(key);
  t.same(missing, [], `every acknowledged write is restored (${acked.size})`);
  await restored.close();
});

t.test("a break while a snapshot runs: another snapshot is taken after it", async (t) => {
  const dir = t.testdir();
  const config = serviceConfig(dir, { nodeWallet: true });
  const store = await EncryptedStore.open({ path: join(dir, "store"), keyring: ring });
  const events: Array<[string, number]> = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  // The node's backupwallet is the first step of a snapshot: held here, the first snapshot is running when the break comes.
  const starts = snapshotStarts(async (path) => {
    events.push(["snapshot", store.position]);
    await gate;
    writeFileSync(path, "node wallet");
  });
  const svc = new BackupService({ config, store, log: silentLogger, backupNodeWallet: starts.backupNodeWallet, segments: { maxBufferedBytes: 4000 } });
  await svc.start();
  const firstStarted = starts.next("the first snapshot to start");
  const first = svc.snapshot();
  await firstStarted;
  const repairStarted = starts.next("the repair to start");
  const lost = await overflow(store, () => svc.status().shippingBroken === true, "burst", new Map());
  events.push(["break", lost]);
  release();
  await first;
  await repairStarted;
  await svc.snapshot(); // the repair, in progress
  t.equal(svc.status().shippingBroken, false, "not broken once the repair is written");
  t.notOk(svc.status().snapshotInProgress, "no other snapshot running or waiting");
  t.same(events.map(([what]) => what), ["snapshot", "break", "snapshot"], "a second snapshot, started after the break");
  t.ok(events[2]![1] >= lost, "at the store's position after it");
  t.ok(svc.status().lastGood!.position >= lost, "which covers it");
  t.equal(await store.get(META, GAP_KEY), undefined);
  await svc.close();
  await store.close();
});

t.test("a node wallet bitcoind cannot write into the engine's private directory: an alert off regtest, a warning on it", async (t) => {
  // bitcoind as another user: it cannot create a file in <dataDir>/tmp (0700). As root, a real other user tries;
  // otherwise the node's answer to that.
  const asOtherUser = async (path: string) => {
    if (process.getuid?.() !== 0) throw new Error("Error: Wallet backup failed!");
    await promisify(execFile)("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", 'printf wallet > "$1"', "sh", path]);
  };
  for (const network of ["signet", "regtest"] as const) t.test(network, async (t) => {
    const dir = t.testdir();
    const lines: Array<{ level: number; msg: string; alert?: boolean }> = [];
    const log = createLogger({ level: "info", destination: { write: (s: string) => void lines.push(JSON.parse(s)) } });
    const store = await EncryptedStore.open({ path: join(dir, "store"), keyring: ring });
    const svc = new BackupService({ config: serviceConfig(dir, { network, nodeWallet: true }), store, log, backupNodeWallet: asOtherUser });
    await svc.start();
    const info = await svc.snapshot();
    t.equal(info.manifest.nodeWallet.included, false, `${network}: the archive goes without the node wallet`);
    const line = lines.find((l) => /node wallet/.test(l.msg) && l.level >= 40);
    t.ok(line, `${network}: and says so`);
    t.match(line?.msg, /same host|tmp/, `${network}: naming the precondition`);
    if (network === "regtest") t.match(line, { level: 40, alert: undefined }, "regtest: a warning");
    else t.match(line, { level: 50, alert: true }, `${network}: an alert`);
    await svc.close();
    await store.close();
  });
});
