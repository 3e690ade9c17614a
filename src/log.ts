// The engine's logger: pino, JSON in production, pretty on a terminal, with a redaction list so that
// tokens, keys, peppers, raw Telegram ids, chat handles and message text never reach a log line.
import { pino, type Logger, type LoggerOptions } from "pino";

export type { Logger };

/** Field names that must never be logged in clear, at any of the first three levels of nesting. */
export const REDACTED_FIELDS = [
  "token", "botToken", "telegramToken", "secret", "password", "rpcPassword", "pepper", "masterKey", "key",
  "privateKey", "seed", "mnemonic", "passphrase", "telegramId", "telegramUserId", "chatId", "chat", "from",
  "text", "message_text", "handle", "chatHandle", "authorization", "cookie", "totp", "code",
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
