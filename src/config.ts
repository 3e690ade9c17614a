// Configuration: config/default.json, then config/<network>.json, then RUNIGUN_* environment variables,
// then programmatic overrides; validated once at start with messages that name the bad key.
// Secrets never come from the JSON files: only from the environment or from files named there.
import { readFileSync, statSync } from "node:fs";
import { isIP } from "node:net";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Type, type Static, type TProperties } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";

const Int = (min: number, max = Number.MAX_SAFE_INTEGER) => Type.Integer({ minimum: min, maximum: max });
/** Objects refuse unknown keys, so a typo or a secret pasted into a config file is caught by name. */
const Obj = <T extends TProperties>(props: T) => Type.Object(props, { additionalProperties: false });
const Sats = Type.String({ pattern: "^[0-9]{1,16}$", description: "satoshis as a decimal string" });
/**
 * The longest console session (admin.console.sessionTtlMs): one hour. A session left open in a browser is what an
 * unlocked laptop hands over; its actions need a fresh touch of a security key, but what it shows does not.
 */
export const MAX_CONSOLE_SESSION_TTL_MS = 3_600_000;

export const ConfigSchema = Obj(
  {
    network: Type.Union([Type.Literal("regtest"), Type.Literal("signet"), Type.Literal("mainnet")]),
    /**
     * Where the store lives. Off regtest there is no default and it must be an absolute path (checkPaths): a relative
     * one would be resolved against whatever directory the command happens to be run from.
     */
    dataDir: Type.String({ description: "a directory; absolute off regtest, where it has no default and must be set" }),
    /** Certificates and keys of the two private CAs; empty means <dataDir>/pki. Absolute off regtest, as dataDir. */
    pkiDir: Type.String({ description: "a directory; empty: `<dataDir>/pki`; absolute off regtest" }),
    log: Obj({ level: Type.Union(["fatal", "error", "warn", "info", "debug", "trace", "silent"].map((l) => Type.Literal(l))) }),
    store: Obj({ sync: Type.Boolean() }),
    identity: Obj({
      timeCost: Int(1, 20),
      memoryKiB: Int(8, 4 * 1024 * 1024),
      parallelism: Int(1, 16),
      cacheSize: Int(0, 10_000_000),
    }),
    wallet: Obj({
      snapshotEvery: Int(1, 1_000_000),
      idleMs: Int(10),
      maxResident: Int(1),
      maxInFlight: Int(1, 100_000),
      // A history page is read from the wallet's journal back to its oldest entry: the deepest of 10k is ~10k records.
      historyLimit: Int(10, 10_000),
      askTimeoutMs: Int(10),
      crashBudget: Int(1, 1000),
      crashWindowMs: Int(1),
    }),
    node: Obj({
      managed: Type.Boolean(),
      rpcUrl: Type.String(),
      rpcUser: Type.String(),
      wallet: Type.String({ pattern: "^[A-Za-z0-9_-]{1,64}$" }),
      timeoutMs: Int(100),
      maxQueue: Int(1),
      batchMax: Int(1, 10_000),
      retries: Int(0, 20),
      /** How long a call waits for an unavailable bitcoind to come back before it fails (the start's, too). */
      waitForNodeMs: Int(1000, 3_600_000),
      addressPoolSize: Int(0, 100_000),
      extraArgs: Type.Array(Type.String()),
    }),
    deposits: Obj({
      confirmations: Int(1, 1000), pollMs: Int(10), zmq: Type.String(),
      /** How long a pending deposit may be missing from the node's mempool (in no block) before it is dropped. */
      mempoolGraceMs: Int(0),
      /**
       * Unconfirmed deposits one wallet holds at most (each of its deposit events copies them all): a further one is
       * credited once it has `confirmations`, in one go.
       */
      maxPendingPerWallet: Int(1, 100_000),
    }),
    withdrawals: Obj({
      /**
       * The smallest deposit credited, and the smallest withdrawal — but a withdrawal is never below
       * MIN_WITHDRAWAL_SATS (relay.ts, 546), bitcoind's own dust limit, whatever this says: it may be set lower for
       * deposits alone.
       */
      dustSats: Sats,
      dailyLimitSats: Sats,
      confTarget: Int(1, 1008),
      fallbackFeeRateSatVb: Int(1, 100_000),
      maxFeeRateSatVb: Int(1, 100_000),
      batchWindowMs: Int(0, 600_000),
      maxOutputsPerBatch: Int(1, 1000),
      /** Finished payouts the payout book keeps (the newest); older ones leave it, remembered in the store. */
      retainFinishedPayouts: Int(1, 1_000_000),
    }),
    transfers: Obj({
      chequeTtlSec: Int(60),
      maxTransferSats: Sats,
      /** Finished cheques the cheque book keeps (the newest); older ones leave it, remembered in the store. */
      retainFinishedCheques: Int(1, 1_000_000),
      /** Cheques one user may have that nobody has claimed yet (and not revoked or expired). */
      maxOpenChequesPerUser: Int(1, 10_000),
    }),
    telegram: Obj({
      apiRoot: Type.String({ pattern: "^https?://" }),
      mode: Type.Union([Type.Literal("polling"), Type.Literal("webhook")]),
      webhookHost: Type.String(),
      /** The public HTTPS URL Telegram posts to (the reverse proxy in front of webhookHost:webhookPort); when set,
       * the edge registers it with setWebhook (and its secret token) at start. Empty: register it yourself. */
      webhookUrl: Type.String({ pattern: "^(|https://[^\\s]+)$" }),
      webhookPort: Int(0, 65535),
      commandsPerMinute: Int(1, 10_000),
    }),
    admin: Obj({
      enabled: Type.Boolean(),
      host: Type.String(),
      port: Int(0, 65535),
      vpnCidrs: Type.Array(Type.String()),
      /** The operator console (web page on the admin edge): FIDO2 security keys on top of the client certificate. */
      console: Obj({
        enabled: Type.Boolean(),
        /** WebAuthn relying party id: a domain name the operators' browsers reach the admin edge by (not an IP). */
        rpId: Type.String({ pattern: "^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$" }),
        /** Origins the console is opened from (https://host[:port]); empty means https://<rpId>:<the admin port>. */
        origins: Type.Array(Type.String({ pattern: "^https://[^/]+$" })),
        sessionTtlMs: Int(60_000, MAX_CONSOLE_SESSION_TTL_MS),
        enrollTtlMs: Int(60_000, 30 * 24 * 3600_000),
        userVerification: Type.Union([Type.Literal("required"), Type.Literal("preferred"), Type.Literal("discouraged")]),
      }),
    }),
    internal: Obj({ host: Type.String(), port: Int(0, 65535) }),
    /**
     * Continuous backup (journal segments) and scheduled snapshots into `dir` — a second disk in production;
     * empty turns backups off. `snapshotIntervalMs` 0 means on demand only; `keep` snapshots are retained.
     */
    backup: Obj({ dir: Type.String({ description: "a directory; relative: under dataDir; empty: backups off" }), segmentIntervalMs: Int(1, 60_000), snapshotIntervalMs: Int(0), keep: Int(1, 1000), nodeWallet: Type.Boolean(), acceptOlderStore: Type.Boolean() }),
    /** Payouts pause when liabilities exceed the node wallet by more than this. */
    watchdog: Obj({ toleranceSats: Sats }),
  },
);

