// A deposit rescan only goes back. Found by an operator review: POST /deposits/rescan with a height above the deposit
// cursor moved the cursor forward, the blocks between were never scanned, their deposits never credited, and /health
// and /solvency stayed ok. On a real regtest node, with the engine's own watcher.
import t from "tap";
import { startTestEngine } from "../../support/engine.ts";
import { enginePort } from "../../../src/edges/admin/engine-port.ts";
import { isRefusal } from "../../../src/domain/refusals.ts";
import { opsEdge } from "./ops-support.ts";

t.test("a rescan from above the cursor is refused (409, naming the cursor); from below it works; the skipped blocks' deposits are credited", async (t) => {
  const te = await startTestEngine();
  t.teardown(() => te.stop());
  const h = await opsEdge(t, { config: te.config, store: te.engine.storage.store, port: enginePort(te.engine) });
  await te.node.ensureMatureCoins();
  await te.mine(1);
  const key = "u_opsrescan_user01";
  await te.engine.relay.start(key);
  const ad = await te.engine.relay.depositAddress(key);
  if (isRefusal(ad)) throw new Error(ad.message);
  await te.poke();
  const cursor = te.engine.watcher.cursor!.height;
  // Mined, and not scanned yet: the test engine scans when poked (its poll is a minute).
  await te.node.fund(ad.address, "0.3");
  await te.node.mine(3);
  const tip = await te.node.rpc<number>("getblockcount");
  t.equal(tip, cursor + 3, "the deposit's block and two more are above the cursor");

  const r = await h.api("/deposits/rescan", { method: "POST", body: { height: tip, reason: "cursor looked stuck" } });
  t.equal(r.status, 409, r.body);
  t.match(JSON.parse(r.body).error, new RegExp(`the cursor is at ${cursor}\\).*would skip blocks ${cursor + 1} to ${tip - 1}.*Nothing was done\\. Rescan from ${cursor + 1} or below`));
  t.equal(te.engine.watcher.cursor!.height, cursor, "the cursor did not move");
  const outcome = (await h.audit.list(5)).find((e) => e.action === "rescan:outcome");
  t.match(outcome, { target: String(tip), outcome: /^refused: Height/ }, "the refusal is on file");

  await te.poke();
  const b = await te.engine.relay.balance(key);
  t.ok(!isRefusal(b) && b.available === 30_000_000n, "the next scan credits the deposit in the blocks a forward rescan would have skipped");

  // From the cursor, or back: allowed, and nothing is credited twice (its next block is above the tip here: one confirmation).
  const now = te.engine.watcher.cursor!.height;
  for (const height of [now, now - 3]) {
    const ok = await h.api("/deposits/rescan", { method: "POST", body: { height, reason: "check the last blocks again" } });
    t.equal(ok.status, 200, ok.body);
    t.match(JSON.parse(ok.body), { rescannedFrom: height, cursor: { height: now } });
  }
  await te.poke();
  const again = await te.engine.relay.balance(key);
  t.ok(!isRefusal(again) && again.available === 30_000_000n, "credited once");
});

t.test("the watcher itself never takes a rescan that would move its cursor forward (a caller other than the admin edge)", async (t) => {
  const te = await startTestEngine();
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  await te.mine(1);
  const key = "u_opsrescan_user02";
  await te.engine.relay.start(key);
  const ad = await te.engine.relay.depositAddress(key);
  if (isRefusal(ad)) throw new Error(ad.message);
  await te.poke();
  await te.node.fund(ad.address, "0.2");
  await te.node.mine(3);
  const tip = await te.node.rpc<number>("getblockcount");
  await te.engine.watcher.rescanFrom(tip);
  const b = await te.engine.relay.balance(key);
  t.ok(!isRefusal(b) && b.available === 20_000_000n, "the scan went on from the cursor: the deposit two blocks below the asked height is credited");
  t.equal(te.engine.watcher.cursor!.height, tip, "and the cursor is at the tip (confirmations 1)");
});
