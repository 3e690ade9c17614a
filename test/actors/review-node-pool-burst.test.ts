// A burst of /deposit larger than the address pool: every caller gets an address of its own while bitcoind makes them
// (a refill is sized when it starts; callers left without one wait for the next), and a caller is refused only when
// bitcoind cannot make one.
import t from "tap";
import { ActorSystem } from "../../src/actors/runtime.ts";
import { NodeGateway, NodeUnavailable } from "../../src/actors/node.ts";
import { loadConfig } from "../../src/config.ts";
import { silentLogger } from "../../src/log.ts";
import { startRegtest } from "../../src/regtest/harness.ts";

const SIZE = 5;

t.test("a burst of deposit address requests eight times the pool: each gets one, none given twice; with bitcoind gone, refused", async (t) => {
  const node = await startRegtest();
  const system = new ActorSystem();
  const config = loadConfig({ env: {}, overrides: { node: { addressPoolSize: SIZE, timeoutMs: 5000 } } });
  const gw = new NodeGateway({ config, log: silentLogger, system, rpc: { url: node.rpcUrl, user: node.user, password: node.password }, maxWaitMs: 3000 });
  t.teardown(async () => (await gw.stop(), system.shutdown(), await node.stop()));
  await gw.start();
  // The start's refill is under way: the burst comes meanwhile, on a pool that is still filling.
  const results = await Promise.allSettled(Array.from({ length: SIZE * 8 }, (_, i) => gw.takeDepositAddress(`u_burst${i}`)));
  const given = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  const refused = results.flatMap((r) => (r.status === "rejected" ? [(r.reason as Error).message] : []));
  t.same(refused, [], "none refused while bitcoind makes addresses");
  t.equal(given.length, SIZE * 8, "each caller got an address");
  t.equal(new Set(given).size, given.length, "no address went to two callers");
  t.equal(gw.state, "ready");

  // bitcoind gone: the pool runs dry, and the next caller is refused once its wait for bitcoind is over (not left waiting).
  await node.kill();
  const left = gw.snapshot().addressPool;
  for (let i = 0; i < left; i++) await gw.takeDepositAddress(`u_left${i}`);
  const started = performance.now();
  const last = await gw.takeDepositAddress("u_none").then((a) => a, (e: unknown) => e);
  t.ok(last instanceof NodeUnavailable, `refused: ${String(last)}`);
  t.ok(performance.now() - started < 10_000, "within the time a call waits for bitcoind");
});
