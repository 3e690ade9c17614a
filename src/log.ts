// The engine's logger: pino, JSON in production, pretty on a terminal, with a redaction list so that
// tokens, keys, peppers, raw Telegram ids, chat handles and message text never reach a log line.
import { pino, type Logger, type LoggerOptions } from "pino";

export type { Logger };

/**
 * Field names that must never be logged in clear, at any of the first three levels of nesting. Not `code`: it is
 * how errors say what happened (`err.code`: ENOSPC, ECONNREFUSED, Telegram's 401 or 409), and nothing secret is
 * logged under that name (a cheque's claim code or a TOTP code never reaches a log call; test/security/log.test.ts
 * checks the sources).
 */
export const REDACTED_FIELDS = [
  "token", "botToken", "telegramToken", "secret", "password", "rpcPassword", "pepper", "masterKey", "key",
  "privateKey", "seed", "mnemonic", "passphrase", "telegramId", "telegramUserId", "chatId", "chat", "from",
  "text", "message_text", "handle", "chatHandle", "authorization", "cookie", "totp",
];

const paths = REDACTED_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`]);

export interface LogOptions {
  level?: string;
  /** Force pretty output (default: when stdout is a TTY). */
  pretty?: boolean;
  destination?: pino.DestinationStream;
}

export function createLogger(opts: LogOptions = {}): Logger {
  const options: LoggerOptions = {
    level: opts.level ?? "info",
    base: { app: "runigun" },
    redact: { paths, censor: "[redacted]" },
    serializers: { err: pino.stdSerializers.err },
  };
  if (opts.destination) return pino(options, opts.destination);
  const pretty = opts.pretty ?? (process.stdout.isTTY === true && process.env.NODE_ENV !== "production");
  if (pretty) {
    return pino({ ...options, transport: { target: "pino-pretty", options: { colorize: true, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname,app" } } });
  }
  return pino(options);
}

/** A logger that writes nothing, for tests and library use. */
export const silentLogger: Logger = pino({ level: "silent" });

/**
 * Alerts for conditions that stay true until an operator acts (a wallet refusing a settlement, a payout conflicted
 * on chain) are raised again at every block. The first sighting is an `alert: true` error line; sightings within
 * `repeatMs` after it are warn lines that count the repeats; a sighting later than that alerts again, as a
 * reminder. Keyed by the reason and the detail (at most `max` keys are remembered, oldest forgotten first).
 */
export function alerter(log: Logger, o: { repeatMs?: number; max?: number; now?: () => number } = {}) {
  const repeatMs = o.repeatMs ?? 3_600_000, max = o.max ?? 1000, now = o.now ?? Date.now;
  const seen = new Map<string, { at: number; repeats: number }>();
  return (reason: string, detail: Record<string, unknown>): void => {
    const key = reason + "\u0000" + JSON.stringify(detail, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v));
    const t = now();
    const last = seen.get(key);
    if (last && t - last.at < repeatMs) {
      last.repeats++;
      log.warn({ ...detail, repeats: last.repeats }, `${reason} (still so; alerted ${Math.round((t - last.at) / 60_000)} min ago)`);
      return;
    }
    seen.delete(key);
    if (seen.size >= max) seen.delete(seen.keys().next().value!);
    seen.set(key, { at: t, repeats: 0 });
    log.error({ ...detail, alert: true, ...(last ? { repeats: last.repeats } : {}) }, reason);
  };
}
