// Loads the secrets from the files or environment variables the configuration names: the engine's (master key ring,
// node wallet passphrase) and the Telegram edge's (identity pepper, handle key). Each process loads only its own: the
// split shape's engine never holds the edge's, the bot never the engine's. On regtest only, missing ones are created in
// the data directory (0600) so `npm start` works on a fresh clone; elsewhere a missing secret stops the start.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync } from "node:fs";
import { createFileDurably } from "./store/files.ts";
import { join } from "node:path";
import type { Config } from "./config.ts";
import { readSecretFile } from "./config.ts";
import type { Logger } from "./log.ts";
import { generateKeyRingFile, loadKeyRing, type KeyRing } from "./store/keyring.ts";

/** What the engine itself uses. */
export interface EngineSecrets {
  keyring: KeyRing;
  /** The node wallet's passphrase (regtest: made once in the data directory). */
  walletPassphrase?: string;
}

/** What the Telegram edge uses: the engine stores chat handles sealed with the handle key, and never sees a Telegram id. */
export interface EdgeSecrets {
  pepper: Buffer;
  handleKey: Buffer;
}

export class SetupError extends Error {
  readonly code = "setup";
}

/**
 * A secret given as hex (what `runigun keys pepper` writes) or else as a passphrase, its UTF-8 bytes. Trimmed wherever
 * it comes from: a file's text is, and the same value in the environment with a trailing newline must be the same
 * secret, not (for the pepper) another user key for every Telegram user. Never echoed in an error.
 */
function hexSecret(name: string, env: string, file: string | undefined, value: string | undefined, bytes: number): Buffer | undefined {
  // Its errors (missing, readable by others) name the variable to fix, as the configuration's secret files do.
  const text = file ? readSecretFile(file, `${env}_FILE`) : value?.trim();
  if (text === undefined) return undefined;
  const where = file ? `${env}_FILE (${file})` : env;
  // A master key ring (what `runigun keys generate` writes, once advised here for the edge key): as text, its first 32
  // bytes are the same on every installation, and the edge key is cut to 32 bytes — the chat handles would be sealed
  // under a key anyone knows.
  if (text.startsWith("{")) {
    throw new SetupError(`${where} holds a master key ring (JSON), not ${name === "edge key" ? "an" : "a"} ${name}: make one with "runigun keys pepper --out FILE" and point ${env}_FILE at it${name === "edge key" ? " (the chat handles sealed so far cannot be opened with the new key: each user gets notifications again after their next /start)" : ""}`);
  }
  // A PEM file (a TLS key or certificate: pki/bot-client.key is copied to the bot's host, beside these secrets) is as bad
  // or worse: its first 32 bytes are "-----BEGIN PRIVATE KEY-----\nMIGH" on every installation, and a certificate (the
  // whole of it, as a pepper) is public — the engine shows it to whoever connects. A new key is the only way out for
  // the edge key; a pepper every wallet was made with must be kept, and can be, as the same bytes written in hex.
  if (text.startsWith("-----BEGIN")) {
    const edge = name === "edge key";
    throw new SetupError(`${where} holds a PEM file (a TLS key or certificate), not ${edge ? "an" : "a"} ${name}: make one with "runigun keys pepper --out FILE" and point ${env}_FILE at it${edge ? " (the chat handles sealed so far cannot be opened with the new key: each user gets notifications again after their next /start)" : `. If this installation has been running with it, its wallets were made with it (with another pepper every user would get a new, empty wallet): keep it by writing the same bytes as hex to a 0600 file: ${keepAsHex(file, env)}, then point ${env}_FILE at that file`}`);
  }
  // Node's hex decoder stops at the last whole byte: 33 digits would silently be the first 32's secret.
  if (/^[0-9a-f]+$/i.test(text) && text.length % 2 !== 0) {
    throw new SetupError(`${where}: the ${name} is an odd number of hex digits (${text.length}); it must be whole bytes, two hex digits each, at least ${bytes * 2} — make one with "runigun keys pepper --out FILE"`);
  }
  const hex = /^[0-9a-f]+$/i.test(text);
  const buf = hex ? Buffer.from(text, "hex") : Buffer.from(text, "utf8");
  if (buf.length < bytes) throw new SetupError(`${where}: the ${name} must hold at least ${bytes} bytes (${bytes * 2} hex digits); make one with "runigun keys pepper --out FILE"`);
  // The edge key is cut to 32 bytes (the handle cipher's key); the pepper is used whole. A passphrase longer than that
  // would be silently cut: what is after byte 32 protects nothing, and a human phrase's first 32 bytes may be a guessable
  // opening. Refused rather than warned about, as odd hex digits are: a warning at every start is one line among many,
  // easily left so for years, and it would keep a key weaker than the operator thinks. Refusing costs an installation
  // that has one a single stopped start after the upgrade, and this message keeps its key exactly (the chat handles
  // sealed so far still open): its first 32 bytes, written in hex. Hex longer than 32 bytes is random (what
  // `keys pepper` writes), and its first 32 bytes are as good as any: accepted, as before.
  if (name === "edge key" && !hex && buf.length > bytes) {
    throw new SetupError(`${where}: the edge key is a passphrase of ${buf.length} bytes, and only its first ${bytes} are used (the rest protects nothing). Either keep the key this installation has used, its first ${bytes} bytes, by writing them as hex to a 0600 file: ${keepAsHex(file, env, bytes)}, and point ${env}_FILE at that file; or make a new one with "runigun keys pepper --out FILE" (the chat handles sealed so far cannot be opened with it: each user gets notifications again after their next /start)`);
  }
  return buf;
}

