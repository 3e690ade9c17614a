// A stuck batch whose fee bump added an input, on a real regtest node: the node never took the replacement, a later
// batch spent the added coin and was mined. That spend kills the replacement only; the original version, which does
// not spend that coin, can still be mined. The release must spend what is still live of the original's coins back to
// the node's wallet first, so the users are never paid and given the amounts back.
import t from "tap";
import { isRefusal } from "../../src/domain/refusals.ts";
import { crashingEngine, fundedUser, received, withdraw, withdrawalOf } from "../support/payouts.ts";

t.test("release after a fee bump that added an input spent since by a later batch: the original is cancelled first; never paid and released", async (t) => {
  const { te, crash } = await crashingEngine();
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const u1 = await fundedUser(te, "p1", "0.5");
  await te.mine(1);
  const dest = await te.node.outsideAddress();
  // u1 withdraws everything: the batch has one input and no change, so a fee bump must add an input.
  const q0 = await te.engine.relay.quoteWithdrawal(u1, dest, "0.1");
  if (isRefusal(q0)) throw new Error(q0.message);
  const { quote } = await withdraw(te.engine.relay, u1, dest, `${50_000_000n - q0.fee} sats`);
  await te.engine.payouts.flush();
  const [batch, a] = Object.entries((await te.engine.payouts.state()).batches)[0]!;
  const aIn = (await te.node.rpc<{ vin: Array<{ txid: string; vout: number }> }>("decoderawtransaction", [a.hex], "engine")).vin;
  t.equal(aIn.length, 1, "the original spends one coin");
  // Another user's deposit, mined alone (A stays unconfirmed): a coin the bump can add.
  const u2 = "u_p2";
  await te.engine.relay.start(u2);
  const addr2 = await te.engine.relay.depositAddress(u2);
  if (isRefusal(addr2)) throw new Error(addr2.message);
  const ftx = await te.node.fund(addr2.address, "0.5");
  await te.node.rpc("generateblock", [await te.node.outsideAddress(), [ftx]]);
  await te.poke();
  // A dropped from the node's mempool (the fee floor rose, a restart): refused for its fee, it waits, broadcast.
  await te.node.flush();
  await te.node.restart(["-minrelaytxfee=0.0003", "-persistmempool=0"]);
  await te.engine.payouts.sync();
  t.match((await te.engine.payouts.state()).batches[batch], { status: "broadcast" });
  // The operator bumps; the engine dies right after journalling the replacement.
  crash.at = "bump_recorded";
  await te.engine.payouts.bump(batch, 60n).catch(() => undefined);
  t.equal(crash.hits, 1, "crashed with the replacement journalled, not sent");
  // The node comes back with a higher floor still; the engine restarts: the replacement is refused at its broadcast,
  // for its fee; the node's wallet never took it (its coins look free to the wallet): stuck, "release it".
  await te.node.flush();
  await te.node.restart(["-minrelaytxfee=0.001", "-persistmempool=0"]);
  await te.restart();
  const b1 = (await te.engine.payouts.state()).batches[batch]!;
  t.equal(b1.status, "stuck");
  t.match(b1.reason, /never had this version: release it/);
  t.same(b1.replaced, [a.txid], "the original is the version the bump replaced");
  const a2In = (await te.node.rpc<{ vin: Array<{ txid: string; vout: number }> }>("decoderawtransaction", [b1.hex], "engine")).vin;
  t.equal(a2In.length, 2, "the replacement added an input");
  const added = a2In.find((i) => !aIn.some((x) => x.txid === i.txid && x.vout === i.vout))!;
  // The next batch funds from the coin the bump had added (the node never took the replacement), and is mined; the
  // block's sync sends the replacement again, refused now for that spend: stuck.
  await withdraw(te.engine.relay, u2, await te.node.outsideAddress(), "0.1");
  await te.engine.payouts.flush();
  await te.mine(1);
  t.equal(await te.node.rpc("gettxout", [added.txid, added.vout, false], "engine"), null, "the added coin is spent in a block");
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "stuck", "the replacement can never be mined now: stuck");
  t.not(await te.node.rpc("gettxout", [aIn[0]!.txid, aIn[0]!.vout, true], "engine"), null, "the original's coin is unspent: it can still be mined");

  const r = await te.engine.payouts.release(batch, 110n, "never taken by the node");
  if (isRefusal(r)) throw new Error(r.message);
  t.equal(r.status, "cancelling");
  t.ok(r.txid, "a cancellation is made: the spend of the added coin does not prove the original dead");
  t.equal(await te.node.rpc("gettxout", [aIn[0]!.txid, aIn[0]!.vout, true], "engine"), null, "the original's coin is spent by the cancellation");
  await te.mine(1);
  await te.engine.payouts.sync();
  t.equal((await te.engine.payouts.state()).batches[batch]!.status, "released", "released once the cancellation is deep enough");
  const w = await withdrawalOf(te, u1, quote.id);
  t.same([w.w.status, w.available, w.reserved], ["released", 50_000_000n, 0n], "u1 has it all back, once");

  // The original reaches the node again (another node's mempool kept it): it can never be mined now.
  await te.node.flush();
  await te.node.restart([]);
  const again = await te.node.rpc("sendrawtransaction", [a.hex]).then(() => "accepted", (e: Error) => `refused: ${e.message}`);
  t.match(again, /^refused/, "the original is refused: its coin is spent by the cancellation, in a block");
  await te.mine(1);
  t.equal(await received(te, dest), 0n, "the destination was never paid");
  t.equal((await te.engine.solvency()).surplus, -(r.fee ?? 0n), "the books equal the node's, but for the cancellation's fee, which the service pays");
});
