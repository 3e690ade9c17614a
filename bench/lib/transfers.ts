// What the write benches share: a registry on an encrypted store wired as the engine wires it, funded users, and the
// write figure's transfers, run with a bounded number in flight.
import { ActorSystem } from "../../src/actors/runtime.ts";
import { WalletRegistry } from "../../src/actors/registry.ts";
import { TransferCourier } from "../../src/actors/transfers.ts";
import { WalletRecords } from "../../src/actors/wallet.records.ts";
import { EncryptedStore } from "../../src/store/db.ts";
import { Journal } from "../../src/store/journal.ts";
import type { KeyRing } from "../../src/store/keyring.ts";
import { silentLogger } from "../../src/log.ts";
import { percentile } from "./report.ts";

const hooks = { notice: () => undefined, deliverTransfer: () => undefined, submitWithdrawal: () => undefined };

/** The registry settings of every bench: nothing passivated or refused for being busy during a run. */
export const registryDefaults = {
  hooks, log: silentLogger, idleMs: 3_600_000, maxResident: 10_000_000, maxInFlight: 1024, askTimeoutMs: 60_000, crashBudget: 3, crashWindowMs: 60_000, snapshotEvery: 100,
};

export type RegistryOverrides = Partial<ConstructorParameters<typeof WalletRegistry>[0]>;

/** A wallet registry on its own encrypted store and journal; `close` stops it and waits for the disk. */
export async function openRegistry(path: string, keyring: KeyRing, sync: boolean, o: RegistryOverrides = {}) {
  const store = await EncryptedStore.open({ path, keyring, sync });
  const journal = new Journal(store);
  const system = new ActorSystem(journal);
  const registry = new WalletRegistry({ ...registryDefaults, system, records: new WalletRecords(store, 1000), ...o });
  return { store, journal, system, registry, async close() { registry.close(); system.shutdown(); await journal.flushed(); await store.close(); } };
}

/** Every user gets enough to send for the whole run. */
const fundUsers = (registry: WalletRegistry, users: number) =>
  Promise.all(Array.from({ length: users }, (_, i) => registry.send(`u_${i}`, "receive_transfer", { id: `seed${i}`, from: "u_bank", amount: 10n ** 12n })));
/**
 * A registry (opened by `open` with the overrides it is given) whose wallets are wired to a courier as the engine
 * wires them: durable debits delivered, acknowledgements carried. Its users are funded for a whole run.
 */
export async function withCourier<R extends { registry: WalletRegistry }>(users: number, open: (o: RegistryOverrides) => Promise<R>): Promise<R & { courier: TransferCourier }> {
  let courier: TransferCourier | undefined;
  const r = await open({ hooks: { ...hooks, deliverTransfer: (from, id, to, amount) => courier!.deliver(from, id, to, amount), takeAcks: (from) => courier!.takeAcks(from) } });
  courier = new TransferCourier({ registry: r.registry, log: silentLogger });
  await fundUsers(r.registry, users);
  return Object.assign(r, { courier });
}
/** The write figure's transfers: `n` of them, 512 in flight, user i → user 7i + 1. */
export const sendTransfers = (registry: WalletRegistry, users: number, n: number, round: string) =>
  load(n, 512, (i) => registry.send(`u_${i % users}`, "send_transfer", { id: `${round}${i}`, to: `u_${(i * 7 + 1) % users}`, amount: 1000n, maxAmount: 10n ** 12n }));

/** Runs `n` operations with `concurrency` in flight; returns ops/s and latency percentiles (ms). */
export async function load(n: number, concurrency: number, op: (i: number) => Promise<unknown>) {
  // Preallocated: a growing array would be the run's own garbage, copied by the collector it is measuring.
  const lat = new Float64Array(n);
  let next = 0;
  const start = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) {
      const i = next++;
      const t0 = performance.now();
      await op(i);
      lat[i] = performance.now() - t0;
    }
  }));
  const secs = (performance.now() - start) / 1000;
  lat.sort((a, b) => a - b);
  return { perS: n / secs, p50: percentile(lat, 50), p99: percentile(lat, 99) };
}
