// A scan of many pending deposits must not flood the node actor's bounded queue (node.maxQueue): the node refuses
// calls beyond it, the scan failed as a whole, and payouts, deposit addresses and quotes were refused meanwhile.
import t from "tap";
import { startTestEngine, type TestEngine } from "../support/engine.ts";
import { isRefusal } from "../../src/domain/refusals.ts";

async function user(te: TestEngine, name: string): Promise<{ key: string; address: string }> {
  const key = `u_${name}`;
  await te.engine.relay.start(key);
  const a = await te.engine.relay.depositAddress(key);
  if (isRefusal(a)) throw new Error(a.message);
  return { key, address: a.address };
}

/** Counts the node calls by method (the watcher calls the node through `call`). */
function countCalls(te: TestEngine): Map<string, number> {
  const counts = new Map<string, number>();
  const node = te.engine.node;
  const call = node.call.bind(node);
  node.call = (<T>(method: string, params: unknown[] = []) => {
    counts.set(method, (counts.get(method) ?? 0) + 1);
    return call<T>(method, params);
  }) as typeof node.call;
  return counts;
}

t.test("more open pending deposits than node.maxQueue: every scan completes, and the node still takes other calls", async (t) => {
  const te = await startTestEngine({ deposits: { confirmations: 1 }, node: { maxQueue: 10, addressPoolSize: 1 } });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const u = await user(te, "many");
  for (let i = 1; i <= 15; i++) await te.node.fund(u.address, `0.0${String(i).padStart(2, "0")}`);
  const s = te.engine.watcher.stats;
  t.equal(await te.engine.watcher.poke(), true, "the first scan credits them pending");
  t.equal(te.engine.watcher.tracked?.open, 15, "15 open deposits");
  // The second scan looks for each in the node's mempool (its first check): 15 transactions, a queue of 10.
  t.equal(await te.engine.watcher.poke(), true, "the second scan (a mempool check for each) completes");
  t.equal(await te.engine.watcher.poke(), true, "and the third");
  await te.restart();
  const s2 = te.engine.watcher.stats;
  // Others' calls while the scan runs (a quote's fee estimate, a deposit address): the scan leaves room for them. One
  // is made each time the scan puts a mempool check or transaction lookup in the node's queue, when the queue holds
  // the most of the scan's calls (not on a timer, which may fall between them).
  let scanning = true;
  const refused: string[] = [];
  const others: Array<Promise<unknown>> = [];
  const node = te.engine.node;
  const call = node.call.bind(node);
  node.call = (<T>(method: string, params: unknown[] = []) => {
    const own = call<T>(method, params);
    if (scanning && (method === "getmempoolentry" || method === "gettransaction")) {
      others.push(call("getblockchaininfo").catch((e: Error) => refused.push(e.message)));
    }
    return own;
  }) as typeof node.call;
  t.equal(await te.engine.watcher.poke(), true, "after a restart, the first scan (every check due) completes");
  scanning = false;
  await Promise.all(others);
  t.ok(others.length >= 15, `a call made beside each of the scan's (${others.length})`);
  t.same(refused, [], "calls made during the scan are not refused");
  t.equal(s.failedScans + s2.failedScans, 0, "no scan failed");
  const b = await te.engine.relay.balance(u.key);
  if (isRefusal(b)) throw new Error(b.message);
  t.equal(b.pending, 12_000_000n, "0.01 + … + 0.15 pending, each once");
  await te.mine(1);
  const c = await te.engine.relay.balance(u.key);
  if (isRefusal(c)) throw new Error(c.message);
  t.same([c.available, c.pending], [12_000_000n, 0n], "confirmed, each once");
  t.same(te.engine.watcher.tracked, { open: 0, mempoolChecked: 0, missing: 0 }, "nothing kept in memory for deposits no longer pending");
});

t.test("one transaction paying many users: one mempool check per scan, not one per output", async (t) => {
  const te = await startTestEngine({ deposits: { confirmations: 1 }, node: { maxQueue: 10, addressPoolSize: 1 } });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const users = [];
  for (let i = 0; i < 12; i++) users.push(await user(te, `p${i}`));
  const outputs: Record<string, number> = {};
  for (const u of users) outputs[u.address] = 0.02;
  await te.node.rpc("sendmany", ["", outputs], "outside");
  t.equal(await te.engine.watcher.poke(), true, "the first scan credits them pending");
  await te.restart(); // every mempool check is due at a start
  const counts = countCalls(te);
  t.equal(await te.engine.watcher.poke(), true, "the scan completes");
  t.equal(counts.get("getmempoolentry") ?? 0, 1, "one getmempoolentry for the 12 outputs of one transaction");
  for (const u of users) {
    const b = await te.engine.relay.balance(u.key);
    if (isRefusal(b)) throw new Error(b.message);
    t.equal(b.pending, 2_000_000n, `${u.key}: pending once`);
  }
});
