// A confirmed payout batch taken out of the chain by a reorg deeper than the confirmation target, on a real regtest
// node: its users were told they were paid. Operators are alerted, once per finding (not at every block), and told
// what to do: back in the mempool, watch it; conflicted by a block, it never will be mined: pay again by hand.
import t from "tap";
import { startTestEngine } from "../support/engine.ts";
import { sentBatch, withdrawalOf } from "../support/payouts.ts";
import { createLogger } from "../../src/log.ts";

type Line = { alert?: boolean; msg: string; batch?: string; txid?: string; conflicts?: string[] };

t.test("a confirmed batch reorged out: alerted once back in the mempool, once more when a block conflicts with it; never at every block", async (t) => {
  const lines: Line[] = [];
  const log = createLogger({ level: "warn", destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
  const te = await startTestEngine({}, { log });
  t.teardown(() => te.stop());
  const { key, quote, batch, b } = await sentBatch(te, "reorged", "0.05");
  await te.mine(1);
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "confirmed", "one block deep: confirmed (the target is 1)");
  t.equal((await withdrawalOf(te, key, quote.id)).w.status, "sent", "the user is told it is sent");
  const ours = () => lines.filter((l) => l.batch === batch && /confirmed payout batch/.test(l.msg));
  t.same(ours(), [], "nothing to say while it is in its block");

  // The block with the batch taken away: its transaction goes back to the node's mempool.
  const { blockhash } = await te.node.rpc<{ blockhash: string }>("gettransaction", [b.txid], "engine");
  await te.node.rpc("invalidateblock", [blockhash]);
  await te.engine.payouts.sync();
  await te.engine.payouts.sync();
  t.equal(ours().length, 1, "one alert, for two syncs");
  t.match(ours()[0], { alert: true, txid: b.txid, msg: /back in the node's mempool: its users were told they were paid and are not until it is mined again\. Watch its transaction/ }, "back in the mempool, and what to do");

  // A block in its place spends the batch's coin to someone else: the batch can never be mined.
  const input = (await te.node.rpc<{ vin: Array<{ txid: string; vout: number }> }>("decoderawtransaction", [b.hex], "engine")).vin[0]!;
  const prev = await te.node.rpc<{ hex: string }>("gettransaction", [input.txid], "engine");
  const value = (await te.node.rpc<{ vout: Array<{ value: number }> }>("decoderawtransaction", [prev.hex], "engine")).vout[input.vout]!.value;
  const raw = await te.node.rpc<string>("createrawtransaction", [[input], [{ [await te.node.outsideAddress()]: (value - 0.001).toFixed(8) }]], "engine");
  const { hex } = await te.node.rpc<{ hex: string }>("signrawtransactionwithwallet", [raw], "engine");
  await te.node.rpc("generateblock", [await te.node.outsideAddress(), [hex]]);
  await te.poke();
  await te.mine(1);
  await te.engine.payouts.sync();
  const conflicted = ours().filter((l) => /conflicts with a transaction in a block/.test(l.msg));
  t.equal(conflicted.length, 1, "one alert more: conflicted, not one per block");
  t.match(conflicted[0], { alert: true, txid: b.txid, msg: /can never be mined: its users were told they were paid and are not\. Check the conflicting transaction, then pay each payout again by hand or give its amount back/ });
  t.equal(conflicted[0]!.conflicts?.length, 1, "it names the conflicting transaction");
  t.same(ours().filter((l) => /still so/.test(l.msg)), [], "never repeated (the engine's alerter would log a repeat as 'still so')");
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "confirmed", "the book does not pretend otherwise");
});