export type ConfigFile = Static<typeof ConfigSchema>;

/** Secrets: only from the environment or files it names, never from config/*.json. */
export interface Secrets {
  masterKeyFile?: string;
  masterKey?: string;
  pepperFile?: string;
  pepper?: string;
  telegramToken?: string;
  telegramWebhookSecret?: string;
  rpcPassword?: string;
  /** The Telegram edge's own key for sealing chat handles (hex, 32 bytes). */
  edgeKeyFile?: string;
  edgeKey?: string;
  /** Passphrase of the engine's bitcoind wallet: it is encrypted with it and unlocked only to sign. */
  walletPassphrase?: string;
}

export interface Config extends ConfigFile {
  secrets: Secrets;
  /** Absolute path of dataDir. */
  dataPath: string;
  /** Absolute path of the PKI directory. */
  pkiPath: string;
}

export class ConfigError extends Error {
  readonly code = "config_invalid";
}

const SECRET_ENV: Record<string, keyof Secrets> = {
  RUNIGUN_MASTER_KEY_FILE: "masterKeyFile",
  RUNIGUN_MASTER_KEY: "masterKey",
  RUNIGUN_PEPPER_FILE: "pepperFile",
  RUNIGUN_PEPPER: "pepper",
  RUNIGUN_TELEGRAM_TOKEN: "telegramToken",
  RUNIGUN_TELEGRAM_WEBHOOK_SECRET: "telegramWebhookSecret",
  RUNIGUN_NODE_RPC_PASSWORD: "rpcPassword",
  RUNIGUN_EDGE_KEY_FILE: "edgeKeyFile",
  RUNIGUN_EDGE_KEY: "edgeKey",
  RUNIGUN_NODE_WALLET_PASSPHRASE: "walletPassphrase",
};
/** Variables that steer loading itself. */
const LOADER_ENV = new Set([
  "RUNIGUN_NETWORK", "RUNIGUN_CONFIG_DIR", "RUNIGUN_TELEGRAM_TOKEN_FILE", "RUNIGUN_NODE_RPC_PASSWORD_FILE", "RUNIGUN_TELEGRAM_WEBHOOK_SECRET_FILE",
  "RUNIGUN_NODE_WALLET_PASSPHRASE_FILE",
]);

