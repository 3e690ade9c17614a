// The edge's secrets (identity pepper, edge key) read the same from the environment as from a file: trimmed, and hex
// that is not whole bytes refused by the variable's name, without the secret in the message.
import t from "tap";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadConfig } from "../../src/config.ts";
import { loadEdgeSecrets } from "../../src/secrets.ts";
import { silentLogger } from "../../src/log.ts";
import { generateKeyRingFile } from "../../src/store/keyring.ts";

const PEPPER = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const EDGE = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

function load(dir: string, env: Record<string, string>) {
  return loadEdgeSecrets(loadConfig({ env: { RUNIGUN_NETWORK: "signet", RUNIGUN_DATA_DIR: join(dir, "data"), ...env } }), silentLogger);
}

function secretFile(dir: string, name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text, { mode: 0o600 });
  return path;
}

t.test("the same pepper and edge key from a file and from the environment, with or without a trailing newline, are the same secret", async (t) => {
  const dir = t.testdir();
  const fromFiles = load(dir, { RUNIGUN_PEPPER_FILE: secretFile(dir, "pepper", `${PEPPER}\n`), RUNIGUN_EDGE_KEY_FILE: secretFile(dir, "edge.key", `${EDGE}\n`) });
  t.equal(fromFiles.pepper.toString("hex"), PEPPER, "a file's hex is decoded");
  // Before: the environment's value was not trimmed, so "hex\n" failed the hex test and became its UTF-8 text: every
  // user another user key, and the start refused on identity.pin.
  for (const nl of ["", "\n", "\r\n", " \n"]) {
    const fromEnv = load(dir, { RUNIGUN_PEPPER: PEPPER + nl, RUNIGUN_EDGE_KEY: EDGE + nl });
    t.same(fromEnv.pepper, fromFiles.pepper, `pepper ${JSON.stringify(nl)}`);
    t.same(fromEnv.handleKey, fromFiles.handleKey, `edge key ${JSON.stringify(nl)}`);
  }
  const phrase = "a passphrase pepper, not hex";
  t.same(load(dir, { RUNIGUN_PEPPER: `${phrase}\n`, RUNIGUN_EDGE_KEY: EDGE }).pepper, load(dir, { RUNIGUN_PEPPER_FILE: secretFile(dir, "phrase", `${phrase}\n`), RUNIGUN_EDGE_KEY: EDGE }).pepper, "a passphrase too");
});

t.test("hex that is not whole bytes is refused, naming the variable and what it must be, never the secret", async (t) => {
  const dir = t.testdir();
  // Before: 65 hex digits were decoded as the first 64's bytes, silently.
  const odd = PEPPER + "a";
  const cases: [Record<string, string>, RegExp][] = [
    [{ RUNIGUN_PEPPER: odd, RUNIGUN_EDGE_KEY: EDGE }, /^RUNIGUN_PEPPER: the pepper is an odd number of hex digits \(65\); it must be whole bytes, two hex digits each.*runigun keys pepper/],
    [{ RUNIGUN_PEPPER: `${odd}\n`, RUNIGUN_EDGE_KEY: EDGE }, /^RUNIGUN_PEPPER: .*odd number of hex digits \(65\)/],
    [{ RUNIGUN_PEPPER_FILE: secretFile(dir, "pepper", `${odd}\n`), RUNIGUN_EDGE_KEY: EDGE }, /^RUNIGUN_PEPPER_FILE \(.*pepper\): .*odd number of hex digits/],
    [{ RUNIGUN_PEPPER: PEPPER, RUNIGUN_EDGE_KEY: EDGE + "0" }, /^RUNIGUN_EDGE_KEY: the edge key is an odd number of hex digits \(65\)/],
    [{ RUNIGUN_PEPPER: PEPPER, RUNIGUN_EDGE_KEY: "abc12" }, /^RUNIGUN_EDGE_KEY: .*odd number of hex digits/],
  ];
  for (const [env, message] of cases) {
    const e = (() => {
      try {
        load(dir, env);
      } catch (e) {
        return e as Error;
      }
    })();
    t.match(e, { code: "setup", message }, Object.keys(env).join(", "));
    t.notMatch(e?.message ?? "", /00112233|ffeeddcc|abc12/, "the secret is not in the message");
  }
  t.throws(() => load(dir, { RUNIGUN_PEPPER: "00ff".repeat(4) + "\n", RUNIGUN_EDGE_KEY: EDGE }), { message: /^RUNIGUN_PEPPER: the pepper must hold at least 16 bytes \(32 hex digits\)/ }, "too short: the variable is named too");
  t.throws(() => load(dir, { RUNIGUN_PEPPER: PEPPER, RUNIGUN_EDGE_KEY: "00ff".repeat(8) }), { message: /^RUNIGUN_EDGE_KEY: .*at least 32 bytes.*runigun keys pepper/ }, "and the edge key is made with `keys pepper` (`keys generate` writes a key ring)");
});

t.test("a master key ring given as the edge key or the pepper is refused: its first bytes are every installation's", async (t) => {
  const dir = t.testdir();
  const ring = join(dir, "ring.key");
  generateKeyRingFile(ring);
  for (const [name, env] of [["edge key", "RUNIGUN_EDGE_KEY"], ["pepper", "RUNIGUN_PEPPER"]] as const) {
    const file = join(dir, `${name}.copy`);
    writeFileSync(file, readFileSync(ring), { mode: 0o600 });
    t.throws(() => load(dir, { ...(env === "RUNIGUN_PEPPER" ? { RUNIGUN_EDGE_KEY: EDGE } : { RUNIGUN_PEPPER: PEPPER }), [`${env}_FILE`]: file }), { message: new RegExp(`${env}_FILE .* holds a master key ring \\(JSON\\), not an? ${name}`) }, name);
  }
});
