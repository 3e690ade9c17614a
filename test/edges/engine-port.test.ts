// What operators read about the store: a store that cannot write shows in /health (not ok) and in the metrics,
// and clears by itself when writes work again. On a real engine and a real store.
import t from "tap";
import { startTestEngine } from "../support/engine.ts";
import { enginePort } from "../../src/edges/admin/engine-port.ts";
import { fillDisk } from "../support/store.ts";

t.test("a store that cannot write: /health is not ok and says why, metrics flag it, and both clear when writes work", async (t) => {
  const te = await startTestEngine();
  t.teardown(() => te.stop());
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