export const defaultConfigDir = resolve(dirname(fileURLToPath(import.meta.url)), "..", "config");

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  configDir?: string;
  /** Applied last (tests, scripted scenarios). */
  overrides?: DeepPartial<ConfigFile>;
  cwd?: string;
}
export type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? (T[K] extends unknown[] ? T[K] : DeepPartial<T[K]>) : T[K] };

export function loadConfig(opts: LoadOptions = {}): Config {
  const env = opts.env ?? process.env;
  const dir = opts.configDir ?? env.RUNIGUN_CONFIG_DIR ?? defaultConfigDir;
  const base = readJson(join(dir, "default.json"));
  const network = String(opts.overrides?.network ?? env.RUNIGUN_NETWORK ?? (base as { network?: string }).network ?? "regtest");
  if (!["regtest", "signet", "mainnet"].includes(network)) {
    throw new ConfigError(`network: "${network}" is not one of regtest, signet, mainnet (set RUNIGUN_NETWORK)`);
  }
  let merged = merge(base, readJson(join(dir, `${network}.json`)));
  merged = merge(merged, envOverrides(base, env));
  merged = merge(merged, (opts.overrides ?? {}) as Json);
  (merged as Record<string, Json>).network = network;
  const file = validate(merged);
  checkBindAddresses(file);
  checkLinks(file);
  checkSafety(file);
  checkPaths(file);
  const secrets = readSecrets(env);
  const dataPath = resolve(opts.cwd ?? process.cwd(), file.dataDir);
  // A relative backup directory lives under the data directory (regtest's default); production names another disk.
  const backup = { ...file.backup, dir: file.backup.dir ? resolve(dataPath, file.backup.dir) : "" };
  return Object.freeze({ ...file, backup, secrets, dataPath, pkiPath: file.pkiDir ? resolve(opts.cwd ?? process.cwd(), file.pkiDir) : join(dataPath, "pki") });
}

