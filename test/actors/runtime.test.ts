// The facade closes nact's holes (NOTES.md): these tests show each one closed.
import t from "tap";
import { ActorSystem, type Reply } from "../../src/actors/runtime.ts";

type Echo = { n: number; reply: Reply<number> };

t.test("concurrent asks never receive each other's answers", async (t) => {
  const system = new ActorSystem();
  t.teardown(() => system.shutdown());
  // Replies are delayed in random order, so answers interleave; nact's query ids are 31-bit random numbers
  // and would collide (birthday bound) at this volume; our replies travel in the message itself.
  const echo = system.spawn<null, Echo>("echo", null, (s, m) => {
    setTimeout(() => m.reply(m.n), Math.random() * 5);
    return s;
  });
  const N = 50_000;
  const answers = await Promise.all(Array.from({ length: N }, (_, n) => system.ask<Echo, number>(echo, (reply) => ({ n, reply }), 30_000)));
  t.equal(answers.filter((a, n) => a !== n).length, 0, `${N} answers all matched their question`);
});

t.test("a message to a stopped actor is an error, not a silent drop", async (t) => {
  const system = new ActorSystem();
  t.teardown(() => system.shutdown());
  const a = system.spawn<null, Echo>("a", null, (s, m) => (m.reply(m.n), s));
  t.equal(await system.ask<Echo, number>(a, (reply) => ({ n: 7, reply }), 1000), 7);
  system.stop(a);
  t.notOk(system.isRunning(a));
  t.throws(() => system.tell(a, { n: 1, reply: () => undefined }), { code: "actor_stopped" });
  await t.rejects(system.ask<Echo, number>(a, (reply) => ({ n: 1, reply }), 1000), { code: "actor_stopped" });
});

t.test("an ask that gets no answer times out with the actor's name", async (t) => {
  const system = new ActorSystem();
  t.teardown(() => system.shutdown());
  const mute = system.spawn<null, Echo>("mute", null, (s) => s);
  await t.rejects(system.ask<Echo, number>(mute, (reply) => ({ n: 1, reply }), 20), { code: "ask_timeout" });
});

t.test("a crash follows the given policy and the crashing message is reported", async (t) => {
  const system = new ActorSystem();
  t.teardown(() => system.shutdown());
  const seen: unknown[] = [];
  const counter = system.spawn<number, { boom?: boolean; reply: Reply<number> }>("counter", 0, (s, m) => {
    if (m.boom) throw new Error("boom");
    m.reply(s + 1);
    return s + 1;
  }, { onCrash: (r) => (seen.push(r.message), "resume") });
  t.equal(await system.ask(counter, (reply) => ({ reply }), 1000), 1);
  system.tell(counter, { boom: true, reply: () => undefined });
  t.equal(await system.ask(counter, (reply) => ({ reply }), 1000), 2, "resumed with its state");
  t.equal(seen.length, 1);
  let crashed!: () => void;
  const crash = new Promise<void>((r) => (crashed = r));
  const fragile = system.spawn<number, { reply: Reply<number> }>("fragile", 0, () => {
    throw new Error("always");
  }, { onCrash: () => (crashed(), "stop") });
  system.tell(fragile, { reply: () => undefined });
  await crash;
  t.notOk(system.isRunning(fragile), "stopped by policy, and the facade knows it");
});

t.test("after a shutdown, asks fail at once instead of waiting for their timeout", async (t) => {
  const system = new ActorSystem();
  const a = system.spawn<null, Echo>("late", null, (s) => s);
  const pending = system.ask<Echo, number>(a, (reply) => ({ n: 1, reply }), 60_000);
  system.shutdown();
  await t.rejects(pending, { code: "actor_stopped" }, "an ask in flight");
  const started = Date.now();
  await t.rejects(system.ask<Echo, number>(a, (reply) => ({ n: 2, reply }), 60_000), { code: "actor_stopped" }, "an ask made after");
  t.ok(Date.now() - started < 1000, "at once");
});
