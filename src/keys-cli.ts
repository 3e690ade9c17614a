// `runigun keys …`: master key rings, peppers, rotation. Secrets are written 0600 and never printed.
import { randomBytes } from "node:crypto";
import { existsSync, statSync } from "node:fs";
import { createFileDurably } from "./store/files.ts";
import { loadConfig, type Config } from "./config.ts";
import { BackupService } from "./backup/service.ts";
import { generateKeyRingFile, loadKeyRingFile, writeKeyRingFile } from "./store/keyring.ts";
import { EncryptedStore } from "./store/db.ts";
import { beginRotation, rotateStore, rotationWithoutKey } from "./store/rotate.ts";
import { SetupError } from "./secrets.ts";
import { dirname, join, resolve } from "node:path";
import { createLogger } from "./log.ts";
import { loadEngineSecrets } from "./secrets.ts";
import { ensureEnginePki, operatorSecretsWarning } from "./tls/certs.ts";
import { OperatorStore, addOperator } from "./edges/admin/operators.ts";
import { AuditLog } from "./edges/admin/audit.ts";

export async function runKeys(args: string[], opts: { out?: string | undefined }): Promise<number> {
  const [what, ...rest] = args;
  const say = (s: string) => process.stdout.write(s + "\n");
  // Which data directory a command works on, said first: one run from the wrong directory (a relative
  // RUNIGUN_DATA_DIR, the default ./data) shows it before anything else. generate and pepper use none: they say the
  // whole path of what they wrote.
  const where = (config: { dataPath: string }) => say(`data directory ${config.dataPath} (store ${join(config.dataPath, "store")})`);
  switch (what) {
    case "generate": {
      if (!opts.out) throw new SetupError("say where: runigun keys generate --out /path/to/master.key");
      const out = newFilePath(opts.out, "master.key");
      generateKeyRingFile(out);
      say(`wrote a new master key ring to ${out} (mode 0600); point RUNIGUN_MASTER_KEY_FILE at it and back it up offline`);
      return 0;
    }
    case "pepper": {
      if (!opts.out) throw new SetupError("say where: runigun keys pepper --out /path/to/pepper");
      const out = newFilePath(opts.out, "pepper");
      try {
        createFileDurably(out, randomBytes(32).toString("hex") + "\n");
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "EEXIST") throw new SetupError(`${out} exists; refusing to overwrite a secret (every user key depends on it)`);
        throw e;
      }
      say(`wrote a new 32-byte secret to ${out} (mode 0600)`);
      return 0;
    }
    case "rotate": {
      const config = loadConfig();
      where(config);
      // A mistyped data directory must not get a new, empty store (reported as a rotation of nothing).
      const storePath = join(config.dataPath, "store");
      if (!existsSync(storePath)) throw new SetupError(`no store at ${storePath}: nothing to rotate (check RUNIGUN_DATA_DIR or --data-dir)`);
      // The new key goes into the ring file; an inline key cannot be rewritten, and the data directory's master.key
      // (regtest's own) is not the ring such a store was opened with.
      if (!config.secrets.masterKeyFile && config.secrets.masterKey) {
        throw new SetupError("rotation writes the new key into the key ring file: put the ring now in RUNIGUN_MASTER_KEY into a 0600 file, set RUNIGUN_MASTER_KEY_FILE to it (and unset RUNIGUN_MASTER_KEY), and run this again");
      }
      if (!config.secrets.masterKeyFile && config.network !== "regtest") throw new SetupError("set RUNIGUN_MASTER_KEY_FILE to the store's key ring file");
      const file = config.secrets.masterKeyFile ?? join(config.dataPath, "master.key");
      const ring = loadKeyRingFile(file, { storePath });
      // The store must open with the ring as it is (the right ring, no engine holding it) before the ring gets a new key.
      const before = await openStoreForKeys(storePath, ring);
      let next = ring;
      // Shipped from its first write (the rotation's record) to its last, as the engine ships (see shippingBackup).
      let backup: BackupService | undefined;
      try {
        backup = await shippingBackup(config, before);
        // Resumable: if the current key has not finished rotating everything, carry on with it. A rotation stopped
        // before its key reached the ring file has sealed nothing under that key: it starts again, with a new one.
        const unwritten = rest.includes("--resume") ? await rotationWithoutKey(before) : undefined;
        if (unwritten !== undefined) say(`the rotation to key ${unwritten} was stopped before the key ring file got that key; nothing was re-encrypted under it. Starting it again with a new key.`);
        if (!rest.includes("--resume") || unwritten !== undefined) {
          next = ring.withNewKey();
          // The rotation is recorded in the store before the ring file gets its key: stopped anywhere from here on
          // (before the first re-encrypted batch too), every start says it was cut short until --resume finishes it.
          await beginRotation(before, next.current);
        }
      } finally {
        await backup?.close();
        await before.close();
      }
      if (next !== ring) {
        writeKeyRingFile(file, next);
        // Nothing is sealed under the new key before the file is known to hold it.
        const back = loadKeyRingFile(file);
        if (back.current !== next.current || !back.dataKey("store").equals(next.dataKey("store"))) {
          throw new SetupError(`${file} did not read back with the new key ${next.current}; nothing was re-encrypted. Check the disk and run the rotation again`);
        }
      }
      const store = await openStoreForKeys(storePath, next);
      backup = undefined;
      try {
        backup = await shippingBackup(config, store);
        // Everything is under the new key now: the older ones only open what was sealed before (archives, segments),
        // and a backup sealed under one is restored only when the operator names it (a leaked key forges no archive).
        // Written as the rotation's last step, before its cursor goes: a crash before it is said at the next start.
        const retired = next.withRetired();
        let retiredNow = false;
        const p = await rotateStore(store, {
          onBatch: (b) => say(`… ${b.rotated} records re-encrypted`),
          beforeDone: () => {
            if (retired.retired.size > next.retired.size) {
              writeKeyRingFile(file, retired);
              retiredNow = true;
            }
          },
        });
        say(`rotation to key ${next.current} complete: ${p.rotated} re-encrypted, ${p.skipped} already current.`);
        if (retiredNow) {
          say(`key${retired.retired.size === 1 ? "" : "s"} ${[...retired.retired].join(", ")} retired: kept in the ring to open the backups made before, which a restore takes only with --allow-retired-key <id>.`);
        }
        say(`Copy ${file} to your offline copies now: a copy made before holds no key ${next.current} and cannot open the store or the backups made from now on.`);
        say(`Then start the engine and take a backup (runigun backup): archives made before now need the old keys, so keep them in the ring until those backups have expired.`);
      } finally {
        await backup?.close();
        await store.close();
      }
      return 0;
    }
    case "pki": {
      const config = loadConfig();
      where(config);
      const { warnings } = await ensureEnginePki(config);
      say(`certificates in ${config.pkiPath}: operators-ca, admin-server-ca, admin-server, internal-ca, internal-server, bot-client (keys 0600); operators trust admin-server-ca.crt for the admin edge`);
      for (const warning of warnings) say(`warning: ${warning}`);
      return 0;
    }
    case "operator": {
      const [verb, name] = rest;
      if ((verb !== "add" && verb !== "revoke" && verb !== "enroll") || !name) throw new SetupError("usage: runigun keys operator add|enroll|revoke NAME (add: --out DIR, a new directory for the operator's credentials)");
      // Both of the operator's factors go to a directory for them, never to the engine's host: no default that could land
      // in the data directory, the install directory or anywhere a host backup covers.
      if (verb === "add" && !opts.out) throw new SetupError(`say where ${name}'s credentials go: runigun keys operator add ${name} --out DIR (a new directory off the data directory, e.g. on a USB stick: /media/usb/operator-${name}); hand it to ${name} offline, then delete it`);
      const config = loadConfig();
      where(config);
      const storePath = join(config.dataPath, "store");
      // Only `add` may be the first use of a data directory: revoke and enroll on a mistyped one would make an empty
      // store (and on regtest its secrets) and find nobody there.
      if (verb !== "add" && !existsSync(storePath)) throw new SetupError(`no store at ${storePath}: no operators there (check RUNIGUN_DATA_DIR or --data-dir)`);
      const secrets = loadEngineSecrets(config, createLogger({ level: "warn" }));
      // Said at every `keys operator` command (and at start): operators' secrets an older version left in pkiDir.
      const warnings = verb === "add" ? (await ensureEnginePki(config)).warnings : [operatorSecretsWarning(config.pkiPath)];
      for (const warning of warnings) if (warning) say(`warning: ${warning}`);
      const store = await openStoreForKeys(storePath, secrets.keyring);
      try {
        const operators = new OperatorStore(store);
        const audit = new AuditLog(store);
        if (verb === "revoke") {
          const revoked = await audited(audit, "revoke-operator", name, "runigun keys operator revoke", () => operators.revoke(name), (done) => (done ? undefined : `no active operator ${name}`));
          if (!revoked) {
            process.stderr.write(`no active operator ${name}: nothing was revoked (check the name, and RUNIGUN_DATA_DIR)\n`);
            return 1;
          }
          say(`operator ${name} revoked`);
          return 0;
        }
        const cons = config.admin.console;
        const linkBase = cons.origins[0] ?? (config.admin.port ? `https://${cons.rpId}:${config.admin.port}` : `https://${cons.rpId}:<admin port>`);
        if (verb === "enroll") {
          // A lost or new security key: a fresh one-time link (any older link stops working).
          if (!cons.enabled) throw new SetupError("the operator console is off (admin.console.enabled); nothing to enroll for");
          const found = (await operators.list()).find((o) => o.name === name && !o.revoked);
          if (!found) throw new SetupError(`no active operator ${name}; add one with \`runigun keys operator add ${name} --out DIR\``);
          // Audited: whoever opens the link can register a security key for the console.
          const e = await audited(audit, "console-enroll-link", name, "runigun keys operator enroll: a one-time link to register security keys (older links stop working)", () => operators.issueEnrollment(found.fingerprint, { ttlMs: cons.enrollTtlMs }));
          say(`operator console: register ${name}'s FIDO2 security key(s) at this one-time link (with the certificate installed in the browser), before ${new Date(e.expiresAt).toISOString()}:`);
          say(`  ${linkBase}/console/enroll#t=${e.token}`);
          return 0;
        }
        const op = await audited(audit, "add-operator", name, `runigun keys operator add: a client certificate and a TOTP secret${cons.enabled ? ", and a one-time link to register console security keys" : ""}`,
          () => addOperator({ pkiDir: config.pkiPath, hostDirs: [config.dataPath], store: operators, name, out: opts.out!, ...(cons.enabled ? { enrollTtlMs: cons.enrollTtlMs } : {}) }));
        say(`operator ${name} added; certificate fingerprint (sha256): ${op.fingerprint}.`);
        say(`${name}'s credentials are in ${op.dir} (readable by you only): ${name}.crt and ${name}.key, the client certificate and its private key; ${name}.otpauth and ${name}-totp.png, the TOTP secret (scan the QR code into an authenticator app).`);
        say(`Hand this directory to ${name} offline (in person, on a USB stick), then delete it here: rm -r ${shellWord(op.dir)}. It holds both of ${name}'s factors; the engine keeps only the certificate (${op.cert}).`);
        say(`Every admin request needs the certificate and a fresh TOTP code (X-TOTP header).`);
        if (op.enrollment) {
          // The one-time link for the console's security keys; shown once, only its hash is stored.
          const base = linkBase;
          say(`operator console: register ${name}'s FIDO2 security key(s) at this one-time link (with the certificate installed in the browser), before ${new Date(op.enrollment.expiresAt).toISOString()}:`);
          say(`  ${base}/console/enroll#t=${op.enrollment.token}`);
          if (!cons.origins[0] && !config.admin.port) say(`  (<admin port> is the one the engine prints at start; set admin.port or admin.console.origins to make it fixed)`);
        }
      } finally {
        await store.close();
      }
      return 0;
    }
    default:
      process.stderr.write("usage: runigun keys generate|pepper --out FILE | rotate [--resume] | pki | operator add NAME --out DIR | operator enroll|revoke NAME\n");
      return 2;
  }
}

