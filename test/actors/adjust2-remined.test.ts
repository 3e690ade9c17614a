// The whole way on a real regtest bitcoind: a confirmed deposit whose blocks a deep reorg orphans goes back to the
// node's mempool (the watcher reverses it, the wallet freezes), an operator books it out, and a later block mines it
// again. The watcher lists it again with its confirmations: what was booked is credited back, once, the wallet stays
// frozen for review, and operators get one alert line naming the user key alone.
import t from "tap";
import { startTestEngine } from "../support/engine.ts";
import { isRefusal } from "../../src/domain/refusals.ts";
import { createLogger } from "../../src/log.ts";

t.test("a reversed deposit booked out, then mined again: credited back once, frozen still, one alert", async (t) => {
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger({ level: "warn", destination: { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) } });
  const te = await startTestEngine({ deposits: { confirmations: 2 } }, { log });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const key = "u_remined";
  const opened = await te.engine.relay.start(key);
  if (isRefusal(opened)) throw new Error(opened.message);
  const a = await te.engine.relay.depositAddress(key);
  if (isRefusal(a)) throw new Error(a.message);
  const state = async () => {
    const s = await te.engine.registry.send(key, "state", {});
    if (isRefusal(s)) throw new Error(s.message);
    return s;
  };

  const txid = await te.node.fund(a.address, "0.2");
  await te.mine(2);
  t.equal((await state()).available, 20_000_000n, "confirmed at the target");
  const { vout } = (await te.node.rpc<{ details: Array<{ address: string; vout: number }> }>("gettransaction", [txid], "outside")).details.find((d) => d.address === a.address)!;
  const outpoint = `${txid}:${vout}`;

  // Both of its blocks orphaned: its transaction is back in the mempool, in no block (confirmations 0).
  const height = await te.node.rpc<number>("getblockcount");
  await te.node.rpc("invalidateblock", [await te.node.rpc<string>("getblockhash", [height - 1])]);
  t.ok((await te.node.rpc<string[]>("getrawmempool")).includes(txid), "back in the mempool");
  await te.poke();
  t.equal(te.engine.watcher.stats.deepReorgs, 1, "a deep reorg reported");
  t.ok((await state()).frozen, "the wallet frozen for review");
  const booked = await te.engine.registry.send(key, "adjust", { id: "reorg-1", amount: -20_000_000n, reason: "deposit reversed by a deep reorg", by: "alice", outpoint });
  t.match(booked, { repeated: false, balance: { available: 0n } }, "booked out by an operator");
  await te.poke();
  t.equal((await state()).available, 0n, "in the mempool: nothing back yet");

  // Blocks of another chain take it (a new address: the orphaned blocks are not mined again as they were).
  const fresh = await te.node.outsideAddress();
  await te.node.mine(1, fresh);
  await te.poke();
  t.equal((await state()).available, 0n, "one confirmation of two: nothing back yet");
  await te.node.mine(1, fresh);
  await te.poke();
  const s = await state();
  t.equal(s.available, 20_000_000n, "at the target: what was booked is credited back");
  t.ok(s.frozen, "the wallet stays frozen for review");
  t.equal(te.engine.registry.records.deposit(key, outpoint)?.status, "confirmed", "the wallet's record of it is confirmed again");
  const found = await te.engine.watcher.findDeposits({ userKey: key }, 10);
  t.match(found.deposits, [{ txid, status: "confirmed" }], "and so is the watcher's");
  const alerts = lines.filter((l) => l.alert === true && /confirmed again/.test(String(l.msg)));
  t.equal(alerts.length, 1, "one alert");
  t.match(alerts[0], { userKey: key, msg: /booked out by an operator, is confirmed again/ });
  t.notOk(JSON.stringify(alerts[0]).includes(txid), "no txid beside the user key");

  await te.mine(3);
  t.equal((await state()).available, 20_000_000n, "credited back once, however many blocks follow");
  await te.restart({ crash: true });
  await te.poke();
  await te.mine(1);
  t.equal((await state()).available, 20_000_000n, "and across a crash");
  t.equal(lines.filter((l) => l.alert === true && /confirmed again/.test(String(l.msg))).length, 1, "alerted once");
});
