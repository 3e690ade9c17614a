// The conditions that stay wrong until an operator acts are `alert: true` error lines (what log-based paging keys
// on): read from the sources, since most of them take a reorg, a refusing wallet or a dead bitcoind to provoke.
import t from "tap";
import { readFileSync } from "node:fs";

const MUST_ALERT: Array<[file: string, message: string]> = [
  ["actors/registry.ts", "wallet stopped after repeated crashes"],
  ["actors/wallet.actor.ts", "confirmed deposit left the chain; wallet frozen"],
  ["actors/deposit-watcher.ts", "a confirmed deposit left the chain (reorg deeper"],
  ["actors/transfers.ts", "transfer credit refused; it stays in the sender's outbox"],
  ["actors/node.ts", "bitcoind is unavailable"],
  ["actors/deposit-watcher.ts", "deposit scans stalled: the node does not know"],
  ["actors/deposit-watcher.ts", "deposit scans stalled: they keep failing"],
  ["actors/deposit-watcher.ts", "deposit scans stalled: none has completed"],
  ["engine.ts", "the books and the node wallet disagree (payouts were already paused)"],
];

for (const [file, message] of MUST_ALERT) {
  t.test(`${file}: "${message}…" is an alert`, async (t) => {
    const src = readFileSync(new URL(`../../src/${file}`, import.meta.url), "utf8");
    const calls = [...src.matchAll(/log\??\.(trace|debug|info|warn|error|fatal)\(\{([^}]*)\}, "([^"]*)"/g)].filter((m) => m[3]!.startsWith(message));
    t.equal(calls.length, 1, "the log line is found once");
    for (const m of calls) {
      t.equal(m[1], "error", "at error level");
      t.match(m[2], /\balert: true\b/, "with alert: true");
    }
  });
}
