// The edge key and the pepper refuse what would make them the same on every installation, or weaker than they look: a
// PEM file (a TLS key or certificate: pki/bot-client.key sits beside them on the bot's host), and an edge key given as
// a passphrase longer than the 32 bytes used. Each refusal says what to do; where the old secret must be kept (the
// pepper every wallet was made with, the edge key the chat handles are sealed under), the command it gives writes the
// very same bytes as hex, and the secret itself is never in the message.
import t, { type Test } from "tap";
import { execFileSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadConfig } from "../../src/config.ts";
import { loadEdgeSecrets } from "../../src/secrets.ts";
import { silentLogger } from "../../src/log.ts";

const PEPPER = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const EDGE = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

function load(dir: string, env: Record<string, string>) {
  return loadEdgeSecrets(loadConfig({ env: { RUNIGUN_NETWORK: "signet", RUNIGUN_DATA_DIR: join(dir, "data"), ...env } }), silentLogger);
}

function refusal(dir: string, env: Record<string, string>): string {
  try {
    load(dir, env);
  } catch (e) {
    return (e as Error).message;
  }
  return "accepted";
}

function secretFile(path: string, text: string): string {
  writeFileSync(path, text, { mode: 0o600 });
  return path;
}

/** Runs the command a refusal gives to keep the secret, writing to `out`; `env`: where the secret was given in. */
function keep(t: Test, message: string, out: string, env: Record<string, string> = {}): string {
  const cmd = /: (\(umask 077; set -C; node -e .*> NEWFILE\))/.exec(message)?.[1];
  if (!cmd) return "no command in the message";
  // Pointed at the secret's own file (an operator converting in place), it refuses: that file stays as it was.
  // (The path as the shell word has it: a quote in it is written '\''.)
  const source = /readFileSync\("([^"]+)"/.exec(cmd)?.[1]?.replaceAll("'\\''", "'");
  if (source) {
    const before = readFileSync(source);
    t.throws(() => execFileSync("sh", ["-c", cmd.replace("NEWFILE", `'${source}'`)], { stdio: "ignore", env: { ...process.env, ...env } }), "in place: refused");
    t.same(readFileSync(source), before, "and the secret's own file is untouched");
  }
  execFileSync("sh", ["-c", cmd.replace("NEWFILE", `'${out}'`)], { env: { ...process.env, ...env } });
  t.equal((statSync(out).mode & 0o777).toString(8), "600", "the kept secret's file is 0600, as the loader wants");
  return out;
}

t.test("a PEM file as the edge key or the pepper is refused; a pepper kept by the command given is the same pepper", async (t) => {
  const dir = t.testdir();
  const key = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" }) as string;
  const pem = secretFile(join(dir, "bot-client.key"), key);
  // Before: accepted, and the handle key was "-----BEGIN PRIVATE KEY-----\nMIGH", every installation's.
  const edge = refusal(dir, { RUNIGUN_PEPPER: PEPPER, RUNIGUN_EDGE_KEY_FILE: pem });
  t.match(edge, /^RUNIGUN_EDGE_KEY_FILE \(.*bot-client\.key\) holds a PEM file \(a TLS key or certificate\), not an edge key: make one with "runigun keys pepper --out FILE".*next \/start/);
  t.notMatch(edge, /umask/, "no way offered to keep an edge key everybody knows");
  t.match(refusal(dir, { RUNIGUN_PEPPER: PEPPER, RUNIGUN_EDGE_KEY: key }), /^RUNIGUN_EDGE_KEY holds a PEM file/, "from the environment too");
  const pepper = refusal(dir, { RUNIGUN_PEPPER_FILE: pem, RUNIGUN_EDGE_KEY: EDGE });
  t.match(pepper, /^RUNIGUN_PEPPER_FILE \(.*\) holds a PEM file .*not a pepper.*keep it by writing the same bytes as hex/);
  t.notMatch(pepper, /MIG|BEGIN PRIVATE/, "never the secret");
  const kept = keep(t, pepper, join(dir, "pepper.hex"));
  t.same(load(dir, { RUNIGUN_PEPPER_FILE: kept, RUNIGUN_EDGE_KEY: EDGE }).pepper, Buffer.from(key.trim(), "utf8"), "the same bytes: every wallet made with it is still found");
});

t.test("an edge key given as a passphrase longer than 32 bytes is refused; kept by the command given, it is the key used before", async (t) => {
  const dir = t.testdir();
  const phrase = "correct horse battery staple, and then some more words of it";
  const usedBefore = Buffer.from(phrase, "utf8").subarray(0, 32);
  const file = secretFile(join(dir, "edge's.key"), `${phrase}\n`);
  // Before: accepted, silently cut to its first 32 bytes.
  const fromFile = refusal(dir, { RUNIGUN_PEPPER: PEPPER, RUNIGUN_EDGE_KEY_FILE: file });
  t.match(fromFile, /^RUNIGUN_EDGE_KEY_FILE \(.*\): the edge key is a passphrase of 60 bytes, and only its first 32 are used.*keep the key this installation has used.*or make a new one with "runigun keys pepper --out FILE"/);
  t.notMatch(fromFile, /horse|staple/, "never the secret");
  t.same(load(dir, { RUNIGUN_PEPPER: PEPPER, RUNIGUN_EDGE_KEY_FILE: keep(t, fromFile, join(dir, "edge1.hex")) }).handleKey, usedBefore, "a file's passphrase: the chat handles sealed so far still open");
  const fromEnv = refusal(dir, { RUNIGUN_PEPPER: PEPPER, RUNIGUN_EDGE_KEY: `${phrase}\n` });
  t.match(fromEnv, /^RUNIGUN_EDGE_KEY: the edge key is a passphrase of 60 bytes.*unset RUNIGUN_EDGE_KEY/);
  const keptEnv = keep(t, fromEnv, join(dir, "edge2.hex"), { RUNIGUN_EDGE_KEY: `${phrase}\n` });
  t.equal(readFileSync(keptEnv, "utf8"), `${usedBefore.toString("hex")}\n`);
  t.same(load(dir, { RUNIGUN_PEPPER: PEPPER, RUNIGUN_EDGE_KEY_FILE: keptEnv }).handleKey, usedBefore, "from the environment: the same key");
  // What is not cut stays accepted: a passphrase of exactly 32 bytes, longer hex (random: its first 32 bytes are as
  // good), and a long passphrase as the pepper (used whole).
  t.same(load(dir, { RUNIGUN_PEPPER: PEPPER, RUNIGUN_EDGE_KEY: phrase.slice(0, 32) }).handleKey, usedBefore);
  t.equal(load(dir, { RUNIGUN_PEPPER: PEPPER, RUNIGUN_EDGE_KEY: EDGE + "0011" }).handleKey.toString("hex"), EDGE);
  t.same(load(dir, { RUNIGUN_PEPPER: phrase, RUNIGUN_EDGE_KEY: EDGE }).pepper, Buffer.from(phrase, "utf8"));
});
