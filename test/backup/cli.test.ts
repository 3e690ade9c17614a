// `runigun backup` and `runigun restore` as an operator runs them: the real command line in a child process.
// Online (a running engine answers on its control socket and puts the node wallet in the archive), offline (no
// engine: the store is read directly), and restore's refusals with their exit codes and messages.
import t from "tap";
import { runigun } from "../support/cli.ts";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { startEngine } from "../../src/app.ts";
import { loadConfig } from "../../src/config.ts";
import { silentLogger } from "../../src/log.ts";
import { startRegtest } from "../../src/regtest/harness.ts";
import { generateKeyRingFile } from "../../src/store/keyring.ts";
import { isRefusal } from "../../src/domain/refusals.ts";

t.test("runigun backup (online and offline) and runigun restore, with their refusals", async (t) => {
  const dir = t.testdir();
  const node = await startRegtest();
  t.teardown(() => node.stop());
  const keyFile = join(dir, "master.key");
  generateKeyRingFile(keyFile);
  const env = {
    RUNIGUN_NETWORK: "regtest", RUNIGUN_DATA_DIR: join(dir, "data"), RUNIGUN_MASTER_KEY_FILE: keyFile, RUNIGUN_LOG_LEVEL: "error",
    RUNIGUN_PEPPER: randomBytes(32).toString("hex"), RUNIGUN_EDGE_KEY: randomBytes(32).toString("hex"),
    RUNIGUN_NODE_MANAGED: "false", RUNIGUN_NODE_RPC_URL: node.rpcUrl, RUNIGUN_NODE_RPC_USER: node.user, RUNIGUN_NODE_RPC_PASSWORD: node.password,
    RUNIGUN_BACKUP_DIR: join(dir, "backup"), RUNIGUN_BACKUP_SNAPSHOT_INTERVAL_MS: "0", RUNIGUN_ADMIN_ENABLED: "false",
  };
  const config = loadConfig({ env });
  const running = await startEngine(config, silentLogger);
  let stopped = false;
  t.teardown(() => (stopped ? undefined : running.stop()));
  const opened = await running.engine.relay.start("u_cli_backup_user1");
  t.notOk(isRefusal(opened));
  await running.engine.registry.send("u_cli_backup_user1", "receive_transfer", { id: "seed", from: "u_bank", amount: 12_345n });

  // Online: the running engine holds the store; the command reaches it on the control socket.
  const online = await runigun(["backup", "--out", join(dir, "online.rga")], env);
  t.equal(online.code, 0, online.out);
  t.match(online.out, /backup written: .*online\.rga/);
  t.match(online.out, /node wallet included/, "the engine asked bitcoind for backupwallet");
  await running.stop();
  stopped = true;

  // Offline: no engine; the store is read directly (and the node wallet is left out, saying why).
  const offline = await runigun(["backup"], env);
  t.equal(offline.code, 0, offline.out);
  t.match(offline.out, /backup written: .*snapshots\/runigun-regtest-.*\.rga/);
  t.match(offline.out, /node wallet not included \(no node to ask/);

  // Restore into a fresh data directory with the same key ring.
  // A new data directory, with the secrets an operator keeps (the node wallet's passphrase among them: on regtest the
  // first data directory made it).
  const env2 = { ...env, RUNIGUN_DATA_DIR: join(dir, "data2"), RUNIGUN_NODE_WALLET_PASSPHRASE_FILE: join(dir, "data", "wallet.passphrase") };
  const restored = await runigun(["restore", join(dir, "online.rga"), join(dir, "backup", "segments")], env2);
  t.equal(restored.code, 0, restored.out);
  t.match(restored.out, /restored \d+ records/);
  t.match(restored.out, /node wallet's backup .* is in .*node-wallet-restored-/);
  t.match(restored.out, /compares the restored books with the chain before paying anything/);
  const again = await runigun(["restore", join(dir, "online.rga")], env2);
  t.equal(again.code, 1, "a store already there is refused");
  t.match(again.out, /not empty; restore only into an empty data directory/);

  const bytes = readFileSync(join(dir, "online.rga"));
  bytes[Math.floor(bytes.length / 3)]! ^= 0x10;
  writeFileSync(join(dir, "bad.rga"), bytes);
  const bad = await runigun(["restore", join(dir, "bad.rga")], { ...env, RUNIGUN_DATA_DIR: join(dir, "data3") });
  t.equal(bad.code, 1);
  t.match(bad.out, /failed authentication: a byte was changed/);
  const usage = await runigun(["restore"], env);
  t.equal(usage.code, 1);
  t.match(usage.out, /usage: runigun restore ARCHIVE \[SEGMENTS_DIR\]/);

  // The restored store with another pepper (a lost or regenerated secret): refused, not every user a new empty wallet;
  // the new data directory's own pin is not written by the refused start.
  await t.rejects(startEngine(loadConfig({ env: { ...env2, RUNIGUN_PEPPER: randomBytes(32).toString("hex") } }), silentLogger), { message: /identity settings differ from those this store's wallets were made with/ });
  t.notOk(existsSync(join(dir, "data2", "identity.pin")), "nothing pinned by the refused start");

  // The restored store starts: it reconciles with the chain and serves the wallet as it was. A node with no block yet
  // is in initial block download, where the comparison (and the deposit scan it needs) waits: one block first.
  await node.mine(1);
  const r2 = await startEngine(loadConfig({ env: env2 }), silentLogger);
  try {
    t.match(await r2.engine.relay.balance("u_cli_backup_user1"), { available: 12_345n });
    // (The user's 12,345 sats came from a transfer, not the chain: the watchdog may pause payouts for that — not the restore.)
    t.notMatch(r2.engine.payouts.paused ?? "", /restored from a backup/, "nothing unknown was spent: the restore's pause was lifted after reconciling");
    t.notOk(r2.engine.restoreIncident, "no incident");
  } finally {
    // Stopped here, not in a teardown: its start-up snapshot must finish before the test's directory is removed.
    await r2.stop();
  }
});