function validate(value: Json): ConfigFile {
  if (Value.Check(ConfigSchema, value)) return value;
  const first = [...Value.Errors(ConfigSchema, value)][0];
  const path = (first?.path ?? "").split("/").filter(Boolean);
  // A list's bad item is named by its setting, whose one variable holds the whole list (there is no RUNIGUN_X_0).
  const item = path.findIndex((p) => /^\d+$/.test(p));
  const key = (item === -1 ? path : path.slice(0, item)).join(".") || "(root)";
  const tooLong = key === "admin.console.sessionTtlMs" && typeof first?.value === "number" && first.value > MAX_CONSOLE_SESSION_TTL_MS;
  // A choice among words says which words: "Expected union value" leaves the operator guessing.
  const choices = (first?.schema as { anyOf?: Array<{ const?: unknown }> } | undefined)?.anyOf;
  const literals = choices?.every((c) => typeof c.const === "string") ? choices.map((c) => c.const as string) : undefined;
  const what = tooLong
    ? `${first!.value} is above the limit of ${MAX_CONSOLE_SESSION_TTL_MS} ms (1 hour): a console session left open is what an unlocked laptop hands over`
    : literals
      ? `${JSON.stringify(first!.value)} is not one of ${literals.join(", ")}`
      : item !== -1
        ? `item ${Number(path[item]) + 1} (${JSON.stringify(first!.value)}): ${first!.message}`
        : first?.message ?? "invalid";
  const secretHint = /secret|token|pepper|masterKey|password/i.test(key)
    ? " — secrets are not read from config files; use the RUNIGUN_* environment variables"
    : "";
  throw new ConfigError(`config key ${key}: ${what} (env ${envName(key.split("."))})${secretHint}`);
}

/** Settings that are for tests and benches only, refused where real money is. */
function checkSafety(c: ConfigFile): void {
  if (c.network === "regtest") return;
  if (!c.store.sync) {
    throw new ConfigError(`config key store.sync: false is for tests and benches; on ${c.network} an acknowledged command must be on disk (env RUNIGUN_STORE_SYNC)`);
  }
  // OWASP's argon2id minimum: with less, a leaked pepper makes every Telegram id cheap to find from its user key.
  if (c.identity.timeCost < 2 || c.identity.memoryKiB < 19_456) {
    throw new ConfigError(`config keys identity.timeCost and identity.memoryKiB: at least 2 and 19456 on ${c.network} (argon2id's minimum; env RUNIGUN_IDENTITY_TIME_COST, RUNIGUN_IDENTITY_MEMORY_KI_B)`);
  }
}

/**
 * Directories that hold state are absolute off regtest. A relative one is resolved against the directory the command
 * is run from (the config directory is found from the install directory, so it would not fail): `runigun start` from
 * another directory, or a service unit without WorkingDirectory, would open a new, empty store against the live node
 * wallet — users see empty wallets, and deposits to its addresses are credited to nobody. Regtest keeps its relative
 * default, for `npm start` and the tests. backup.dir may stay relative: it is under the data directory.
 */
function checkPaths(c: ConfigFile): void {
  const where = `on ${c.network} give an absolute path`;
  if (c.dataDir === "") {
    throw new ConfigError(
      `config key dataDir is not set: ${c.network === "regtest" ? "give the data directory" : `${where}, e.g. /var/lib/runigun/${c.network}`} (env RUNIGUN_DATA_DIR, or --data-dir)` +
        (c.network === "regtest" ? "" : `; an engine that ran with the old default (data/${c.network}) has its store under data/${c.network} in the directory it was started from: give that, made absolute`),
    );
  }
  if (c.network === "regtest") return;
  for (const [key, dir] of [["dataDir", c.dataDir], ["pkiDir", c.pkiDir]] as const) {
    if (dir !== "" && !isAbsolute(dir)) {
      throw new ConfigError(
        `config key ${key}: "${dir}" is a relative path; ${where} (env ${envName([key])}${key === "dataDir" ? ", or --data-dir" : ""}): a relative one depends on the directory the command is run from, and from another one the engine would open a new, empty store`,
      );
    }
  }
}

