// What the node actor checks at start, against a real regtest bitcoind: that the node is on the configured network,
// that a wallet passphrase is configured where real money is, and that it is the encrypted wallet's passphrase. And
// the pure parts: the wallet passphrase from the environment is trimmed, and the host clock against the chain.
import t from "tap";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { ActorSystem } from "../../src/actors/runtime.ts";
import { CLOCK_AHEAD_MAX_MS, CLOCK_BEHIND_MAX_MS, clockSkew, NodeGateway } from "../../src/actors/node.ts";
import { loadConfig, type ConfigFile, type DeepPartial } from "../../src/config.ts";
import { silentLogger } from "../../src/log.ts";
import { startRegtest } from "../../src/regtest/harness.ts";

const PASSPHRASE = "correct horse battery staple";

t.test("start refuses a node on another chain, a missing passphrase where real money is, and a wrong one", async (t) => {
  const node = await startRegtest();
  const systems: ActorSystem[] = [];
  const gateways: NodeGateway[] = [];
  t.teardown(async () => {
    for (const gw of gateways) await gw.stop();
    for (const s of systems) s.shutdown();
    await node.stop();
  });
  const start = (overrides: DeepPartial<ConfigFile>, walletPassphrase?: string) => {
    const system = new ActorSystem();
    const config = loadConfig({ env: {}, overrides: { dataDir: "/srv/runigun", ...overrides, node: { addressPoolSize: 1, timeoutMs: 5000, ...overrides.node } } });
    const gw = new NodeGateway({ config, log: silentLogger, system, rpc: { url: node.rpcUrl, user: node.user, password: node.password }, ...(walletPassphrase ? { walletPassphrase } : {}) });
    systems.push(system);
    gateways.push(gw);
    return gw.start();
  };
  const wallets = () => node.rpc<string[]>("listwallets");
  const unlockedUntil = async () => (await node.rpc<{ unlocked_until?: number }>("getwalletinfo", [], node.walletName)).unlocked_until;

  await t.rejects(start({ network: "signet", node: { wallet: "signet_engine" } }, PASSPHRASE), {
    code: "setup",
    message: /^bitcoind is on chain "regtest" but this engine is configured for signet \(it expects "signet"\): set RUNIGUN_NETWORK=regtest if that node is the one meant, or point node\.rpcUrl \(RUNIGUN_NODE_RPC_URL\) at a signet node$/,
  }, "a signet engine against a regtest node");
  await t.rejects(start({ network: "mainnet", node: { wallet: "signet_engine" } }, PASSPHRASE), { code: "setup", message: /chain "regtest" but this engine is configured for mainnet \(it expects "main"\)/ });
  t.notOk((await wallets()).includes("signet_engine"), "refused before any wallet was created on the wrong chain");

  for (const network of ["signet", "mainnet"] as const) {
    await t.rejects(start({ network }), {
      code: "setup", message: new RegExp(`^no node wallet passphrase on ${network}: .*Set RUNIGUN_NODE_WALLET_PASSPHRASE_FILE`),
    }, `${network} without a wallet passphrase: refused (its wallet would stay in clear)`);
  }

  // On regtest, the harness's wallet is in clear and no passphrase is configured: it starts, and stays in clear.
  await t.resolves(start({}), "regtest, a wallet in clear, no passphrase");
  t.equal(await unlockedUntil(), undefined, "not encrypted");

  await node.rpc("encryptwallet", [PASSPHRASE], node.walletName);
  await t.rejects(start({}, "correct horse battery stapler"), {
    code: "setup", message: /^wrong passphrase for node wallet "engine" \(RUNIGUN_NODE_WALLET_PASSPHRASE\[_FILE\]\): bitcoind refused it/,
  }, "a wrong passphrase is found at start, not by the first payout");
  t.equal(await unlockedUntil(), 0, "the wallet stays locked");
  await t.rejects(start({}), {
    code: "setup", message: /^the node wallet "engine" is encrypted but no passphrase is configured.*RUNIGUN_NODE_WALLET_PASSPHRASE_FILE/,
  }, "an encrypted wallet and no passphrase: refused");

  // Left unlocked by an operator: the right passphrase starts, and the wallet is locked when the start is done.
  await node.rpc("walletpassphrase", [PASSPHRASE, 600], node.walletName);
  await t.resolves(start({}, PASSPHRASE), "the right passphrase");
  t.equal(await unlockedUntil(), 0, "locked after the check");
  const gw = gateways.at(-1)!;
  t.equal(await gw.signing(async () => (await gw.call<{ unlocked_until: number }>("getwalletinfo")).unlocked_until > 0), true, "and it signs: unlocked inside signing");
  t.equal(await unlockedUntil(), 0, "locked again after");
});

t.test("the wallet passphrase from the environment is trimmed, as the one from its file is", async (t) => {
  const dir = t.testdir({});
  const file = join(dir, "wallet.passphrase");
  writeFileSync(file, `${PASSPHRASE}\n`, { mode: 0o600 });
  const fromFile = loadConfig({ env: { RUNIGUN_NODE_WALLET_PASSPHRASE_FILE: file } }).secrets.walletPassphrase;
  t.equal(fromFile, PASSPHRASE);
  t.equal(loadConfig({ env: { RUNIGUN_NODE_WALLET_PASSPHRASE: `${PASSPHRASE}\n` } }).secrets.walletPassphrase, fromFile, "a trailing newline: the same passphrase");
  t.equal(loadConfig({ env: { RUNIGUN_NODE_WALLET_PASSPHRASE: ` ${PASSPHRASE}\r\n` } }).secrets.walletPassphrase, fromFile);
  t.equal(loadConfig({ env: { RUNIGUN_NODE_WALLET_PASSPHRASE: " \n" } }).secrets.walletPassphrase, undefined, "only whitespace: none");
});

t.test("the host clock against the tip's median time: alerted when far behind or far ahead", async (t) => {
  const median = 1_700_000_000; // seconds, as getblockchaininfo gives it
  const at = (offsetMs: number, syncing = false) => clockSkew(median * 1000 + offsetMs, median, syncing);
  t.equal(at(3600_000), undefined, "an hour ahead of the median time: as it is, as a rule");
  t.equal(at(-CLOCK_BEHIND_MAX_MS), undefined, "two hours behind: still within");
  t.equal(at(CLOCK_AHEAD_MAX_MS), undefined, "six hours ahead: still within");
  const behind = at(-CLOCK_BEHIND_MAX_MS - 60_000);
  t.match(behind, { direction: "behind", ms: CLOCK_BEHIND_MAX_MS + 60_000, message: /^the host clock is 2\.0 h behind the median time of bitcoind's tip .*TOTP codes and cheque expiry depend on it/ });
  const ahead = at(CLOCK_AHEAD_MAX_MS + 3600_000);
  t.match(ahead, { direction: "ahead", ms: CLOCK_AHEAD_MAX_MS + 3600_000, message: /^the host clock is 7\.0 h ahead of the median time of bitcoind's tip .*TOTP codes and cheque expiry depend on it/ });
  t.equal(at(CLOCK_AHEAD_MAX_MS + 3600_000, true), undefined, "a node still catching up has an old tip: not the clock's fault");
  t.match(at(-CLOCK_BEHIND_MAX_MS - 60_000, true), { direction: "behind" }, "behind a syncing node's tip: the clock is wrong all the same");
});
