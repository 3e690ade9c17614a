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