/** The admin edge must stay reachable only from loopback or the configured VPN ranges. */
function checkBindAddresses(c: ConfigFile): void {
  const allowed = (host: string) => bindAllowed(host, c.admin.vpnCidrs);
  for (const cidr of c.admin.vpnCidrs) {
    if (!parseCidr(cidr)) throw new ConfigError(`config key admin.vpnCidrs: "${cidr}" is not an IPv4 CIDR like 10.8.0.0/24 (a VPN's range: /8 or narrower)`);
    // The ranges are what admin.host, internal.host and telegram.webhookHost may bind to, and where the node may be
    // reached in clear (checkLinks): a public range would put them where anyone can reach them.
    if (!privateRange(cidr)) {
      throw new ConfigError(`config key admin.vpnCidrs: "${cidr}" is not a private range; a VPN's addresses are inside ${PRIVATE_RANGES.join(", ")} (or loopback), and a public range would let the admin edge, the engine's internal API, the webhook listener and the node's RPC be on addresses anyone can reach (env RUNIGUN_ADMIN_VPN_CIDRS)`);
    }
  }
  if (!allowed(c.admin.host)) {
    throw new ConfigError(
      `config key admin.host: ${c.admin.host} is not a loopback or VPN address; the admin edge never listens publicly (add the VPN range to admin.vpnCidrs)`,
    );
  }
  if (!allowed(c.internal.host)) {
    throw new ConfigError(`config key internal.host: ${c.internal.host} is not a local address; the engine has no public interface`);
  }
  // The webhook's listener is plain HTTP behind the reverse proxy that Telegram reaches (telegram.webhookUrl).
  if (c.telegram.mode === "webhook" && !allowed(c.telegram.webhookHost)) {
    throw new ConfigError(
      `config key telegram.webhookHost: ${c.telegram.webhookHost} is not a loopback or VPN address; the webhook listens behind your HTTPS reverse proxy, never publicly`,
    );
  }
}

/**
 * Where the engine talks in clear. bitcoind's RPC is plain HTTP: every call carries its user and password (Basic), and
 * signing sends the wallet passphrase (walletpassphrase); ZMQ is plain TCP. Off regtest they must stay on this host or
 * inside the VPN. The Bot API's URLs carry the bot token in their path: plain HTTP only to a Bot API server on this host,
 * on every network (a regtest bot may have a real token).
 */
function checkLinks(c: ConfigFile): void {
  const api = urlOf(c.telegram.apiRoot);
  if (!api) throw new ConfigError(`config key telegram.apiRoot: "${c.telegram.apiRoot}" is not a URL (env RUNIGUN_TELEGRAM_API_ROOT)`);
  if (api.protocol === "http:" && !isLoopback(api.host)) {
    throw new ConfigError(`config key telegram.apiRoot: plain http:// to ${api.host || "(no host)"} would send the bot token in clear (it is in every request's path): use https://, or http:// only to a Bot API server on this host (127.0.0.1) (env RUNIGUN_TELEGRAM_API_ROOT)`);
  }
  if (c.network === "regtest") return;
  // The example names this network's RPC port (bitcoind's default for it), so it can be copied as it is.
  const rpcExample = `http://127.0.0.1:${RPC_PORTS[c.network]}`;
  const refused = (key: string, host: string, why: string, example: string) => {
    const named = host !== "" && isIP(host) === 0 && host !== "localhost";
    return new ConfigError(
      `config key ${key}: ${named ? `${host} is a name, not an address` : `${host || "(no host)"} is neither loopback nor inside admin.vpnCidrs`}; on ${c.network} ${why}. ` +
        `Give the node's IP address: on this host (${example}), or on your VPN with the VPN's range in admin.vpnCidrs; ` +
        `for a node in a container, its fixed address on the docker network, with that network's range in admin.vpnCidrs (env ${envName(key.split("."))})`,
    );
  };
  // No host at all: unix:/…, or user:password@127.0.0.1:8332 without its scheme (read as the scheme "user:"). The value
  // is never echoed: it may hold the RPC password (http://user:password@host).
  const hostless = (key: string, example: string) => new ConfigError(`config key ${key}: not a URL with a host, like ${example} (env ${envName(key.split("."))})`);
  if (c.node.rpcUrl !== "") {
    const rpc = urlOf(c.node.rpcUrl);
    if (!rpc || rpc.host === "") throw hostless("node.rpcUrl", rpcExample);
    if (!bindAllowed(rpc.host, c.admin.vpnCidrs)) {
      // https:// protects the credentials on the way, but not from the host they reach: off this machine and the VPN,
      // that is someone else's (a TLS proxy anyone can reach sits in front of the node's wallet).
      const why = rpc.protocol === "https:"
        ? "every RPC call carries the node's user and password (signing, the wallet passphrase too): over https:// they would still reach a host outside this machine and the VPN"
        : "bitcoind's RPC is plain HTTP, and every call carries its user and password (signing, the wallet passphrase too) in clear";
      throw refused("node.rpcUrl", rpc.host, why, rpcExample);
    }
  }
  if (c.deposits.zmq !== "") {
    const zmq = urlOf(c.deposits.zmq);
    if (!zmq) throw new ConfigError(`config key deposits.zmq: not an address like tcp://127.0.0.1:28332 (env RUNIGUN_DEPOSITS_ZMQ)`);
    // ipc:// is a socket file on this host.
    if (zmq.protocol !== "ipc:" && zmq.host === "") throw hostless("deposits.zmq", "tcp://127.0.0.1:28332");
    if (zmq.protocol !== "ipc:" && !bindAllowed(zmq.host, c.admin.vpnCidrs)) {
      throw refused("deposits.zmq", zmq.host, "ZMQ is plain TCP: anyone on the way could read what the node publishes, or forge it", "tcp://127.0.0.1:28332");
    }
  }
}