/**
 * An operator change made here, written to the audit log the way the admin edge writes its actions (server.ts `act`):
 * the entry before the change (no record, no change), its outcome after. The actor is "cli": whoever can run commands
 * on the engine's host with its keys. `refused` says why a result is a refusal, if it is one.
 */
async function audited<T>(audit: AuditLog, action: string, target: string, reason: string, run: () => Promise<T>, refused: (r: T) => string | undefined = () => undefined): Promise<T> {
  const entry = await audit.append({ operator: "cli", action, target, reason });
  let r: T;
  try {
    r = await run();
  } catch (e) {
    await audit.outcome(entry, `failed: ${(e as Error).message}`);
    throw e;
  }
  const why = refused(r);
  await audit.outcome(entry, why ? `refused: ${why}` : "done");
  return r;
}

/**
 * `--out` for a new secret file, whole: its directory must be there (none is made for a key: a mistyped path would
 * put it where nobody looks) and the name must not be a directory. Said as one line, not as the write's ENOENT or
 * EISDIR on a temporary name.
 */
function newFilePath(out: string, example: string): string {
  const path = resolve(out);
  const dir = statSync(dirname(path), { throwIfNoEntry: false });
  if (!dir) throw new SetupError(`${path}: there is no directory ${dirname(path)}; create it first (mkdir -p ${shellWord(dirname(path))}) or give another --out`);
  if (!dir.isDirectory()) throw new SetupError(`${path}: ${dirname(path)} is not a directory; give another --out`);
  if (statSync(path, { throwIfNoEntry: false })?.isDirectory()) throw new SetupError(`${path} is a directory; give the path of a new file, e.g. --out ${shellWord(join(path, example))}`);
  return path;
}

