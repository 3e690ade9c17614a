// A tip's refusals that could tell a group something about the tipper, and transfers to what is not a user: the real
// relay and wallets on a real store (no node: a tip never needs one), and the real Telegram edge against a Bot API
// stand-in.
import t from "tap";
import { randomBytes } from "node:crypto";
import { BotApiStandIn } from "../support/bot-api.ts";
import { buildTelegramEdge } from "../../src/edges/telegram/bot.ts";
import { loadConfig } from "../../src/config.ts";
import { silentLogger } from "../../src/log.ts";
import { isRefusal } from "../../src/domain/refusals.ts";
import { EncryptedStore } from "../../src/store/db.ts";
import { Journal } from "../../src/store/journal.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { ActorSystem } from "../../src/actors/runtime.ts";
import { WalletRegistry } from "../../src/actors/registry.ts";
import { WalletRecords } from "../../src/actors/wallet.records.ts";
import { TransferCourier } from "../../src/actors/transfers.ts";
import { ChequeService } from "../../src/actors/cheque.service.ts";
import { FinishedCheques, chequeUserKey } from "../../src/actors/cheques.ts";
import { EngineRelay, type ChainPort } from "../../src/relay.ts";

const ALICE = 7401, BOB = 7402, CAROL = 7403, MALLORY = 7404, GROUP = -9401;
const key = (id: number) => `u_${id}`;

async function setup(t: { testdir(): string; teardown(f: () => unknown): void }) {
  const config = loadConfig({ env: {}, overrides: { transfers: { maxTransferSats: "50000" }, telegram: { commandsPerMinute: 1000 } } });
  const store = await EncryptedStore.open({ path: t.testdir(), keyring: new KeyRing(new Map([[1, randomBytes(32)]]), 1), sync: false });
  const journal = new Journal(store);
  const system = new ActorSystem(journal);
  let courier!: TransferCourier;
  const registry = new WalletRegistry({
    system, log: silentLogger, idleMs: 60_000, maxResident: 1000, maxInFlight: 64, askTimeoutMs: 5000, crashBudget: 3, crashWindowMs: 60_000,
    records: new WalletRecords(store, 100), snapshotEvery: 50,
    hooks: { notice: () => undefined, submitWithdrawal: () => undefined, deliverTransfer: (...a) => void courier.deliver(...a) },
  });
  t.teardown(async () => (registry.close(), system.shutdown(), await journal.flushed(), await store.close()));
  const cheques = new ChequeService({
    system, registry, log: silentLogger, ttlSec: 3600, maxAmount: 50_000n, mac: (p, d) => store.mac(p, d),
    finished: new FinishedCheques(store), retainFinished: 10,
  });
  t.teardown(() => cheques.stopRetrying());
  courier = new TransferCourier({ registry, log: silentLogger, sinks: [cheques] });
  const relay = new EngineRelay({
    config, log: silentLogger, registry, cheques, chain: {} as ChainPort,
    addresses: { record: async () => undefined, ownerOf: async () => undefined },
  });
  t.teardown(() => relay.close());
  return { registry, relay, cheques, courier };
}

t.test("an over-limit tip: the group hears the same from a tipper who has the amount and from one who has not", async (t) => {
  const { registry, relay } = await setup(t);
  await registry.send(key(ALICE), "receive_transfer", { id: "seed", from: "u_bank", amount: 100_000n });
  await registry.send(key(CAROL), "receive_transfer", { id: "seed", from: "u_bank", amount: 10_000n });
  const api = new BotApiStandIn();
  await api.start();
  t.teardown(() => api.stop());
  const edge = buildTelegramEdge({
    token: api.token, apiRoot: api.apiRoot, config: loadConfig({ env: {}, overrides: { telegram: { commandsPerMinute: 1000 } } }), relay,
    identity: { userKey: async (id: number) => key(id) }, handleKey: randomBytes(32), log: silentLogger, mode: "polling",
  });
  await edge.start();
  t.teardown(() => edge.stop());
  const tip = async (from: number, id: number, amount = "60000 sats") => BotApiStandIn.text(await api.exchange(api.message(from, `/tip ${amount}`, { chat: GROUP, replyTo: { from: BOB, id } })));
  const rich = await tip(ALICE, 11);
  const poor = await tip(CAROL, 12);
  const none = await tip(MALLORY, 13);
  t.equal(rich, poor, "the same words whether the tipper has the amount or not");
  t.equal(none, poor, "and for someone without a wallet");
  t.match(rich, /at most 0\.0005 BTC/, "the limit, which is the service's and no one's balance");
  const a = await registry.read(key(ALICE), "balance", {});
  t.match(a, { available: 100_000n }, "nothing moved");
  // Under the limit, the wallet's own answers as before.
  t.match(await tip(ALICE, 14, "1000 sats"), /Tip sent/);
});

t.test("a wallet's own over-limit refusal is said in a group as any other about the tipper's wallet", async (t) => {
  const { refusalInGroup, TIP_NOT_SENT } = await import("../../src/edges/telegram/render.ts");
  t.equal(refusalInGroup({ refused: true, code: "over_limit", message: "A single transfer can move at most 0.0005 BTC." } as never), TIP_NOT_SENT);
  t.equal(refusalInGroup({ refused: true, code: "insufficient_funds", message: "Not enough available: you have 0.0001 BTC." } as never), TIP_NOT_SENT);
});

t.test("a transfer goes only to a user key: a cheque's pseudo-user or any other name is refused, nothing moved", async (t) => {
  const { registry, relay, cheques, courier } = await setup(t);
  await registry.send(key(ALICE), "receive_transfer", { id: "seed", from: "u_bank", amount: 100_000n });
  const c = await cheques.create(key(ALICE), "c1", 5_000n);
  if (isRefusal(c)) throw new Error(c.message);
  await courier.settled();
  const hash = Object.keys((await cheques.state()).cheques)[0]!;
  const names = [chequeUserKey(hash), "cheque:unknown", "bank", "", "u_", "u_a b", `u_${"x".repeat(65)}`];
  for (const [i, to] of names.entries()) {
    t.match(await relay.transfer(key(ALICE), `t${i}`, to, "1000 sats"), { code: "bad_input", message: /goes to a user of this service/ }, JSON.stringify(to.slice(0, 20)));
  }
  await courier.settled();
  const st = await registry.send(key(ALICE), "state", {});
  if (isRefusal(st)) throw new Error(st.message);
  t.equal(st.available, 95_000n, "only the cheque's own funding left the wallet");
  t.same(Object.keys(st.outgoing), [], "nothing waits in the outbox");
  t.match(await relay.transfer(key(ALICE), "t-ok", key(BOB), "1000 sats"), { repeated: false }, "a user key is taken");
});
