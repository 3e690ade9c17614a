// A pending deposit that left the node's mempool is dropped once it has been missing for deposits.mempoolGraceMs. The
// mempool is asked at most every 30 s and scans run more often (every 10 s on mainnet): the scans between two checks
// used to forget when it went missing, so on such a node it was never dropped.
import t from "tap";
import { DepositWatcher } from "../../src/actors/deposit-watcher.ts";
import { silentLogger } from "../../src/log.ts";
import type { Config } from "../../src/config.ts";

t.test("a deposit missing from the mempool is dropped after the grace, however many scans run between the checks", async (t) => {
  let clock = 0;
  const inMempool = { t1: true };
  const sent: string[] = [];
  const node = {
    state: "ready",
    blockchainInfo: async () => ({ chain: "regtest", blocks: 200, headers: 200, bestblockhash: "h200", mediantime: 0, initialblockdownload: false }),
    listSinceBlock: async () => ({ transactions: [{ category: "receive", address: "a1", txid: "t1", vout: 0, amount: 0.1, confirmations: 0 }], removed: [], lastblock: "h200" }),
    call: async (method: string) => {
      if (method === "getmempoolentry") {
        if (inMempool.t1) return {};
        throw Object.assign(new Error("Transaction not in mempool"), { code: -5 });
      }
      return { confirmations: 0 };
    },
  };
  const records = new Map<string, unknown>();
  const store = {
    get: async (ns: string, k: string) => records.get(`${ns}/${k}`),
    put: async (ns: string, k: string, v: unknown) => void records.set(`${ns}/${k}`, v),
    del: async (ns: string, k: string) => void records.delete(`${ns}/${k}`),
    async *iterate() {},
    mac: (_p: string, d: string) => d,
  };
  const registry = {
    send: async (_user: string, type: string) => {
      sent.push(type);
      return type === "deposit_removed" ? { status: "dropped" } : { status: "pending" };
    },
    read: async () => ({}),
  };
  const config = { deposits: { confirmations: 1, pollMs: 3_600_000, maxPendingPerWallet: 10, mempoolGraceMs: 60_000 }, withdrawals: { dustSats: "546" }, node: { maxQueue: 100 } } as unknown as Config;
  const w = new DepositWatcher({ config, log: silentLogger, node: node as never, registry: registry as never, store: store as never, clock: () => clock });
  await w.recordOwner("a1", "u_1");
  await w.start();
  t.teardown(() => w.stop());
  t.equal(await w.poke(), true);
  t.same(sent, ["deposit"], "credited pending");
  inMempool.t1 = false;
  // A scan every 10 s for three minutes: the mempool is asked every 30 s.
  for (let s = 0; s < 18 && !sent.includes("deposit_removed"); s++) {
    clock += 10_000;
    await w.poke();
  }
  t.ok(sent.includes("deposit_removed"), "dropped");
  t.ok(clock >= 60_000 && clock <= 100_000, `dropped ${clock / 1000} s after it left (the grace is 60 s, the checks 30 s apart)`);
  t.equal(w.stats.dropped, 1);
  t.equal(sent.filter((x) => x === "deposit").length, 1, "its wallet, holding it pending, was not asked again between the checks");
});
