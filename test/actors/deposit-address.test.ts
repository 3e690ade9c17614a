// /deposit never hands out an address someone owns: a node wallet restored from an older backup gives out again
// addresses that users were given since, and a deposit to one would be credited to whoever got it last.
import t from "tap";
import { randomBytes } from "node:crypto";
import { EncryptedStore } from "../../src/store/db.ts";
import { Journal } from "../../src/store/journal.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { ActorSystem } from "../../src/actors/runtime.ts";
import { WalletRegistry } from "../../src/actors/registry.ts";
import { WalletRecords } from "../../src/actors/wallet.records.ts";
import { EngineRelay, type ChainPort } from "../../src/relay.ts";
import { loadConfig } from "../../src/config.ts";
import { createLogger } from "../../src/log.ts";

t.test("an address the node hands out again is skipped with an alert; the user gets the next one", async (t) => {
  const dir = t.testdir();
  const store = await EncryptedStore.open({ path: dir, keyring: new KeyRing(new Map([[1, randomBytes(32)]]), 1), sync: false });
  const journal = new Journal(store);
  const system = new ActorSystem(journal);
  const lines: Array<{ alert?: boolean; msg: string }> = [];
  const log = createLogger({ level: "warn", destination: { write: (l: string) => void lines.push(JSON.parse(l)) } });
  const registry = new WalletRegistry({
    system, log, idleMs: 60_000, maxResident: 1000, maxInFlight: 64, askTimeoutMs: 5000, crashBudget: 3, crashWindowMs: 60_000,
    records: new WalletRecords(store, 100), snapshotEvery: 50, hooks: { notice: () => undefined, deliverTransfer: () => undefined, submitWithdrawal: () => undefined },
  });
  t.teardown(async () => (registry.close(), system.shutdown(), await journal.flushed(), await store.close()));
  // The node hands out X to Alice, then (restored from an older backup) X again, then Y.
  const handed = ["bcrt1qx", "bcrt1qx", "bcrt1qy"];
  const owners = new Map<string, string>();
  const relay = new EngineRelay({
    config: loadConfig({ env: {}, cwd: dir }), log, registry,
    chain: { takeDepositAddress: async () => handed.shift()! } as unknown as ChainPort,
    addresses: { record: async (a, u) => void owners.set(a, u), ownerOf: async (a) => owners.get(a) },
  });
  t.teardown(() => relay.close());
  await relay.start("u_alice");
  await relay.start("u_bob");
  t.same(await relay.depositAddress("u_alice"), { address: "bcrt1qx" });
  t.same(await relay.depositAddress("u_bob"), { address: "bcrt1qy" }, "Bob gets the next address, not Alice's");
  t.equal(owners.get("bcrt1qx"), "u_alice", "Alice still owns hers");
  t.equal(lines.filter((l) => l.alert && /already owns/.test(l.msg)).length, 1, "operators are told");
});
