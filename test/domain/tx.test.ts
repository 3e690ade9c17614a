// A transaction's virtual size worked out from its bytes, checked against bitcoind's own on real transactions:
// segwit with one and several inputs and outputs, and one without witness data.
import t from "tap";
import { startRegtest } from "../../src/regtest/harness.ts";
import { vsizeOf } from "../../src/domain/tx.ts";

t.test("vsize from the bytes is bitcoind's", async (t) => {
  const node = await startRegtest();
  t.teardown(() => node.stop());
  await node.mine(101);
  const to = async (type: string) => node.rpc<string>("getnewaddress", ["", type], "engine");
  const txids = [
    await node.rpc<string>("sendtoaddress", [await to("bech32"), 1], "outside"),
    await node.rpc<string>("sendtoaddress", [await to("legacy"), 0.3], "outside"),
    await node.rpc<string>("sendmany", ["", { [await to("bech32")]: 0.1, [await to("bech32m")]: 0.2, [await to("p2sh-segwit")]: 0.3 }], "outside"),
  ];
  await node.mine(1);
  // A transaction with no witness at all: the legacy coin alone, spent by a raw transaction.
  const legacy = (await node.rpc<Array<{ txid: string; vout: number; amount: number; address: string }>>("listunspent", [0], "engine")).find((u) => u.address.startsWith("m") || u.address.startsWith("n"));
  if (!legacy) throw new Error("no legacy coin to spend");
  const raw = await node.rpc<string>("createrawtransaction", [[{ txid: legacy.txid, vout: legacy.vout }], { [await node.outsideAddress()]: 0.0001 }]);
  const plain = (await node.rpc<{ hex: string }>("signrawtransactionwithwallet", [raw], "engine")).hex;
  // Spends of the engine's coins of every type at once (several inputs, one of them without witness data).
  txids.push(await node.rpc<string>("sendtoaddress", [await node.outsideAddress(), 1.8, "", "", true], "engine"));
  const hexes = await Promise.all(txids.map(async (id) => (await node.rpc<{ hex: string }>("gettransaction", [id], id === txids.at(-1) ? "engine" : "outside")).hex));
  hexes.push(plain);
  for (const hex of hexes) {
    const decoded = await node.rpc<{ vsize: number; vin: unknown[]; vout: unknown[] }>("decoderawtransaction", [hex]);
    t.equal(vsizeOf(hex), decoded.vsize, `${decoded.vin.length} in, ${decoded.vout.length} out`);
  }
  t.throws(() => vsizeOf(hexes[0]!.slice(0, -2)), /ends early/);
  t.throws(() => vsizeOf(hexes[0]! + "00"), /bytes left/);
  t.throws(() => vsizeOf("abc"), /whole bytes/);
});
