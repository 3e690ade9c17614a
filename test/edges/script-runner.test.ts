// The script edge itself: the format is checked before anything runs, the engine comes from an injected
// factory (here the test engine), and failures read as what was sent, expected and said.
import t from "tap";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { startTestEngine } from "../support/engine.ts";
import { matches, parseScript, runScripts, type MakeEngine } from "../../src/edges/script/runner.ts";

function capture() {
  const out = new PassThrough();
  let text = "";
  out.on("data", (d: Buffer) => (text += d.toString()));
  return { out, text: () => text };
}

/** The lead's test engine behind the script edge's factory interface; counts what it was asked for. */
function testEngineFactory() {
  const seen: { overrides: unknown[]; restarts: number } = { overrides: [], restarts: 0 };
  const make: MakeEngine = async (overrides) => {
    seen.overrides.push(overrides);
    const te = await startTestEngine(overrides);
    await te.node.ensureMatureCoins();
    const parts = () => ({ relay: te.engine.relay, identity: te.identity, handleKey: te.handleKey, config: te.config });
    return {
      ...parts(),
      chain: {
        fund: (a, btc) => te.node.fund(a, btc),
        mine: async (n) => (await te.mine(n), await te.engine.payouts.sync()),
        address: () => te.node.outsideAddress(),
      },
      async restart() {
        seen.restarts++;
        await te.restart({ crash: true });
        return parts();
      },
      stop: () => te.stop(),
    };
  };
  return { make, seen };
}

t.test("the format is checked before an engine starts", async (t) => {
  const bad: Array<[string, RegExp]> = [
    ["name: x\nsteps:\n  - { user: a, says: /start, expcet: hi }\n", /step 1: unknown key `expcet`/],
    ["name: x\nsteps:\n  - { user: a, says: /start, press: Confirm }\n", /step 1: a step does exactly one of .*found says, press/],
    ["name: x\nsteps:\n  - { says: /start }\n", /step 1: `says` needs `user`/],
    ["name: x\nsteps:\n  - { user: a, press: Confirm, group: g1 }\n", /`group` and `reply_to` go with `says`/],
    ["name: x\nsteps:\n  - { user: a, says: /tip 1, reply_to: b }\n", /`reply_to` needs `group`/],
    ["name: x\nsteps:\n  - { chain: { fund: x } }\n", /needs `btc` as decimal text/],
    ["name: x\nsteps:\n  - { chain: { mine: 0 } }\n", /from 1 to 1000/],
    ["name: x\nsteps:\n  - { chain: { mine: 1, address: ext } }\n", /does one of fund, mine, address/],
    ["name: x\nsteps:\n  - { chain: { mine: 1 }, expect: x }\n", /nothing to expect/],
    ["name: x\nsteps:\n  - { restart: node }\n", /`restart` takes `engine`/],
    ["name: x\nsteps:\n  - { user: a, says: hi, capture: { v: \"(\" } }\n", /capture `v`/],
    ["name: x\nsteps: []\n", /non-empty list of `steps`/],
    ["steps:\n  - { user: a, says: hi }\n", /needs a `name`/],
    ["name: x\nstep: []\n", /unknown top-level key `step`/],
    ["name: [x\n", /not valid YAML/],
  ];
  for (const [yaml, why] of bad) t.throws(() => parseScript(yaml), why, why.source);
  const ok = parseScript("name: n\nconfig: { confirmations: 2 }\nsteps:\n  - { chain: { fund: \"${a}\", btc: 0.5 } }\n  - { user: a, says: 100, expect: 5, timeout_ms: 10 }\n");
  t.same(ok.steps[0]!.chain, { fund: "${a}", btc: "0.5" }, "YAML numbers are taken as the text they were written as");
  t.same(ok.steps[1], { user: "a", says: "100", expect: "5", timeout_ms: 10 });

  const file = join(t.testdir(), "typo.yaml");
  writeFileSync(file, "name: typo\nsteps:\n  - { user: a, says: /start, expcet: x }\n");
  const c = capture();
  const { make, seen } = testEngineFactory();
  t.equal(await runScripts([file], { output: c.out, makeEngine: make }), 1);
  t.match(c.text(), /✗ .*typo\.yaml: step 1: unknown key `expcet`[\s\S]*0 passed, 1 failed/);
  t.equal(seen.overrides.length, 0, "no engine was started for a broken script");
  t.equal(await runScripts([], { output: c.out }), 2, "usage without files");
});

