// npm run chaos:disk-full — the engine's store on a tiny tmpfs that fills up (needs root, for `mount`): money
// commands must be refused ("nothing was moved", or "may still have been done" for the write that hit the full disk),
// /health must say why, reads keep working, and once space is
// freed commands work again and every transfer counts once. Prints what it saw; exits 1 on a violation.
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { startRegtest } from "../src/regtest/harness.ts";
import { enginePort } from "../src/edges/admin/engine-port.ts";
import { isRefusal } from "../src/domain/refusals.ts";
import { startTestEngine } from "../test/support/engine.ts";

const mnt = `/tmp/runigun-disk-full-${process.pid}`;
mkdirSync(mnt, { recursive: true });
execFileSync("mount", ["-t", "tmpfs", "-o", "size=16m", "tmpfs", mnt]);
const node = await startRegtest();
const problems: string[] = [];
const say = (s: string) => console.log(s);
try {
  process.env.TMPDIR = mnt; // the engine's data directory (and nothing else) goes on the small disk
  const te = await startTestEngine({}, { node });
  const port = enginePort(te.engine);
  const relay = te.engine.relay;
  await relay.start("u_payer");
  await relay.start("u_payee");
  await te.engine.registry.send("u_payer", "receive_transfer", { id: "seed", from: "u_bank", amount: 1_000_000n });
  const filler = `${mnt}/filler`;
  // Fill the disk to the last byte.
  try {
    writeFileSync(filler, Buffer.alloc(64 * 1024 * 1024));
  } catch {
    // ENOSPC: what fitted was written
  }
  // The log file's last page may still take a few small batches: send until one is refused (bounded).
  let accepted = 0;
  let refused: Awaited<ReturnType<typeof relay.transfer>> | undefined;
  for (; accepted < 200; accepted++) {
    refused = await relay.transfer("u_payer", `t-${accepted}`, "u_payee", "1000 sats");
    if (isRefusal(refused)) break;
  }
  const failedId = `t-${accepted}`;
  say(`transfers on a full disk: ${accepted} fitted in the last page, then ${refused && isRefusal(refused) ? `refused — ${refused.message}` : "never refused"}`);
  // The write that hit the full disk cannot be known absent until LevelDB can reopen (db.ts, #drain): its sender is
  // told it may still have been done; the retry below, with the same id, shows it was not.
  if (!refused || !isRefusal(refused) || !/nothing was moved|may still have been done/i.test(refused.message)) problems.push("a transfer on a full disk was not refused with 'nothing was moved' or 'may still have been done'");
  const health = (await port.health()) as { ok: boolean; store: { failing: boolean; lastError?: { message: string } } };
  say(`/health: ok=${health.ok} store.failing=${health.store.failing} (${health.store.lastError?.message ?? ""})`);
  if (health.ok || !health.store.failing) problems.push("/health did not report the failing store");
  const read = await relay.balance("u_payer");
  say(`a read meanwhile: ${isRefusal(read) ? `refused — ${read.message}` : `available ${read.available}`}`);
  if (isRefusal(read) || read.available !== 1_000_000n - 1000n * BigInt(accepted)) problems.push("a read failed or showed a changed balance on a full disk");
  rmSync(filler);
  // A wallet that crashed repeatedly waits out its crash window; this one failed once, so it answers at once.
  const again = await relay.transfer("u_payer", failedId, "u_payee", "1000 sats");
  say(`the same transfer after freeing space: ${isRefusal(again) ? `refused — ${again.message}` : `accepted (repeated: ${again.repeated})`}`);
  if (isRefusal(again) || again.repeated) problems.push("the transfer did not go through after space was freed");
  // The first write that works brings the store back, and the engine re-sends the credits that waited in outboxes
  // meanwhile: wait (bounded) until the courier has delivered them.
  const sent = 1000n * BigInt(accepted + 1);
  for (let i = 0; i < 100; i++) {
    await te.engine.courier.settled();
    const b = await relay.balance("u_payee");
    if (!isRefusal(b) && b.available === sent) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const [payer, payee] = [await relay.balance("u_payer"), await relay.balance("u_payee")];
  say(`balances: payer ${isRefusal(payer) ? payer.message : payer.available}, payee ${isRefusal(payee) ? payee.message : payee.available}`);
  if (isRefusal(payer) || isRefusal(payee) || payer.available !== 1_000_000n - sent || payee.available !== sent) problems.push("the transfers did not count exactly once");
  const after = (await port.health()) as { store: { failing: boolean; failures: number } };
  say(`/health after: store.failing=${after.store.failing}, ${after.store.failures} failed write(s) in all`);
  if (after.store.failing) problems.push("the store still reports failing after writes worked");
  await te.stop();
} finally {
  await node.stop();
  execFileSync("umount", [mnt]);
  rmSync(mnt, { recursive: true, force: true });
}
console.log(problems.length ? `disk full: ${problems.length} violation(s):\n- ${problems.join("\n- ")}` : "disk full: 0 violations");
process.exit(problems.length ? 1 : 0);
