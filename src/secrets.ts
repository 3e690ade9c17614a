// Loads the engine's secrets (master key ring, identity pepper, the edge's handle key) from the files or
// environment variables the configuration names. On regtest only, missing ones are created in the data
// directory (0600) so `npm start` works on a fresh clone; elsewhere a missing secret stops the start.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync } from "node:fs";
import { createFileDurably } from "./store/files.ts";
import { join } from "node:path";
import type { Config } from "./config.ts";
import { readSecretFile } from "./config.ts";
import type { Logger } from "./log.ts";
import { generateKeyRingFile, loadKeyRing, type KeyRing } from "./store/keyring.ts";

export interface EngineSecrets {
  keyring: KeyRing;
  pepper: Buffer;
  handleKey: Buffer;
  /** The node wallet's passphrase (regtest: made once in the data directory). */
  walletPassphrase?: string;
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
  const text = file ? readSecretFile(file, name) : value?.trim();
  if (text === undefined) return undefined;
  const where = file ? `${env}_FILE (${file})` : env;
  // A master key ring (what `runigun keys generate` writes, once advised here for the edge key): as text, its first 32
  // bytes are the same on every installation, and the edge key is cut to 32 bytes — the chat handles would be sealed
  // under a key anyone knows.
  if (text.startsWith("{")) {
    throw new SetupError(`${where} holds a master key ring (JSON), not ${name === "edge key" ? "an" : "a"} ${name}: make one with "runigun keys pepper --out FILE" and point ${env}_FILE at it${name === "edge key" ? " (the chat handles sealed so far cannot be opened with the new key: each user gets notifications again after their next /start)" : ""}`);
  }
  // Node's hex decoder stops at the last whole byte: 33 digits would silently be the first 32's secret.
  if (/^[0-9a-f]+$/i.test(text) && text.length % 2 !== 0) {
    throw new SetupError(`${where}: the ${name} is an odd number of hex digits (${text.length}); it must be whole bytes, two hex digits each, at least ${bytes * 2} — make one with "runigun keys pepper --out FILE"`);
  }
  const buf = /^[0-9a-f]+$/i.test(text) ? Buffer.from(text, "hex") : Buffer.from(text, "utf8");
  if (buf.length < bytes) throw new SetupError(`${where}: the ${name} must hold at least ${bytes} bytes (${bytes * 2} hex digits); make one with "runigun keys pepper --out FILE"`);
  return buf;
}

function devFile(path: string, bytes: number, log: Logger, what: string): string {
  try {
    createFileDurably(path, randomBytes(bytes).toString("hex") + "\n");
    log.warn({ path }, `created a ${what} for this regtest data directory (never do this on mainnet)`);
  } catch (e) {
    // Already there (made by an earlier start, or by another process starting at the same moment): that one is used.
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
  }
  return path;
}

export function loadSecrets(config: Config, log: Logger): EngineSecrets {
  const { pepper, handleKey } = loadEdgeSecrets(config, log);
  const s = config.secrets;
  const dev = config.network === "regtest";
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
  return { keyring, pepper, handleKey, ...(walletPassphrase ? { walletPassphrase } : {}) };
}

/** The Telegram edge's own secrets (all the bot process needs in the split shape): pepper and handle key. */
export function loadEdgeSecrets(config: Config, log: Logger): Omit<EngineSecrets, "keyring"> {
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
