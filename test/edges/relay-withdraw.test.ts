// The relay's withdrawal quotes against a wallet whose answers are scripted: a confirm whose answer timed out (the
// wallet reserved it all the same) must never be followed by "expired, send /withdraw again".
import t from "tap";
import { EngineRelay, SOLO_WITHDRAWAL_VBYTES, type ChainPort } from "../../src/relay.ts";
import { loadConfig } from "../../src/config.ts";
import { silentLogger } from "../../src/log.ts";
import { isRefusal, refuse } from "../../src/domain/refusals.ts";
import type { WalletRegistry } from "../../src/actors/registry.ts";

t.test("a confirm pressed again after the quote expired, the first press's answer lost: the wallet's withdrawal, not 'expired'", async (t) => {
  const balance = { available: 10_000_000n, pending: 0n, reserved: 0n };
  const reserved = new Map<string, { amount: bigint; quotedFee: bigint; status: string }>();
  let busy: "reserve" | "all" | undefined = "reserve";
  const registry = {
    read: async () => balance,
    send: async (_userKey: string, type: string, payload: { request?: { id: string; amount: bigint; fee: bigint }; id?: string }) => {
      if (busy === "all") return refuse("busy", "Busy right now; it may still go through.");
      if (type === "reserve_withdrawal") {
        const r = payload.request!;
        reserved.set(r.id, { amount: r.amount, quotedFee: r.fee, status: "reserved" });
        // Reserved, and the answer lost: the ask timed out.
        if (busy === "reserve") return refuse("busy", "Busy right now; it may still go through.");
        return { repeated: false, withdrawal: reserved.get(r.id), balance };
      }
      if (type === "withdrawal") return { withdrawal: reserved.get(payload.id!), balance };
      throw new Error(`unexpected ${type}`);
    },
  } as unknown as WalletRegistry;
  let now = 1_000_000;
  const relay = new EngineRelay({
    config: loadConfig({ env: {} }), log: silentLogger, registry, now: () => now, quoteTtlMs: 60_000,
    chain: { checkWithdrawalAddress: async () => true, feeRate: async () => 2n, soloFee: async () => undefined } as unknown as ChainPort,
    addresses: { record: async () => undefined, ownerOf: async () => undefined },
  });
  t.teardown(() => relay.close());
  const quote = await relay.quoteWithdrawal("u_alice", "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", "0.01");
  if (isRefusal(quote)) throw new Error(quote.message);
  t.match(await relay.confirmWithdrawal("u_alice", quote.id), { code: "busy" }, "the first press: no answer in time");
  now += 61_000; // the quote expires before the second press
  busy = undefined;
  t.match(await relay.confirmWithdrawal("u_alice", quote.id), { id: quote.id, repeated: true, status: "reserved" }, "the second press: the wallet has it, and says so");

  busy = "reserve";
  const other = await relay.quoteWithdrawal("u_alice", "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", "0.02");
  if (isRefusal(other)) throw new Error(other.message);
  await relay.confirmWithdrawal("u_alice", other.id);
  now += 61_000;
  busy = "all";
  t.match(await relay.confirmWithdrawal("u_alice", other.id), { code: "busy" }, "the wallet cannot say yet: busy, never 'expired'");
});

t.test("a quote covers what the node would pay to send the withdrawal alone; too many coins for one transaction is refused", async (t) => {
  let available = 10_000_000n;
  const registry = { read: async () => ({ available, pending: 0n, reserved: 0n }) } as unknown as WalletRegistry;
  let solo: () => Promise<bigint | "too_large" | undefined> = async () => undefined;
  const asked: Array<[string, bigint, bigint]> = [];
  const relay = new EngineRelay({
    config: loadConfig({ env: {} }), log: silentLogger, registry,
    chain: {
      checkWithdrawalAddress: async () => true, feeRate: async () => 3n,
      soloFee: (address: string, amount: bigint, rate: bigint) => (asked.push([address, amount, rate]), solo()),
    } as unknown as ChainPort,
    addresses: { record: async () => undefined, ownerOf: async () => undefined },
  });
  t.teardown(() => relay.close());
  const to = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
  const floor = 3n * SOLO_WITHDRAWAL_VBYTES;
  t.match(await relay.quoteWithdrawal("u_a", to, "0.01"), { fee: floor, total: 1_000_000n + floor }, "the node cannot fund it now: the usual quote (it waits in the queue)");
  t.same(asked, [[to, 1_000_000n, 3n]], "asked for this address, amount and fee rate");
  solo = async () => 500n;
  t.match(await relay.quoteWithdrawal("u_a", to, "0.01"), { fee: floor }, "a cheaper dry run never lowers the quote below two inputs' worth");
  solo = async () => 55_660n;
  t.match(await relay.quoteWithdrawal("u_a", to, "0.01"), { fee: 55_660n, total: 1_055_660n }, "many small coins: the quote is what sending it costs");
  available = 1_050_000n;
  t.match(await relay.quoteWithdrawal("u_a", to, "0.01"), { code: "insufficient_funds", message: /Not enough available: 0\.01 BTC \(1,000,000 sats\) plus a fee of 0\.0005566 BTC \(55,660 sats\) is more than your 0\.0105 BTC \(1,050,000 sats\)/ }, "and the balance must cover that fee (amounts as BTC and sats)");
  solo = async () => "too_large";
  t.match(await relay.quoteWithdrawal("u_a", to, "0.01"), { code: "over_limit", message: /more coins than fit in one Bitcoin transaction; withdraw a smaller amount/ });
  solo = async () => {
    throw new Error("connect ECONNREFUSED");
  };
  t.match(await relay.quoteWithdrawal("u_a", to, "0.01"), { code: "node_unavailable" }, "the node cannot be asked: no quote");
  asked.length = 0;
  available = 10_000_000n;
  t.match(await relay.quoteWithdrawal("u_a", to, "0.2"), { code: "insufficient_funds" }, "short before any fee: the node is not asked");
  t.equal(asked.length, 0);
});

t.test("a bech32 address in mixed case is refused, not mended; all upper case (a QR code's) is taken", async (t) => {
  const registry = { read: async () => ({ available: 10_000_000n, pending: 0n, reserved: 0n }) } as unknown as WalletRegistry;
  const checked: string[] = [];
  const relay = new EngineRelay({
    config: loadConfig({ env: {} }), log: silentLogger, registry,
    chain: { checkWithdrawalAddress: async (a: string) => (checked.push(a), true), feeRate: async () => 2n, soloFee: async () => undefined } as unknown as ChainPort,
    addresses: { record: async () => undefined, ownerOf: async () => undefined },
  });
  t.teardown(() => relay.close());
  const lower = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
  t.match(await relay.quoteWithdrawal("u_a", "bcrt1qw508d6qejxtdg4y5r3zarVARY0c5xw7kygt080", "0.01"), { code: "bad_address", message: /mixes upper and lower case/ });
  t.same(checked, [], "refused before the node is asked");
  t.notOk(isRefusal(await relay.quoteWithdrawal("u_a", lower.toUpperCase(), "0.01")), "upper case is a QR code's form");
  t.notOk(isRefusal(await relay.quoteWithdrawal("u_a", `  ${lower} `, "0.01")), "spaces around it are not a change of case");
  t.same(checked, [lower, lower], "checked in its canonical form");
});
