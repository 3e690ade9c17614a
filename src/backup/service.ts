// The engine's backup duty: ship every durable batch to journal segments, take snapshot archives on a
// schedule (and on demand: `runigun backup`, the admin edge), keep the newest few and the segments that
// follow the oldest kept one, and tell operators how old the last good backup is.
//
//   <backup.dir>/segments/seg-<timeline>-<position>.rgs
//   <backup.dir>/snapshots/runigun-<network>-<time>-<timeline>-p<position>.rga
// A timeline is one history of the store: a restore starts a new one, so positions never mix across it.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { readFile, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { Config } from "../config.ts";
import type { Logger } from "../log.ts";
import { META, type EncryptedStore } from "../store/db.ts";
import { writeFileDurably } from "../store/files.ts";
import { runToken, writeArchive, type ArchiveInfo, type Manifest } from "./archive.ts";
import { ensureBackupSubdir, lastShipped, listSegments, missingBackupDir, SegmentShipper, STOP_KEY, type ShipperOptions } from "./segments.ts";
import { BackupError } from "./format.ts";
import { RESTORED_KEY, type RestoredMark } from "./restore.ts";

const SNAP_RE = /^runigun-[a-z]+-([0-9TZ-]+)-([0-9a-f]{12})-p(\d+)\.rga$/;

export interface BackupStatus {
  enabled: boolean;
  dir?: string;
  lastGood?: { at: number; path: string; position: number; bytes: number };
  /** Seconds since the last good snapshot; undefined when there is none. */
  lastBackupAgeS?: number;
  shippedPosition?: number;
  storePosition: number;
  /** Commits not yet on the backup disk (normally at most one interval's worth). */
  shippingLag?: number;
  shippingBroken?: boolean;
  snapshotInProgress: boolean;
  /** Why backups are off with a backup directory set (it holds another store's backups). */
  off?: string;
}

export interface BackupServiceOptions {
  config: Config;
  store: EncryptedStore;
  log: Logger;
  /** Writes the node wallet's backup to `path` (bitcoind's `backupwallet`), when there is a node to ask. */
  backupNodeWallet?: (path: string) => Promise<void>;
  /** Tests: the shipper's limits (a small buffer overflows, as a long backup-disk outage would make it). */
  segments?: Pick<ShipperOptions, "maxBufferedBytes" | "maxFileBytes">;
}

export function snapshotName(network: string, at: Date, timeline: string, position: number): string {
  return `runigun-${network}-${at.toISOString().replace(/[:.]/g, "-")}-${timeline}-p${position}.rga`;
}

/** A gap in continuous backup no snapshot covers yet (see #markGap). */
interface Gap {
  from: number;
  upTo: number;
  at: number;
}
const GAP_KEY = "backup-gap";
/** The first write of a run after a clean stop, shipped before the run goes on (see #endCleanStop). */
const START_KEY = "backup-start";

/**
 * Which backup directory this store backs up to: the id in the directory's marker file (MARKER), also kept in the
 * store. An empty mount point (the backup disk not mounted) or a missing backup directory at start is told apart from
 * a first run by it — backups written there would land on the engine's own disk and die with it.
 */
const TARGET_KEY = "backup-target";
const MARKER = "RUNIGUN-BACKUP";
interface Target {
  id: string;
}
/**
 * The marker file's content: the target id, and the timeline of the store that wrote it. A store that keeps no id
 * yet tells its own marker (written just before a crash kept the id in the store) from another store's by it.
 */
interface Marker extends Target {
  timeline?: string;
}

