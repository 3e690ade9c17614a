// From a deposit on chain to a balance the user can trust: real regtest bitcoind, real store, real actors.
import t from "tap";
import { renameSync } from "node:fs";
import { join } from "node:path";
import { startTestEngine, type TestEngine } from "../support/engine.ts";
import { isRefusal } from "../../src/domain/refusals.ts";
import { enginePort } from "../../src/edges/admin/engine-port.ts";
import { createLogger } from "../../src/log.ts";
import { ownerLabel } from "../../src/actors/owner-label.ts";

async function user(te: TestEngine, name: string): Promise<{ key: string; address: string }> {
  const key = `u_${name}`;
  const opened = await te.engine.relay.start(key);
  if (isRefusal(opened)) throw new Error(opened.message);
  const a = await te.engine.relay.depositAddress(key);
  if (isRefusal(a)) throw new Error(a.message);
  // The owner's label is not awaited by /deposit; it goes ahead of the node actor's queued calls, so it has landed once
  // a call made after it is answered (a test that relabels the address must not race it).
  await te.engine.node.call("getblockcount");
  return { key, address: a.address };
}

async function balance(te: TestEngine, key: string) {
  const b = await te.engine.relay.balance(key);
  if (isRefusal(b)) throw new Error(b.message);
  return [b.available, b.pending, b.reserved];
}

t.test("deposit → pending → confirmed → available, exactly once, across restarts between steps", async (t) => {
  const te = await startTestEngine({ deposits: { confirmations: 2 } });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const alice = await user(te, "alice");
  t.match(alice.address, /^bcrt1q/);
  t.same((await te.engine.relay.depositAddress(alice.key)) as object, { address: alice.address }, "an unused address is reused");
  await te.node.fund(alice.address, "0.5");
  await te.restart({ crash: true });
  await te.poke();
  t.same(await balance(te, alice.key), [0n, 50_000_000n, 0n], "pending after a crash before the first scan");
  await te.restart();
  await te.mine(1);
  t.same(await balance(te, alice.key), [0n, 50_000_000n, 0n], "one confirmation of two: still pending");
  await te.restart({ crash: true });
  await te.mine(1);
  t.same(await balance(te, alice.key), [50_000_000n, 0n, 0n], "confirmed at the target");
  await te.restart();
  await te.poke();
  await te.mine(3);
  t.same(await balance(te, alice.key), [50_000_000n, 0n, 0n], "never credited twice");
  const h = await te.engine.relay.history(alice.key, 0);
  t.ok(!isRefusal(h) && h.total === 1 && h.entries[0]!.status === "confirmed");
  t.not((await te.engine.relay.depositAddress(alice.key) as { address: string }).address, alice.address, "a used address is not handed out again");
});

t.test("two deposits to one address, one tx paying two users, dust, and an unrelated wallet tx", async (t) => {
  const te = await startTestEngine({ deposits: { confirmations: 1 } });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const a = await user(te, "a");
  const b = await user(te, "b");
  const notices: Array<{ userKey: string; notice: { kind: string } }> = [];
  te.engine.relay.onNotification((n) => void notices.push(n));
  await te.node.fund(a.address, "0.1");
  await te.node.fund(a.address, "0.2");
  await te.node.rpc("send", [{ [a.address]: 0.01, [b.address]: 0.02 }], "outside");
  const dustTx = await te.node.fund(b.address, "0.00000300");
  const dustVout = (await te.node.rpc<{ details: Array<{ address: string; vout: number }> }>("gettransaction", [dustTx], "engine")).details.find((d) => d.address === b.address)!.vout;
  const own = await te.node.rpc<string>("getnewaddress", ["", "bech32"], "engine");
  await te.node.fund(own, "0.7");
  await te.mine(1);
  t.same(await balance(te, a.key), [31_000_000n, 0n, 0n], "0.1 + 0.2 + 0.01");
  t.same(await balance(te, b.key), [2_000_000n, 0n, 0n], "0.02; the 300-sat dust is not credited");
  t.equal(te.engine.watcher.stats.ignoredDust, 1);
  // Not credited, but not without a word: its user is told, and their history shows it (0 to their total).
  t.same(notices.filter((n) => n.notice.kind === "deposit_ignored").map((n) => [n.userKey, n.notice]), [[b.key, { kind: "deposit_ignored", amount: 300n, txid: dustTx, minimum: 546n }]], "the dust's user is told once, with the minimum");
  const h = await te.engine.relay.history(b.key, 0);
  if (isRefusal(h)) throw new Error(h.message);
  t.same(h.entries.map((e) => [e.kind, e.amount, e.status]).sort(), [["deposit", 0n, "ignored"], ["deposit", 2_000_000n, "confirmed"]], "the dust has its history entry, amount 0");
  t.equal(h.entries.find((e) => e.status === "ignored")!.ref, `${dustTx}:${dustVout}`);
  const height = await te.node.rpc<number>("getblockcount", []);
  await te.engine.watcher.rescanFrom(height);
  await te.restart({ crash: true });
  await te.engine.watcher.rescanFrom(height);
  const again = await te.engine.relay.history(b.key, 0);
  t.equal(!isRefusal(again) && again.total, 2, "scanned again, also after a crash: one entry, once");
  t.same(await balance(te, b.key), [2_000_000n, 0n, 0n], "and still not credited");
  t.ok(te.engine.watcher.stats.unrelated >= 1, "the unrelated wallet tx was skipped");
  const liab = await te.engine.liabilities();
  t.equal(liab.available, 33_000_000n, "the balance projection sums to the wallets");
});

