// What a claimant and a creator are told when the cheque book has done what they asked but their wallet cannot say its
// balance just then (held off after errors, busy): never "nothing was moved", never "not one of yours" for a code that
// is. Real store, registry, courier, cheque book and relay; only the balance read is refused, as the registry refuses it.
import t from "tap";
import { randomBytes } from "node:crypto";
import { isRefusal, refuseUnsent, type Refusal } from "../../src/domain/refusals.ts";
import { EncryptedStore } from "../../src/store/db.ts";
import { Journal } from "../../src/store/journal.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { ActorSystem } from "../../src/actors/runtime.ts";
import { WalletRegistry } from "../../src/actors/registry.ts";
import { TransferCourier } from "../../src/actors/transfers.ts";
import { ChequeService } from "../../src/actors/cheque.service.ts";
import { FinishedCheques } from "../../src/actors/cheques.ts";
import { WalletRecords } from "../../src/actors/wallet.records.ts";
import { EngineRelay } from "../../src/relay.ts";
import { chequeClaimed, chequeCodeInGroupNotRevoked, CHEQUE_CODE_IN_GROUP_NOT_CHECKED } from "../../src/edges/telegram/render.ts";
import { silentLogger } from "../../src/log.ts";
import type { Config } from "../../src/config.ts";

t.test("a claim or revoke done while the wallet cannot say its balance: answered as done; a code posted in a group that could not be checked is not called someone else's", async (t) => {
  const store = await EncryptedStore.open({ path: t.testdir(), keyring: new KeyRing(new Map([[1, randomBytes(32)]]), 1), sync: false });
  const journal = new Journal(store);
  const system = new ActorSystem(journal);
  let courier!: TransferCourier;
  const registry = new WalletRegistry({
    system, log: silentLogger, idleMs: 60_000, maxResident: 1000, maxInFlight: 64, askTimeoutMs: 5000, crashBudget: 3, crashWindowMs: 60_000,
    records: new WalletRecords(store, 100), snapshotEvery: 50,
    hooks: { notice: () => undefined, submitWithdrawal: () => undefined, deliverTransfer: (from, id, to, amount) => courier.deliver(from, id, to, amount) },
  });
  // The registry as the relay sees it, with the balance read of one user refused as a wallet held off after errors is.
  let heldOff: string | undefined;
  const held = refuseUnsent("internal", "This wallet is unavailable after repeated errors; operators have been told. Nothing was moved.");
  const front = Object.create(registry, {
    read: { value: (u: string, type: string, args: object) => (type === "balance" && u === heldOff ? Promise.resolve(held) : registry.read(u, type as never, args as never)) },
  }) as WalletRegistry;
  const cheques = new ChequeService({ system, registry, log: silentLogger, ttlSec: 3600, maxAmount: 1_000_000n, mac: (p, d) => store.mac(p, d), finished: new FinishedCheques(store), retainFinished: 10 });
  courier = new TransferCourier({ registry, log: silentLogger, sinks: [cheques] });
  const relay = new EngineRelay({ config: {} as Config, log: silentLogger, registry: front, chain: {} as never, addresses: {} as never, cheques });
  t.teardown(async () => (registry.close(), system.shutdown(), await journal.flushed(), await store.close()));
  for (const u of ["u_alice", "u_bob"]) await registry.send(u, "receive_transfer", { id: "seed", from: "u_bank", amount: 100_000n });
  const settle = async () => (await courier.settled(), await cheques.settled());
  const available = async (u: string) => {
    const b = await registry.read(u, "balance", {});
    if (isRefusal(b)) throw new Error(b.message);
    return b.available;
  };
  const cheque = async (id: string, amount: bigint) => {
    const c = await cheques.create("u_alice", id, amount);
    if (isRefusal(c)) throw new Error(c.message);
    await settle();
    return c.code;
  };

  // Bob claims; his balance cannot be read right after.
  const c1 = await cheque("c1", 7_000n);
  heldOff = "u_bob";
  const claimed = await relay.claimCheque("u_bob", c1);
  heldOff = undefined;
  await settle();
  t.notOk(isRefusal(claimed), "the claim is answered as done");
  t.same(claimed, { amount: 7_000n }, "without a balance");
  t.match(chequeClaimed(7_000n, undefined), /Cheque claimed: .* is yours\.\n\n\/balance shows your balance\./);
  t.equal(await available("u_bob"), 107_000n, "and Bob was paid");

  // Alice posts her own live cheque's code in a group while her wallet is held off: not revoked, and not "not yours".
  const c2 = await cheque("c2", 4_000n);
  heldOff = "u_alice";
  const revoked = await relay.revokeCheque("u_alice", c2);
  heldOff = undefined;
  t.ok(isRefusal(revoked));
  t.equal(chequeCodeInGroupNotRevoked(revoked as Refusal), CHEQUE_CODE_IN_GROUP_NOT_CHECKED, "told it could not be checked, to revoke it herself");
  // The book's own answer for a code that is no open cheque of hers keeps the words that reveal nothing.
  const someone = await relay.revokeCheque("u_bob", c2);
  t.match(chequeCodeInGroupNotRevoked(someone as Refusal), /it is not one of your open cheques/);
  const mine = await relay.revokeCheque("u_alice", c2);
  t.match(mine, { amount: 4_000n }, "revoked once she can be read");
});
