// A confirmed payout batch taken out of the chain by a reorg, on a real regtest node: its users were told they were
// paid. A one-block reorg at the default target (1) happens: back in the node's mempool, it is a warning (mined again,
// usually at the next block), an alert only if it stays out of a block 6 blocks — and never advice to pay by hand
// while it can still be mined (that pays its users twice once it is). Conflicted by a block, it never will be mined:
// operators are told to check the conflicting transaction, then pay again. Each finding once, never at every block.
import t from "tap";
import { startTestEngine } from "../support/engine.ts";
import { sentBatch, withdrawalOf } from "../support/payouts.ts";
import { createLogger } from "../../src/log.ts";

type Line = { alert?: boolean; level: number; msg: string; batch?: string; txid?: string; conflicts?: string[] };

t.test("a confirmed batch reorged out by one block: a warning back in the mempool, an alert if still unmined 6 blocks later, another when a block conflicts with it; never at every block", async (t) => {
  const lines: Line[] = [];
  const log = createLogger({ level: "warn", destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
  const te = await startTestEngine({}, { log });
  t.teardown(() => te.stop());
  t.equal(te.config.deposits.confirmations, 1, "the default target");
  const { key, quote, batch, b } = await sentBatch(te, "reorged", "0.05");
  await te.mine(1);
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "confirmed", "one block deep: confirmed (the target is 1)");
  t.equal((await withdrawalOf(te, key, quote.id)).w.status, "sent", "the user is told it is sent");
  const ours = () => lines.filter((l) => l.batch === batch && /confirmed payout batch/.test(l.msg));
  const alerts = () => ours().filter((l) => l.alert);
  t.same(ours(), [], "nothing to say while it is in its block");

  // The block with the batch taken away (a one-block reorg): its transaction goes back to the node's mempool.
  const { blockhash } = await te.node.rpc<{ blockhash: string }>("gettransaction", [b.txid], "engine");
  await te.node.rpc("invalidateblock", [blockhash]);
  await te.engine.payouts.sync();
  await te.engine.payouts.sync();
  t.same(alerts(), [], "no alert: it can still be mined");
  t.equal(ours().length, 1, "one warning, for two syncs");
  t.match(ours()[0], { level: 40, txid: b.txid, msg: /back in the node's mempool: it is paid once mined again, usually at the next block; operators are alerted if it is not within 6 blocks/ });
  t.notMatch(ours()[0]!.msg, /deeper than the confirmation target/, "nothing about a depth it did not have");

  // Blocks without it (a miner ignoring it, a fee market that moved): five more are still a warning's matter.
  const empty = async () => te.node.rpc("generateblock", [await te.node.outsideAddress(), []]);
  for (let i = 0; i < 5; i++) {
    await empty();
    await te.engine.payouts.sync();
  }
  t.same(alerts(), [], "5 blocks out of the chain: no alert yet");
  await empty();
  await te.engine.payouts.sync();
  await te.engine.payouts.sync();
  t.equal(alerts().length, 1, "6 blocks: one alert, for two syncs");
  t.match(alerts()[0], { txid: b.txid, msg: /still in no block 6 blocks later: its users were told they were paid and are not until it is mined\. It can still be mined, so do not pay its payouts again by hand/ });
  t.equal(ours().length, 2, "and nothing else");

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
  t.match(conflicted[0], { alert: true, txid: b.txid, msg: /can never be mined while that block stands: its users were told they were paid\. Check the conflicting transaction first: if it pays the batch's payouts \(a fee bump made on the node\), they are paid; if not, pay each payout again by hand or give its amount back/ });
  t.equal(conflicted[0]!.conflicts?.length, 1, "it names the conflicting transaction");
  t.same(ours().filter((l) => /still so/.test(l.msg)), [], "never repeated (the engine's alerter would log a repeat as 'still so')");
  t.same(ours().filter((l) => !/conflicts with a transaction in a block/.test(l.msg) && /pay each payout again|pay .* again by hand/.test(l.msg.replace(/do not pay its payouts again by hand/, ""))), [], "paying by hand is advised only once it can never be mined");
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "confirmed", "the book does not pretend otherwise");
});