/** bitcoind's default RPC port on each network (its -rpcport when none is set). */
const RPC_PORTS: Record<ConfigFile["network"], number> = { regtest: 18443, signet: 38332, mainnet: 8332 };

/** A URL's scheme and bare host (an IPv6 address without its brackets), or undefined for what is not a URL. */
function urlOf(value: string): { protocol: string; host: string } | undefined {
  try {
    const u = new URL(value);
    return { protocol: u.protocol, host: u.hostname.replace(/^\[(.*)\]$/, "$1") };
  } catch {
    return undefined;
  }
}

/**
 * Whether a listener may bind `host`: loopback, or an address inside one of the VPN ranges. Never a wildcard: it
 * listens on every interface, the public ones included, whatever range it falls in.
 */
export function bindAllowed(host: string, vpnCidrs: readonly string[]): boolean {
  if (["0.0.0.0", "::", ""].includes(host)) return false;
  return isLoopback(host) || vpnCidrs.some((cidr) => inCidr(host, cidr));
}

export function isLoopback(host: string): boolean {
  if (host === "::1" || host === "localhost") return true;
  return isIP(host) === 4 && host.startsWith("127.");
}

function parseCidr(cidr: string): [number, number] | undefined {
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d{1,2})$/.exec(cidr);
  // Narrower than /8: a VPN's range, not the internet (0.0.0.0/0 would let anything through).
  if (!m || isIP(m[1]!) !== 4 || Number(m[2]) > 32 || Number(m[2]) < 8) return undefined;
  return [ipv4(m[1]!), Number(m[2])];
}
/** The ranges a VPN's addresses come from (RFC 1918, and RFC 6598's shared range, which Tailscale uses), and loopback. */
const PRIVATE_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"];
/** Whether the whole of `cidr` is inside one private range (or loopback, 127.0.0.0/8). */
function privateRange(cidr: string): boolean {
  const parsed = parseCidr(cidr);
  if (!parsed) return false;
  const [net, bits] = parsed;
  return [...PRIVATE_RANGES, "127.0.0.0/8"].some((range) => {
    const [rangeNet, rangeBits] = parseCidr(range)!;
    const mask = (~0 << (32 - rangeBits)) >>> 0;
    return bits >= rangeBits && ((net & mask) >>> 0) === rangeNet;
  });
}
function ipv4(ip: string): number {
  return ip.split(".").reduce((acc, part) => (acc << 8) + Number(part), 0) >>> 0;
}
function inCidr(host: string, cidr: string): boolean {
  const parsed = parseCidr(cidr);
  if (!parsed || isIP(host) !== 4) return false;
  const [net, bits] = parsed;
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return ((ipv4(host) & mask) >>> 0) === ((net & mask) >>> 0);
}

/** RUNIGUN_<SECTION>_<KEY>: e.g. deposits.confirmations → RUNIGUN_DEPOSITS_CONFIRMATIONS. */
export function envName(path: string[]): string {
  return "RUNIGUN_" + path.map((p) => p.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase()).join("_");
}

