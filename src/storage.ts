// Opens the engine's storage: the key ring, the encrypted store and the journal, with the projection that
// keeps each wallet's balance parts and outbox flag beside its journal — written in the same atomic batch,
// so solvency sums and the start-up outbox scan never disagree with the journals.
import { join } from "node:path";
import { mkdirSync } from "node:fs";
import type { Logger } from "./log.ts";
import { EncryptedStore, type StoreOp } from "./store/db.ts";
import { Journal } from "./store/journal.ts";
import type { KeyRing } from "./store/keyring.ts";
import type { JournalRecord } from "./actors/runtime.ts";
import type { WalletView } from "./actors/wallet.actor.ts";

export interface EngineStorage {
  store: EncryptedStore;
  journal: Journal;
  mac: (purpose: string, data: string) => string;
  close(): Promise<void>;
}

const WALLET_PREFIX = "wallet:";

export function walletProjection(key: string, data: unknown): StoreOp[] {
  if (!key.startsWith(WALLET_PREFIX)) return [];
  const view = (data as JournalRecord<unknown>).v as WalletView | undefined;
  if (!view) return [];
  const userKey = key.slice(WALLET_PREFIX.length);
  return [
    { type: "put", ns: "balances", key: userKey, value: view },
    view.o ? { type: "put", ns: "outbox", key: userKey, value: true } : { type: "del", ns: "outbox", key: userKey },
  ];
}

export async function openStorage(o: { dataPath: string; keyring: KeyRing; sync: boolean; log: Logger }): Promise<EngineStorage> {
  mkdirSync(o.dataPath, { recursive: true });
  const store = await EncryptedStore.open({ path: join(o.dataPath, "store"), keyring: o.keyring, sync: o.sync });
  const journal = new Journal(store, { project: walletProjection, log: o.log.child({ part: "journal" }) });
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
