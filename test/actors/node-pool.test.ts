// The deposit address pool across restarts of the engine: the addresses an earlier run left in the pool (still labelled
// "pool" in the node's wallet) are taken back, not replaced by new ones — each start would otherwise walk the wallet's
// chain addressPoolSize addresses further, past what a restored copy of it looks ahead for — but never one the owner
// index knows, nor one that received anything.
import t from "tap";
import { ActorSystem } from "../../src/actors/runtime.ts";
import { NodeGateway, POOL_LABEL, UNOWNED_PAID_LABEL } from "../../src/actors/node.ts";
import { ownerOfLabel } from "../../src/actors/owner-label.ts";
import { loadConfig } from "../../src/config.ts";
import { createLogger } from "../../src/log.ts";
import { startRegtest, type RegtestNode } from "../../src/regtest/harness.ts";

const SIZE = 6;
type Line = { msg: string; reused?: number };

function gateway(node: RegtestNode, ownerOf?: (address: string) => Promise<string | undefined>) {
  const lines: Line[] = [];
  const raw: string[] = [];
  const log = createLogger({ level: "info", destination: { write: (l: string) => void (raw.push(l), lines.push(JSON.parse(l) as Line)) } });
  const system = new ActorSystem();
  const config = loadConfig({ env: {}, overrides: { node: { addressPoolSize: SIZE, timeoutMs: 5000 } } });
  const gw = new NodeGateway({ config, log, system, rpc: { url: node.rpcUrl, user: node.user, password: node.password }, ...(ownerOf ? { ownerOf } : {}) });
  return { gw, lines, raw, close: async () => (await gw.stop(), system.shutdown()) };
}

/**
 * start() fills the pool in the background (and a take that leaves it half empty refills it): waits for the refills
 * under way, and fails if the pool is not full once they have ended.
 */
async function filled(gw: NodeGateway): Promise<void> {
  for (let i = 0; i < 5 && gw.snapshot().addressPool < SIZE; i++) await gw.refilled();
  if (gw.snapshot().addressPool < SIZE) throw new Error(`the pool holds ${gw.snapshot().addressPool} addresses, not ${SIZE}`);
}

const labelled = async (node: RegtestNode) => Object.keys(await node.rpc<Record<string, unknown>>("getaddressesbylabel", [POOL_LABEL], node.walletName)).sort();

/** The pool's addresses, in the order they are handed out (taking them all, before a refill's new ones come after them). */
async function takeAll(gw: NodeGateway): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < SIZE; i++) out.push(await gw.takeDepositAddress(`u_pool${i}`));
  return out;
}

t.test("a restart takes back the addresses the last run left in the pool: no new ones are made for it", async (t) => {
  const node = await startRegtest();
  let g = gateway(node, async () => undefined);
  t.teardown(async () => (await g.close(), await node.stop()));
  await g.gw.start();
  await filled(g.gw);
  const before = await labelled(node);
  t.equal(before.length, SIZE, "the first run made a pool");
  await g.close();

  g = gateway(node, async () => undefined);
  await g.gw.start();
  await filled(g.gw);
  t.same(await labelled(node), before, "no new address was made at the second start");
  const reused = g.lines.filter((l) => /left in the pool are used again/.test(l.msg));
  t.equal(reused.length, 1, "one info line");
  t.equal(reused[0]?.reused, SIZE, "with the count");
  t.notOk(g.raw.some((l) => before.some((a) => l.includes(a))), "never an address in the logs");
  t.same((await takeAll(g.gw)).sort(), before, "the pool hands out the addresses of the last run");
});

