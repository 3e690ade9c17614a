// Money at the edges: decimal text ⇄ bigint satoshis. No float ever touches an amount.
// Accepted forms: "0.001", "0.001 BTC", "100000 sats", "100k sats", "1.5m sats", "100000 sat".
import { refuse, type Refusal } from "./refusals.ts";

export const SATS_PER_BTC = 100_000_000n;
/** 21 million BTC: nothing in this engine may ever exceed the money supply. */
export const MAX_SATS = 21_000_000n * SATS_PER_BTC;

const BTC_RE = /^(\d{1,8})(?:\.(\d{1,8}))?$|^\.(\d{1,8})$/;
const SATS_RE = /^(\d{1,16})(?:\.(\d{1,3}))?([km])?$/i;

/** Parses a user's amount text; the unit defaults to BTC. Returns sats or a refusal saying what is wrong. */
export function parseAmount(input: string): bigint | Refusal {
  const text = input.trim().toLowerCase().replace(/\s+/g, " ");
  if (text.length === 0) return refuse("bad_amount", "No amount given. Write it like 0.001 BTC or 100000 sats.");
  if (text.length > 40) return refuse("bad_amount", "That amount is too long. Write it like 0.001 BTC or 100000 sats.");
  if (text.startsWith("-")) return refuse("bad_amount", "An amount cannot be negative.");
  // "msat" is Lightning's millisatoshi: read as "m" (a million) and "sat", 100 msat would be 1 BTC.
  if (/msat|millisat/.test(text)) return refuse("bad_amount", "Millisatoshis are not used here: write whole satoshis, like 100000 sats.");
  let sats: bigint | undefined;
  const satsMatch = /^(.*?)\s*(sats?|satoshis?)$/.exec(text);
  if (satsMatch) {
    // Spaces only between groups of three digits ("1 000 000 sats"); the multiplier right after the digits ("100k").
    const number = /^\d{1,3}( \d{3})+$/.test(satsMatch[1]!) ? satsMatch[1]!.replace(/ /g, "") : satsMatch[1]!;
    const m = SATS_RE.exec(number);
    if (m) {
      const mult = m[3] === "k" ? 1000n : m[3] === "m" ? 1_000_000n : 1n;
      const frac = m[2] ?? "";
      if (frac && mult === 1n) return refuse("bad_amount", "Satoshis are whole numbers: write 100000 sats, not a fraction.");
      // "1.5k" = 1500: the fraction scales with the multiplier and must land on a whole satoshi.
      const scaled = BigInt(m[1]!) * mult + (frac ? (BigInt(frac) * mult) / 10n ** BigInt(frac.length) : 0n);
      if (frac && (BigInt(frac) * mult) % 10n ** BigInt(frac.length) !== 0n) {
        return refuse("bad_amount", "That amount is not a whole number of satoshis.");
      }
      sats = scaled;
    }
  } else {
    const btcText = text.replace(/\s*(btc|₿)$/, "");
    const m = BTC_RE.exec(btcText);
    if (m) {
      const whole = m[1] ?? "0";
      const frac = (m[2] ?? m[3] ?? "").padEnd(8, "0");
      sats = BigInt(whole) * SATS_PER_BTC + BigInt(frac || "0");
    } else if (/^\d+\.\d{9,}$/.test(btcText)) {
      return refuse("bad_amount", "Bitcoin has at most 8 decimal places (1 satoshi = 0.00000001 BTC).");
    }
  }
  if (sats === undefined && /^\d{9,}(\.\d*)?(\s*(btc|₿|sats?|satoshis?))?$/.test(text)) {
    return refuse("bad_amount", "That is more bitcoin than will ever exist.");
  }
  if (sats === undefined) return refuse("bad_amount", "That is not an amount. Write it like 0.001 BTC or 100000 sats.");
  if (sats === 0n) return refuse("bad_amount", "The amount must be more than zero.");
  if (sats > MAX_SATS) return refuse("bad_amount", "That is more bitcoin than will ever exist.");
  return sats;
}

/**
 * The unit an amount's text names, as parseAmount reads it ("sats", "sat", "satoshis", "btc", "₿"), or undefined for a
 * bare number (which parseAmount takes as BTC): for commands where a forgotten unit must not mean bitcoin (a tip).
 */
export function amountUnit(input: string): "btc" | "sats" | undefined {
  const text = input.trim().toLowerCase();
  if (/(sats?|satoshis?)$/.test(text)) return "sats";
  if (/(btc|₿)$/.test(text)) return "btc";
  return undefined;
}

/** "0.00123456" — exact, always 8 decimals trimmed to at least one. */
export function formatBtc(sats: bigint): string {
  const neg = sats < 0n;
  const abs = neg ? -sats : sats;
  const whole = abs / SATS_PER_BTC;
  const frac = (abs % SATS_PER_BTC).toString().padStart(8, "0").replace(/0+$/, "");
  return `${neg ? "-" : ""}${whole}.${frac || "0"}`;
}

/** "0.001 BTC (100,000 sats)" — how amounts are shown to people. */
export function describeAmount(sats: bigint): string {
  return `${formatBtc(sats)} BTC (${groupDigits(sats)} ${sats === 1n || sats === -1n ? "sat" : "sats"})`;
}

export function groupDigits(n: bigint): string {
  const s = (n < 0n ? -n : n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return n < 0n ? `-${s}` : s;
}

/** bitcoind speaks BTC as JSON numbers; Math.round(btc * 1e8) is exact for every real amount (DESIGN). */
export function btcNumberToSats(btc: number): bigint {
  if (!Number.isFinite(btc)) throw new Error(`not a finite BTC amount: ${btc}`);
  return BigInt(Math.round(btc * 1e8));
}

/** For RPC parameters: an exact decimal string (bitcoind accepts amounts as strings too). */
export function satsToBtcString(sats: bigint): string {
  const abs = sats < 0n ? -sats : sats;
  const s = `${abs / SATS_PER_BTC}.${(abs % SATS_PER_BTC).toString().padStart(8, "0")}`;
  return sats < 0n ? `-${s}` : s;
}
