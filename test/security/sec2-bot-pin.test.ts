// `runigun bot` pins its identity settings to its data directory only once the engine has accepted them (found by the
// security re-review): the bot wrote its identity.pin first, so a bot the engine refused (the wrong pepper) left the
// wrong pepper's pin behind, and the same data directory started again with the right pepper was refused by it — told
// to delete it "only to abandon every wallet made so far". `runigun start` checks both pins before writing either.
// Real parts: the engine (its store, its regtest bitcoind) and its internal API on mutual TLS in this process,
// `runigun bot` as separate processes reaching it through that API, a stand-in for the Bot API.
import t from "tap";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { BotApiStandIn } from "../support/bot-api.ts";
import { startTestEngine } from "../support/engine.ts";
import { buildInternalEdge, listenInternal } from "../../src/edges/internal/server.ts";
import { ensurePki, readPem } from "../../src/tls/certs.ts";
import { freePort } from "../../src/regtest/harness.ts";
import { silentLogger } from "../../src/log.ts";
import { runigunBin } from "../support/cli.ts";

t.setTimeout(180_000);

t.test("a bot the engine refuses leaves no pin in its data directory; the same directory then starts with the right pepper", async (t) => {
  const api = new BotApiStandIn();
  await api.start();
  t.teardown(() => api.stop());
  const te = await startTestEngine();
  t.teardown(() => te.stop());
  const dir = t.testdir({ pki: {} });
  const pki = join(dir, "pki");
  await ensurePki(pki, { admin: "127.0.0.1", internal: "127.0.0.1" });
  const port = await freePort();
  const internal = await buildInternalEdge({ relay: te.engine.relay, log: silentLogger, tls: { ...readPem(pki, "internal-server"), ca: readPem(pki, "internal-ca").cert } });
  await listenInternal(internal, { ...te.config, internal: { host: "127.0.0.1", port } });
  t.teardown(() => internal.close());

  const right = randomBytes(32).toString("hex");
  const wrong = randomBytes(32).toString("hex");
  const base = {
    ...process.env, RUNIGUN_TELEGRAM_TOKEN: api.token, RUNIGUN_TELEGRAM_API_ROOT: api.apiRoot, RUNIGUN_PKI_DIR: pki,
    RUNIGUN_INTERNAL_PORT: String(port), RUNIGUN_EDGE_KEY: randomBytes(32).toString("hex"),
    RUNIGUN_IDENTITY_MEMORY_KI_B: "1024", RUNIGUN_IDENTITY_TIME_COST: "1", RUNIGUN_LOG_LEVEL: "warn", NODE_ENV: "production",
  };
  /** Runs `runigun bot` until it is ready (then stops it with SIGTERM) or exits by itself; what it said and its exit code. */
  const bot = (dataDir: string, pepper: string) => new Promise<{ ready: boolean; code: number | null; out: string }>((resolve) => {
    const child = spawn(process.execPath, [runigunBin, "bot"], { env: { ...base, RUNIGUN_DATA_DIR: dataDir, RUNIGUN_PEPPER: pepper }, stdio: ["ignore", "pipe", "pipe"] });
    t.teardown(() => void child.kill("SIGKILL"));
    let out = "";
    let ready = false;
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (!ready && /bot ready/.test(out)) (ready = true, child.kill("SIGTERM"));
    });
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.once("exit", (code) => resolve({ ready, code, out }));
  });

  // The first bot, with the right pepper: the engine's store is pinned to its settings.
  const first = await bot(join(dir, "bot-first"), right);
  t.ok(first.ready, first.out);

  // A new bot host with the wrong pepper: refused by the engine, and nothing recorded in its data directory.
  const newHost = join(dir, "bot-new");
  const refused = await bot(newHost, wrong);
  t.notOk(refused.ready, "not started");
  t.equal(refused.code, 1, refused.out);
  t.match(refused.out, /the engine refused this bot's identity settings: .*new, empty wallet/);
  t.notOk(existsSync(join(newHost, "identity.pin")), "no identity.pin of the refused settings");

  // The operator corrects the pepper on that host: it starts, and its data directory is pinned now.
  const corrected = await bot(newHost, right);
  t.ok(corrected.ready, corrected.out);
  t.notMatch(corrected.out, /abandon every wallet/);
  t.equal(readFileSync(join(newHost, "identity.pin"), "utf8"), readFileSync(join(dir, "bot-first", "identity.pin"), "utf8"), "the same check value as the first bot's");

  // The data directory's own pin is still compared first: the wrong pepper there is refused by it, before the engine.
  const again = await bot(newHost, wrong);
  t.equal(again.code, 1, again.out);
  t.match(again.out, /the identity settings differ from those this data directory's wallets were made with/);
});