t.test("a block paying one wallet more outputs than it takes commands at once: all credited in one scan, each once", async (t) => {
  const te = await startTestEngine({ deposits: { confirmations: 1 }, wallet: { maxInFlight: 2 } });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const a = await user(te, "many");
  for (let i = 1; i <= 6; i++) await te.node.fund(a.address, `0.0${i}`);
  await te.mine(1);
  t.equal(te.engine.watcher.stats.incompleteScans, 0, "no scan was left incomplete by a wallet refusing as busy");
  t.same(await balance(te, a.key), [21_000_000n, 0n, 0n], "0.01 + 0.02 + … + 0.06");
  await te.engine.watcher.rescanFrom(await te.node.rpc<number>("getblockcount", []));
  t.same(await balance(te, a.key), [21_000_000n, 0n, 0n], "scanned again: credited once");
});

t.test("one wallet paid more unconfirmed outputs than it may hold: the rest wait for their confirmations, the scan completes, each credited once", async (t) => {
  const lines: Array<Record<string, unknown> & { msg: string }> = [];
  const te = await startTestEngine({ deposits: { confirmations: 2, maxPendingPerWallet: 3 } },
    { log: createLogger({ level: "warn", destination: { write: (l: string) => void lines.push(JSON.parse(l)) } }) });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const a = await user(te, "flooded");
  // Six transactions (bitcoind pays an address once per transaction), 0.01 … 0.06 BTC.
  const txids: string[] = [];
  for (let i = 1; i <= 6; i++) txids.push(await te.node.fund(a.address, `0.0${i}`));
  const pendingState = async () => {
    const st = await te.engine.registry.send(a.key, "state", {});
    if (isRefusal(st)) throw new Error(st.message);
    return { held: Object.keys(st.deposits).length, sum: Object.values(st.deposits).reduce((x, d) => x + d.amount, 0n) };
  };
  t.equal(await te.engine.watcher.poke(), true, "the scan completes: a deposit held back is no failure");
  t.equal(await te.engine.watcher.poke(), true, "and the next one");
  const first = await pendingState();
  t.equal(first.held, 3, "the wallet holds exactly three pending");
  t.same(await balance(te, a.key), [0n, first.sum, 0n], "its pending balance is theirs");
  t.equal(te.engine.watcher.stats.heldBack, 3, "three held back, counted once each");
  t.equal(te.engine.watcher.stats.incompleteScans + te.engine.watcher.stats.failedScans, 0);
  const said = lines.filter((l) => /maxPendingPerWallet/.test(l.msg));
  t.equal(said.length, 3, "said once per output, though two scans listed them");
  for (const l of said) {
    t.equal(l.userKey, a.key, "naming the wallet");
    const text = JSON.stringify(l);
    t.notOk(["amount", "txid", "outpoint", "address"].some((k) => k in l) || txids.some((x) => text.includes(x)) || text.includes(a.address),
      "and nothing else: no amount, txid or address beside the user key");
  }

  await te.node.mine(1);
  t.equal(await te.engine.watcher.poke(), true, "one confirmation of two: the scan completes");
  t.equal((await pendingState()).held, 3, "still three pending; the rest still wait");
  t.equal((await balance(te, a.key))[0], 0n, "nothing available yet");

  await te.node.mine(1);
  t.equal(await te.engine.watcher.poke(), true);
  t.same(await balance(te, a.key), [21_000_000n, 0n, 0n], "at the target all six are available: 0.01 + … + 0.06, to the satoshi");
  t.equal((await pendingState()).held, 0, "none left in the state");
  const h = await te.engine.relay.history(a.key, 0, 10);
  if (isRefusal(h)) throw new Error(h.message);
  t.equal(h.total, 6, "six history entries, each deposit once");
  t.same(h.entries.map((e) => [e.status, e.amount]).sort((x, y) => Number((x[1] as bigint) - (y[1] as bigint))),
    [1, 2, 3, 4, 5, 6].map((i) => ["confirmed", BigInt(i) * 1_000_000n]), "each confirmed, with its amount");
  t.equal(te.engine.watcher.stats.heldBack, 3, "none held back again");
  await te.engine.watcher.rescanFrom(await te.node.rpc<number>("getblockcount", []) - 2);
  await te.mine(1);
  t.same(await balance(te, a.key), [21_000_000n, 0n, 0n], "scanned again and mined on: credited once");
});