t.test("numbers in steps are the text as written, never a double's rendering of it", async (t) => {
  const step = (yaml: string) => parseScript(`name: n\nsteps:\n  - ${yaml}\n`).steps[0]!;
  const valueOrError = (f: () => unknown) => {
    try {
      return f();
    } catch (e) {
      return (e as Error).message;
    }
  };
  t.equal(step("{ user: a, says: 0.00000500 }").says, "0.00000500", "says sends the trailing zeros, not 0.000005");
  t.throws(() => step("{ chain: { fund: x, btc: 0x10 } }"), /step 1: `chain.fund` needs `btc` as decimal text/, "0x10 is not decimal text (not 16 BTC)");
  t.same(valueOrError(() => step("{ chain: { fund: x, btc: 0.00000001 } }").chain), { fund: "x", btc: "0.00000001" }, "one satoshi is decimal text (not 1e-8)");
  const expect = step("{ user: a, says: /balance, expect: 1.50000000 }").expect!;
  t.equal(expect, "1.50000000");
  t.notOk(matches(expect, "Available: 1.55 BTC"), "so 1.55 does not pass for 1.50000000");
  t.same(step("{ user: a, says: true, expect: 1e3, timeout_ms: 10 }"), { user: "a", says: "true", expect: "1e3", timeout_ms: 10 }, "booleans too; counts are still numbers");
  const typed = parseScript("name: n\nconfig: { confirmations: 2, telegram: { commandsPerMinute: 100 }, admin: { enabled: false } }\nsteps:\n  - { chain: { mine: 1 } }\n");
  t.same(typed.config, { confirmations: 2, telegram: { commandsPerMinute: 100 }, admin: { enabled: false } }, "config: keeps its numbers and booleans");
});

t.test("expectations: a substring, or /regex/flags", async (t) => {
  t.ok(matches("0.5 BTC", "Available: 0.5 BTC (…)"));
  t.notOk(matches("0.5 BTC", "Available: 0.25 BTC"));
  t.ok(matches("/available: 0\\.5/i", "Available: 0.5 BTC"));
  t.notOk(matches("/available: 0\\.5/", "Available: 0.5 BTC"));
  t.ok(matches("/^a$/m", "x\na\ny"));
});

t.test("an injected engine: config overrides, notifications, a crash restart", async (t) => {
  const file = join(t.testdir(), "injected.yaml");
  writeFileSync(file, `name: injected engine
config: { confirmations: 2 }
steps:
  - { user: zoe, says: /start, expect: "after 2 confirmations" }
  - { user: zoe, says: /deposit, capture: { addr: "(bcrt1[0-9a-z]+)" } }
  - { chain: { fund: "\${addr}", btc: "0.01" } }
  - { chain: { mine: 1 } }
  - { user: zoe, notified: "Deposit seen" }
  - { restart: engine }
  - { user: zoe, says: /balance, expect: "/Pending: 0\\\\.01 BTC/", expect_not: "Available: 0.01" }
  - { chain: { mine: 1 } }
  - { user: zoe, notified: "/Deposit confirmed: 0\\\\.01 BTC/" }
  - { user: zoe, says: /balance, expect: "Available: 0.01 BTC" }
  - { user: zoe, says: "/withdraw bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4 0.001", expect_error: "mainnet" }
`);
  const c = capture();
  const { make, seen } = testEngineFactory();
  t.equal(await runScripts([file], { output: c.out, makeEngine: make }), 0, c.text());
  t.match(seen.overrides[0], { deposits: { confirmations: 2 } }, "the script's config reached the factory");
  t.equal(seen.restarts, 1);
  t.match(c.text(), /✓ injected engine \(11 steps/);
});

t.test("failures say where, what was sent, what was expected and what the bot said", async (t) => {
  const file = join(t.testdir(), "fails.yaml");
  const c = capture();
  const { make } = testEngineFactory();
  const run = async (steps: string) => {
    writeFileSync(file, `name: fails\nsteps:\n${steps}`);
    const before = c.text().length;
    t.equal(await runScripts([file], { output: c.out, makeEngine: make }), 1);
    return c.text().slice(before);
  };
  let out = await run("  - { user: zed, says: /start }\n  - { user: zed, says: /balance, expect: \"Available: 9 BTC\" }\n");
  t.match(out, /step 2: .*\n\s+zed says "\/balance"\n\s+expected "Available: 9 BTC"\n\s+the bot said:\n\s+\| Available: 0\.0 BTC/);
  t.match(out, /closest:\n\s+- Available: 9 BTC\n\s+\+ Available: 0\.0 BTC/, "a plain expectation gets a two-line diff");
  out = await run("  - { user: zed, says: /start }\n  - { user: zed, says: /balance, expect_error: \"x\" }\n");
  t.match(out, /expected a refusal matching "x"/);
  out = await run("  - { user: zed, says: \"/withdraw ${nowhere} 1\" }\n");
  t.match(out, /\$\{nowhere\} is not captured yet/);
  out = await run("  - { user: zed, press: Confirm }\n");
  t.match(out, /no button "Confirm" in zed's chat/);
  out = await run("  - { user: zed, says: /start }\n  - { user: zed, notified: \"confirmed\", timeout_ms: 300 }\n");
  t.match(out, /step 2: .*\n.*\n\s+no notification matching "confirmed" within 300 ms/);
  t.notMatch(out, /the engine logged/, "nothing logged, nothing added");

  // What the engine warned about comes with the failure: a missed notification usually has its reason there.
  writeFileSync(file, "name: fails\nsteps:\n  - { user: zed, notified: \"confirmed\", timeout_ms: 50 }\n");
  const logging: MakeEngine = async (o) => ({ ...(await make(o)), warnings: () => ["warn: deposit scan failed; it will run again — connect ECONNREFUSED"] });
  const before = c.text().length;
  t.equal(await runScripts([file], { output: c.out, makeEngine: logging }), 1);
  t.match(c.text().slice(before), /within 50 ms\n\s+the engine logged:\n\s+\| warn: deposit scan failed; it will run again — connect ECONNREFUSED/);
});
