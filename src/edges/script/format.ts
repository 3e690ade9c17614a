// The scenario format of the script edge (docs/scripts.md): parsing, a strict check of every step before
// anything runs (a typo such as `expcet:` must fail loudly, not pass silently), and expectation matching.
import { isNode, parseDocument, visit } from "yaml";
import type { ConfigFile, DeepPartial } from "../../config.ts";

export interface Step {
  user?: string;
  says?: string;
  press?: string;
  notified?: string;
  group?: string;
  reply_to?: string;
  expect?: string;
  expect_not?: string;
  expect_error?: string;
  capture?: Record<string, string>;
  chain?: { fund?: string; btc?: string; mine?: number; address?: string };
  restart?: "engine";
  timeout_ms?: number;
}

export interface Script {
  name: string;
  config?: Record<string, unknown>;
  steps: Step[];
}

export class ScriptError extends Error {}

const STEP_KEYS = new Set(["user", "says", "press", "notified", "group", "reply_to", "expect", "expect_not", "expect_error", "capture", "chain", "restart", "timeout_ms"]);
const ACTIONS = ["says", "press", "notified", "chain", "restart"] as const;
const TEXT_KEYS = ["user", "says", "press", "notified", "group", "reply_to", "expect", "expect_not", "expect_error"] as const;
const NAME = /^[A-Za-z_]\w{0,63}$/;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** Parses and checks a whole script; throws a ScriptError naming the step and the key at fault. */
export function parseScript(text: string): Script {
  const parsed = parseDocument(text);
  if (parsed.errors.length) throw new ScriptError(`not valid YAML: ${parsed.errors[0]!.message.split("\n")[0]}`);
  // Steps mean the text as written: YAML would read `says: 0.00000500` as 0.000005, `btc: 0x10` as 16 and
  // `expect: 1.50000000` as 1.5 (which 1.55 matches), all through a double. Every number or boolean in them gets its
  // source text back; `config:` keeps its types (engine settings are numbers and booleans).
  const stepNodes = parsed.get("steps", true);
  if (isNode(stepNodes)) {
    visit(stepNodes, {
      Scalar(_key, node) {
        if (typeof node.value === "number" || typeof node.value === "boolean") node.value = node.source ?? String(node.value);
      },
    });
  }
  const doc: unknown = parsed.toJS();
  if (!isObject(doc)) throw new ScriptError("a script is a mapping with `name` and `steps`");
  for (const k of Object.keys(doc)) if (!["name", "config", "steps"].includes(k)) throw new ScriptError(`unknown top-level key \`${k}\` (name, config, steps)`);
  if (typeof doc.name !== "string" || !doc.name.trim()) throw new ScriptError("a script needs a `name`");
  if (doc.config !== undefined && !isObject(doc.config)) throw new ScriptError("`config` must be a mapping");
  if (!Array.isArray(doc.steps) || doc.steps.length === 0) throw new ScriptError("a script needs a non-empty list of `steps`");
  const steps = doc.steps.map((raw, i) => checkStep(raw, i + 1));
  return { name: doc.name, ...(doc.config ? { config: doc.config as Record<string, unknown> } : {}), steps };
}

