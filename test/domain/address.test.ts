import t from "tap";
import { readFileSync } from "node:fs";
import { canonicalAddress, checkAddressFor, type Network } from "../../src/domain/address.ts";

const vectors = JSON.parse(readFileSync(new URL("./address.vectors.json", import.meta.url), "utf8")) as Record<string, [string, string][]>;

for (const network of ["regtest", "mainnet", "signet"] as Network[]) {
  t.test(`addresses checked for a ${network} service`, async (t) => {
    for (const [addr, expect] of vectors[network]!) {
      const r = checkAddressFor(network, addr);
      t.equal(r === true ? "ok" : r.code, expect, addr.slice(0, 24));
      if (r !== true && expect === "wrong_network") t.match(r.message, new RegExp(`runs on ${network}`));
    }
  });
}

t.test("one spelling per destination: bech32 in lower case, base58 as given", async (t) => {
  t.equal(canonicalAddress(" BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4 "), "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4");
  t.equal(canonicalAddress("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"), "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080");
  t.equal(canonicalAddress("TB1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KXPJZSX"), "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx");
  t.equal(canonicalAddress("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"), "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", "base58 is case-sensitive");
  t.equal(canonicalAddress("3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"), "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", "a '1' inside base58 is no bech32 separator");
});
