import t from "tap";
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadConfig, envName, defaultConfigDir } from "../../src/config.ts";
import { loadSecrets } from "../../src/secrets.ts";
import { silentLogger } from "../../src/log.ts";

t.test("defaults load, the network file applies, env overrides by documented names", async (t) => {
  const c = loadConfig({ env: {} });
  t.equal(c.network, "regtest");
  t.equal(c.deposits.confirmations, 1);
  const main = loadConfig({ env: { RUNIGUN_NETWORK: "mainnet", RUNIGUN_DATA_DIR: "/srv/runigun" } });
  t.equal(main.deposits.confirmations, 3, "mainnet waits for 3 confirmations");
  const o = loadConfig({ env: { RUNIGUN_DEPOSITS_CONFIRMATIONS: "6", RUNIGUN_TELEGRAM_API_ROOT: "http://127.0.0.1:9", RUNIGUN_STORE_SYNC: "false" } });
  t.equal(o.deposits.confirmations, 6);
  t.equal(o.telegram.apiRoot, "http://127.0.0.1:9");
  t.equal(o.store.sync, false);
  t.equal(envName(["telegram", "apiRoot"]), "RUNIGUN_TELEGRAM_API_ROOT");
});

t.test("bad values are refused with the key's name", async (t) => {
  t.throws(() => loadConfig({ env: { RUNIGUN_DEPOSITS_CONFIRMATIONS: "zero" } }), /RUNIGUN_DEPOSITS_CONFIRMATIONS/);
  t.throws(() => loadConfig({ env: { RUNIGUN_DEPOSITS_CONFIRMATIONS: "0" } }), /deposits\.confirmations/);
  t.throws(() => loadConfig({ env: { RUNIGUN_NETWORK: "testnet3" } }), /network/);
  t.throws(() => loadConfig({ env: { RUNIGUN_DEPOSIT_CONFIRMATIONS: "2" } }), /not a RuniGun setting/, "typos do not pass silently");
  t.throws(() => loadConfig({ env: {}, overrides: { withdrawals: { dustSats: "-5" } } }), /withdrawals\.dustSats/);
});

t.test("deposits.maxPendingPerWallet: 1000 by default, a whole number of at least 1, set by its environment variable", async (t) => {
  t.equal(loadConfig({ env: {} }).deposits.maxPendingPerWallet, 1000);
  t.equal(loadConfig({ env: { RUNIGUN_NETWORK: "mainnet", RUNIGUN_DATA_DIR: "/srv/runigun" } }).deposits.maxPendingPerWallet, 1000, "on every network");
  t.equal(envName(["deposits", "maxPendingPerWallet"]), "RUNIGUN_DEPOSITS_MAX_PENDING_PER_WALLET");
  t.equal(loadConfig({ env: { RUNIGUN_DEPOSITS_MAX_PENDING_PER_WALLET: "3" } }).deposits.maxPendingPerWallet, 3);
  t.equal(loadConfig({ env: {}, overrides: { deposits: { maxPendingPerWallet: 1 } } }).deposits.maxPendingPerWallet, 1, "one is allowed");
  t.throws(() => loadConfig({ env: { RUNIGUN_DEPOSITS_MAX_PENDING_PER_WALLET: "0" } }), /config key deposits\.maxPendingPerWallet: .*RUNIGUN_DEPOSITS_MAX_PENDING_PER_WALLET/);
  t.throws(() => loadConfig({ env: { RUNIGUN_DEPOSITS_MAX_PENDING_PER_WALLET: "-1" } }), /deposits\.maxPendingPerWallet/);
  t.throws(() => loadConfig({ env: { RUNIGUN_DEPOSITS_MAX_PENDING_PER_WALLET: "2.5" } }), /RUNIGUN_DEPOSITS_MAX_PENDING_PER_WALLET: "2\.5" is not a whole number/);
  t.throws(() => loadConfig({ env: { RUNIGUN_DEPOSITS_MAX_PENDING_PER_WALLET: "many" } }), /not a whole number/);
  t.throws(() => loadConfig({ env: {}, overrides: { deposits: { maxPendingPerWallet: 1.5 } } }), /deposits\.maxPendingPerWallet/);
});