/**
 * The outside party double-spends one of its own unconfirmed payments: the same inputs, paid back to itself
 * with a higher fee (a real RBF replacement, as an attacker or a wallet "cancel" would do).
 */
async function doubleSpend(te: TestEngine, txid: string): Promise<string> {
  const tx = await te.node.rpc<{ hex: string; fee: number }>("gettransaction", [txid], "outside");
  const decoded = await te.node.rpc<{ vin: Array<{ txid: string; vout: number }>; vout: Array<{ value: number }> }>("decoderawtransaction", [tx.hex]);
  const inSats = decoded.vout.reduce((s, o) => s + Math.round(o.value * 1e8), 0) + Math.round(-tx.fee * 1e8);
  const back = await te.node.outsideAddress();
  const raw = await te.node.rpc<string>("createrawtransaction", [decoded.vin.map((i) => ({ txid: i.txid, vout: i.vout })), { [back]: (inSats - 100_000) / 1e8 }]);
  const signed = await te.node.rpc<{ hex: string }>("signrawtransactionwithwallet", [raw], "outside");
  return te.node.rpc<string>("sendrawtransaction", [signed.hex]);
}

t.test("reorgs and double spends: a pending deposit leaves; a confirmed one that leaves freezes the wallet", async (t) => {
  const te = await startTestEngine({ deposits: { confirmations: 2 } });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const c = await user(te, "c");
  // A deposit one block deep (below the target of two) whose block is orphaned, then double-spent.
  const first = await te.node.fund(c.address, "0.3");
  await te.mine(1);
  t.same(await balance(te, c.key), [0n, 30_000_000n, 0n], "pending at one confirmation");
  await te.node.rpc("invalidateblock", [await te.node.rpc<string>("getbestblockhash")]);
  await doubleSpend(te, first);
  await te.mine(3);
  t.same(await balance(te, c.key), [0n, 0n, 0n], "the pending deposit left the balance; nothing was credited");
  t.equal(te.engine.watcher.stats.dropped, 1);
  // A deposit past the target whose blocks are orphaned, then double-spent: a reorg deeper than the target.
  const second = await te.node.fund(c.address, "0.2");
  await te.mine(2);
  t.same(await balance(te, c.key), [20_000_000n, 0n, 0n], "confirmed at the target");
  const height = await te.node.rpc<number>("getblockcount");
  await te.node.rpc("invalidateblock", [await te.node.rpc<string>("getblockhash", [height - 1])]);
  await doubleSpend(te, second);
  await te.mine(3);
  const st = await te.engine.registry.send(c.key, "state", {});
  t.ok(!isRefusal(st) && st.frozen, "frozen for operator review");
  t.same(await balance(te, c.key), [20_000_000n, 0n, 0n], "not silently taken back: the books now show the hole");
  t.equal(te.engine.watcher.stats.deepReorgs, 1, "reported to operators");
});

