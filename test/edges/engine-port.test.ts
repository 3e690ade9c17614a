// What operators read about the store: a store that cannot write shows in /health (not ok) and in the metrics,
// and clears by itself when writes work again. On a real engine and a real store.
import t from "tap";
import { startTestEngine } from "../support/engine.ts";
import { enginePort } from "../../src/edges/admin/engine-port.ts";
import { fillDisk } from "../support/store.ts";

t.test("a store that cannot write: /health is not ok and says why, metrics flag it, and both clear when writes work", async (t) => {
  const te = await startTestEngine();
  t.teardown(() => te.stop());
  // Out of initial block download (a new regtest node's tip is its 2011 genesis until a block is mined).
  await te.mine(1);
  const port = enginePort(te.engine);
  const store = te.engine.storage.store;
  t.match(await port.health(), { store: { failing: false } });
  const disk = fillDisk(store);
  await t.rejects(store.put("engine", "probe", 1));
  const health = await port.health();
  t.match(health, { ok: false, store: { failing: true, lastError: { message: /No space left on device/ } } });
  t.ok(store.writeHealth.failures >= 1, "counted (the engine's own background writes may fail too meanwhile)");
  t.match(await port.metrics(), /runigun_store_write_failing 1\n[^]*runigun_store_write_failures_total [1-9]\d*\n/);
  disk.free();
  await store.put("engine", "probe", 2);
  t.match(await port.health(), { ok: true, store: { failing: false } });
  t.match(await port.metrics(), /runigun_store_write_failing 0\n/);
});

t.test("where the node stands: /health is not ok while it is in initial block download, and shows a header it has no block for; metrics show both", async (t) => {
  const te = await startTestEngine();
  t.teardown(() => te.stop());
  const port = enginePort(te.engine);
  // A new regtest node's tip is its genesis block of 2011: it is still in initial block download.
  t.match(await port.health(), { ok: false, chain: { initialBlockDownload: true } }, "not ok while the node is syncing");
  await te.mine(1);
  t.match(await port.health(), { ok: true, chain: { headersBehind: 0, initialBlockDownload: false } }, "ok once it has a recent tip");
  t.match(await port.metrics(), /runigun_chain_headers_behind 0\n[^]*runigun_chain_tip_age_seconds \d+\n/);
  // A block the node has the header of and not the block: as a node whose peer has not sent it yet.
  const b = await te.node.rpc<{ hex: string }>("generateblock", [await te.node.outsideAddress(), [], false]);
  await te.node.rpc("submitheader", [b.hex.slice(0, 160)]);
  t.match(await port.health(), { chain: { headersBehind: 1 } }, "one header ahead of its blocks, shown");
  t.match(await port.metrics(), /runigun_chain_headers_behind 1\n/);
  await te.node.rpc("submitblock", [b.hex]);
  t.match(await port.health(), { ok: true, chain: { headersBehind: 0 } }, "caught up");
});

t.test("bitcoind down: /health and /metrics still answer (not after the node's minute of retries), saying the node cannot be read", async (t) => {
  const te = await startTestEngine();
  t.teardown(() => te.stop());
  await te.mine(1);
  const port = enginePort(te.engine);
  await te.node.flush();
  await te.node.kill();
  // A call to the node now waits for it to come back; the probes must not.
  const direct = te.engine.node.blockchainInfo().then(() => "node", () => "node");
  t.equal(await Promise.race([port.health().then(() => "health"), direct]), "health", "/health answered first");
  t.match(await port.health(), { ok: false, chain: null });
  t.equal(await Promise.race([port.metrics().then(() => "metrics"), direct]), "metrics", "/metrics too");
  await te.node.restart();
  t.equal(await direct, "node");
});