export class BackupService {
  readonly #o: BackupServiceOptions;
  readonly #log: Logger;
  readonly dir: string | undefined;
  #shipper: SegmentShipper | undefined;
  /** Why this store does not back up to backup.dir (another store's backups are there: see #checkTarget). */
  #foreign: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** Snapshots run one after another, each after the one before it ends. */
  #tail: Promise<unknown> = Promise.resolve();
  /** The newest snapshot into the backup directory, waiting its turn or running. */
  #current: Promise<ArchiveInfo> | undefined;
  /** The newest snapshot into the backup directory that has not started yet. */
  #waiting: Promise<ArchiveInfo> | undefined;
  /** Snapshots waiting or running, any destination. */
  #inProgress = 0;
  /** Reads and writes of the gap record take turns (a snapshot's clearing must not drop a later break's extension). */
  #gapTurn: Promise<unknown> = Promise.resolve();
  #lastGood: BackupStatus["lastGood"];
  #closed = false;
  /** Checked read only (checkTargetReadOnly): a prune keeps to this store's own timeline. */
  #readOnly = false;
  /** What the read-only check found to say (a directory with no marker, for a store that has backed up before). */
  #offlineWarning: string | undefined;

  constructor(o: BackupServiceOptions) {
    this.#o = o;
    this.#log = o.log.child({ part: "backup" });
    this.dir = o.config.backup.dir ? o.config.backup.dir : undefined;
  }

  get segmentsDir(): string | undefined {
    return this.dir && join(this.dir, "segments");
  }

  get snapshotsDir(): string | undefined {
    return this.dir && join(this.dir, "snapshots");
  }