function checkStep(raw: unknown, n: number): Step {
  const bad = (why: string): never => {
    throw new ScriptError(`step ${n}: ${why}`);
  };
  if (!isObject(raw)) return bad("a step is a mapping, e.g. { user: alice, says: /start }");
  const step: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (!STEP_KEYS.has(k)) bad(`unknown key \`${k}\``);
    step[k] = v;
  }
  for (const k of TEXT_KEYS) if (step[k] !== undefined && typeof step[k] !== "string") bad(`\`${k}\` must be text`);
  const actions = ACTIONS.filter((a) => step[a] !== undefined);
  if (actions.length !== 1) bad(`a step does exactly one of ${ACTIONS.join(", ")} (found ${actions.length ? actions.join(", ") : "none"})`);
  const action = actions[0]!;
  if (["says", "press", "notified"].includes(action) && !step.user) bad(`\`${action}\` needs \`user\``);
  if ((step.group !== undefined || step.reply_to !== undefined) && action !== "says") bad("`group` and `reply_to` go with `says`");
  if (step.reply_to !== undefined && step.group === undefined) bad("`reply_to` needs `group` (replies are group messages)");
  if ((action === "chain" || action === "restart") && step.user !== undefined) bad(`\`${action}\` takes no \`user\``);
  if ((action === "chain" || action === "restart") && ["expect", "expect_not", "expect_error", "capture"].some((k) => step[k] !== undefined)) {
    bad(`\`${action}\` steps have nothing to expect or capture`);
  }
  if (action === "restart" && step.restart !== "engine") bad("`restart` takes `engine`");
  if (step.timeout_ms !== undefined && (!Number.isInteger(Number(step.timeout_ms)) || Number(step.timeout_ms) < 1 || Number(step.timeout_ms) > 600_000)) {
    bad("`timeout_ms` is a whole number of milliseconds up to 600000");
  }
  if (step.timeout_ms !== undefined) step.timeout_ms = Number(step.timeout_ms);
  if (step.capture !== undefined) {
    if (!isObject(step.capture)) bad("`capture` maps names to regular expressions");
    for (const [name, pattern] of Object.entries(step.capture as Record<string, unknown>)) {
      if (!NAME.test(name)) bad(`capture name \`${name}\` must be a word`);
      if (typeof pattern !== "string") bad(`capture \`${name}\` must be a regular expression as text`);
      try {
        new RegExp(pattern as string);
      } catch (e) {
        bad(`capture \`${name}\`: ${(e as Error).message}`);
      }
    }
  }
  if (action === "chain") step.chain = checkChain(step.chain, bad);
  return step as Step;
}

function checkChain(raw: unknown, bad: (why: string) => never): Step["chain"] {
  if (!isObject(raw)) return bad("`chain` takes { fund, btc }, { mine } or { address }");
  const c: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (!["fund", "btc", "mine", "address"].includes(k)) bad(`unknown chain key \`${k}\``);
    c[k] = v;
  }
  const kinds = ["fund", "mine", "address"].filter((k) => c[k] !== undefined);
  if (kinds.length !== 1) bad("`chain` does one of fund, mine, address");
  if (c.fund !== undefined) {
    if (typeof c.fund !== "string") bad("`chain.fund` is an address (or ${var})");
    if (typeof c.btc !== "string" || !/^(\d{1,8}(\.\d{1,8})?|\$\{\w+\})$/.test(c.btc)) bad("`chain.fund` needs `btc` as decimal text with at most 8 decimals, e.g. \"0.5\"");
  } else if (c.btc !== undefined) bad("`btc` goes with `fund`");
  if (c.mine !== undefined) {
    const n = Number(c.mine);
    if (!Number.isInteger(n) || n < 1 || n > 1000) bad("`chain.mine` is a number of blocks from 1 to 1000");
    c.mine = n;
  }
  if (c.address !== undefined && (typeof c.address !== "string" || !NAME.test(c.address))) bad("`chain.address` names the variable to capture, e.g. ext");
  return c as Step["chain"];
}

/** EXPECT is a substring, or `/regex/flags`. */
export function matches(expect: string, text: string): boolean {
  const re = /^\/(.*)\/([dgimsuy]*)$/s.exec(expect);
  return re ? new RegExp(re[1]!, re[2]).test(text) : text.includes(expect);
}

/** Shorthands a script may use in `config:` besides full nested keys. */
export function overridesOf(c: Record<string, unknown> = {}): DeepPartial<ConfigFile> {
  const { confirmations, batch_window_ms, ...rest } = c;
  const o = rest as DeepPartial<ConfigFile>;
  if (confirmations !== undefined) o.deposits = { ...o.deposits, confirmations: Number(confirmations) };
  if (batch_window_ms !== undefined) o.withdrawals = { ...o.withdrawals, batchWindowMs: Number(batch_window_ms) };
  return o;
}
