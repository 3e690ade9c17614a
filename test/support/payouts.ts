// What the payout tests share: a user funded on chain, a withdrawal quoted and confirmed through the relay, a
// wallet's withdrawal as the wallet answers it, and what the outside wallet received.
import { isRefusal } from "../../src/domain/refusals.ts";
import type { Relay } from "../../src/relay.types.ts";
import { startTestEngine, type TestEngine } from "./engine.ts";
import type { PayoutStep } from "../../src/actors/payout.ts";

/** A user `u_<name>` with a wallet and `btc` sent to its deposit address (mine to credit it). */
export async function fundedUser(te: TestEngine, name: string, btc: string): Promise<string> {
  const key = `u_${name}`;
  await te.engine.relay.start(key);
  const a = await te.engine.relay.depositAddress(key);
  if (isRefusal(a)) throw new Error(a.message);
  await te.node.fund(a.address, btc);
  return key;
}

export async function withdraw(relay: Relay, key: string, address: string, amount: string) {
  const q = await relay.quoteWithdrawal(key, address, amount);
  if (isRefusal(q)) throw new Error(q.message);
  const c = await relay.confirmWithdrawal(key, q.id);
  if (isRefusal(c)) throw new Error(c.message);
  return { quote: q, confirmed: c };
}

/** A wallet's withdrawal as the wallet answers it (open, or finished in its records), with the wallet's balance. */
export async function withdrawalOf(te: TestEngine, key: string, id: string) {
  const r = await te.engine.registry.send(key, "withdrawal", { id });
  if (isRefusal(r) || !r.withdrawal) throw new Error(`no withdrawal ${id} in ${key}`);
  return { w: r.withdrawal, ...r.balance };
}

/** What the outside wallet has received on an address, in sats, counting unconfirmed payments too. */
export async function received(te: TestEngine, address: string): Promise<bigint> {
  const btc = await te.node.rpc<number>("getreceivedbyaddress", [address, 0], "outside");
  return BigInt(Math.round(btc * 1e8));
}

/**
 * A user `u_<name>` funded with `btc`, `confirmations` deep, and one withdrawal of `amount` to a fresh outside address,
 * flushed: the engine's first payout batch.
 */
export async function sentBatch(te: TestEngine, name: string, amount: string, o: { btc?: string; confirmations?: number } = {}) {
  await te.node.ensureMatureCoins();
  const key = await fundedUser(te, name, o.btc ?? "0.5");
  await te.mine(o.confirmations ?? 1);
  const dest = await te.node.outsideAddress();
  const { quote } = await withdraw(te.engine.relay, key, dest, amount);
  await te.engine.payouts.flush();
  const [batch, b] = Object.entries((await te.engine.payouts.state()).batches)[0]!;
  return { key, dest, quote, batch, b };
}

/**
 * An engine that dies at the payout step it is told to (`crash.at`, once), as a crash would: nothing after that point
 * happens in this life of the engine. `crash.hits` counts the crashes.
 */
export async function crashingEngine(...args: Parameters<typeof startTestEngine>) {
  const [overrides, opts] = args;
  const crash: { at?: PayoutStep; hits: number } = { hits: 0 };
  let te!: TestEngine;
  te = await startTestEngine(overrides, {
    ...opts,
    payoutStep: (s) => {
      if (s !== crash.at) return;
      crash.at = undefined;
      crash.hits++;
      void te.crash();
      throw new Error(`simulated crash at ${s}`);
    },
  });
  return { te, crash };
}
