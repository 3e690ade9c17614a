// A stuck batch's versions, as a book journalled before their inputs were recorded holds them: the coins of a version
// the book has no inputs for are read from the node's wallet, and only a coin every version spends, spent in a block,
// proves the batch dead. The node is a stand-in answering each RPC as a real one would in that situation.
import t from "tap";
import { emptyPayouts, evolvePayouts, payoutBehaviour, type PayoutCommand, type PayoutEvent, type PayoutOptions, type PayoutState } from "../../src/actors/payout.ts";
import { silentLogger } from "../../src/log.ts";

const unknown = () => Object.assign(new Error("Invalid or non-wallet transaction id"), { code: -5 });

/**
 * The original A ("aa", spending d1:0) was dropped from the node's mempool (its wallet keeps it); a fee bump A′ ("bb")
 * added d2:0, and the node never took it; a later transaction in a block spent d2:0. d1:0 is unspent: A can be mined.
 */
function world(o: { walletHasOriginal?: boolean; d1Spent?: boolean } = {}) {
  const calls: Array<{ method: string; params: unknown[] }> = [];
  const txs: Record<string, { confirmations: number; hex?: string; blockheight?: number }> = {
    d1: { confirmations: 20, blockheight: 90 }, d2: { confirmations: 10, blockheight: 100 },
    ...(o.walletHasOriginal === false ? {} : { aa: { confirmations: 0, hex: "hexA" } }),
  };
  const decoded: Record<string, unknown> = {
    hexA: { txid: "aa", vin: [{ txid: "d1", vout: 0 }], vout: [] },
    hexB: { txid: "bb", vin: [{ txid: "d1", vout: 0 }, { txid: "d2", vout: 0 }], vout: [] },
  };
  const answers: Record<string, (p: unknown[]) => unknown> = {
    gettransaction: ([txid]) => txs[txid as string] ?? Promise.reject(unknown()),
    getmempoolentry: () => Promise.reject(unknown()),
    decoderawtransaction: ([hex]) => decoded[hex as string] ?? Promise.reject(new Error("TX decode failed")),
    gettxout: ([txid]) => (txid === "d1" && !o.d1Spent ? { value: 0.5 } : null),
    listtransactions: () => [],
    getblockcount: () => 110,
    getblockhash: () => "h101",
    getblockheader: () => ({ confirmations: 10 }),
    getrawchangeaddress: () => "bcrt1qchange",
    walletcreatefundedpsbt: () => ({ psbt: "p", fee: 0.00001 }),
    walletprocesspsbt: () => ({ psbt: "p2", complete: true }),
    finalizepsbt: () => ({ hex: "hexC", complete: true }),
    testmempoolaccept: () => [{ txid: "cc", allowed: true }],
    sendrawtransaction: () => "cc",
  };
  const node: PayoutOptions["node"] = {
    call: async <T>(method: string, params: unknown[]) => {
      calls.push({ method, params });
      const f = answers[method];
      if (!f) throw new Error(`unexpected RPC ${method}`);
      return (await f(params)) as T;
    },
    signing: (sign) => sign(),
  };
  const behaviour = payoutBehaviour({
    node, finished: {} as PayoutOptions["finished"], retainFinished: 100, log: silentLogger, confirmations: 2, maxOutputsPerBatch: 10,
    feeRate: async () => 5n, now: () => 1000,
    hooks: { broadcast: () => undefined, settled: async () => true, released: async () => true, alert: () => undefined },
  });
  return { calls, behaviour };
}

/** A book as a journal from before versions' inputs were recorded builds it: A signed, sent, stuck, bumped to A′, stuck. */
function oldBook(extra: PayoutEvent[] = []): PayoutState {
  const events: PayoutEvent[] = [
    { t: "queued", id: "w1", userKey: "u_a", address: "bcrt1qdest", amount: "49990000", quotedFee: "10000", at: 1 },
    { t: "signed", batch: "b1", ids: ["w1"], hex: "hexA", txid: "aa", fee: "2000", shares: ["2000"], at: 2 },
    { t: "broadcast", batch: "b1", at: 3 },
    { t: "stuck", batch: "b1", reason: "dropped", at: 4 },
    { t: "replaced", batch: "b1", hex: "hexB", txid: "bb", fee: "9000", shares: ["9000"], at: 5 },
    { t: "stuck", batch: "b1", reason: "replacement refused", at: 6 },
    ...extra,
  ];
  return events.reduce(evolvePayouts, emptyPayouts());
}

