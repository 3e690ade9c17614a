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
  // pino's own choice when something replaced process.stdout.write (a test capturing output): it writes through it.
  if (process.stdout.write !== Object.getPrototypeOf(process.stdout).write) return pino(options);
  return pino(options, stdoutDestination());
}

/**
 * Standard output as pino's own default would write it (sonic-boom, asynchronous, flushed at exit), except when a
 * write fails. pino stops writing on EPIPE only and raises every other error; a terminal that hung up (a closed
 * window, a dropped SSH session: the SIGHUP that begins the stop) fails with EIO instead, and the flush at exit then
 * retries that write every 100 ms for ever: the process never ends, whatever the stop's deadline or a second signal,
 * and bitcoind and the store are left as they were. So on any write error the destination stops writing, at once
 * and for good (what could not be written is lost, and the flush at exit has nothing left to retry); a reader gone
 * (EIO: the terminal; EPIPE: a pipe's reader) is not the engine's fault and is not raised, anything else (a full disk
 * under `> file`) still is, as pino raises it.
 */
function stdoutDestination(): pino.DestinationStream {
  const stream = pino.destination({ dest: 1, sync: false });
  const noop = () => undefined;
  let stopped = false;
  // Before pino's own listener, which re-emits what is not EPIPE and would throw it if nothing else listened.
  stream.prependListener("error", (err: NodeJS.ErrnoException) => {
    if (!stopped) {
      stopped = true;
      Object.assign(stream, { write: () => true, flushSync: noop, end: noop, destroy: noop, flush: (cb?: (e?: Error) => void) => void cb?.() });
      if (err.code === "EIO" || err.code === "EPIPE") return;
      throw err;
    }
  });
  return stream;
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
