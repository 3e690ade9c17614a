// Every example scenario passes under the script edge, and a failing one is reported with a readable diff.
import t from "tap";
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { runScripts } from "../../src/edges/script/runner.ts";

const dir = new URL("../../examples/scripts/", import.meta.url).pathname;

function capture() {
  const out = new PassThrough();
  let text = "";
  out.on("data", (d: Buffer) => (text += d.toString()));
  return { out, text: () => text };
}

for (const file of readdirSync(dir).filter((f) => f.endsWith(".yaml"))) {
  t.test(`example ${file}`, async (t) => {
    const c = capture();
    const code = await runScripts([join(dir, file)], { output: c.out });
    t.equal(code, 0, c.text());
  });
}

t.test("a failed expectation exits non-zero and says what the bot said", async (t) => {
  const file = join(t.testdir(), "fails.yaml");
  writeFileSync(file, 'name: wrong\nsteps:\n  - { user: zed, says: /start }\n  - { user: zed, says: /balance, expect: "Available: 9 BTC" }\n');
  const c = capture();
  t.equal(await runScripts([file], { output: c.out }), 1);
  t.match(c.text(), /step 2/);
  t.match(c.text(), /expected "Available: 9 BTC"/);
  t.match(c.text(), /\| Available: 0\.0 BTC/);
});
