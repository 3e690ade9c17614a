// The payout actor's "status" answer, for the payout-review tests. PayoutService has no method for it (yet): the
// actor's ref is caught from the ask a state() makes, and the status asked of it directly.
import type { PayoutCommand, PayoutHealth } from "../../src/actors/payout.ts";
import type { Ref } from "../../src/actors/runtime.ts";
import type { TestEngine } from "../support/engine.ts";

export async function payoutStatus(te: TestEngine): Promise<PayoutHealth> {
  const system = te.engine.system;
  const ask = system.ask.bind(system);
  let ref: Ref<PayoutCommand> | undefined;
  system.ask = ((r: Ref<PayoutCommand>, make: never, ms: number) => ((ref ??= r), ask(r, make, ms))) as typeof system.ask;
  try {
    await te.engine.payouts.state();
  } finally {
    system.ask = ask;
  }
  return system.ask<PayoutCommand, PayoutHealth>(ref!, (reply) => ({ type: "status", reply }), 10_000);
}