function envOverrides(base: Json, env: NodeJS.ProcessEnv): Json {
  const known = new Map<string, { path: string[]; sample: Json }>();
  const walk = (node: Json, path: string[]) => {
    if (node && typeof node === "object" && !Array.isArray(node)) {
      for (const [k, v] of Object.entries(node)) walk(v, [...path, k]);
    } else known.set(envName(path), { path, sample: node });
  };
  walk(base, []);
  const out: Record<string, Json> = {};
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith("RUNIGUN_") || raw === undefined) continue;
    if (name in SECRET_ENV || LOADER_ENV.has(name)) continue;
    const entry = known.get(name);
    if (!entry) {
      const near = closest(name, [...known.keys(), ...Object.keys(SECRET_ENV), ...LOADER_ENV]);
      throw new ConfigError(`environment variable ${name} is not a RuniGun setting${near ? `; did you mean ${near}?` : ""} (see README "Configuration" for the list)`);
    }
    let cursor = out;
    entry.path.slice(0, -1).forEach((p) => (cursor = (cursor[p] ??= {}) as Record<string, Json>));
    cursor[entry.path.at(-1)!] = coerce(raw, entry.sample, name);
  }
  return out;
}

/**
 * The known variable nearest to a mistyped one, if one is near: compared without underscores, since where the words
 * split is the usual slip (memoryKiB is RUNIGUN_IDENTITY_MEMORY_KI_B), or one whose tail it is (a section left out).
 */
function closest(name: string, known: string[]): string | undefined {
  const bare = (n: string) => n.replace(/^RUNIGUN_/, "").replaceAll("_", "");
  const want = bare(name);
  let best: { name: string; d: number } | undefined;
  for (const k of known) {
    const d = editDistance(want, bare(k));
    if (!best || d < best.d) best = { name: k, d };
  }
  if (best && best.d <= Math.max(2, Math.floor(want.length / 4))) return best.name;
  if (want.length < 4) return undefined;
  const tails = known.filter((k) => bare(k).endsWith(want));
  return tails.length === 1 ? tails[0] : undefined;
}

function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length]!;
}

/**
 * The settings' variables as the README's table (section "Configuration", between its config-variables markers):
 * made from the schema and the network files, and checked against the README by test/config/review-readme-list.test.ts,
 * so the list cannot drift. Print it with
 * `node --import ./bin/ts-register.mjs -e 'import("./src/config.ts").then((m) => console.log(m.configVariablesTable()))'`.
 */
export function configVariablesTable(configDir = defaultConfigDir): string {
  const base = readJson(join(configDir, "default.json"));
  const networks = ["regtest", "signet", "mainnet"] as const;
  const files = networks.map((n) => merge(base, readJson(join(configDir, `${n}.json`))));
  const rows: string[] = ["| variable | setting | takes | default |", "|---|---|---|---|"];
  const at = (node: Json, path: string[]): Json | undefined =>
    path.reduce<Json | undefined>((n, p) => (n && typeof n === "object" && !Array.isArray(n) ? n[p] : undefined), node);
  const walk = (schema: Record<string, unknown>, path: string[]) => {
    const props = schema.properties as Record<string, Record<string, unknown>> | undefined;
    if (schema.type === "object" && props) {
      for (const [k, v] of Object.entries(props)) walk(v, [...path, k]);
      return;
    }
    // The network is what picks the file: its default is default.json's.
    const values = path[0] === "network" ? files.map(() => at(base, path)) : files.map((f) => at(f, path));
    const shown = values.map((v) => {
      const text = Array.isArray(v) ? v.join(",") : String(v);
      return text === "" ? "(empty)" : `\`${text}\``;
    });
    const def = shown.every((v) => v === shown[0]) ? shown[0] : networks.map((n, i) => `${n}: ${shown[i]}`).join("; ");
    rows.push(`| \`${envName(path)}\` | \`${path.join(".")}\` | ${takes(schema)} | ${def} |`);
  };
  walk(ConfigSchema as unknown as Record<string, unknown>, []);
  return rows.join("\n");
}

