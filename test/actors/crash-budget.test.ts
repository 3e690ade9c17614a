// The crash budget of the singleton actors (payouts, cheques): replay, and stop only after repeated crashes of their
// own, never for crashes while the store cannot write.
import t from "tap";
import { crashBudget, crashRefusal } from "../../src/actors/crash-budget.ts";
import { StoreError } from "../../src/store/errors.ts";
import { silentLogger } from "../../src/log.ts";

t.test("more than `max` crashes within the window stop the actor; older ones and those while the store fails do not count", async (t) => {
  let now = 0, failing = false;
  const after = crashBudget({ log: silentLogger, what: "test actor", stopped: "stopped", storeFailing: () => failing, max: 2, windowMs: 1000, now: () => now });
  t.same([after(new Error("a")), after(new Error("b"))], ["reset", "reset"]);
  failing = true;
  t.same(Array.from({ length: 10 }, () => after(new Error("disk full"))), Array(10).fill("reset"), "a full disk: replayed, never stopped");
  failing = false;
  now = 1500;
  t.equal(after(new Error("c")), "reset", "the first two are out of the window");
  t.equal(after(new Error("d")), "reset");
  t.equal(after(new Error("e")), "stop", "the third within the window stops it");
});

t.test("a crashed command's answer: 'nothing was moved' unless the store could not learn whether its write reached the disk", async (t) => {
  const unknown = new StoreError("write_failed", "a write failed", { written: "unknown" });
  t.match(crashRefusal(unknown), { code: "busy", message: /may still have been done\. Check your balance/ }, "may have been done: the caller looks before a retry");
  t.match(crashRefusal(new StoreError("write_failed", "a write failed", { written: "no" })), { code: "internal", message: /nothing was moved/ });
  t.match(crashRefusal(new Error("a bug")), { code: "internal", message: /nothing was moved/ });
});