t.test("an address the owner index knows, or that received coins, is not taken back; without the owner check none is", async (t) => {
  const node = await startRegtest();
  let g = gateway(node, async () => undefined);
  t.teardown(async () => (await g.close(), await node.stop()));
  await g.gw.start();
  await filled(g.gw);
  await g.close();
  const before = await labelled(node);
  t.equal(before.length, SIZE, "the first run made a pool");
  // Handed out to a user whose owner label never reached the node (setlabel lost): still labelled "pool".
  const owned = before[0]!;
  // Paid by someone, though nobody was given it: unconfirmed yet, it must not be handed out either.
  const paid = before[1]!;
  await node.ensureMatureCoins();
  await node.fund(paid, "0.01");

  g = gateway(node, async (a) => (a === owned ? "u_owner" : undefined));
  await g.gw.start();
  await filled(g.gw);
  t.equal(g.lines.find((l) => /left in the pool are used again/.test(l.msg))?.reused, SIZE - 2, "all but those two taken back");
  t.equal((await labelled(node)).filter((a) => !before.includes(a)).length, 2, "new addresses only for the two left out");
  const taken = await takeAll(g.gw);
  t.notOk(taken.includes(owned), "not the address the owner index knows");
  t.notOk(taken.includes(paid), "not the address that received coins");
  t.same(taken.slice(0, SIZE - 2).sort(), before.slice(2).sort(), "the others first");
  // Neither keeps the pool's label, so no later start asks about them again.
  const labels = async (a: string) => (await node.rpc<{ labels: string[] }>("getaddressinfo", [a], node.walletName)).labels;
  t.same(await labels(owned), ["u_owner"], "the one handed out now has its owner's label");
  t.same(await labels(paid), [UNOWNED_PAID_LABEL], "the one paid that nobody owns is set apart");
  t.ok(g.lines.some((l) => /nobody was given received coins/.test(l.msg)), "said, without the address");
  await g.gw.blockchainInfo(); // the mailbox is ordered: the refill the takes started is done before the count below
  await g.close();

  // Without a way to ask the owner index: as before, a new pool.
  const count = (await labelled(node)).length;
  g = gateway(node);
  await g.gw.start();
  await filled(g.gw);
  t.equal((await labelled(node)).length, count + SIZE, "a whole new pool");
  t.notOk(g.lines.some((l) => /left in the pool are used again/.test(l.msg)), "nothing taken back");

  // The owner check failing (the store cannot answer): none either.
  await g.close();
  g = gateway(node, async () => { throw new Error("store unavailable"); });
  await g.gw.start();
  await filled(g.gw);
  t.equal((await labelled(node)).length, count + 2 * SIZE, "a whole new pool again");
  await g.close();

  // Many more labelled "pool" than the pool holds (as after restarts under releases that made a new pool each time):
  // only as many are checked as it takes to fill it.
  const many = (await labelled(node)).length;
  t.ok(many > 2 * SIZE, `${many} labelled "pool", more than twice the pool's size`);
  g = gateway(node, async (a) => (a === owned ? "u_owner" : undefined));
  await g.gw.start();
  await filled(g.gw);
  const line = g.lines.find((l) => /left in the pool are used again/.test(l.msg)) as Line & { checked?: number };
  t.equal(line?.reused, SIZE, "a whole pool taken back");
  t.equal(line.checked, SIZE, "only as many checked as the pool takes (the two set apart are not asked about again)");
  t.equal((await labelled(node)).length, count + 2 * SIZE, "no new address made");
});

