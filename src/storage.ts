// Opens the engine's storage: the encrypted store and the journal on it. Wallets write their read model
// (balances, outbox flag, history, transfer index: wallet.records.ts) in the same atomic batch as their
// events, so solvency sums, the start-up outbox scan and /history never disagree with the journals.
import { join } from "node:path";
import { mkdirSync } from "node:fs";
import type { Logger } from "./log.ts";
import { EncryptedStore } from "./store/db.ts";
import { Journal } from "./store/journal.ts";
import type { KeyRing } from "./store/keyring.ts";
import { resealPending } from "./store/rotate.ts";

export interface EngineStorage {
  store: EncryptedStore;
  journal: Journal;
  mac: (purpose: string, data: string) => string;
  close(): Promise<void>;
}

export async function openStorage(o: { dataPath: string; keyring: KeyRing; sync: boolean; log: Logger }): Promise<EngineStorage> {
  mkdirSync(o.dataPath, { recursive: true });
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