t.test("a pending deposit whose parent is replaced leaves the node's mempool, never conflicted in its wallet: dropped, not pending forever", async (t) => {
  const te = await startTestEngine({ deposits: { confirmations: 1, mempoolGraceMs: 0 } });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const u = await user(te, "orphan");
  // The payer pays itself (P), then the user from P's unconfirmed output (D).
  const own = await te.node.outsideAddress();
  const parent = await te.node.fund(own, "1");
  const decoded = await te.node.rpc<{ vout: Array<{ n: number; scriptPubKey: { address?: string } }> }>("decoderawtransaction", [(await te.node.rpc<{ hex: string }>("gettransaction", [parent], "outside")).hex]);
  const vout = decoded.vout.find((o) => o.scriptPubKey.address === own)!.n;
  const raw = await te.node.rpc<string>("createrawtransaction", [[{ txid: parent, vout }], [{ [u.address]: 0.5 }, { [await te.node.outsideAddress()]: 0.4999 }]]);
  await te.node.rpc("sendrawtransaction", [(await te.node.rpc<{ hex: string }>("signrawtransactionwithwallet", [raw], "outside")).hex]);
  await te.poke();
  t.same(await balance(te, u.key), [0n, 50_000_000n, 0n], "pending");
  // P is replaced (its inputs paid elsewhere at a higher fee): D leaves the mempool with it. The engine's wallet does
  // not know P, so it never marks D conflicted: it stays at 0 confirmations, listed at every scan.
  await doubleSpend(te, parent);
  await te.poke();
  t.same(await balance(te, u.key), [0n, 0n, 0n], "dropped once it is missing from the mempool");
  await te.mine(2);
  t.same(await balance(te, u.key), [0n, 0n, 0n], "and not credited again at the next scans");
  t.equal(te.engine.watcher.stats.dropped, 1);
  const h = await te.engine.relay.history(u.key, 0);
  if (isRefusal(h)) throw new Error(h.message);
  t.match(h.entries, [{ status: "dropped", amount: 0n }], "the history shows it dropped, adding nothing to the total");
  // Found by a review: the watcher remembered the drop in memory only, so every restart credited it as pending again
  // (a "deposit seen" notice, a new history entry, an hour of pending, then dropped again).
  await te.restart();
  await te.poke();
  await te.poke();
  t.same(await balance(te, u.key), [0n, 0n, 0n], "a restart does not bring it back");
  const again = await te.engine.relay.history(u.key, 0);
  if (isRefusal(again)) throw new Error(again.message);
  t.equal(again.total, 1, "nor a second history entry");
});

t.test("a block's coinbase paying a deposit address: not credited, and operators are told once", async (t) => {
  const lines: Array<{ alert?: boolean; msg: string; userKey?: string }> = [];
  const te = await startTestEngine({ deposits: { confirmations: 1 } }, { log: createLogger({ level: "warn", destination: { write: (l: string) => void lines.push(JSON.parse(l)) } }) });
  t.teardown(() => te.stop());
  const u = await user(te, "miner");
  await te.node.rpc("generatetoaddress", [1, u.address]);
  await te.poke();
  await te.mine(1);
  t.same(await balance(te, u.key), [0n, 0n, 0n], "not credited");
  const alerts = lines.filter((l) => l.alert && /coinbase/.test(l.msg));
  t.equal(alerts.length, 1, "one alert, though two scans listed it");
  t.match(alerts[0], { userKey: u.key }, "naming the wallet");
});

