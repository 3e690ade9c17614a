import t from "tap";
import { readFileSync } from "node:fs";
import { parseAmount, formatBtc, btcNumberToSats, satsToBtcString, describeAmount } from "../../src/domain/money.ts";
import { isRefusal } from "../../src/domain/refusals.ts";

const vectors = JSON.parse(readFileSync(new URL("./amounts.vectors.json", import.meta.url), "utf8")) as {
  valid: [string, string][]; invalid: [string, string][]; format: [string, string][];
};

t.test("valid amounts parse to exact sats", async (t) => {
  for (const [text, sats] of vectors.valid) t.equal(parseAmount(text), BigInt(sats), JSON.stringify(text));
});

t.test("invalid amounts are refused with a reason", async (t) => {
  for (const [text, code] of vectors.invalid) {
    const r = parseAmount(text);
    t.ok(isRefusal(r), `${JSON.stringify(text)} refused`);
    if (isRefusal(r)) {
      t.equal(r.code, code);
      t.ok(r.message.length > 10 && r.message.length < 120, "a short, clear message");
    }
  }
});

t.test("formatting is exact", async (t) => {
  for (const [sats, text] of vectors.format) t.equal(formatBtc(BigInt(sats)), text);
  t.equal(describeAmount(100000n), "0.001 BTC (100,000 sats)");
});

t.test("RPC boundary conversions are exact for every 8-decimal amount", async (t) => {
  for (const sats of [1n, 546n, 99999999n, 2099999997690000n, 123456789n, 100000000n]) {
    t.equal(btcNumberToSats(Number(satsToBtcString(sats))), sats);
  }
  // A sweep over awkward fractions: float BTC values built from text round-trip exactly.
  const wrong: bigint[] = [];
  for (let i = 0n; i < 20000n; i++) {
    const sats = i * 7919n + 1n;
    if (btcNumberToSats(Number(satsToBtcString(sats))) !== sats) wrong.push(sats);
  }
  t.same(wrong, [], "20,000 amounts round-trip");
  t.throws(() => btcNumberToSats(Number.NaN));
});
