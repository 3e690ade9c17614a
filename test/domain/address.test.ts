import t from "tap";
import { readFileSync } from "node:fs";
import { checkAddressFor, type Network } from "../../src/domain/address.ts";

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
