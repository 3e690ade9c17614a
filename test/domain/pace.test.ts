// The pace of drain mode's announcements: never ahead of `perSecond` on average, no wait while behind it.
import t from "tap";
import { pace } from "../../src/pace.ts";

t.test("waits only as long as the items so far are ahead of the pace", async (t) => {
  let clock = 1_000;
  const waits: number[] = [];
  const paced = pace(20, { now: () => clock, sleep: async (ms) => void (waits.push(ms), (clock += ms)) });
  await paced(64); // 64 items at 20/s are due at 3.2 s
  t.same(waits, [3200]);
  clock += 5_000; // slow work meanwhile: behind the pace, no wait
  await paced(10);
  t.same(waits, [3200]);
  await paced(200); // 274 items are due at 13.7 s; 8.2 s have passed
  t.same(waits, [3200, 5500]);
  await paced(0);
  t.same(waits, [3200, 5500], "nothing told, nothing to wait for");
});

t.test("the wall clock set back does not lengthen the wait: the pace keeps its own time", async (t) => {
  const waits: number[] = [];
  const realNow = Date.now;
  t.teardown(() => void (Date.now = realNow));
  let offset = 0;
  Date.now = () => realNow() + offset;
  const paced = pace(20, { sleep: async (ms) => void waits.push(ms) });
  offset = -3_600_000; // an hour back, as an NTP step would
  await paced(64);
  t.equal(waits.length, 1);
  t.ok(waits[0]! <= 3200, `waited ${Math.round(waits[0]!)} ms for 64 items at 20/s, not an hour more`);
});
