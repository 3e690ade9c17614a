// The wire form of the relay between the bot and the engine (split shape): one POST per relay method, JSON with
// bigints tagged by the store's codec, and notifications as server-sent events.
export const RELAY_METHODS = {
  start: ["string", "string?"],
  balance: ["string"],
  history: ["string", "number", "number?"],
  depositAddress: ["string"],
  quoteWithdrawal: ["string", "string", "string"],
  confirmWithdrawal: ["string", "string"],
  cancelQuote: ["string", "string"],
  transfer: ["string", "string", "string", "string"],
  createCheque: ["string", "string", "string"],
  claimCheque: ["string", "string"],
  revokeCheque: ["string", "string"],
  myCheques: ["string"],
  identityPin: ["string"],
} as const;

export type RelayMethod = keyof typeof RELAY_METHODS;

/** Checks a call's arguments against the method's signature; returns why not, or undefined. */
export function checkArgs(method: RelayMethod, args: unknown): string | undefined {
  const sig = RELAY_METHODS[method];
  if (!Array.isArray(args) || args.length > sig.length) return `${method} takes at most ${sig.length} arguments`;
  for (const [i, t] of sig.entries()) {
    const v = args[i];
    const optional = t.endsWith("?");
    if (v === undefined || v === null) {
      if (!optional) return `${method}: argument ${i + 1} is missing`;
      continue;
    }
    const type = t.replace("?", "");
    if (typeof v !== type) return `${method}: argument ${i + 1} must be a ${type}`;
    if (type === "string" && (v as string).length > 4096) return `${method}: argument ${i + 1} is too long`;
  }
  return undefined;
}

/**
 * Acknowledged notices (at least once). A bot that asks for them (`NOTICE_ACKS_HEADER: 1` on its stream request) gets
 * its stream's name in `NOTICE_STREAM_HEADER` and each notice with an SSE `id:` (1, 2, … on that stream), and posts to
 * `NOTICE_ACK_PATH` `{ stream, upTo }` once the notices up to `upTo` are settled at its Telegram side (each sent, or
 * refused for good; one not settled holds back the acknowledgement of those after it). The engine keeps what it wrote
 * and was not acknowledged, and holds it for the next bot when the stream ends (and, in its store, for its own next
 * start). A bot of an earlier version acknowledged once it had handed the notices over: the engine cannot tell, and
 * need not. A bot that
 * does not ask (one older than this engine) gets the stream as before, at most once; a bot talking to an older engine
 * gets no stream name and acknowledges nothing.
 */
export const NOTICE_ACKS_HEADER = "x-runigun-notice-acks";
export const NOTICE_STREAM_HEADER = "x-runigun-notice-stream";
export const NOTICE_ACK_PATH = "/relay/notifications/ack";

/** An acknowledgement's body, checked; undefined when it is not one. */
export function checkAck(body: unknown): { stream: string; upTo: number } | undefined {
  const b = body as { stream?: unknown; upTo?: unknown } | undefined;
  if (typeof b?.stream !== "string" || b.stream.length === 0 || b.stream.length > 64) return undefined;
  if (typeof b.upTo !== "number" || !Number.isSafeInteger(b.upTo) || b.upTo < 0) return undefined;
  return { stream: b.stream, upTo: b.upTo };
}
