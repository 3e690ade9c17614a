// Privacy in logs: whatever the engine logs, the fields that can carry a secret or a person's identity are
// censored at every level the redaction covers, while what operators need (refusal codes, errors) stays readable.
import t from "tap";
import { alerter, createLogger, REDACTED_FIELDS } from "../../src/log.ts";

function capture() {
  const lines: string[] = [];
  const log = createLogger({ level: "info", destination: { write: (s: string) => void lines.push(s) } });
  return { log, text: () => lines.join("") };
}

t.test("every redacted field is censored at the first three levels of nesting", async (t) => {
  const { log, text } = capture();
  REDACTED_FIELDS.forEach((field, i) => {
    const secret = `SECRET-${i}-${field}`;
    log.warn({ [field]: secret, a: { [field]: `${secret}-1` }, b: { c: { [field]: `${secret}-2` } } }, "probe");
  });
  const out = text();
  t.notMatch(out, /SECRET-/, "no value of a redacted field reaches the log");
  t.equal(out.match(/\[redacted\]/g)?.length, REDACTED_FIELDS.length * 3);
});

t.test("the fields a telegram update or a chat would bring are among them", async (t) => {
  for (const f of ["telegramId", "chatId", "from", "chat", "text", "token", "pepper", "masterKey", "chatHandle", "totp"]) {
    t.ok(REDACTED_FIELDS.includes(f), f);
  }
});

t.test("refusal codes and error messages stay readable for operators", async (t) => {
  const { log, text } = capture();
  log.warn({ userKey: "u_1", refusal: "busy", err: new Error("connect ECONNREFUSED 127.0.0.1:18443") }, "a wallet did not take a deposit yet; the scan repeats");
  const line = JSON.parse(text()) as { refusal: string; userKey: string; err: { message: string } };
  t.equal(line.refusal, "busy");
  t.equal(line.userKey, "u_1", "user keys are derived, not raw ids: they stay");
  t.match(line.err.message, /ECONNREFUSED/);
});

t.test("error codes stay readable: a full disk, a refused connection, Telegram's 401 or 409", async (t) => {
  const { log, text } = capture();
  log.error({ err: Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" }) }, "disk");
  log.warn({ err: Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:18443"), { code: "ECONNREFUSED" }) }, "node");
  log.error({ err: { name: "GrammyError", method: "getUpdates", code: 409 } }, "telegram");
  const lines = text().trim().split("\n").map((l) => JSON.parse(l) as { err: { code: unknown } });
  t.same(lines.map((l) => l.err.code), ["ENOSPC", "ECONNREFUSED", 409]);
});

/** Every log call in the sources with its object's fields (up to the first `}`), where it is, and its start. */
async function logCalls(): Promise<{ files: number; calls: Array<{ where: string; fields: string; text: string }> }> {
  const { readFileSync, readdirSync } = await import("node:fs");
  const { join } = await import("node:path");
  const root = new URL("../../src/", import.meta.url).pathname;
  const files = (readdirSync(root, { recursive: true }) as string[]).filter((f) => f.endsWith(".ts")).map((f) => join(root, f));
  const call = /log\??\.(?:trace|debug|info|warn|error|fatal)\(\{([^}]*)\}/g;
  const calls = files.flatMap((file) => [...readFileSync(file, "utf8").matchAll(call)].map((m) => ({ where: file.slice(root.length), fields: m[1]!, text: m[0].slice(0, 120) })));
  return { files: files.length, calls };
}

t.test("nothing is logged under a field named code but error codes (a cheque's claim code is a secret)", async (t) => {
  const offenders: string[] = [];
  for (const c of (await logCalls()).calls) {
    // `code: …` or a shorthand `code`, unless inside the `err` summary (`err: { name, code: e.error_code }`);
    // `refusal: r.code` (a refusal's code, public) is not a field named code.
    const at = c.fields.search(/(?:^|[{,\s])code\s*(?::|,|$)/);
    const err = c.fields.search(/\berr\s*:/);
    if (at >= 0 && !(err >= 0 && err < at)) offenders.push(`${c.where}: ${c.text}`);
  }
  t.same(offenders, []);
});

t.test("an alert that stays true alerts once, then counts its repeats at warn level, then reminds after the interval", async (t) => {
  const lines: Array<{ level: number; msg: string; alert?: boolean; repeats?: number; id?: string }> = [];
  const log = createLogger({ level: "info", destination: { write: (s: string) => void lines.push(JSON.parse(s)) } });
  let clock = 0;
  const alert = alerter(log, { repeatMs: 60_000, max: 2, now: () => clock });
  alert("a wallet did not settle", { id: "p1" });
  clock = 10_000;
  alert("a wallet did not settle", { id: "p1" });
  alert("a wallet did not settle", { id: "p2" });
  clock = 70_000;
  alert("a wallet did not settle", { id: "p1" });
  t.same(lines.map((l) => [l.level, l.id, l.alert ?? false, l.repeats ?? 0]), [
    [50, "p1", true, 0], [40, "p1", false, 1], [50, "p2", true, 0], [50, "p1", true, 1],
  ], "first: error with alert; a repeat: warn; another detail: its own alert; after the interval: a reminder counting the repeats");
  alert("a third", { id: "p3" });
  alert("a wallet did not settle", { id: "p2" });
  t.same(lines.slice(-1).map((l) => [l.level, l.alert]), [[50, true]], "the oldest key is forgotten beyond `max`");
});

t.test("no log line ties a user to an address: never a user key beside an outpoint, an address, a txid or an amount", async (t) => {
  const { files, calls } = await logCalls();
  const offenders: string[] = [];
  for (const c of calls) {
    // An exact amount with the line's time points at an output on chain as surely as its outpoint.
    if (/\buserKey\b|\bowner\b/.test(c.fields) && /\b(outpoint|address|txid|sats|amount)\b/.test(c.fields)) offenders.push(`${c.where}: ${c.text}`);
  }
  t.ok(files > 50, `${files} source files read`);
  t.same(offenders, [], "DESIGN: logs redact addresses' owners (an operator finds the wallet through the admin edge)");
});
