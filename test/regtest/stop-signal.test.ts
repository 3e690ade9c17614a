// A managed regtest bitcoind outlives the process that started it only by as long as its own orderly shutdown takes.
// When that process ends without stopping it (killed, or exiting through the exit hook), the node is asked to stop
// with SIGTERM, not killed: a SIGKILLed bitcoind loses the blocks it had not flushed — all of a young regtest chain —
// and the engine's deposit cursor was then above the node's tip ("deposit scans stalled"), deposits never credited.
import t from "tap";
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import { startRegtest } from "../../src/regtest/harness.ts";

const register = fileURLToPath(new URL("../../bin/ts-register.mjs", import.meta.url));
const harness = pathToFileURL(fileURLToPath(new URL("../../src/regtest/harness.ts", import.meta.url))).href;

/** A process that starts a node on `dataDir` as the engine does, mines, says where it is, then ends as `how` says. */
function parentOfNode(dataDir: string, how: "killed" | "exits") {
  const code = `
    const { startRegtest } = await import(${JSON.stringify(harness)});
    const node = await startRegtest({ dataDir: ${JSON.stringify(dataDir)}, keepDataDir: true });
    await node.mine(110);
    const tip = await node.rpc("getbestblockhash");
    const height = await node.rpc("getblockcount");
    process.stdout.write(JSON.stringify({ pid: node.pid, tip, height, rpcPort: node.rpcPort, p2pPort: node.p2pPort }) + "\\n");
    ${how === "exits" ? "process.exit(0); // the node not stopped: the exit hook is all that runs" : "setInterval(() => undefined, 1000); // until killed"}
  `;
  const child = spawn(process.execPath, [`--import=${register}`, "--input-type=module", "-e", code], { stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  let err = "";
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const ready = new Promise<{ pid: number; tip: string; height: number; rpcPort: number; p2pPort: number }>((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("\n")) resolve(JSON.parse(out.split("\n")[0]!));
    });
    child.once("exit", (c) => reject(new Error(`the node's parent exited (${c}) before it was ready: ${err}`)));
  });
  return { child, exited, ready };
}

/** Whether process `pid` still runs (a zombie has ended: it only waits to be reaped). */
function alive(pid: number): boolean {
  const stat = `/proc/${pid}/stat`;
  if (!existsSync(stat)) return false;
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(stat, "utf8"));
  } catch {
    return false;
  }
}

/** Until `pid` has ended: a process that is not our child has no exit event to wait on, so its /proc entry is read. */
async function ended(pid: number, withinMs: number): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  while (alive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
  return true;
}

for (const how of ["killed", "exits"] as const) {
  const what = how === "killed" ? "killed (SIGKILL: only the reaper outside it acts)" : "exiting without stopping its node (the exit hook)";
  t.test(`the node's parent ${what}: the node stops in order and starts again with every block`, { timeout: 180_000 }, async (t) => {
    const dataDir = t.testdir();
    const parent = parentOfNode(dataDir, how);
    t.teardown(() => void parent.child.kill("SIGKILL"));
    const before = await parent.ready;
    t.teardown(() => {
      if (alive(before.pid)) process.kill(before.pid, "SIGKILL");
    });
    if (how === "killed") parent.child.kill("SIGKILL");
    await parent.exited;
    // Well past the node's grace (harness STOP_GRACE_S, 20 s) before a SIGKILL.
    t.ok(await ended(before.pid, 40_000), "the node the parent left behind has ended");
    const node = await startRegtest({ dataDir, keepDataDir: true });
    t.teardown(() => node.stop());
    t.equal(await node.rpc<number>("getblockcount"), before.height, "no block lost: the tip height is the one before");
    t.equal(await node.rpc<string>("getbestblockhash"), before.tip, "and the same tip");
  });
}