  /**
   * Starts shipping before the engine writes anything of this run. Returns whether continuity is broken
   * (commits that never reached the backup disk and that no snapshot covers): the caller then snapshots.
   */
  async start(): Promise<{ needsSnapshot: boolean }> {
    // Real money with nothing restorable, or backups on the disk whose failure they are for: said at every start.
    const real = this.#o.config.network !== "regtest";
    if (!this.dir) {
      if (real) this.#log.error({ alert: true }, `backups are off (backup.dir is not set) on ${this.#o.config.network}: a lost data disk loses every wallet. Set RUNIGUN_BACKUP_DIR to a directory on another disk`);
      await this.#unshippedRun("backups are off (backup.dir is not set)");
      return { needsSnapshot: false };
    }
    const cfg = this.#o.config.backup;
    const store = this.#o.store;
    const known = await store.get<Target>(META, TARGET_KEY);
    // A restored store's archive: its timeline is in its name (a restore starts a new one).
    const restored = await store.get<RestoredMark>(META, RESTORED_KEY);
    const adopt = this.#checkTarget(known, restored && SNAP_RE.exec(basename(restored.archive))?.[2]);
    if (this.#foreign) {
      // Nothing of this store goes there (see #checkTarget); a start after the directory is fixed ships and snapshots again.
      await this.#unshippedRun(`backup directory ${this.dir} holds another store's backups`);
      return { needsSnapshot: false };
    }
    if (existsSync(this.dir)) {
      mkdirSync(this.snapshotsDir!, { recursive: true, mode: 0o700 });
      if (real && statSync(this.dir).dev === statSync(this.#o.config.dataPath, { throwIfNoEntry: false })?.dev) {
        this.#log.error({ alert: true, dir: this.dir }, `backup directory ${this.dir} is on the same disk as the data directory ${this.#o.config.dataPath}: a failure of that disk loses both. Mount another disk at ${this.dir}`);
      }
    }
    const ahead = await lastShipped(this.segmentsDir!, store.keyring, store.timeline);
    if (ahead > store.position) {
      // The store is behind its own continuous backup: an older copy of it put back (a VM or volume snapshot rolled
      // back, a copy restored by hand), or writes lost with sync off. Started on as it is, the engine would forget what
      // came after — a withdrawal paid since would be paid again — so it does not start, unless told to take the store
      // as it is; then as after a restore: payouts paused until compared with the chain, a new timeline and snapshot
      // (its next commits would otherwise reuse positions the segments hold, and a restore would mix two histories).
      const what = `the store (position ${store.position}) is behind its own continuous backup (segments up to ${ahead})`;
      if (!cfg.acceptOlderStore) {
        throw new BackupError("store_behind", `${what}: an older copy of the store was put back (a VM or volume snapshot rolled back, a copy restored by hand), or writes were lost with store.sync off. Started on it, the engine would forget what came after it, and withdrawals paid since would be paid again. Move the store directory aside and restore the newest snapshot with the segments: runigun restore <newest archive in ${this.snapshotsDir}> ${this.segmentsDir} (README, "Restore"). To start on this store as it is instead (what came after it is lost; payouts stay paused until it is compared with the chain, as after a restore), start once with RUNIGUN_BACKUP_ACCEPT_OLDER_STORE=true.`);
      }
      this.#log.error({ alert: true, shipped: ahead, store: store.position }, `${what}: taken as it is (backup.acceptOlderStore), as after a restore: payouts paused until it is compared with the chain; a new backup timeline with a snapshot. Unset RUNIGUN_BACKUP_ACCEPT_OLDER_STORE`);
      const mark: RestoredMark = { at: Date.now(), archive: `an older copy of the store, put back (at position ${store.position}; its backup reached ${ahead})`, archivePosition: store.position, position: store.position };
      await store.put(META, RESTORED_KEY, mark);
      await store.newTimeline();
      await this.#markGap(0);
    }
    this.#shipper = new SegmentShipper({
      dir: this.segmentsDir!, keyring: store.keyring, intervalMs: cfg.segmentIntervalMs, log: this.#log, ...this.#o.segments,
      onBroken: () => this.#repair(),
      // A new, empty disk mounted at the backup directory: none of what came before is on it until a snapshot is.
      onDirRecreated: () => this.#repair(0),
    });
    // Where the backup disk stands before this run writes anything (the clean stop's check below writes): what it
    // holds is measured against the store as it is now. A frame shipped by that check does not make up for positions
    // before it that never reached this disk (a new, empty disk; a run with backups off; the disk gone at the stop).
    const shipped = await this.#shipper.attach(store);
    const reached = store.position;
    await this.#endCleanStop();
    // Kept in the store once (after attaching, so the record is shipped like any other).
    if (adopt) await store.put(META, TARGET_KEY, { id: adopt } satisfies Target);
    const newest = this.#snapshots().filter((x) => x.timeline === store.timeline).at(-1);
    if (newest) {
      const s = await stat(join(this.snapshotsDir!, newest.name)).catch(() => undefined);
      if (s) this.#lastGood = { at: s.mtimeMs, path: join(this.snapshotsDir!, newest.name), position: newest.position, bytes: s.size };
    }
    const covered = Math.max(shipped, newest?.position ?? 0);
    let needsSnapshot = covered < reached;
    if (needsSnapshot) {
      this.#log.warn({ shipped, snapshot: newest?.position ?? 0, store: reached }, "continuous backup does not reach the store's position (first run, or a crash lost the last interval); taking a snapshot");
      await this.#markGap(covered);
    } else if (await store.get(META, GAP_KEY)) {
      // A gap seen before (in this run or one that died before its snapshot): the segments after it do not make up
      // for it, only a snapshot does.
      this.#log.warn({ store: store.position }, "continuous backup has a gap no snapshot covers yet; taking a snapshot");
      needsSnapshot = true;
    }
    if (cfg.snapshotIntervalMs > 0) {
      this.#timer = setInterval(() => {
        this.snapshot().catch((e: unknown) => this.#log.error({ err: (e as Error).message, alert: true }, "scheduled backup failed; the previous one is still whole"));
      }, cfg.snapshotIntervalMs);
      this.#timer.unref();
    }
    return { needsSnapshot };
  }

  /**
   * The last run stopped cleanly (close): the backup disk's segments may end on its stop record, which tells a restore
   * that nothing was written after it. Before this run writes anything more, a frame after it must be on the backup
   * disk — a crash before the next interval's shipping, or while the backup disk is missing or failing, would
   * otherwise restore as lossless and resume payouts with this run's writes unknown. Checked when the segments end on
   * a stop record, whatever the store says, and when the store holds the record (the segments could not be read: a
   * disk missing or hung). The frame is a put of START_KEY; the store's record is deleted only once that frame is on
   * the backup disk, so a start that dies before (a hung disk, a forced exit) leaves it for the next start to check.
   * When the frame does not reach the backup disk the engine does not start.
   */
  async #endCleanStop(): Promise<void> {
    const store = this.#o.store;
    const stop = await store.get<unknown>(META, STOP_KEY);
    if (stop === undefined && !this.#shipper!.endsOnStop) return;
    await store.put(META, START_KEY, { at: Date.now() });
    const position = store.position;
    await this.#shipper!.flush();
    if (this.#shipper!.shipped >= position) {
      // Shipped too (as it always was at a clean start: nothing of the start left buffered); not needed for the check.
      if (stop !== undefined) await store.del(META, STOP_KEY).then(() => this.#shipper!.flush());
      return;
    }
    this.#shipper!.abandon();
    this.#shipper = undefined;
    throw new BackupError("no_target", `continuous backup could not write to ${this.segmentsDir} at start (see the error before this). Its segments end on the last run's clean stop, so a restore from them would take this run's writes as never made, and resume payouts: the engine does not start until its first write is on the backup disk. Mount or fix the backup disk at ${this.dir}, then start again`);
  }

  /**
   * A start that ships nothing (backups off, or the directory another store's) after a clean stop: the old backup
   * directory's segments end on that stop, and a restore from them would be taken as lossless with this run unknown.
   * Not refused (the operator chose it); said at every such start, while the store keeps the record (the next start
   * that ships deletes it).
   */
  async #unshippedRun(why: string): Promise<void> {
    if ((await this.#o.store.get<unknown>(META, STOP_KEY)) === undefined) return;
    // An alert with real money (as backups off is); on regtest a warning.
    const say = this.#o.config.network !== "regtest" ? (m: string) => this.#log.error({ alert: true }, m) : (m: string) => this.#log.warn(m);
    say(`${why}, and the last run stopped cleanly with continuous backup on: the backups in the old backup directory end on that clean stop, and a restore from them will not know of this run (it would be taken as lossless and resume payouts with this run's writes unknown). Turn backups on again at that directory: the first start that ships takes a snapshot`);
  }

  /**
   * Checks that the backup directory is the one this store has been backing up to (`known`: the id its marker held),
   * and marks a directory that has no marker yet. A store that has backed up before never makes a missing backup
   * directory (a disk not mounted): an alert, and backups resume by themselves once it is there. A directory without
   * any marker (an empty mount point, a new disk) is an alert too, and used from now on. Returns the id to keep in the
   * store when it keeps none yet (a first run, or a store from before the marker).
   *
   * A store that keeps none takes a marker it finds only when it is its own: written with its timeline, where its
   * backups already are (a store from before the marker), or where the archive it was restored from is (`restoredFrom`:
   * that archive's timeline; a restore starts a new one). Any other marker is another store's (two engines given one
   * directory, or the wrong disk mounted there): this store does not back up there at all (`#foreign`) — each prunes
   * what is not its own history, so the two would delete each other's backups — and says so at every start (a store
   * that keeps no id gets none then: the right disk, mounted later, is still recognised as its own).
   */
  #checkTarget(known: Target | undefined, restoredFrom: string | undefined, readOnly = false): string | undefined {
    const dir = this.dir!;
    if (!existsSync(dir)) {
      // Read only: nothing is made (the snapshot then says the directory is missing or not mounted).
      if (readOnly) return undefined;
      if (known) {
        this.#log.error({ alert: true, dir }, `${missingBackupDir(dir)}; this store has been backing up there before, so it is not made on the engine's own disk`);
        return undefined;
      }
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    }
    const path = join(dir, MARKER);
    let marker: Marker | undefined;
    try {
      const m = JSON.parse(readFileSync(path, "utf8")) as Partial<Marker>;
      if (typeof m.id === "string" && m.id) marker = { id: m.id, ...(typeof m.timeline === "string" ? { timeline: m.timeline } : {}) };
    } catch {
      // None (or unreadable: written again below).
    }
    const timeline = this.#o.store.timeline;
    if (marker && marker.id !== known?.id) {
      const ours = !known && (marker.timeline === timeline || this.#holdsBackupsOf(timeline) || (restoredFrom !== undefined && this.#holdsBackupsOf(restoredFrom)));
      if (ours) return marker.id;
      this.#foreign = `backup directory ${dir} holds another store's backups (its ${MARKER} file is not this store's): two engines were given one backup directory, or the wrong disk is mounted there. This store does NOT back up there (each engine prunes what is not its own history: the two would delete each other's backups), so it has no backups now. Give each engine its own backup.dir and restart. If the backups there are of a store this one replaced and are no longer wanted, move them and the ${MARKER} file aside and restart`;
      // Read only (`runigun backup` with no engine running): its caller says it, as the command's answer.
      if (!readOnly) this.#log.error({ alert: true, dir }, this.#foreign);
      // No id kept for a store that has none: one kept now would make the right disk, once mounted (its marker this
      // store's, or found to be by its backups), look like another store's for ever.
      return undefined;
    }
    if (marker) return undefined;
    if (readOnly) {
      // No marker is written here (the engine's start writes it): a first snapshot there is this store's, and the
      // start that follows finds it so. One the store has an id for is said, as the engine's start says it.
      if (known) this.#offlineWarning = `backup directory ${dir} holds none of this store's backups (no ${MARKER} file): the backup disk is not mounted there, or it is a new disk. The snapshot goes there all the same; if the backup disk is elsewhere, mount it at ${dir} and take the backup again`;
      return undefined;
    }
    if (known) {
      this.#log.error({ alert: true, dir }, `backup directory ${dir} holds none of this store's backups (no ${MARKER} file): the backup disk is not mounted there, or it is a new disk. Backups go there from now on, starting with a snapshot; if the backup disk is elsewhere, stop the engine, mount it at ${dir} and start again`);
    }
    const id = known?.id ?? randomBytes(8).toString("hex");
    writeFileDurably(path, JSON.stringify({ id, timeline } satisfies Marker) + "\n", 0o600);
    return known ? undefined : id;
  }

  /**
   * `runigun backup` with no engine running (the service is never started then): the check start() makes of the
   * backup directory, read only — no marker written, no id kept in the store, nothing made; the engine's next start
   * does that. A directory holding another store's backups is refused: the snapshot is not written there and nothing
   * there is pruned (snapshot() answers why). And from here on a prune takes only this store's own timeline: without
   * the start's check of the histories around it, another timeline in the directory is not known to be its own.
   * Returns the refusal, or a warning for the command to say.
   */
  async checkTargetReadOnly(): Promise<{ refused?: string; warning?: string }> {
    this.#readOnly = true;
    if (!this.dir) return {};
    const store = this.#o.store;
    const known = await store.get<Target>(META, TARGET_KEY);
    const restored = await store.get<RestoredMark>(META, RESTORED_KEY);
    this.#checkTarget(known, restored && SNAP_RE.exec(basename(restored.archive))?.[2], true);
    return { ...(this.#foreign ? { refused: this.#foreign } : {}), ...(this.#offlineWarning ? { warning: this.#offlineWarning } : {}) };
  }

  /** One snapshot at a time; a second caller gets the one in progress (or waiting its turn). */
  snapshot(out?: string): Promise<ArchiveInfo> {
    if (this.#closed) return Promise.reject(new Error("the engine is shutting down"));
    if (!out && this.#current) return this.#current;
    return this.#enqueue(out);
  }

  /**
   * Frames were dropped: the gap is recorded, and a snapshot that starts after now covers it — the one waiting its
   * turn, or a new one after the one running (which started before the drop, and may not hold what it dropped).
   */
  #repair(from = this.#shipper?.shipped ?? 0): void {
    void this.#markGap(from)
      .catch((e: unknown) => this.#log.error({ err: (e as Error).message, alert: true }, "a gap in continuous backup could not be recorded in the store; a snapshot is taken all the same"))
      .then(() => {
        if (this.#closed) return;
        return this.#waiting ?? this.#enqueue();
      })
      .catch((e: unknown) => this.#log.error({ err: (e as Error).message, alert: true }, "the snapshot after a gap in continuous backup failed; the scheduled one tries again"));
  }

  #enqueue(out?: string): Promise<ArchiveInfo> {
    this.#inProgress++;
    const run: Promise<ArchiveInfo> = this.#tail.then(() => {
      if (this.#waiting === run) this.#waiting = undefined;
      return this.#snapshotNow(out);
    });
    this.#tail = run.catch(() => undefined);
    if (!out) this.#current = this.#waiting = run;
    void run.finally(() => {
      this.#inProgress--;
      if (this.#current === run) this.#current = undefined;
    }).catch(() => undefined);
    return run;
  }

  async #snapshotNow(out?: string): Promise<ArchiveInfo> {
    if (!out && !this.dir) throw Object.assign(new Error("no backup directory: set backup.dir (RUNIGUN_BACKUP_DIR) or give --out FILE"), { code: "setup" });
    if (!out && this.#foreign) throw Object.assign(new Error(`${this.#foreign}; or give --out FILE`), { code: "setup" });
    const network = this.#o.config.network;
    const at = new Date();
    const path = out ?? join(this.snapshotsDir!, "snapshot.rga");
    // Made here, not only at the start: `runigun backup` with no engine running never starts the service, and a new,
    // empty disk mounted at the backup directory while the engine runs has no snapshots/ (a missing backup directory
    // itself is said as such: a disk not mounted).
    if (out) {
      if (!existsSync(dirname(out))) throw new BackupError("no_target", `no directory ${dirname(out)} to write ${out} into`);
    } else {
      await ensureBackupSubdir(this.dir!, this.snapshotsDir!);
    }
    const nodeWallet = await this.#nodeWallet();
    // A scheduled snapshot is named after the timeline and position it holds, read from its manifest.
    const info = await writeArchive({
      store: this.#o.store, path, network, nodeWallet,
      ...(out ? {} : { name: (m: Manifest) => snapshotName(network, at, m.timeline, m.position) }),
    }).catch((e: NodeJS.ErrnoException) => {
      // The disk went away during the snapshot.
      if (e.code === "ENOENT" && !out && !existsSync(this.dir!)) throw new BackupError("no_target", missingBackupDir(this.dir!));
      throw e;
    });
    if (!out) {
      await this.#shipper?.rollover();
      // The archive just written is never pruned; what it makes good (the last backup, a gap, a break) is recorded
      // once the prune is done, so nothing points at a file the prune removed.
      this.prune(info.path);
      this.#lastGood = { at: Date.now(), path: info.path, position: info.manifest.position, bytes: info.bytes };
      this.#shipper?.repaired(info.manifest.position);
      await this.#inGapTurn(async () => {
        const gap = await this.#o.store.get<Gap>(META, GAP_KEY);
        if (gap && info.manifest.position >= gap.upTo) await this.#o.store.del(META, GAP_KEY);
      });
    }
    this.#log.info({ bytes: info.bytes, records: info.manifest.records, position: info.manifest.position, ms: Math.round(info.ms), nodeWallet: info.manifest.nodeWallet.included }, "backup snapshot written");
    return info;
  }

  /**
   * Commits after `from` may be missing from the segments, up to the store's position now: kept in the store until a
   * snapshot at or after that position is written, so a restart in between does not forget it.
   */
  #markGap(from: number): Promise<void> {
    return this.#inGapTurn(async () => {
      // A gap already recorded grows to the store's position now: a snapshot before this break does not cover it.
      const old = await this.#o.store.get<Gap>(META, GAP_KEY);
      const upTo = this.#o.store.position;
      if (old && old.upTo >= upTo) return;
      const gap: Gap = { from: old ? Math.min(old.from, from) : from, upTo, at: old?.at ?? Date.now() };
      await this.#o.store.put(META, GAP_KEY, gap);
    });
  }

  #inGapTurn(step: () => Promise<void>): Promise<void> {
    const run = this.#gapTurn.then(step);
    this.#gapTurn = run.catch(() => undefined);
    return run;
  }

  async #nodeWallet(): Promise<{ bytes: Buffer } | { absent: string } | undefined> {
    if (!this.#o.config.backup.nodeWallet) return { absent: "backup.nodeWallet is off" };
    if (!this.#o.backupNodeWallet) return { absent: "no node to ask (engine not running)" };
    // The node's wallet file, unsealed, lives for a moment in a private directory of the engine's own disk (never
    // beside the archive: `--out` may be a removable disk, where even a deleted file can be read back).
    const dir = join(this.#o.config.dataPath, "tmp");
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const tmp = join(dir, `node-wallet-${runToken}-${randomBytes(6).toString("hex")}.tmp`);
    try {
      await this.#o.backupNodeWallet(tmp);
      return { bytes: await readFile(tmp) };
    } catch (e) {
      // bitcoind writes the file itself: it must run on this host and be able to write into this directory (0700,
      // the engine's user), and the engine read what it wrote. A node run as another user or elsewhere cannot, and
      // every archive then lacks the node's keys: with real money, an alert.
      const alert = this.#o.config.network !== "regtest";
      const line = { err: (e as Error).message, dir, ...(alert ? { alert: true } : {}) };
      const msg = "the node wallet's backup could not be written or read: bitcoind must run on this host, able to write into <dataDir>/tmp (as the engine's user); the archive goes without it";
      if (alert) this.#log.error(line, msg);
      else this.#log.warn(line, msg);
      return { absent: `backupwallet failed: ${(e as Error).message}` };
    } finally {
      await rm(tmp, { force: true });
      // Left by a backup that died before its clean-up (kill -9), told from ours by this start's token: a pid repeats
      // (an engine that is PID 1 in its container has the same one at every start).
      for (const name of readdirSync(dir)) if (name.startsWith("node-wallet-") && !name.startsWith(`node-wallet-${runToken}-`)) rmSync(join(dir, name), { force: true });
    }
  }

  /** Whether the backup directory holds segments or snapshots of this timeline. */
  #holdsBackupsOf(timeline: string): boolean {
    return listSegments(this.segmentsDir!, timeline).length > 0 || this.#snapshots().some((x) => x.timeline === timeline);
  }

  /**
   * Snapshots in the directory, oldest first: within a timeline by commit position, never by the clock (a clock that
   * was ahead, then corrected, would make every later snapshot sort as older). The store's own timeline is the newest
   * history; other timelines (histories a restore or a new timeline left behind) come before it, ordered by the time
   * in their newest name — the only order there is between histories, and it only decides which of them go first.
   */
  #snapshots(): Array<{ name: string; position: number; timeline: string }> {
    if (!this.snapshotsDir) return [];
    let names: string[] = [];
    try {
      names = readdirSync(this.snapshotsDir);
    } catch {
      return [];
    }
    const snaps = names.flatMap((name) => {
      const m = SNAP_RE.exec(name);
      return m ? [{ name, time: m[1]!, timeline: m[2]!, position: Number(m[3]) }] : [];
    });
    const current = this.#o.store.timeline;
    const latest = new Map<string, string>();
    for (const s of snaps) if ((latest.get(s.timeline) ?? "") < s.time) latest.set(s.timeline, s.time);
    const history = (s: { timeline: string }) => (s.timeline === current ? "~" : `${latest.get(s.timeline)!}-${s.timeline}`);
    const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
    return snaps
      .sort((a, b) => cmp(history(a), history(b)) || a.position - b.position || cmp(a.name, b.name))
      .map(({ name, timeline, position }) => ({ name, timeline, position }));
  }

  /**
   * Keeps the newest `backup.keep` snapshots (`written`, the one just written, always among them) and the segments
   * after the oldest of them; drops stale partials.
   */
  prune(written?: string): { snapshots: number; segments: number } {
    if (!this.dir || this.#foreign) return { snapshots: 0, segments: 0 };
    const keep = this.#o.config.backup.keep;
    // Checked read only (checkTargetReadOnly): only this store's own timeline is known to be its own.
    const ours = (timeline: string) => !this.#readOnly || timeline === this.#o.store.timeline;
    const snaps = this.#snapshots().filter((s) => ours(s.timeline));
    // The one just written counts as the newest, even beside another of the same position.
    const mine = snaps.findIndex((s) => written !== undefined && join(this.snapshotsDir!, s.name) === written);
    if (mine >= 0) snaps.push(...snaps.splice(mine, 1));
    const drop = snaps.slice(0, Math.max(0, snaps.length - keep));
    for (const s of drop) rmSync(join(this.snapshotsDir!, s.name), { force: true });
    for (const name of readdirSync(this.snapshotsDir!)) {
      // Temporary files of a backup that died (kill -9): never a valid archive, never needed. Ours carry this start's
      // token (a pid repeats across starts: PID 1 in a container).
      if (name.includes(".partial-") && !name.includes(`.partial-${runToken}-`)) rmSync(join(this.snapshotsDir!, name), { force: true });
    }
    const kept = snaps.slice(drop.length);
    let segments = 0;
    // Per timeline: a file is needed while any of its frames is after the oldest kept snapshot of that timeline;
    // a timeline no kept snapshot continues is not needed at all (except the one being written now).
    const timelines = new Set(listSegments(this.segmentsDir!).map((f) => f.timeline).filter(ours));
    for (const timeline of timelines) {
      const files = listSegments(this.segmentsDir!, timeline);
      const current = timeline === this.#o.store.timeline;
      const positions = kept.filter((k) => k.timeline === timeline).map((k) => k.position);
      const oldestKept = positions.length ? Math.min(...positions) : undefined;
      for (let i = 0; i < files.length; i++) {
        const hasNext = i + 1 < files.length;
        const unneeded = oldestKept === undefined ? !current : hasNext && files[i + 1]!.first - 1 <= oldestKept;
        if (unneeded && (hasNext || !current)) {
          rmSync(join(this.segmentsDir!, files[i]!.name), { force: true });
          segments++;
        }
      }
    }
    return { snapshots: drop.length, segments };
  }

  status(): BackupStatus {
    const s: BackupStatus = { enabled: this.dir !== undefined && !this.#foreign, storePosition: this.#o.store.position, snapshotInProgress: this.#inProgress > 0 };
    if (this.#foreign) s.off = this.#foreign;
    if (this.dir) s.dir = this.dir;
    if (this.#lastGood) {
      s.lastGood = this.#lastGood;
      s.lastBackupAgeS = Math.max(0, Math.round((Date.now() - this.#lastGood.at) / 1000));
    }
    if (this.#shipper) {
      s.shippedPosition = this.#shipper.shipped;
      s.shippingLag = Math.max(0, this.#o.store.position - this.#shipper.shipped);
      s.shippingBroken = this.#shipper.broken;
    }
    return s;
  }

  /** Ships what is buffered now (tests, and a clean shutdown). */
  async flush(): Promise<void> {
    await this.#shipper?.flush();
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#tail;
    if (this.#shipper) {
      // The last write of a clean stop, shipped with the rest (see segments.ts): a restore whose segments end on it
      // knows nothing came after. Without it (this write failing, a crash) a restore says the last interval may be lost.
      await this.#o.store.put(META, STOP_KEY, { at: Date.now() }).catch((e: unknown) => this.#log.warn({ err: (e as Error).message }, "the clean stop's record could not be written; a restore from this backup will say the last interval may be lost"));
    }
    await this.#shipper?.close();
  }

  /** Tests: the abrupt half of a crash — stop shipping without flushing what is buffered. */
  abandon(): void {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#shipper?.abandon();
  }
}