/**
 * A command that writes a secret's bytes as they are used (the text trimmed, then its first `bytes`) as hex to a new
 * 0600 file, so the operator can keep a secret this module now refuses in its old form, without it ever being printed.
 */
function keepAsHex(file: string | undefined, env: string, bytes?: number): string {
  const source = file ? `require("fs").readFileSync(${JSON.stringify(file)},"utf8")` : `process.env.${env}`;
  const js = `process.stdout.write(Buffer.from(${source}.trim())${bytes ? `.subarray(0,${bytes})` : ""}.toString("hex")+"\\n")`;
  // One shell word however the path is spelled; from the environment, the variable must be exported where it is run.
  // `set -C`: NEWFILE must be a new file. Pointed at the secret's own file, `>` would empty it before node read it, and
  // the secret this command is for would be gone.
  return `(umask 077; set -C; node -e '${js.replace(/'/g, `'\\''`)}' > NEWFILE)${file ? "" : ` (then unset ${env})`} — NEWFILE a path that does not exist yet`;
}

function devFile(path: string, bytes: number, log: Logger, what: string): string {
  try {
    createFileDurably(path, randomBytes(bytes).toString("hex") + "\n");
    log.warn({ path }, `created ${/^[aeiou]/.test(what) ? "an" : "a"} ${what} for this regtest data directory (never do this on mainnet)`);
  } catch (e) {
    // Already there (made by an earlier start, or by another process starting at the same moment): that one is used.
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
  }
  return path;
}

/** The all-in-one shape's: the edge's and the engine's (the edge's first: a missing pepper is said before the key). */
export function loadSecrets(config: Config, log: Logger): EngineSecrets & EdgeSecrets {
  const edge = loadEdgeSecrets(config, log);
  return { ...loadEngineSecrets(config, log), ...edge };
}

/**
 * The engine's own secrets (all the engine process needs in the split shape): the master key ring and the node wallet's
 * passphrase. Never the pepper nor the edge key: there the bot turns Telegram ids into user keys and seals the chat
 * handles, and pins its identity settings to the engine's store itself (Relay.identityPin).
 */
export function loadEngineSecrets(config: Config, log: Logger): EngineSecrets {
  const s = config.secrets;
  const dev = config.network === "regtest";
  mkdirSync(config.dataPath, { recursive: true, mode: 0o700 });
  let keyFile = s.masterKeyFile;
  if (!keyFile && !s.masterKey) {
    if (!dev) throw new SetupError("no master key: set RUNIGUN_MASTER_KEY_FILE (create one with `runigun keys generate --out FILE`)");
    keyFile = join(config.dataPath, "master.key");
    if (!existsSync(keyFile)) {
      try {
        generateKeyRingFile(keyFile);
        log.warn({ path: keyFile }, "created a master key for this regtest data directory (never do this on mainnet)");
      } catch (e) {
        // Another process starting at the same moment made it first: theirs is the one, read below.
        if (!existsSync(keyFile)) throw e;
      }
    }
  }
  // The store's path: for a store that exists, a missing key file must be restored, never made anew.
  const keyring = loadKeyRing({ ...(keyFile ? { file: keyFile } : {}), ...(s.masterKey ? { value: s.masterKey } : {}), storePath: join(config.dataPath, "store") });
  const passFile = dev && !s.walletPassphrase ? devFile(join(config.dataPath, "wallet.passphrase"), 24, log, "node wallet passphrase") : undefined;
  const walletPassphrase = s.walletPassphrase ?? (passFile ? readSecretFile(passFile, "wallet passphrase") : undefined);
  return { keyring, ...(walletPassphrase ? { walletPassphrase } : {}) };
}

/** The Telegram edge's own secrets (all the bot process needs in the split shape): pepper and handle key. */
export function loadEdgeSecrets(config: Config, log: Logger): EdgeSecrets {
  const s = config.secrets;
  const dev = config.network === "regtest";
  mkdirSync(config.dataPath, { recursive: true, mode: 0o700 });
  const pepperFile = s.pepperFile ?? (dev && !s.pepper ? devFile(join(config.dataPath, "pepper"), 32, log, "identity pepper") : undefined);
  const pepper = hexSecret("pepper", "RUNIGUN_PEPPER", pepperFile, s.pepper, 16);
  if (!pepper) throw new SetupError("no identity pepper: set RUNIGUN_PEPPER_FILE (create one with `runigun keys pepper --out FILE`)");
  const edgeFile = s.edgeKeyFile ?? (dev && !s.edgeKey ? devFile(join(config.dataPath, "edge.key"), 32, log, "edge handle key") : undefined);
  const handleKey = hexSecret("edge key", "RUNIGUN_EDGE_KEY", edgeFile, s.edgeKey, 32);
  if (!handleKey) throw new SetupError("no edge key: set RUNIGUN_EDGE_KEY_FILE (create one with `runigun keys pepper --out FILE`)");
  return { pepper, handleKey: handleKey.subarray(0, 32) };
}
