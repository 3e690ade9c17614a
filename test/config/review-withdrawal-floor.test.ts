// Found by a review: withdrawals.dustSats below bitcoind's dust limit was the smallest withdrawal as well as the
// smallest deposit credited. A withdrawal below the real limit was quoted and reserved, then refused by every flush
// for ever (bitcoind will not fund it: "Transaction amount too small"). The relay's floor is now never below 546 sats,
// whatever dustSats says; deposits still follow dustSats alone.
import t from "tap";
import { EngineRelay, type ChainPort } from "../../src/relay.ts";
import { loadConfig } from "../../src/config.ts";
import { silentLogger } from "../../src/log.ts";
import { isRefusal } from "../../src/domain/refusals.ts";
import { ActorSystem } from "../../src/actors/runtime.ts";
import { NodeGateway } from "../../src/actors/node.ts";
import { startRegtest } from "../../src/regtest/harness.ts";
import type { WalletRegistry } from "../../src/actors/registry.ts";

const TO = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";

/** A relay over a wallet that records what it is asked to reserve; `soloFee` is the chain's dry run. */
function relayWith(dustSats: string, soloFee: ChainPort["soloFee"] = async () => undefined) {
  const reserved: Array<{ amount: bigint; dustLimit: bigint }> = [];
  const balance = { available: 10_000_000n, pending: 0n, reserved: 0n };
  const registry = {
    read: async () => balance,
    send: async (_k: string, type: string, p: { request: { id: string; amount: bigint; fee: bigint; dustLimit: bigint } }) => {
      if (type !== "reserve_withdrawal") throw new Error(`unexpected ${type}`);
      reserved.push({ amount: p.request.amount, dustLimit: p.request.dustLimit });
      return { repeated: false, withdrawal: { amount: p.request.amount, quotedFee: p.request.fee, status: "reserved" }, balance };
    },
  } as unknown as WalletRegistry;
  const relay = new EngineRelay({
    config: loadConfig({ env: {}, overrides: { withdrawals: { dustSats } } }), log: silentLogger, registry,
    chain: { checkWithdrawalAddress: async () => true, feeRate: async () => 2n, soloFee } as unknown as ChainPort,
    addresses: { record: async () => undefined, ownerOf: async () => undefined },
  });
  return { relay, reserved };
}

t.test("a dustSats below 546 lowers the deposits' floor only: a withdrawal below 546 sats is refused, naming 546", async (t) => {
  for (const dustSats of ["0", "1", "294", "545"]) {
    const { relay, reserved } = relayWith(dustSats);
    t.teardown(() => relay.close());
    t.match(await relay.quoteWithdrawal("u_a", TO, "545 sats"), { code: "below_dust", message: "The amount must be at least 546 sats (the network's dust limit)." }, `dustSats ${dustSats}`);
    t.match(await relay.quoteWithdrawal("u_a", TO, "1 sat"), { code: "below_dust" });
    const q = await relay.quoteWithdrawal("u_a", TO, "546 sats");
    if (isRefusal(q)) throw new Error(q.message);
    t.match(await relay.confirmWithdrawal("u_a", q.id), { status: "reserved" }, "546 itself is quoted and reserved");
    t.same(reserved, [{ amount: 546n, dustLimit: 546n }], "the wallet's own check is given the same floor");
    t.equal(relay.info().minDepositSats, BigInt(dustSats), "deposits: still dustSats (crediting unchanged)");
  }
  const { relay, reserved } = relayWith("1000");
  t.teardown(() => relay.close());
  t.match(await relay.quoteWithdrawal("u_a", TO, "999 sats"), { code: "below_dust", message: /at least 1000 sats/ }, "a higher dustSats still rules");
  const q = await relay.quoteWithdrawal("u_a", TO, "1000 sats");
  if (isRefusal(q)) throw new Error(q.message);
  await relay.confirmWithdrawal("u_a", q.id);
  t.same(reserved, [{ amount: 1000n, dustLimit: 1000n }]);
});

t.test("546 is bitcoind's own floor: it will not fund 545 sats to a P2PKH address, nor 293 to a P2WPKH one", { timeout: 180_000 }, async (t) => {
  const node = await startRegtest();
  const system = new ActorSystem();
  const config = loadConfig({ env: {}, overrides: { withdrawals: { dustSats: "1" }, node: { addressPoolSize: 1, timeoutMs: 5000 } } });
  const gw = new NodeGateway({ config, log: silentLogger, system, rpc: { url: node.rpcUrl, user: node.user, password: node.password } });
  t.teardown(async () => (await gw.stop(), system.shutdown(), await node.stop()));
  await gw.start();
  await node.ensureMatureCoins();
  await node.fund(await node.rpc<string>("getnewaddress", ["", "bech32"], node.walletName), "1");
  await node.mine(1);
  const p2pkh = await node.rpc<string>("getnewaddress", ["", "legacy"], "outside");
  const p2wpkh = await node.outsideAddress();
  t.equal(await gw.soloFee(p2pkh, 545n, 2n), undefined, "P2PKH, 545 sats: bitcoind refuses to fund it");
  t.type(await gw.soloFee(p2pkh, 546n, 2n), "bigint", "P2PKH, 546 sats: funded");
  t.equal(await gw.soloFee(p2wpkh, 293n, 2n), undefined, "P2WPKH, 293 sats: refused");
  t.type(await gw.soloFee(p2wpkh, 294n, 2n), "bigint", "P2WPKH, 294 sats: funded");

  // The relay over this node, dustSats "1": what bitcoind would never send is refused at the quote, not reserved.
  const { relay, reserved } = relayWith("1", (a, s, r) => gw.soloFee(a, s, r));
  t.teardown(() => relay.close());
  t.match(await relay.quoteWithdrawal("u_a", p2pkh, "545 sats"), { code: "below_dust", message: /at least 546 sats/ });
  t.match(await relay.quoteWithdrawal("u_a", p2wpkh, "293 sats"), { code: "below_dust", message: /at least 546 sats/ });
  t.notOk(isRefusal(await relay.quoteWithdrawal("u_a", p2pkh, "546 sats")), "546 to P2PKH: quoted");
  t.same(reserved, []);
});
