// A wallet's notice is written in the same atomic batch as the journal record whose events make it (held.ts,
// KeptNotices.reserve): an engine that dies the moment the record is durable, before any later write, still has the
// notice after its restart. Before, the notice's own record was written on the next turn, and a crash in between lost
// it (the receiver's history had the credit; the receiver was never told). A real engine on a real regtest node and a
// real store; the crash is the test engine's (engine.halt, then the store closed: only what reached LevelDB survives).
import t from "tap";
import { startTestEngine, fundedWallet } from "./support/engine.ts";
import { isRefusal } from "../src/domain/refusals.ts";
import type { Notification } from "../src/relay.types.ts";

t.setTimeout(180_000);

t.test("a credit's notice survives a crash the moment the credit is durable: sent once after the restart", async (t) => {
  const te = await startTestEngine({ deposits: { confirmations: 1 } });
  t.teardown(() => te.stop());
  const relay = () => te.engine.relay;
  await fundedWallet(te, "u_commit_alice", "0.01", "handle-alice");
  const bob = await relay().start("u_commit_bob", "handle-bob");
  t.notOk(isRefusal(bob), "bob's wallet opened");
  // Everything before the transfer is delivered and its records deleted: after the restart, only what the crash left.
  const delivered = relay().onNotification((_n, settled) => settled?.(), { settles: true });
  await te.mine(1);
  const alice = await relay().balance("u_commit_alice");
  t.ok(!isRefusal(alice) && alice.available === 1_000_000n, "alice's deposit is confirmed");
  delivered();
  await relay().noticesWritten();

  // The next deliverer never settles: the moment bob's credit is told (its record durable), the engine dies there.
  let crashed: Promise<void> | undefined;
  const told = new Promise<void>((resolve) => {
    relay().onNotification((n: Notification) => {
      if (n.userKey !== "u_commit_bob" || n.notice.kind !== "transfer_received" || crashed) return;
      crashed = te.crash();
      resolve();
    }, { settles: true });
  });
  const sent = await relay().transfer("u_commit_alice", "t-commit-1", "u_commit_bob", "0.002");
  t.notOk(isRefusal(sent), "the transfer is accepted");
  await told;
  await crashed;

  await te.restart();
  const after: Notification[] = [];
  relay().onNotification((n, settled) => {
    after.push(n);
    settled?.();
  }, { settles: true });
  const mine = after.filter((n) => n.userKey === "u_commit_bob");
  t.same(mine.map((n) => [n.notice.kind, n.chatHandle, "amount" in n.notice ? n.notice.amount : undefined]), [["transfer_received", "handle-bob", 200_000n]], "bob is told of the credit once, with his chat handle");
  t.equal(after.length, mine.length, "nothing else was left undelivered");
  const b = await relay().balance("u_commit_bob");
  t.ok(!isRefusal(b) && b.available === 200_000n, "and the credit is in his balance, once");

  // Delivered now: its record is deleted, so the start after this one has nothing to send.
  await relay().noticesWritten();
  await te.restart();
  const again: Notification[] = [];
  relay().onNotification((n, settled) => {
    again.push(n);
    settled?.();
  }, { settles: true });
  t.same(again, [], "a delivered notice is not sent again by the next start");
});