t.test("a deposit to an address whose owner record was lost (a store restored from before it): credited to the owner the node's label names, with an alert", async (t) => {
  const lines: Array<{ alert?: boolean; msg: string; userKey?: string }> = [];
  const te = await startTestEngine({ deposits: { confirmations: 1 } }, { log: createLogger({ level: "warn", destination: { write: (l: string) => void lines.push(JSON.parse(l)) } }) });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const u = await user(te, "lost");
  // The node wallet's label of the address does not show its owner to whoever reads the node's files.
  const info = await te.node.rpc<{ labels: string[] }>("getaddressinfo", [u.address], "engine");
  t.equal(info.labels.length, 1);
  t.notOk(info.labels[0]!.includes(u.key), "the label is sealed, not the user key");
  // A label from before labels were sealed (the user key in clear) is sealed at the next start.
  await te.node.rpc("setlabel", [u.address, u.key], "engine");
  await te.engine.storage.store.del("addr", te.engine.storage.mac("address", u.address));
  // And one whose sealed label does not open (its key gone from the ring, or altered): said, not guessed.
  const v = await user(te, "garbled");
  await te.node.rpc("setlabel", [v.address, "rg1:" + "A".repeat(60)], "engine");
  await te.engine.storage.store.del("addr", te.engine.storage.mac("address", v.address));
  await te.restart();
  await te.engine.labelsSealed;
  const relabelled = (await te.node.rpc<{ labels: string[] }>("getaddressinfo", [u.address], "engine")).labels;
  t.equal(relabelled.length, 1);
  t.notOk(relabelled[0]!.includes(u.key), "an old clear label is sealed at start");
  t.equal(await te.engine.watcher.ownerOf(u.address), undefined, "the owner index does not know the address");
  await te.node.fund(u.address, "0.2");
  await te.mine(1);
  t.same(await balance(te, u.key), [20_000_000n, 0n, 0n], "credited to its owner");
  t.equal(await te.engine.watcher.ownerOf(u.address), u.key, "and the owner recorded again");
  t.match(lines.filter((l) => l.alert && /no owner record/.test(l.msg)), [{ userKey: u.key }], "operators are told");
  await te.node.fund(v.address, "0.1");
  await te.mine(1);
  await te.engine.watcher.poke();
  t.same(await balance(te, v.key), [0n, 0n, 0n], "a label that does not open credits no one");
  t.equal(lines.filter((l) => l.alert && /owner label cannot be opened/.test(l.msg)).length, 1, "and operators are told, once");
  // An address of the node's wallet no user was given: no one's, said once.
  const unowned = lines.filter((l) => /no user owns/.test(l.msg)).length;
  await te.node.fund(await te.node.rpc<string>("getnewaddress", ["", "bech32"], "engine"), "0.1");
  await te.mine(1);
  await te.engine.watcher.poke();
  t.equal(lines.filter((l) => /no user owns/.test(l.msg)).length - unowned, 1, "a house float payment: one warning");
});

t.test("an owner taken back from the node's label whose wallet is busy: the scan repeats until every deposit is credited; one the restored store lacks is opened again", async (t) => {
  // Found by a review: a busy wallet made the deposit "no one's", the scan complete, and the cursor pass it for good
  // (1 of 6 credited). Two commands in flight per wallet at most, and six outputs to its address in one block.
  const te = await startTestEngine({ deposits: { confirmations: 1 }, wallet: { maxInFlight: 2 } });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const u = await user(te, "lostowner");
  await te.engine.storage.store.del("addr", te.engine.storage.mac("address", u.address));
  // A user given an address after the backup the store was restored from: the label names them, the store has no wallet.
  const later = "u_openedafterbackup";
  const laterAddress = await te.node.rpc<string>("getnewaddress", ["", "bech32"], "engine");
  await te.node.rpc("setlabel", [laterAddress, ownerLabel(te.engine.storage.store, laterAddress, later)], "engine");
  await te.restart();
  await te.engine.labelsSealed;
  for (let i = 1; i <= 6; i++) await te.node.fund(u.address, `0.0${i}`);
  await te.node.fund(laterAddress, "0.3");
  await te.node.mine(1);
  for (let i = 0; i < 20 && !(await te.engine.watcher.poke()); i++);
  t.same(await balance(te, u.key), [21_000_000n, 0n, 0n], "all six credited, each once");
  t.same(await balance(te, later), [30_000_000n, 0n, 0n], "the wallet the restored store lacked is opened again and credited");
  t.equal(te.engine.watcher.stats.unrelated, 0, "none written off as no one's");
  await te.mine(2);
  t.same(await balance(te, u.key), [21_000_000n, 0n, 0n], "and never again");
});