async function run<R>(w: ReturnType<typeof world>, state: PayoutState, make: (reply: (r: R) => void) => PayoutCommand) {
  let answer: R | undefined;
  let s = state;
  const persist = async (events: PayoutEvent[]) => {
    s = events.reduce(evolvePayouts, s);
  };
  await w.behaviour.handle(state, make((r) => (answer = r)), persist);
  return { answer: answer!, state: s };
}

t.test("an old book (no inputs journalled): the original's coins come from the node's wallet; the added coin spent elsewhere proves nothing, the original's coin is cancelled", async (t) => {
  const w = world();
  const { answer, state } = await run<unknown>(w, oldBook(), (reply) => ({ type: "release", batch: "b1", feeRateSatVb: 5n, reason: "never taken", reply }));
  t.match(answer, { batch: "b1", status: "cancelling", txid: "cc" }, "a cancellation, not a wait for the added coin's spend");
  const funded = w.calls.find((c) => c.method === "walletcreatefundedpsbt")!;
  t.same(funded.params[0], [{ txid: "d1", vout: 0 }], "it spends the original's coin, the one still live");
  t.match(state.batches.b1!.cancel, { txid: "cc", input: "d1:0" });
});

t.test("an older version neither the book nor the node's wallet has: no spent coin proves the batch dead; with none live, not released", async (t) => {
  const w = world({ walletHasOriginal: false, d1Spent: true });
  const { answer, state } = await run<unknown>(w, oldBook(), (reply) => ({ type: "release", batch: "b1", feeRateSatVb: 5n, reason: "never taken", reply }));
  t.match(answer, { code: "not_allowed", message: /none by every version/ });
  t.equal(state.batches.b1!.status, "stuck", "nothing journalled");
});

t.test("a wait begun on the added coin's spend (by an engine from before versions were told apart): back to stuck at the next block, never released", async (t) => {
  const waiting = oldBook([{ t: "cancelling", batch: "b1", reason: "never taken", input: "d2:0", spentAt: 101, spentIn: "h101", at: 7 }]);
  t.equal(waiting.batches.b1!.status, "cancelling");
  const w = world();
  const { state } = await run<unknown>(w, waiting, (reply) => ({ type: "sync", reply }));
  t.match(state.batches.b1, { status: "stuck", reason: /not spent by every version/ }, "not released: the original can still be mined");
  t.equal(state.payouts.w1!.status, "stuck");
  // Released again: a cancellation of the original's coin.
  const again = await run<unknown>(w, state, (reply) => ({ type: "release", batch: "b1", feeRateSatVb: 5n, reason: "again", reply }));
  t.match(again.answer, { status: "cancelling", txid: "cc" });
});

t.test("versions' inputs are journalled with the events that make them, and kept when a bump replaces one", async (t) => {
  const s = [
    { t: "queued", id: "w1", userKey: "u_a", address: "bcrt1qdest", amount: "1000", quotedFee: "10", at: 1 },
    { t: "signed", batch: "b1", ids: ["w1"], hex: "hexA", txid: "aa", fee: "5", shares: ["5"], at: 2, inputs: ["d1:0"] },
    { t: "replaced", batch: "b1", hex: "hexB", txid: "bb", fee: "9", shares: ["9"], at: 3, inputs: ["d1:0", "d2:0"] },
  ].reduce((x, e) => evolvePayouts(x, e as PayoutEvent), emptyPayouts());
  t.same(s.batches.b1!.inputs, { aa: ["d1:0"], bb: ["d1:0", "d2:0"] });
});
