// npm run bench:write-rounds — the write figure's transfers, round after round on one growing store: transfers/s and
// the CPU each transfer took, on the engine's thread and on all the others (sealing worker, LevelDB's writer and
// compaction, the collector's helpers), read from /proc around each round. Where the write figure (bench/all.ts)
// measures one round after a first, this shows how the cost moves as the store grows. Figures only; Linux only.
// WRITE_ROUNDS (default 4) rounds of 20,000 transfers among 1,000 wallets, 512 in flight, fsync on.
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { KeyRing } from "../src/store/keyring.ts";
import { openRegistry, sendTransfers, withCourier } from "./lib/transfers.ts";
import { fmt } from "./lib/report.ts";

const rounds = Number(process.env.WRITE_ROUNDS ?? 4);
const users = 1000, N = 20_000;
const root = join(new URL("..", import.meta.url).pathname, ".cache", "bench", `write-rounds-${process.pid}`);
mkdirSync(root, { recursive: true });

/** CPU time (ms) of this process's threads so far: the engine's thread, and the rest summed. */
function threadCpu(): { main: number; others: number } {
  const t = { main: 0, others: 0 };
  for (const id of readdirSync("/proc/self/task")) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/self/task/${id}/stat`, "utf8");
    } catch {
      continue; // a thread that ended meanwhile
    }
    // utime and stime, in clock ticks (10 ms here), are fields 14 and 15; the name before them may hold spaces.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ms = (Number(f[11]) + Number(f[12])) * 10;
    if (id === String(process.pid)) t.main += ms;
    else t.others += ms;
  }
  return t;
}

const r = await withCourier(users, (o) => openRegistry(join(root, "store"), new KeyRing(new Map([[1, randomBytes(32)]]), 1), true, o));
const { courier } = r;
try {
  console.log(`${rounds} rounds of ${fmt(N)} transfers among ${fmt(users)} wallets, 512 in flight (CPU per transfer: the engine's thread + the others)`);
  for (let round = 1; round <= rounds; round++) {
    const before = threadCpu(), t0 = performance.now();
    await sendTransfers(r.registry, users, N, `r${round}_`);
    await courier.settled();
    const secs = (performance.now() - t0) / 1000, after = threadCpu();
    const main = ((after.main - before.main) * 1000) / N, others = ((after.others - before.others) * 1000) / N;
    console.log(`round ${round}: ${fmt(N / secs)} transfers/s, CPU ${fmt(main + others)} µs per transfer (${fmt(main)} + ${fmt(others)})`);
  }
  if (courier.stats.delivered !== rounds * N) throw new Error(`only ${courier.stats.delivered} of ${rounds * N} transfers were delivered`);
} finally {
  await r.close();
  rmSync(root, { recursive: true, force: true });
}
