// Finds a bitcoind to run: BITCOIND/BITCOIN_CLI from the environment, a bitcoind on PATH, or the one the
// project provisions into .cache/bitcoind (Debian sid's bitcoin-knots, run through its own loader).
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export interface BitcoindCommand {
  /** argv prefix that runs bitcoind (the loader and library path first, for the provisioned one). */
  bitcoind: string[];
  cli: string[];
  source: "env" | "path" | "provisioned";
}

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

export class BitcoindMissing extends Error {
  readonly code = "setup";
}

function which(bin: string): string | undefined {
  try {
    return execFileSync("sh", ["-c", `command -v ${bin}`], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim() || undefined;
  } catch {
    return undefined;
  }
}

function provisioned(): BitcoindCommand | undefined {
  const root = join(repoRoot, ".cache", "bitcoind", "root");
  const lib = join(root, "usr/lib/x86_64-linux-gnu");
  const loader = join(lib, "ld-linux-x86-64.so.2");
  const bin = join(root, "usr/bin/bitcoind");
  if (!existsSync(loader) || !existsSync(bin)) return undefined;
  const prefix = [loader, "--library-path", `${lib}:/lib/x86_64-linux-gnu`];
  return { bitcoind: [...prefix, bin], cli: [...prefix, join(root, "usr/bin/bitcoin-cli")], source: "provisioned" };
}

let cached: BitcoindCommand | undefined;

export function resolveBitcoind(): BitcoindCommand {
  if (cached) return cached;
  const env = process.env;
  if (env.BITCOIND) {
    cached = { bitcoind: [env.BITCOIND], cli: [env.BITCOIN_CLI ?? join(dirname(env.BITCOIND), "bitcoin-cli")], source: "env" };
    return cached;
  }
  const onPath = which("bitcoind");
  if (onPath) {
    cached = { bitcoind: [onPath], cli: [which("bitcoin-cli") ?? "bitcoin-cli"], source: "path" };
    return cached;
  }
  let found = provisioned();
  if (!found) {
    // First use on a machine where postinstall could not run: try once, loudly.
    try {
      execFileSync(process.execPath, [join(repoRoot, "scripts", "provision-bitcoind.mjs")], { stdio: ["ignore", "ignore", "inherit"] });
    } catch {
      /* the script explains what went wrong */
    }
    found = provisioned();
  }
  if (!found) {
    throw new BitcoindMissing(
      "no bitcoind found: set BITCOIND (and BITCOIN_CLI) to your own node's binaries, put bitcoind on PATH, or run `node scripts/provision-bitcoind.mjs` on a Debian-family x86-64 machine",
    );
  }
  cached = found;
  return cached;
}
