// How `runigun start` ends when its terminal goes: SIGHUP (a closed terminal, a dropped SSH session) is an orderly
// stop like SIGTERM — its default ended the process at once, bitcoind and the store unstopped — and a terminal that
// cannot be written to any more (`npm start 2>&1 | tee x.log`, tee ended by the same Ctrl-C: EPIPE) no longer
// crashes the engine part-way through its stop with an unhandled 'error' event.
import t, { type Test } from "tap";
import { spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pino } from "pino";
import { stopSignals } from "../../src/app.ts";
import { runigunBin } from "../support/cli.ts";

t.test("SIGHUP asks for the orderly stop, as SIGTERM does; a second signal forces it", async (t) => {
  const signals = new EventEmitter();
  const said: string[] = [];
  let exited!: (code: number) => void;
  const exit = new Promise<number>((r) => (exited = r));
  const stop = stopSignals(pino({ level: "silent" }), { signals, say: (l) => void said.push(l), exit: (code) => exited(code) });
  t.teardown(() => stop.done());
  signals.emit("SIGHUP");
  const first = await Promise.race([stop.signalled.then(() => "stopping"), new Promise((r) => setTimeout(() => r("ignored"), 1000))]);
  t.equal(first, "stopping");
  t.match(said.join("\n"), /stopping \(SIGHUP; send it again to force\)/);
  signals.emit("SIGTERM");
  t.equal(await Promise.race([exit, new Promise((r) => setTimeout(() => r("not forced"), 1000))]), 1, "the second signal forces the exit");
  stop.done();
  t.equal(signals.listenerCount("SIGHUP"), 0, "done() removes its handler");
});

/** `runigun start` with the local chat, up to its banner; stdin at its end (a service manager's, not a terminal). */
async function started(t: Test) {
  const dir = t.testdir();
  const env: NodeJS.ProcessEnv = {
    ...process.env, RUNIGUN_DATA_DIR: dir, RUNIGUN_TELEGRAM_TOKEN: "", RUNIGUN_TELEGRAM_TOKEN_FILE: "", RUNIGUN_ADMIN_ENABLED: "false",
    RUNIGUN_NETWORK: "regtest", RUNIGUN_IDENTITY_MEMORY_KI_B: "1024", RUNIGUN_IDENTITY_TIME_COST: "1", RUNIGUN_LOG_LEVEL: "info",
  };
  const run = spawn(process.execPath, [runigunBin, "start"], { env, stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => run.once("exit", (code, signal) => r({ code, signal })));
  t.teardown(() => void run.kill("SIGKILL"));
  let out = "";
  run.stderr.on("data", (d: Buffer) => (out += d.toString()));
  await new Promise<void>((resolve, reject) => {
    run.stdout.on("data", (d: Buffer) => (out += d.toString(), /local chat:/.test(out) && resolve()));
    run.once("exit", (code) => reject(new Error(`start exited (${code}): ${out}`)));
  });
  return { dir, run, exited, out: () => out };
}

/** What says the stop was whole: bitcoind shut down in order (its last words), no error in the engine's log. */
function stoppedInOrder(t: Test, dir: string) {
  const debug = readFileSync(join(dir, "bitcoind", "regtest", "debug.log"), "utf8").trim().split("\n");
  t.match(debug.at(-1), /Shutdown: done/, "bitcoind was stopped in order");
  t.notMatch(readFileSync(join(dir, "engine.log"), "utf8"), /"level":(50|60)/, "no error while stopping");
}

t.test("Ctrl-C with the output piped to a reader already gone (EPIPE): the stop finishes, exit 0", { timeout: 120_000 }, async (t) => {
  const s = await started(t);
  // tee, ended by the same Ctrl-C: whatever the engine writes now fails with EPIPE.
  s.run.stdout.destroy();
  s.run.stderr.destroy();
  s.run.kill("SIGINT");
  t.same(await s.exited, { code: 0, signal: null }, "no crash on the write that failed");
  stoppedInOrder(t, s.dir);
});

t.test("SIGHUP (the terminal closed): the orderly stop, bitcoind included, exit 0", { timeout: 120_000 }, async (t) => {
  const s = await started(t);
  s.run.kill("SIGHUP");
  t.same(await s.exited, { code: 0, signal: null }, "exit 0, not ended by the signal");
  t.match(s.out(), /stopping \(SIGHUP; send it again to force\)[\s\S]*stopped \(bitcoind included\)/);
  stoppedInOrder(t, s.dir);
});