t.test("the admin edge may only bind to loopback or a configured VPN range", async (t) => {
  t.throws(() => loadConfig({ env: { RUNIGUN_ADMIN_HOST: "0.0.0.0" } }), { code: "config_invalid" });
  t.throws(() => loadConfig({ env: { RUNIGUN_ADMIN_HOST: "8.8.8.8" } }), /admin\.host/);
  t.throws(() => loadConfig({ env: { RUNIGUN_ADMIN_HOST: "10.8.0.5", RUNIGUN_ADMIN_VPN_CIDRS: "10.9.0.0/24" } }), /admin\.host/);
  t.equal(loadConfig({ env: { RUNIGUN_ADMIN_HOST: "10.8.0.5", RUNIGUN_ADMIN_VPN_CIDRS: "10.8.0.0/24" } }).admin.host, "10.8.0.5");
  t.throws(() => loadConfig({ env: { RUNIGUN_ADMIN_VPN_CIDRS: "10.8.0.0/99" } }), /vpnCidrs/);
  // Found by a review: a range as wide as the internet, or a wildcard inside one, passed every check.
  t.throws(() => loadConfig({ env: { RUNIGUN_ADMIN_VPN_CIDRS: "0.0.0.0/0", RUNIGUN_ADMIN_HOST: "8.8.8.8" } }), /vpnCidrs.*\/8 or narrower/);
  // A range around the wildcard is not a private one: refused as a range, before any host is looked at.
  t.throws(() => loadConfig({ env: { RUNIGUN_ADMIN_VPN_CIDRS: "0.0.0.0/8", RUNIGUN_INTERNAL_HOST: "0.0.0.0" } }), /admin\.vpnCidrs: "0\.0\.0\.0\/8" is not a private range/);
  t.throws(() => loadConfig({ env: { RUNIGUN_ADMIN_VPN_CIDRS: "10.0.0.0/8", RUNIGUN_ADMIN_HOST: "0.0.0.0" } }), /admin\.host/);
});

t.test("settings for tests only are refused where real money is", async (t) => {
  t.throws(() => loadConfig({ env: { RUNIGUN_NETWORK: "mainnet", RUNIGUN_STORE_SYNC: "false" } }), /store\.sync: false is for tests/);
  t.throws(() => loadConfig({ env: { RUNIGUN_NETWORK: "signet", RUNIGUN_IDENTITY_TIME_COST: "1" } }), /identity\.timeCost/);
  t.throws(() => loadConfig({ env: { RUNIGUN_NETWORK: "mainnet", RUNIGUN_IDENTITY_MEMORY_KI_B: "8" } }), /identity\.timeCost and identity\.memoryKiB/);
  t.equal(loadConfig({ env: { RUNIGUN_STORE_SYNC: "false", RUNIGUN_IDENTITY_TIME_COST: "1" } }).store.sync, false, "regtest: allowed, for tests and benches");
  t.equal(loadConfig({ env: { RUNIGUN_NETWORK: "mainnet", RUNIGUN_DATA_DIR: "/srv/runigun" } }).store.sync, true);
});

t.test("the Telegram webhook's listener binds to loopback or a VPN range too (its public side is the reverse proxy)", async (t) => {
  const webhook = { RUNIGUN_TELEGRAM_MODE: "webhook" };
  t.throws(() => loadConfig({ env: { ...webhook, RUNIGUN_TELEGRAM_WEBHOOK_HOST: "0.0.0.0" } }), /telegram\.webhookHost: 0\.0\.0\.0 is not a loopback or VPN address/);
  t.equal(loadConfig({ env: webhook }).telegram.webhookHost, "127.0.0.1", "loopback by default");
  t.equal(loadConfig({ env: { ...webhook, RUNIGUN_TELEGRAM_WEBHOOK_HOST: "10.8.0.7", RUNIGUN_ADMIN_VPN_CIDRS: "10.8.0.0/24" } }).telegram.webhookHost, "10.8.0.7");
  t.equal(loadConfig({ env: { RUNIGUN_TELEGRAM_WEBHOOK_HOST: "0.0.0.0" } }).telegram.mode, "polling", "in polling mode nothing listens there: not checked");
});

t.test("secrets come only from the environment and from private files", async (t) => {
  const dir = t.testdir({ "default.json": readFileSync(join(defaultConfigDir, "default.json"), "utf8") });
  const tokenFile = join(dir, "token");
  writeFileSync(tokenFile, "123:abc\n");
  chmodSync(tokenFile, 0o644);
  t.throws(() => loadConfig({ env: { RUNIGUN_TELEGRAM_TOKEN_FILE: tokenFile } }), /chmod 600/);
  chmodSync(tokenFile, 0o600);
  t.equal(loadConfig({ env: { RUNIGUN_TELEGRAM_TOKEN_FILE: tokenFile } }).secrets.telegramToken, "123:abc");
  t.equal(loadConfig({ env: { RUNIGUN_PEPPER: "p" } }).secrets.pepper, "p");
  writeFileSync(join(dir, "regtest.json"), JSON.stringify({ telegram: { token: "leak" } }));
  t.throws(() => loadConfig({ env: {}, configDir: dir }), /secrets are not read from config files/);
});

t.test("a missing master key file for a store that exists: restore it, never 'create one' (a new key opens nothing)", async (t) => {
  const dir = t.testdir({ store: {} });
  const env = {
    RUNIGUN_NETWORK: "signet", RUNIGUN_DATA_DIR: dir, RUNIGUN_MASTER_KEY_FILE: join(dir, "master.key"),
    RUNIGUN_PEPPER: "p".repeat(32), RUNIGUN_EDGE_KEY: "e".repeat(64),
  };
  t.throws(() => loadSecrets(loadConfig({ env }), silentLogger), { message: /does not exist, but the store at .* was sealed with it: restore it from your offline copy/ });
  t.throws(() => loadSecrets(loadConfig({ env: { ...env, RUNIGUN_DATA_DIR: join(dir, "new") } }), silentLogger), { message: /create one with "runigun keys generate/ }, "no store yet: a new key is the advice");
});
