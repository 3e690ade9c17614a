// How `runigun start`, `runigun engine` and `runigun bot` take SIGINT and SIGTERM (stopSignals): the first asks for an
// orderly stop and says so; a second of either kind, or a stop past its deadline, ends the process, saying what the
// stop was waiting for. Signals are emitted on a stand-in emitter and the exit is recorded: a real signal to this
// process would reach tap's own handlers too, and a child process per case would take seconds for what these check.
import t from "tap";
import { EventEmitter } from "node:events";
import { pino } from "pino";
import { stopSignals } from "../src/app.ts";

function harness(deadlineMs = 60_000) {
  const signals = new EventEmitter();
  const said: string[] = [];
  const logged: string[] = [];
  let exited!: (code: number) => void;
  const exit = new Promise<number>((r) => (exited = r));
  const log = pino({ level: "info" }, { write: (s: string) => void logged.push(s) });
  const stop = stopSignals(log, { deadlineMs, signals, say: (l) => void said.push(l), exit: (code) => exited(code) });
  return { signals, said, logged, exit, stop };
}

t.test("the first signal stops in order and says how to force; a second, of the other kind, forces the exit", async (t) => {
  const h = harness();
  t.teardown(() => h.stop.done());
  h.signals.emit("SIGTERM");
  await h.stop.signalled;
  t.match(h.said.join("\n"), /stopping \(SIGTERM; send it again to force\)/);
  t.match(h.logged.join("\n"), /stopping \(send SIGINT or SIGTERM again to force\)/);
  h.stop.step("the internal API to close");
  // Before, each signal had a once-handler: a SIGINT after a SIGTERM was swallowed, a second SIGTERM killed unsaid.
  h.signals.emit("SIGINT");
  t.equal(await h.exit, 1, "exits non-zero");
  t.match(h.said.join("\n"), /SIGINT again: stop forced; was waiting for the internal API to close/);
  t.match(h.logged.join("\n"), /"waitingFor":"the internal API to close"/);
});

t.test("a stop past its deadline ends the process, saying what it waited for; a signal during the start does not start the clock", async (t) => {
  const h = harness(50);
  t.teardown(() => h.stop.done());
  h.signals.emit("SIGINT");
  // The start takes longer than the deadline (bitcoind warming up): not cut off, the stop begins once it is done.
  const early = await Promise.race([h.exit.then(() => "exited"), new Promise((res) => setTimeout(() => res("still starting"), 150))]);
  t.equal(early, "still starting", "the start is not cut off by the stop's deadline");
  h.stop.begin();
  h.stop.step("the engine to stop (actors, the store)");
  t.equal(await h.exit, 1);
  t.match(h.said.join("\n"), /the stop took longer than 0 s; was waiting for the engine to stop \(actors, the store\)/);
});

t.test("a stop that finishes: no exit, and the handlers are gone", async (t) => {
  const h = harness(50);
  h.signals.emit("SIGTERM");
  await h.stop.signalled;
  h.stop.begin();
  h.stop.done();
  t.equal(h.signals.listenerCount("SIGINT") + h.signals.listenerCount("SIGTERM"), 0);
  // The deadline was disarmed: the exit promise is still pending once twice the deadline has passed.
  const r = await Promise.race([h.exit.then(() => "exited"), new Promise((res) => setTimeout(() => res("still running"), 150))]);
  t.equal(r, "still running");
});
