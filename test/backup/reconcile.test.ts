// The comparison with the chain after a restore, on its own: which queued payouts an unknown spend paid. A wallet's
// payouts alike (the same withdrawal asked twice) are adopted oldest first, one per output; payouts alike of several
// wallets are not guessed at, and are named for an operator.
import t from "tap";
import { reconcileAfterRestore } from "../../src/backup/reconcile.ts";
import { emptyPayouts, evolvePayouts, type PayoutState } from "../../src/actors/payout.ts";
import { silentLogger } from "../../src/log.ts";

function queued(payouts: Array<[id: string, userKey: string, address: string, sats: bigint, at: number]>): PayoutState {
  return payouts.reduce((s, [id, userKey, address, amount, at]) => evolvePayouts(s, { t: "queued", id, userKey, address, amount: amount.toString(), quotedFee: "300", at }), emptyPayouts());
}

const send = (txid: string, address: string, sats: number) => ({ category: "send", txid, address, amount: -sats / 1e8, vout: 0, confirmations: 1 });

t.test("payouts alike: one wallet's adopted oldest first, several wallets' left queued and named", async (t) => {
  const state = queued([
    ["p2", "u_a", "bcrt1qx", 100_000n, 2],
    ["p1", "u_a", "bcrt1qx", 100_000n, 1],
    ["p3", "u_b", "bcrt1qy", 50_000n, 3],
    ["p4", "u_c", "bcrt1qy", 50_000n, 4],
  ]);
  const adopted: Array<[string, string[]]> = [];
  const frozen: string[] = [];
  const incident = await reconcileAfterRestore({
    log: silentLogger,
    listSinceBlock: async () => ({ transactions: [send("t1", "bcrt1qx", 100_000), send("t2", "bcrt1qx", 100_000), send("t3", "bcrt1qy", 50_000)], lastblock: "h" }),
    payouts: async () => state, paidBy: () => false,
    freeze: async (userKey) => void frozen.push(userKey),
    adopt: async (txid, ids) => void adopted.push([txid, ids]),
    holdings: async function* () {},
  }, { sinceBlock: undefined, archive: "test" });
  t.same(adopted, [["t1", ["p1"]], ["t2", ["p2"]]], "u_a's two withdrawals alike: each output pays one, the oldest first");
  t.same(incident?.ambiguous, ["p3", "p4"], "u_b's and u_c's alike: which one t3 paid is not guessed");
  t.same(frozen.sort(), ["u_a", "u_b", "u_c"], "every wallet concerned is frozen");
});

t.test("a spend no payout explains: wallets holding as much are frozen, also one that received it from another while the wallets were read", async (t) => {
  const held = new Map<string, bigint>([["u_a", 200_000n], ["u_b", 0n], ["u_c", 10n]]);
  const frozen: string[] = [];
  let moved = false;
  const incident = await reconcileAfterRestore({
    log: silentLogger,
    listSinceBlock: async () => ({ transactions: [send("t1", "bcrt1qz", 150_000)], lastblock: "h" }),
    payouts: async () => emptyPayouts(), paidBy: () => false,
    freeze: async (userKey) => void frozen.push(userKey),
    adopt: async () => undefined,
    holdings: async function* () {
      for (const [userKey, sats] of held) {
        yield [userKey, sats] as [string, bigint];
        // u_a sends its money to u_b after being read, before anything is frozen (u_b was not read yet: moved after
        // the whole first reading, as the worst case — u_b read with nothing).
        if (userKey === "u_c" && !moved) {
          moved = true;
          held.set("u_a", 0n);
          held.set("u_b", 200_000n);
        }
      }
    },
  }, { sinceBlock: undefined, archive: "test" });
  t.same(frozen, ["u_a", "u_b"], "u_a as read first, then u_b, which holds it now; u_c never held as much");
  t.same(incident?.frozen, ["u_a", "u_b"]);
});