t.test("a node in initial block download (rebuilding or catching up): no deposit scan until it has caught up, said once", async (t) => {
  const lines: Array<{ msg: string }> = [];
  const te = await startTestEngine({ deposits: { confirmations: 1 } }, { log: createLogger({ level: "warn", destination: { write: (l: string) => void lines.push(JSON.parse(l)) } }) });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const u = await user(te, "syncing");
  await te.node.fund(u.address, "0.1");
  await te.mine(1);
  t.same(await balance(te, u.key), [10_000_000n, 0n, 0n]);
  // The node starts again with its clock three days ahead: its tip looks three days old, so it is in initial block download.
  await te.node.flush();
  await te.node.restart([`-mocktime=${Math.floor(Date.now() / 1000) + 3 * 86_400}`]);
  t.equal(await te.engine.watcher.poke(), false, "the scan waits");
  t.equal(await te.engine.watcher.poke(), false, "and waits");
  t.equal(lines.filter((l) => /still syncing/.test(l.msg)).length, 1, "said once");
  await te.node.mine(1); // a block at the node's own time: it has caught up
  t.equal(await te.engine.watcher.poke(), true, "caught up: the scan runs");
  t.same(await balance(te, u.key), [10_000_000n, 0n, 0n], "nothing moved meanwhile");
});

t.test("a reorg that mines a confirmed deposit again in the block that replaces its own: still confirmed, nothing frozen", async (t) => {
  const te = await startTestEngine({ deposits: { confirmations: 1 } });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const e = await user(te, "e");
  const txid = await te.node.fund(e.address, "0.25");
  await te.mine(1);
  t.same(await balance(te, e.key), [25_000_000n, 0n, 0n], "confirmed at the target of one");
  const orphaned = await te.node.rpc<string>("getbestblockhash");
  await te.node.rpc("invalidateblock", [orphaned]);
  // The next block takes the deposit from the mempool: the node lists it both as removed (with its block) and as
  // confirmed again (listsinceblock's "removed" keeps transactions mined again, with their new confirmations). Its
  // coinbase pays another address, or it would be the invalidated block again.
  await te.node.mine(1, await te.node.outsideAddress());
  await te.poke();
  const tx = await te.node.rpc<{ blockhash?: string; confirmations: number }>("gettransaction", [txid], "outside");
  t.ok(tx.confirmations === 1 && tx.blockhash !== orphaned, "mined again in another block");
  const st = await te.engine.registry.send(e.key, "state", {});
  t.ok(!isRefusal(st) && !st.frozen, "the wallet is not frozen");
  t.same(await balance(te, e.key), [25_000_000n, 0n, 0n], "and the deposit is still credited once");
  t.equal(te.engine.watcher.stats.deepReorgs, 0, "no deep reorg reported");
  t.equal(te.engine.watcher.stats.remined, 1, "the deposit mined again is counted");
});

t.test("an RBF replacement that still pays the user is counted once", async (t) => {
  const te = await startTestEngine({ deposits: { confirmations: 1 } });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const d = await user(te, "d");
  const txid = await te.node.fund(d.address, "0.4");
  await te.poke();
  t.same(await balance(te, d.key), [0n, 40_000_000n, 0n]);
  await te.node.rpc("bumpfee", [txid], "outside");
  await te.mine(1);
  t.same(await balance(te, d.key), [40_000_000n, 0n, 0n], "the replaced tx left, its replacement was credited: 0.4 once");
});

t.test("bitcoind stopped mid-run and started again: the scan waits, resumes, and credits once", async (t) => {
  const te = await startTestEngine({ deposits: { confirmations: 1 } });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const e = await user(te, "e");
  await te.node.fund(e.address, "0.25");
  await te.poke();
  await te.node.mine(1);
  await te.node.flush();
  await te.node.kill();
  const scan = te.poke();
  t.same(await balance(te, e.key), [0n, 25_000_000n, 0n], "reads keep working while bitcoind is down");
  await te.node.restart();
  await scan;
  await te.poke();
  t.equal(te.engine.node.state, "ready", "the node actor is ready again");
  t.same(await balance(te, e.key), [25_000_000n, 0n, 0n], "confirmed once after the node came back");
  await te.mine(2);
  t.same(await balance(te, e.key), [25_000_000n, 0n, 0n], "and not again");
});

