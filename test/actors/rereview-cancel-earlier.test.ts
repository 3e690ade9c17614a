// A release's own cancellation stays the engine's own after the release goes on to wait for the spend of an input (its
// txid moves to `cancel.earlier`, and `cancel.txid` is gone): the book's own transactions (adoptRival), a pruned batch's
// records (FinishedPayouts.txOps) and a restore's comparison (reconcile.ts) count it. Before, they read `earlier` only
// with a `txid`: a reorg that undid the spend put the batch back to stuck, and the cancellation, mined after all, was
// alerted about as "a transaction the book did not make".
import t from "tap";
import { randomBytes } from "node:crypto";
import { EncryptedStore } from "../../src/store/db.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { emptyPayouts, evolvePayouts, FinishedPayouts, type PayoutEvent } from "../../src/actors/payout.ts";
import { reconcileAfterRestore } from "../../src/backup/reconcile.ts";
import { createLogger, silentLogger } from "../../src/log.ts";
import { isRefusal } from "../../src/domain/refusals.ts";
import { startTestEngine } from "../support/engine.ts";
import { sentBatch, withdrawalOf } from "../support/payouts.ts";

/** A batch released after waiting for a spend, its cancellation "tC" lost to it: as the journal has it. */
function releasedAfterWait() {
  const events: PayoutEvent[] = [
    { t: "queued", id: "p1", userKey: "u_a", address: "bcrt1qx", amount: "100000", quotedFee: "300", at: 1 },
    { t: "signed", batch: "b1", ids: ["p1"], hex: "00", txid: "tB", fee: "300", shares: ["300"], at: 2, inputs: ["tF:0"] },
    { t: "stuck", batch: "b1", reason: "dropped", at: 3 },
    { t: "cancelling", batch: "b1", reason: "dropped", input: "tF:0", hex: "cc", txid: "tC", fee: "200", at: 4 },
    { t: "cancelling", batch: "b1", reason: "dropped", input: "tF:0", spentAt: 100, spentIn: "h100", at: 5 },
    { t: "released", batch: "b1", at: 6 },
  ];
  return events.reduce(evolvePayouts, emptyPayouts());
}

t.test("the book's records of a pruned batch and a restore's comparison count a cancellation kept in `earlier` alone", async (t) => {
  const state = releasedAfterWait();
  const b = state.batches["b1"]!;
  t.match(b.cancel, { txid: undefined, earlier: ["tC"] }, "the cancellation is kept in `earlier`, with no txid");

  const store = await EncryptedStore.open({ path: t.testdir(), keyring: new KeyRing(new Map([[1, randomBytes(32)]]), 1), sync: false });
  t.teardown(() => store.close());
  const finished = new FinishedPayouts(store);
  await store.batch(finished.txOps(b));
  t.same(["tB", "tC", "tX"].map((x) => finished.paidBy(x)), [true, true, false], "the pruned batch's records name its transaction and its cancellation");

  const frozen: string[] = [];
  const incident = await reconcileAfterRestore({
    log: silentLogger,
    // The cancellation, a spend to the node's own change address.
    listSinceBlock: async () => ({ transactions: [{ category: "send", txid: "tC", address: "bcrt1qchange", amount: -0.00099, vout: 0, confirmations: 3 }], lastblock: "h" }),
    payouts: async () => state, paidBy: () => false,
    freeze: async (userKey) => void frozen.push(userKey),
    adopt: async () => undefined,
    holdings: async function* () {
      yield ["u_a", 200_000n] as [string, bigint];
    },
  }, { sinceBlock: undefined, archive: "test" });
  t.equal(incident, undefined, "the engine's own cancellation is no unknown spend");
  t.same(frozen, [], "nobody frozen");
});

type Line = { alert?: boolean; msg: string; batch?: string; txid?: string };

t.test("a release that lost its cancellation to a spend, then the spend reorged out and the cancellation mined: no alert about the engine's own transaction; released again", async (t) => {
  const lines: Line[] = [];
  const log = createLogger({ level: "warn", destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
  const te = await startTestEngine({ deposits: { confirmations: 2 } }, { log });
  t.teardown(() => te.stop());
  const { key, quote, batch, b } = await sentBatch(te, "lost", "0.05", { confirmations: 2 });
  // Dropped: the node restarts with a fee floor above the batch's and without its mempool (as payout-stuck.test.ts).
  await te.node.flush();
  await te.node.restart(["-minrelaytxfee=0.0003", "-persistmempool=0"]);
  await te.engine.payouts.sync();
  // Refused for its fee alone: it waits, broadcast; an operator may release it all the same.
  t.match((await te.engine.payouts.state()).batches[batch], { status: "broadcast" });
  const r = await te.engine.payouts.release(batch, 50n, "dropped");
  if (isRefusal(r)) throw new Error(r.message);
  t.match(r, { status: "cancelling", txid: String });
  const cancel = r.txid!;

  // The batch's coin spent behind the engine's back, in a block: the cancellation loses, the release waits for that spend.
  const input = (await te.node.rpc<{ vin: Array<{ txid: string; vout: number }> }>("decoderawtransaction", [b.hex], "engine")).vin[0]!;
  const prev = await te.node.rpc<{ hex: string }>("gettransaction", [input.txid], "engine");
  const value = (await te.node.rpc<{ vout: Array<{ value: number }> }>("decoderawtransaction", [prev.hex], "engine")).vout[input.vout]!.value;
  const raw = await te.node.rpc<string>("createrawtransaction", [[input], [{ [await te.node.outsideAddress()]: (value - 0.001).toFixed(8) }]], "engine");
  const { hex: spend } = await te.node.rpc<{ hex: string }>("signrawtransactionwithwallet", [raw], "engine");
  const { hash: spendBlock } = await te.node.rpc<{ hash: string }>("generateblock", [await te.node.outsideAddress(), [spend]]);
  await te.engine.payouts.sync();
  t.match((await te.engine.payouts.state()).batches[batch], { status: "cancelling", cancel: { txid: undefined, earlier: [cancel] } }, "waiting for the spend; the cancellation kept in `earlier`");

  // A reorg undoes the spend: back to stuck. Then a block mines the engine's own cancellation after all.
  await te.node.rpc("invalidateblock", [spendBlock]);
  await te.engine.payouts.sync();
  t.match((await te.engine.payouts.state()).batches[batch], { status: "stuck", reason: /left the chain/ });
  const { hex: cancelHex } = await te.node.rpc<{ hex: string }>("gettransaction", [cancel], "engine");
  await te.node.rpc("generateblock", [await te.node.outsideAddress(), [cancelHex]]);
  await te.engine.payouts.sync();
  await te.engine.payouts.sync();
  t.same(lines.filter((l) => l.alert && l.txid === cancel), [], "no alert names the engine's own cancellation");
  t.same(lines.filter((l) => /did not make/.test(l.msg)), [], "nothing is taken for a transaction the book did not make");

  // Released again: it waits for that spend (its own cancellation, in a block) to be deep enough, then gives back.
  t.match(await te.engine.payouts.release(batch, 5n, "again"), { status: "cancelling" });
  await te.mine(1);
  await te.engine.payouts.sync();
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "released");
  t.equal((await withdrawalOf(te, key, quote.id)).w.status, "released", "the user has it back");
});