/** A path as one word for a shell command line the operator may copy. */
function shellWord(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * With backups on (backup.dir), a command that writes the store with no engine running ships its writes to the backup
 * directory's segments as the engine does (the same start: the directory's check, where the segments stop, a gap
 * recorded for the engine's next start to snapshot). A rotation rewrites every record and moves the store's position
 * on: unshipped, its batches would be a gap in the segments, and a restore from an archive made before it would stop
 * there, whatever the engine shipped after it. Shipped, the batches replay like any others (sealed under the new key,
 * which the ring that restores has). No scheduled snapshot runs meanwhile. Undefined when backups are off.
 */
async function shippingBackup(config: Config, store: EncryptedStore): Promise<BackupService | undefined> {
  if (!config.backup.dir) return undefined;
  const backup = new BackupService({ config: { ...config, backup: { ...config.backup, snapshotIntervalMs: 0 } }, store, log: createLogger({ level: "warn" }) });
  try {
    await backup.start();
  } catch (e) {
    await backup.close();
    throw e;
  }
  return backup;
}

/** The store, or a plain answer when a running engine holds it (LevelDB allows one process). */
export async function openStoreForKeys(
  path: string,
  keyring: import("./store/keyring.ts").KeyRing,
  whenLocked = `the store at ${path} is in use by a running engine; stop it (Ctrl-C) and run this again`,
): Promise<EncryptedStore> {
  try {
    return await EncryptedStore.open({ path, keyring });
  } catch (e) {
    const cause = String((e as { cause?: unknown }).cause ?? "");
    if ((e as { code?: string }).code === "LEVEL_DATABASE_NOT_OPEN" && /lock/i.test(cause)) throw new SetupError(whenLocked);
    throw e;
  }
}
