// Opens the engine's storage: the encrypted store and the journal on it. Wallets write their read model
// (balances, outbox flag, history, transfer index: wallet.records.ts) in the same atomic batch as their
// events, so solvency sums, the start-up outbox scan and /history never disagree with the journals.
import { join } from "node:path";
import { userInfo } from "node:os";
import { chmodSync, mkdirSync, statSync } from "node:fs";
import type { Logger } from "./log.ts";
import { EncryptedStore } from "./store/db.ts";
import { Journal } from "./store/journal.ts";
import type { KeyRing } from "./store/keyring.ts";
import { resealPending } from "./store/rotate.ts";
import { SetupError } from "./secrets.ts";

export interface EngineStorage {
  store: EncryptedStore;
  journal: Journal;
  mac: (purpose: string, data: string) => string;
  close(): Promise<void>;
}

/**
 * Makes `path` a directory that only this user can enter: created 0700, or, when it is there and open to others (a
 * `mkdir` with the usual umask, a restore by an older version, a copy), changed to 0700 — `mkdir`'s mode changes no
 * directory that exists. Returns the mode it had when it was changed (for the caller to say so), else undefined.
 *
 * Changed rather than refused: nothing of RuniGun reaches into the data directory as another user (the control socket
 * is 0600, the secrets there 0600), so closing it takes nothing away, and the engine can do it itself; a refusal would
 * stop a running installation at its first start after an upgrade for something one chmod fixes. It is said, so that
 * an arrangement made on purpose is known to be undone. Refused only when this user cannot change it (not the owner).
 */
export function makePrivateDir(path: string): string | undefined {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) === 0) return undefined;
  try {
    chmodSync(path, 0o700);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") throw e;
    // Not this user's (a mount point owned by root, shared with the engine's group): `chmod 700` by its owner would
    // shut the engine out. Its owner must hand it over first.
    throw new SetupError(`the data directory ${path} is open to other users (mode ${mode.toString(8)}) and this user cannot change that (it is not its owner): as root, run chown ${userName()} ${path} && chmod 700 ${path} (in that order: chmod alone would shut this user out)`);
  }
  return mode.toString(8);
}

function userName(): string {
  try {
    return userInfo().username;
  } catch {
    return String(process.getuid?.() ?? "THE_ENGINE_USER");
  }
}

export async function openStorage(o: { dataPath: string; keyring: KeyRing; sync: boolean; log: Logger }): Promise<EngineStorage> {
  let was: string | undefined;
  try {
    was = makePrivateDir(o.dataPath);
  } catch (e) {
    // One this user cannot close (a shared mount point) ran before: said, not refused — a start after an upgrade must
    // not stop the service for an arrangement its owner made. `runigun restore` refuses (someone is there to fix it).
    if (!(e instanceof SetupError)) throw e;
    o.log.warn({ path: o.dataPath }, `${e.message}; the engine runs on as before`);
  }
  if (was) o.log.warn({ path: o.dataPath, mode: was }, `the data directory ${o.dataPath} was open to other users (mode ${was}); made it 0700 (only this user): its store holds every record's key in the clear (user keys among them) beside the sealed values`);
  // The store inside (LevelDB makes it, and its files, with the umask's modes) is then reached by nobody else either.
  const store = await EncryptedStore.open({ path: join(o.dataPath, "store"), keyring: o.keyring, sync: o.sync });
  const journal = new Journal(store, { log: o.log.child({ part: "journal" }) });
  const pending = await resealPending(store);
  if (pending?.restoredUnder) {
    const ids = pending.restoredUnder;
    const retired = ids.filter((id) => o.keyring.retired.has(id));
    o.log.warn({ alert: true, toKeyId: pending.to, keyIds: ids }, `the restored store holds records sealed under master key${ids.length === 1 ? "" : "s"} ${ids.join(", ")}${retired.length ? ` (${retired.length === ids.length ? "" : `${retired.join(", ")} `}retired by a rotation: perhaps the key it meant to leave behind)` : ""}, not the current key ${pending.to}; new writes use key ${pending.to}, and every backup lists the old key too. Stop the engine and run "runigun keys rotate --resume" to re-seal them`);
  } else if (pending !== undefined) {
    o.log.warn({ alert: true, toKeyId: pending.to }, `a master key rotation to key ${pending.to} was cut short: part of the store is still sealed under an older key, or the old key is not retired yet. Stop the engine and run "runigun keys rotate --resume"`);
  }
  return {
    store,
    journal,
    mac: (purpose, data) => store.mac(purpose, data),
    async close() {
      await journal.flushed();
      await store.close();
    },
  };
}