t.test("the engine asks its owner index: an address handed out whose owner label never reached the node is not taken back", async (t) => {
  const { startTestEngine } = await import("../support/engine.ts");
  const { isRefusal } = await import("../../src/domain/refusals.ts");
  const lines: Line[] = [];
  const te = await startTestEngine({ node: { addressPoolSize: SIZE } }, { log: createLogger({ level: "info", destination: { write: (l: string) => void lines.push(JSON.parse(l) as Line) } }) });
  t.teardown(() => te.stop());
  await filled(te.engine.node);
  await te.engine.relay.start("u_alice");
  const given = await te.engine.relay.depositAddress("u_alice");
  if (isRefusal(given)) throw new Error(given.message);
  await te.engine.node.blockchainInfo(); // the mailbox is ordered: the owner's label is set
  // As if that setlabel had been lost (bitcoind away at the time): the address still says "pool".
  await te.node.rpc("setlabel", [given.address, POOL_LABEL], te.node.walletName);
  const before = await labelled(te.node);
  t.equal(before.length, SIZE, "the pool's others and Alice's");
  await te.restart();
  await filled(te.engine.node);
  t.equal(lines.find((l) => /left in the pool are used again/.test(l.msg))?.reused, SIZE - 1, "all but Alice's taken back");
  const after = await labelled(te.node);
  t.equal(after.filter((a) => !before.includes(a)).length, 1, "one new address, in place of Alice's");
  t.notOk(after.includes(given.address), "Alice's is no longer the pool's");
  const [label] = (await te.node.rpc<{ labels: string[] }>("getaddressinfo", [given.address], te.node.walletName)).labels;
  t.equal(ownerOfLabel(te.engine.storage.store, given.address, label!), "u_alice", "it has her sealed owner label");
});

t.test("an address is labelled with its owner ahead of the calls queued (a refill's), so a start never takes it back", async (t) => {
  const node = await startRegtest();
  const system = new ActorSystem();
  const config = loadConfig({ env: {}, overrides: { node: { addressPoolSize: SIZE, timeoutMs: 5000 } } });
  const gw = new NodeGateway({ config, log: createLogger({ level: "silent" }), system, rpc: { url: node.rpcUrl, user: node.user, password: node.password }, ownerOf: async () => undefined });
  t.teardown(async () => (await gw.stop(), system.shutdown(), await node.stop()));
  await gw.start();
  await filled(gw);
  // A crowd of calls queued before the address is taken (a refill's getnewaddress, a scan's), more than two JSON-RPC
  // batches' worth (node.batchMax, 200): the label goes ahead of those not sent yet.
  const crowd = Array.from({ length: 450 }, () => gw.call("getblockcount"));
  const a = await gw.takeDepositAddress("u_owner");
  await crowd[399];
  t.same((await node.rpc<{ labels: string[] }>("getaddressinfo", [a], node.walletName)).labels, ["u_owner"], "labelled before the crowd's last batch goes out");
  await Promise.all(crowd);
  t.notOk((await labelled(node)).includes(a), "no longer the pool's");
});

t.test("an owner label bitcoind could not take (away longer than the calls wait) is set again once it is back", { timeout: 60_000 }, async (t) => {
  const node = await startRegtest();
  const waiters: Array<[RegExp, () => void]> = [];
  const log = createLogger({
    level: "info",
    destination: { write: (l: string) => {
      const msg = (JSON.parse(l) as Line).msg;
      for (const w of [...waiters]) if (w[0].test(msg)) (waiters.splice(waiters.indexOf(w), 1), w[1]());
    } },
  });
  const said = (re: RegExp) => new Promise<void>((resolve) => waiters.push([re, resolve]));
  const system = new ActorSystem();
  const config = loadConfig({ env: {}, overrides: { node: { addressPoolSize: SIZE, timeoutMs: 2000 } } });
  const gw = new NodeGateway({ config, log, system, rpc: { url: node.rpcUrl, user: node.user, password: node.password }, ownerOf: async () => undefined, maxWaitMs: 300 });
  t.teardown(async () => (await gw.stop(), system.shutdown(), await node.stop()));
  await gw.start();
  await filled(gw);
  await node.kill();
  const failed = said(/could not label a deposit address with its owner; trying again/);
  const landed = said(/owner label reached the node/);
  const a = await gw.takeDepositAddress("u_late");
  await failed;
  await node.restart();
  await landed;
  t.same((await node.rpc<{ labels: string[] }>("getaddressinfo", [a], node.walletName)).labels, ["u_late"], "labelled with its owner, not the pool's");
});
