// A confirmed payout batch that a reorg took out of the chain and that is then in no block and not in the node's
// mempool (dropped: the node restarted without its mempool, its fee floor rose), on a real regtest node. It is still
// valid: the engine sends the same transaction again itself, with a warning; operators are alerted only if the node
// refuses it, and told not to pay by hand (the transaction can still be mined: that would pay its users twice).
import t from "tap";
import { startTestEngine } from "../support/engine.ts";
import { received, sentBatch } from "../support/payouts.ts";
import { createLogger } from "../../src/log.ts";

type Line = { alert?: boolean; level: number; msg: string; batch?: string; txid?: string; why?: string };

t.test("a confirmed batch reorged out and dropped: sent again by the engine; an alert only while the node refuses it, never advice to pay by hand", async (t) => {
  const lines: Line[] = [];
  const log = createLogger({ level: "warn", destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
  const te = await startTestEngine({}, { log });
  t.teardown(() => te.stop());
  const { dest, batch, b } = await sentBatch(te, "dropped", "0.05");
  await te.mine(1);
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "confirmed");
  const ours = () => lines.filter((l) => l.batch === batch && /confirmed payout batch/.test(l.msg));
  const alerts = () => ours().filter((l) => l.alert);
  const pooled = () => te.node.rpc("getmempoolentry", [b.txid]).then(() => true, () => false);

  // Its block taken away, then the node restarts without its mempool and with a fee floor above the batch's: the
  // wallet's own resubmission at load is refused, and so is the engine's.
  const { blockhash } = await te.node.rpc<{ blockhash: string }>("gettransaction", [b.txid], "engine");
  await te.node.rpc("invalidateblock", [blockhash]);
  await te.node.flush();
  await te.node.restart(["-minrelaytxfee=0.0003", "-persistmempool=0"]);
  t.equal((await te.node.rpc<{ confirmations: number }>("gettransaction", [b.txid], "engine")).confirmations, 0, "in no block (its block is still invalid)");
  t.notOk(await pooled(), "and not in the node's mempool");
  await te.engine.payouts.sync();
  await te.engine.payouts.sync();
  t.equal(alerts().length, 1, "one alert, for two syncs: the node refuses to take it again");
  t.match(alerts()[0], { txid: b.txid, why: /^-26: .*fee/, msg: /the node refuses to take it again: its users were told they were paid and are not until it is mined\. It is still valid \(other nodes may hold it\), so do not pay its payouts again by hand/ });

  // The floor back to normal; the wallet does not resubmit (walletbroadcast=0): only the engine can send it now.
  await te.node.flush();
  await te.node.restart(["-persistmempool=0", "-walletbroadcast=0"]);
  t.notOk(await pooled(), "still dropped");
  await te.engine.payouts.sync();
  t.ok(await pooled(), "the engine sent it again: in the node's mempool");
  await te.engine.payouts.sync();
  t.equal(alerts().length, 1, "no new alert");
  const sent = ours().filter((l) => /sent again/.test(l.msg));
  t.equal(sent.length, 1, "a warning that it was sent again");
  t.match(sent[0], { level: 40, txid: b.txid, msg: /in no block and not in the node's mempool: sent again \(the same transaction, from the node's wallet\)/ });
  t.equal(ours().filter((l) => /back in the node's mempool/.test(l.msg)).length, 1, "then one warning that it is in the mempool");

  // To a new address: the block as it was (same coinbase, same transaction) would be the invalidated one again.
  await te.node.mine(1, await te.node.outsideAddress());
  await te.engine.payouts.sync();
  t.equal(ours().filter((l) => /in a block again/.test(l.msg)).length, 1, "mined again: said once");
  t.equal(alerts().length, 1, "no other alert in all");
  t.same(ours().filter((l) => /pay each payout again|pay .* again by hand/.test(l.msg.replace(/do not pay its payouts again by hand/, ""))), [], "never told to pay by hand");
  t.equal(await received(te, dest), 5_000_000n, "paid once");
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "confirmed");
});

t.test("a confirmed batch reorged out, dropped, and abandoned on the node by an operator: never sent again by the engine; one alert", async (t) => {
  const lines: Line[] = [];
  const log = createLogger({ level: "warn", destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
  const te = await startTestEngine({}, { log });
  t.teardown(() => te.stop());
  const { batch, b } = await sentBatch(te, "abandoned", "0.05");
  await te.mine(1);
  const alerts = () => lines.filter((l) => l.batch === batch && l.alert);
  const pooled = () => te.node.rpc("getmempoolentry", [b.txid]).then(() => true, () => false);
  const { blockhash } = await te.node.rpc<{ blockhash: string }>("gettransaction", [b.txid], "engine");
  await te.node.rpc("invalidateblock", [blockhash]);
  await te.node.flush();
  // Without its mempool, and a wallet that does not resubmit by itself: in no block, nowhere, until someone sends it.
  await te.node.restart(["-persistmempool=0", "-walletbroadcast=0"]);
  t.notOk(await pooled(), "dropped");
  // The operator, having paid its payouts another way, abandons it on the node.
  await te.node.rpc("abandontransaction", [b.txid], "engine");
  await te.engine.payouts.sync();
  await te.engine.payouts.sync();
  t.notOk(await pooled(), "the engine did not send it again");
  t.equal(alerts().length, 1, "one alert for two syncs");
  t.match(alerts()[0], { txid: b.txid, msg: /abandoned on the node \(abandontransaction\): the engine does not send it again/ });
});
