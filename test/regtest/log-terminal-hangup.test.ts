// The engine logging JSON to its terminal (token mode, NODE_ENV=production, started by hand) when that terminal hangs
// up: the SIGHUP is an orderly stop, and the stop's own log lines now fail with EIO. pino raised that error and, at
// exit, its flush retried the write every 100 ms for ever: the process never ended (not at the stop's deadline, not at
// a second signal), bitcoind's exit hook never ran and the store stayed locked. The terminal is a real one (a pty,
// from python3) whose master is closed, so the kernel itself sends the SIGHUP, as when a window or SSH session closes.
import t from "tap";
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = fileURLToPath(new URL("../../", import.meta.url));
const register = join(root, "bin", "ts-register.mjs");

/** The engine's part in this: its real logger and stop signals; what it tells the test goes on fd 3 (a pipe). */
const child = `
import { writeSync } from "node:fs";
const { createLogger } = await import(${JSON.stringify(pathToFileURL(join(root, "src", "log.ts")).href)});
const { stopSignals } = await import(${JSON.stringify(pathToFileURL(join(root, "src", "app.ts")).href)});
const tell = (line) => writeSync(3, line + "\\n");
// What token mode builds on a terminal with NODE_ENV=production.
const log = createLogger({ level: "info", pretty: false });
const signals = stopSignals(log, { deadlineMs: 3000 });
const engine = setInterval(() => undefined, 60_000); // the engine's sockets and timers
process.on("exit", (code) => tell("exit hooks ran " + code)); // where bitcoind's is
log.info("engine running");
tell("ready");
await signals.signalled;
signals.begin();
log.info("stopping the engine");
await new Promise((resolve) => setTimeout(resolve, 100)); // the engine and bitcoind stopping, logging as they go
log.info("engine stopped");
signals.done();
clearInterval(engine);
tell("stopped");
process.exit(0);
`;

/** Runs argv on a new terminal (its session's controlling one); a line on stdin closes the terminal's master end. */
const terminal = `
import os, pty, sys
pid, master = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
print(pid, flush=True)
sys.stdin.readline()
os.close(master)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), flush=True)
`;

t.test("a terminal that hangs up while the engine logs JSON to it: the stop finishes and the process ends", async (t) => {
  const dir = t.testdir();
  writeFileSync(join(dir, "engine.mjs"), child);
  const env = { ...process.env, NODE_ENV: "production" };
  const run = spawn("python3", ["-c", terminal, process.execPath, "--import", register, join(dir, "engine.mjs")], { env, cwd: dir, stdio: ["pipe", "pipe", "inherit", "pipe"] });
  let pid: number | undefined;
  t.teardown(() => {
    // Without the fix the engine would spin for ever: it is not left behind.
    if (pid) try { process.kill(pid, "SIGKILL"); } catch { /* already gone */ }
    run.kill("SIGKILL");
  });
  const said: string[] = [];
  const told = createInterface({ input: run.stdio[3] as NodeJS.ReadableStream });
  const ready = new Promise<void>((resolve) => told.on("line", (line) => (said.push(line), line === "ready" && resolve())));
  const allTold = new Promise<void>((resolve) => told.once("close", resolve)); // fd 3 closes once python3 has ended
  const out = createInterface({ input: run.stdout! })[Symbol.asyncIterator]();
  pid = Number((await out.next()).value);
  await ready;

  run.stdin!.end("\n"); // the window closes
  const status = await Promise.race([
    out.next().then((r) => Number(r.value)),
    new Promise<"running">((resolve) => setTimeout(() => resolve("running"), 8000).unref()),
  ]);
  t.not(status, "running", "the engine ended within 8 s of the hang-up (its stop's deadline is 3 s)");
  if (status !== "running") await allTold;
  t.ok(said.includes("stopped"), "its stop finished");
  t.ok(said.includes("exit hooks ran 0"), "its exit hooks ran, with exit code 0");
  // Node 20 then aborts after the exit hooks, failing to restore the modes of a terminal that is gone (SIGABRT, or
  // SIGSEGV while it prints why: nodejs/node#51519, fixed in later Node by nodejs/node#58200): nothing of the engine's
  // is left undone by then.
  t.ok([0, -6, -11].includes(status as number), `exit status ${status}: 0, or Node's abort after the exit hooks`);
});
