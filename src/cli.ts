// The `runigun` command line: one entry point for operators, testers and newcomers.
// Each subcommand loads only what it needs; unfinished ones say so plainly instead of pretending.
import { parseArgs } from "node:util";

const HELP = `runigun — a custodial Bitcoin wallet engine used from Telegram

Usage: runigun <command> [options]

Commands:
  start                 All-in-one: engine + Telegram edge (or, with no bot token, a local chat
                        in this terminal) + admin edge; on regtest it starts its own bitcoind.
  engine                Split shape: the engine alone (actors, admin edge, internal TLS API).
  bot                   Split shape: the Telegram edge alone, reaching the engine over TLS.
  simulate FILE...      Run YAML scenario scripts against a fresh regtest node and engine.
  keys generate         Write a new master key file (0600) for the encrypted store.
  keys pepper           Write a new identity pepper file (0600) for the Telegram id KDF.
  keys rotate [--resume]
                        Add a new master key to RUNIGUN_MASTER_KEY_FILE and re-encrypt the whole store
                        under it (engine stopped); --resume finishes one cut short, adding no key.
  keys operator add NAME --out DIR
                        Provision an operator: client certificate + key, TOTP secret and QR code,
                        into DIR (new, 0700) to hand over offline and then delete; the engine keeps
                        only the certificate.
  keys operator enroll NAME
                        A new one-time link to register the operator's console security keys.
  keys operator revoke NAME
                        Refuse an operator from now on, whatever certificate they hold.
  keys pki              Create the operators' CA, the internal CA and the engine's certificates.
  backup [--out FILE]   Take an online snapshot of the store (and the node wallet) into one
                        authenticated archive; asks the running engine, or reads the store if none runs.
  restore ARCHIVE [SEGMENTS_DIR] [--allow-retired-key ID]
                        Restore a snapshot (+ journal segments) into an empty data directory; one
                        sealed under a key a rotation retired only when that key is named.
  help                  This text.

Options:
  --network NAME        regtest (default), signet or mainnet (same as RUNIGUN_NETWORK)
  --data-dir PATH       where the encrypted store lives (same as RUNIGUN_DATA_DIR)
  --out PATH            for keys and backup: where to write the file (keys operator add: the directory)
  --resume              for keys rotate: finish a rotation that was cut short (no new key)

Configuration: config/default.json, config/<network>.json, then RUNIGUN_* environment variables.
Secrets only from the environment: RUNIGUN_MASTER_KEY_FILE, RUNIGUN_PEPPER_FILE, RUNIGUN_TELEGRAM_TOKEN…
See README.md.`;

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        network: { type: "string" },
        "data-dir": { type: "string" },
        out: { type: "string" },
        resume: { type: "boolean" },
        "allow-retired-key": { type: "string", multiple: true },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\nRun "runigun help" for usage.\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command = "help", ...rest] = positionals;
  if (values.network) process.env.RUNIGUN_NETWORK = values.network;
  if (values["data-dir"]) process.env.RUNIGUN_DATA_DIR = values["data-dir"];
  if (values.help || command === "help") {
    process.stdout.write(HELP + "\n");
    return 0;
  }
  try {
    switch (command) {
      case "start":
        return await (await import("./app.ts")).runAllInOne();
      case "keys":
        return await (await import("./keys-cli.ts")).runKeys(values.resume ? [...rest, "--resume"] : rest, { out: values.out });
      case "simulate":
        return await (await import("./app.ts")).runSimulate(rest);
      case "engine":
        return await (await import("./split.ts")).runEngineOnly();
      case "bot":
        return await (await import("./split.ts")).runBotOnly();
      case "backup":
        return await (await import("./backup-cli.ts")).runBackup({ out: values.out });
      case "restore":
        return await (await import("./backup-cli.ts")).runRestore(rest, values["allow-retired-key"] ?? []);
      default:
        process.stderr.write(`Unknown command "${command}". Run "runigun help" for the list.\n`);
        return 2;
    }
  } catch (e) {
    const err = e as Error & { code?: string };
    // Configuration and key errors are the operator's to fix: print the message, not a stack.
    if (err.code === "config_invalid" || err.name === "StoreError" || err.name === "BackupError" || err.code === "setup") {
      process.stderr.write(`runigun ${command}: ${err.message}\n`);
      return 1;
    }
    // A Bot API call's error (grammY's) that reached here unsummarised: its message only. Printed whole it would show
    // the call's payload (setWebhook's holds the webhook secret).
    if (err.name === "GrammyError" || err.name === "HttpError") {
      process.stderr.write(`runigun ${command}: ${err.message}\n`);
      return 1;
    }
    // A path the operator gave that is wrong (a directory for a file, a missing directory, no permission) is theirs to
    // fix as well: one line naming the path, not a stack trace in which it is hard to find.
    const fsErr = e as NodeJS.ErrnoException & { dest?: string };
    const why = fsErr.code ? FS_REASONS[fsErr.code] : undefined;
    const path = fsErr.dest ?? fsErr.path;
    if (why) {
      // Some reads name no path (readFileSync of a directory): the reason, and Node's words for the call that failed.
      process.stderr.write(`runigun ${command}: ${path ? `${operatorPath(path)}: ${why}` : `${why} (${fsErr.message})`}\n`);
      return 1;
    }
    throw e;
  }
}

const FS_REASONS: Record<string, string> = {
  ENOENT: "no such file or directory; check the path (a file's directory must exist: create it first)",
  ENOTDIR: "a part of this path is a file, not a directory; check the path",
  EISDIR: "is a directory; give the path of a file",
  EACCES: "permission denied; check its owner and mode (and its directories'), or run this as the user that owns them",
  EPERM: "operation not permitted; check its owner and mode, or run this as the user that owns it",
  EROFS: "on a read-only file system; give a path on a writable disk",
};

/**
 * The name the operator gave, not the temporary file beside it (files.ts `name.tmp-<pid>-<hex>`, an archive's
 * `.name.partial-<run>-<hex>`) through which a new file is written.
 */
function operatorPath(path: string): string {
  return path.replace(/\.tmp-\d+-[0-9a-f]+$/, "").replace(/(^|\/)\.([^/]+)\.partial-[0-9a-f]+-[0-9a-f]+$/, "$1$2");
}