function takes(s: Record<string, unknown>): string {
  const anyOf = s.anyOf as Array<{ const?: unknown }> | undefined;
  if (anyOf) return `one of ${anyOf.map((c) => `\`${String(c.const)}\``).join(", ")}`;
  if (s.type === "boolean") return "`true` or `false`";
  if (s.type === "array") return "a comma-separated list";
  if (s.type === "integer") {
    const [min, max] = [s.minimum, s.maximum].map((n) => Number(n).toLocaleString("en-US"));
    return s.maximum === Number.MAX_SAFE_INTEGER ? `a whole number, at least ${min}` : `a whole number, ${min}–${max}`;
  }
  if (typeof s.description === "string") return s.description.replace("decimal string", "whole number, up to 16 digits");
  if (typeof s.pattern === "string") return `text matching \`${s.pattern.replaceAll("|", "\\|")}\``;
  return "text";
}

function coerce(raw: string, sample: Json, name: string): Json {
  if (typeof sample === "number") {
    if (!/^-?\d+$/.test(raw.trim())) throw new ConfigError(`${name}: "${raw}" is not a whole number`);
    return Number(raw);
  }
  if (typeof sample === "boolean") {
    if (!["true", "false", "1", "0"].includes(raw)) throw new ConfigError(`${name}: "${raw}" is not true or false`);
    return raw === "true" || raw === "1";
  }
  if (Array.isArray(sample)) return raw.split(",").map((s) => s.trim()).filter(Boolean);
  return raw;
}

function readSecrets(env: NodeJS.ProcessEnv): Secrets {
  const s: Secrets = {};
  for (const [name, key] of Object.entries(SECRET_ENV)) {
    // The wallet passphrase is trimmed, as its _FILE form is: the same value with a trailing newline (from a secret
    // manager, an env file) must be the same passphrase, not encrypt the wallet with one nobody can type.
    const v = key === "walletPassphrase" ? env[name]?.trim() : env[name];
    if (v !== undefined && v !== "") s[key] = v;
  }
  // Token and RPC password may also come from files, like the master key.
  for (const [name, key] of [
    ["RUNIGUN_TELEGRAM_TOKEN_FILE", "telegramToken"],
    ["RUNIGUN_NODE_RPC_PASSWORD_FILE", "rpcPassword"],
    ["RUNIGUN_TELEGRAM_WEBHOOK_SECRET_FILE", "telegramWebhookSecret"],
    ["RUNIGUN_NODE_WALLET_PASSPHRASE_FILE", "walletPassphrase"],
  ] as const) {
    const file = env[name];
    if (file) s[key] = readSecretFile(file, name);
  }
  return s;
}

/** Reads a secret file, refusing one that other users can read. */
export function readSecretFile(path: string, what: string): string {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(path);
  } catch {
    throw new ConfigError(`${what}: cannot read ${path} (does it exist?)`);
  }
  // A directory named by mistake: said as such (its mode would be reported as "readable by others", or reading it fail
  // with EISDIR and no path).
  if (!st.isFile()) throw new ConfigError(`${what}: ${path} is ${st.isDirectory() ? "a directory" : "not a regular file"}; point ${what} at the file that holds the secret`);
  const mode = st.mode;
  if ((mode & 0o077) !== 0) {
    throw new ConfigError(`${what}: ${path} is readable by others (mode ${(mode & 0o777).toString(8)}); run chmod 600 ${path}`);
  }
  return readFileSync(path, "utf8").trim();
}

function readJson(path: string): Json {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    throw new ConfigError(`cannot read config file ${path}`);
  }
  try {
    return JSON.parse(text) as Json;
  } catch (e) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${(e as Error).message}`);
  }
}

function merge(a: Json, b: Json): Json {
  if (!isObj(a) || !isObj(b)) return b === undefined ? a : b;
  const out: Record<string, Json> = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = k in out ? merge(out[k]!, v) : v;
  return out;
}
const isObj = (v: Json): v is { [k: string]: Json } => typeof v === "object" && v !== null && !Array.isArray(v);

/** Money settings as bigint, so callers never touch the decimal strings. */
export function sats(value: string): bigint {
  return BigInt(value);
}

