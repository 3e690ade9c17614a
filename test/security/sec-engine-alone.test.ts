// The split shape's engine holds neither the identity pepper nor the edge key (found by the security review: `runigun
// engine` refused to start off regtest without both, though it never uses them and cannot read the chat handles). It
// starts on signet with its own secrets only (master key ring, node wallet passphrase), against a real signet bitcoind
// (a private signet: challenge OP_TRUE, no peers); the identity settings are pinned to its store by the bot, over the
// internal TLS API, and a bot with others is refused. The all-in-one `runigun start` still requires both.
import t, { type Test } from "tap";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { EngineProcess } from "../../bench/chaos.ts";
import { loadConfig } from "../../src/config.ts";
import { loadEngineSecrets, loadSecrets } from "../../src/secrets.ts";
import { generateKeyRingFile } from "../../src/store/keyring.ts";
import { resolveBitcoind } from "../../src/regtest/bitcoind.ts";
import { freePort } from "../../src/regtest/harness.ts";
import { RemoteRelay } from "../../src/edges/internal/client.ts";
import { readPem } from "../../src/tls/certs.ts";
import { isRefusal } from "../../src/domain/refusals.ts";
import { silentLogger } from "../../src/log.ts";
import { runigun, runigunBin } from "../support/cli.ts";

t.setTimeout(240_000);

/** The environment without any RUNIGUN_* of the caller's: no pepper or edge key may come from there. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("RUNIGUN_")));
}

/** A signet bitcoind of its own: challenge OP_TRUE (51), no peers, RPC on loopback. Stopped over RPC at teardown. */
async function startSignet(t: Test, dir: string): Promise<{ url: string; user: string; password: string }> {
  const cmd = resolveBitcoind();
  const port = await freePort();
  const user = "runigun";
  const password = randomBytes(16).toString("hex");
  const child = spawn(cmd.bitcoind[0]!, [
    ...cmd.bitcoind.slice(1), "-signet", "-signetchallenge=51", `-datadir=${dir}`, "-server=1", "-listen=0", "-connect=0", "-dnsseed=0",
    "-discover=0", `-rpcport=${port}`, "-rpcbind=127.0.0.1", "-rpcallowip=127.0.0.1", `-rpcuser=${user}`, `-rpcpassword=${password}`, "-printtoconsole=0",
  ], { stdio: "ignore" });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  const url = `http://127.0.0.1:${port}`;
  const rpc = async (method: string) => {
    const res = await fetch(url, {
      method: "POST", headers: { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`, "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "1.0", id: 1, method, params: [] }),
    });
    return (await res.json()) as { result: unknown; error: { code: number } | null };
  };
  t.teardown(async () => {
    await rpc("stop").catch(() => child.kill("SIGKILL"));
    await exited;
    process.off("exit", killOnExit);
  });
  // bitcoind has no readiness signal: its RPC is polled (bounded) until it answers, as the regtest harness does.
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error("the signet bitcoind exited during start-up");
    const r = await rpc("getblockchaininfo").catch(() => undefined);
    if (r && !r.error) break;
    if (Date.now() > deadline) throw new Error("the signet bitcoind did not answer RPC within 60 s");
    await new Promise((res) => setTimeout(res, 50));
  }
  return { url, user, password };
}

t.test("secrets: the engine's own load without pepper and edge key on signet; the all-in-one's still need both", async (t) => {
  const dir = t.testdir();
  const masterKey = join(dir, "master.key");
  generateKeyRingFile(masterKey);
  const env = { RUNIGUN_NETWORK: "signet", RUNIGUN_DATA_DIR: join(dir, "data"), RUNIGUN_MASTER_KEY_FILE: masterKey, RUNIGUN_NODE_WALLET_PASSPHRASE: "a-signet-wallet-passphrase" };
  const config = loadConfig({ env });
  const own = loadEngineSecrets(config, silentLogger);
  t.ok(own.keyring, "the master key ring");
  t.equal(own.walletPassphrase, "a-signet-wallet-passphrase");
  t.notOk("pepper" in own || "handleKey" in own, "nothing of the edge's");
  t.throws(() => loadSecrets(config, silentLogger), { code: "setup", message: /^no identity pepper/ });
  t.throws(() => loadSecrets(loadConfig({ env: { ...env, RUNIGUN_PEPPER: randomBytes(32).toString("hex") } }), silentLogger), { code: "setup", message: /^no edge key/ });
});

t.test("`runigun engine` starts on signet without pepper and edge key; the bot pins its identity to the store; `runigun start` refuses", async (t) => {
  const dir = t.testdir({ node: {}, data: {} });
  const node = await startSignet(t, join(dir, "node"));
  const masterKey = join(dir, "master.key");
  generateKeyRingFile(masterKey);
  const internalPort = await freePort();
  const env = {
    ...cleanEnv(), NODE_ENV: "production", RUNIGUN_NETWORK: "signet", RUNIGUN_LOG_LEVEL: "error", RUNIGUN_DATA_DIR: join(dir, "data"),
    RUNIGUN_MASTER_KEY_FILE: masterKey, RUNIGUN_NODE_WALLET_PASSPHRASE: "a-signet-wallet-passphrase",
    RUNIGUN_NODE_RPC_URL: node.url, RUNIGUN_NODE_RPC_USER: node.user, RUNIGUN_NODE_RPC_PASSWORD: node.password,
    RUNIGUN_NODE_ADDRESS_POOL_SIZE: "5", RUNIGUN_INTERNAL_PORT: String(internalPort), RUNIGUN_ADMIN_ENABLED: "false",
  };
  const unexpected: string[] = [];
  const engine = await EngineProcess.start([runigunBin, "engine"], env, unexpected, { ready: /engine ready/, timeoutMs: 120_000 });
  t.teardown(() => engine.kill());

  // The bot's side of the pin, as runBotOnly makes it: the first bot's check value is recorded in the store.
  const pki = join(dir, "data", "pki");
  const relay = await RemoteRelay.connect({ url: `https://127.0.0.1:${internalPort}`, log: silentLogger, tls: { ...readPem(pki, "bot-client"), ca: readPem(pki, "internal-ca").cert } });
  t.teardown(() => relay.close());
  const first = randomBytes(32).toString("hex");
  t.same(await relay.identityPin(first), { pinned: true }, "the first bot's identity settings are pinned");
  t.same(await relay.identityPin(first), { pinned: true }, "the same again: accepted");
  const other = await relay.identityPin(randomBytes(32).toString("hex"));
  t.ok(isRefusal(other), "a bot with another pepper or other settings is refused");
  t.match(other, { code: "not_allowed", message: /made with other identity settings/ });

  t.same(await engine.stop(60_000), { clean: true }, "stops cleanly on SIGTERM");
  t.same(unexpected, []);

  // The all-in-one shape runs the edge in the same process: it still refuses without the pepper (and the edge key).
  const start = await runigun(["start"], { ...env, RUNIGUN_TELEGRAM_TOKEN: "4242:TEST-TOKEN", RUNIGUN_PEPPER: "", RUNIGUN_PEPPER_FILE: "", RUNIGUN_EDGE_KEY: "", RUNIGUN_EDGE_KEY_FILE: "" });
  t.equal(start.code, 1, start.out);
  t.match(start.out, /runigun start: no identity pepper: set RUNIGUN_PEPPER_FILE/);
});
