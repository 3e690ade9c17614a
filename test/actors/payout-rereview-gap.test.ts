// The mempool's floor above the fee cap, on a real regtest node (restarted with a higher -minrelaytxfee): each flush
// funded a batch, had it refused by testmempoolaccept and dropped it, and every funding took a new key from the node
// wallet's change chain (m/84h/1h/0h/1/1 → /1/22 after 20 flushes), pushing real change past what a restored copy of
// the wallet looks ahead for. Now a flush compares the rate with the node's floor (getmempoolinfo) and funds nothing;
// where the node does not say its floor, testmempoolaccept still refuses the batch, and the change key that funding
// took is kept for the next: one key for the whole wait, and the batch that finally goes out pays its change there.
import t from "tap";
import { startRegtest } from "../../src/regtest/harness.ts";
import { createLogger } from "../../src/log.ts";
import { isRefusal } from "../../src/domain/refusals.ts";
import { startTestEngine } from "../support/engine.ts";
import { fundedUser, received, withdraw, withdrawalOf } from "../support/payouts.ts";
import { payoutStatus } from "./payout-review-status.ts";

t.test("the floor above the cap: flushes fund nothing and take no change key; a refusal after funding keeps its key for the next", async (t) => {
  const lines: Array<{ alert?: boolean; msg: string; why?: string }> = [];
  const log = createLogger({ level: "warn", destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
  const node = await startRegtest();
  const te = await startTestEngine({ deposits: { confirmations: 1 }, withdrawals: { maxFeeRateSatVb: 3, fallbackFeeRateSatVb: 2, batchWindowMs: 600_000 } }, { node, log });
  t.teardown(async () => {
    await te.stop();
    await node.stop();
  });
  /** The next index of the node wallet's bech32 change chain. */
  const changeNext = async () => {
    const { descriptors } = await node.rpc<{ descriptors: Array<{ desc: string; internal?: boolean; next?: number; next_index?: number }> }>("listdescriptors", [], "engine");
    const d = descriptors.find((x) => x.internal === true && x.desc.startsWith("wpkh("))!;
    return d.next_index ?? d.next!;
  };
  await node.ensureMatureCoins();
  const key = await fundedUser(te, "gap", "0.01");
  await te.mine(1);
  await node.flush();
  await node.restart(["-minrelaytxfee=0.00005"]);
  const dest = await node.outsideAddress();
  const { quote } = await withdraw(te.engine.relay, key, dest, "0.001");
  const before = await changeNext();
  const mark = lines.length;
  const answers = [];
  for (let i = 0; i < 20; i++) answers.push(await te.engine.payouts.flush());
  t.same(answers, answers.map(() => ({ batches: 0 })), "20 flushes: nothing built");
  t.equal(await changeNext(), before, "and no key taken from the node wallet's change chain");
  t.match(await payoutStatus(te), { queued: 1, feeWait: { why: /^min relay fee not met: the node's minimum is 5 sat\/vB \(getmempoolinfo\), above the 3 sat\/vB allowed/, batches: [] } }, "the status says what the payout waits for");
  const alerts = lines.slice(mark).filter((l) => l.alert);
  t.equal(alerts.length, 1, "one alert");
  t.match(alerts[0], { msg: /^payouts wait: .*Raise withdrawals\.maxFeeRateSatVb/, why: /min relay fee not met/ });

  // A node that does not say its floor (getmempoolinfo fails): funded, refused by testmempoolaccept, dropped.
  const raw = te.engine.node.rawCall.bind(te.engine.node);
  const fundings: unknown[][] = [];
  (te.engine.node as { rawCall: typeof raw }).rawCall = <T>(method: string, params: unknown[]) => {
    if (method === "getmempoolinfo") return Promise.reject(Object.assign(new Error("getmempoolinfo: simulated failure"), { code: -1 }));
    if (method === "walletcreatefundedpsbt") fundings.push(params);
    return raw<T>(method, params);
  };
  for (let i = 0; i < 5; i++) t.same(await te.engine.payouts.flush(), { batches: 0 }, `flush ${i + 1} without the floor: refused by testmempoolaccept, nothing built`);
  t.equal(fundings.length, 5, "each of them funded a batch");
  t.equal(await changeNext(), before + 1, "one change key for the five, not one each");
  (te.engine.node as { rawCall: typeof raw }).rawCall = raw;
  t.same((await te.engine.payouts.state()).batches, {}, "nothing journalled");

  // The floor falls back: the payout goes out, its change to the key kept.
  await node.flush();
  await node.restart();
  const r = await te.engine.payouts.flush();
  if (isRefusal(r)) throw new Error(r.message);
  t.equal(r.batches, 1, "built once the mempool takes the rate");
  t.equal((await payoutStatus(te)).feeWait, null, "no longer waiting");
  const [b] = Object.values((await te.engine.payouts.state()).batches);
  const { vout } = await node.rpc<{ vout: Array<{ scriptPubKey: { address: string } }> }>("decoderawtransaction", [b!.hex]);
  const change = vout.map((o) => o.scriptPubKey.address).filter((a) => a !== dest);
  t.equal(change.length, 1, "one change output");
  const path = (await node.rpc<{ hdkeypath: string }>("getaddressinfo", [change[0]], "engine")).hdkeypath;
  t.match(path, new RegExp(`/1/${before}$`), `its change goes to the key the refused fundings took (${path})`);
  t.equal(await changeNext(), before + 1, "the chain moved by that one key in all");
  await te.mine(1);
  await te.engine.payouts.sync();
  t.equal((await withdrawalOf(te, key, quote.id)).w.status, "sent", "the withdrawal is sent");
  t.equal(await received(te, dest), 100_000n, "paid once");
  t.ok((await te.engine.watchdog())?.ok, "the books match the node");
});