t.test("a scan that fails comes back soon, not a poll later: the deposit is credited once the wallet is back", { timeout: 120_000 }, async (t) => {
  // A ten-minute poll: only the watcher's own retry can credit the deposit within this test's timeout.
  const te = await startTestEngine({ deposits: { confirmations: 1, pollMs: 600_000 } });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const f = await user(te, "f");
  const confirmed = new Promise<void>((resolve) => {
    te.engine.relay.onNotification((n) => n.userKey === f.key && n.notice.kind === "deposit_confirmed" && resolve());
  });
  await te.node.fund(f.address, "0.125");
  await te.node.mine(1);
  // The engine's wallet is unloaded and cannot be loaded again (its directory gone: a disk not mounted yet): every
  // wallet call fails at once. (Only unloaded, the node actor would load it again by itself.)
  const dir = join(te.node.dataDir, "regtest", "wallets", te.node.walletName);
  await te.node.rpc("unloadwallet", ["engine"]);
  renameSync(dir, `${dir}.away`);
  await te.engine.watcher.poke();
  t.equal(te.engine.watcher.stats.failedScans, 1, "the scan failed");
  // (The retries, while the wallet stays unloaded, may have failed again by the time the metrics are read.)
  t.match(await enginePort(te.engine).metrics(), /runigun_deposit_scans_failed_total [1-9]\d*\n/, "operators can alert on it");
  t.same(await balance(te, f.key), [0n, 0n, 0n], "nothing credited yet");
  renameSync(`${dir}.away`, dir);
  await confirmed;
  t.same(await balance(te, f.key), [12_500_000n, 0n, 0n], "credited by a retry nobody asked for");
  // The wallet's notice comes before the watcher has its answer: the watcher's count is read once a scan is over.
  await te.engine.watcher.poke();
  t.equal(te.engine.watcher.stats.confirmed, 1);
  await te.mine(1);
  t.same(await balance(te, f.key), [12_500_000n, 0n, 0n], "and only once");
});

t.test("a zero-value output to a deposit address (mined without the mempool's dust rule) is set aside as dust; the scan completes", async (t) => {
  const te = await startTestEngine({ deposits: { confirmations: 1 }, withdrawals: { dustSats: "0" } });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const z = await user(te, "zero");
  // Consensus allows an output of 0; relay policy does not, so it is mined directly (generateblock takes raw txs).
  const [coin] = await te.node.rpc<Array<{ txid: string; vout: number; amount: number }>>("listunspent", [1], "outside");
  const change = await te.node.outsideAddress();
  const raw = await te.node.rpc<string>("createrawtransaction", [[{ txid: coin!.txid, vout: coin!.vout }], [{ [z.address]: 0 }, { [change]: Number((coin!.amount - 0.001).toFixed(8)) }]]);
  const signed = await te.node.rpc<{ hex: string; complete: boolean }>("signrawtransactionwithwallet", [raw], "outside");
  t.ok(signed.complete);
  await te.node.rpc("generateblock", [change, [signed.hex]]);
  const before = te.engine.watcher.stats.incompleteScans + te.engine.watcher.stats.failedScans;
  t.equal(await te.engine.watcher.poke(), true, "the scan completes");
  t.equal(te.engine.watcher.stats.incompleteScans + te.engine.watcher.stats.failedScans, before, "not left incomplete");
  t.equal(te.engine.watcher.stats.ignoredDust, 1, "set aside as dust");
  t.same(await balance(te, z.key), [0n, 0n, 0n]);
});

t.test("a deposit credited while the minimum was lower, listed again after it was raised: confirmed as any deposit, never recorded as dust", async (t) => {
  const te = await startTestEngine({ deposits: { confirmations: 3 } });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const u = await user(te, "raised");
  await te.node.fund(u.address, "0.00001000");
  await te.mine(1);
  t.same(await balance(te, u.key), [0n, 1000n, 0n], "1,000 sats pending above the 546-sat minimum");
  // The operator raises the minimum above it and restarts, while it waits for its confirmations.
  (te.config.withdrawals as { dustSats: string }).dustSats = "2000";
  await te.restart();
  await te.poke();
  await te.mine(3);
  await te.poke();
  t.same(await balance(te, u.key), [1000n, 0n, 0n], "confirmed");
  t.same((await te.engine.watcher.listDeposits()).map((d) => [d.amount, d.status]), [[1000n, "confirmed"]], "the watcher's record says confirmed, not ignored_dust");
  t.equal(te.engine.watcher.stats.ignoredDust, 0, "not counted as dust");
  const h = await te.engine.relay.history(u.key, 0);
  t.same(!isRefusal(h) && h.entries.map((e) => [e.amount, e.status]), [[1000n, "confirmed"]], "one entry, confirmed");
});
