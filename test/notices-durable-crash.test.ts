// Notices survive the engine's death: `runigun engine` runs as a child process on a real regtest node and a real
// store, makes notices (a deposit confirmed, transfers received) while no bot is connected, and is SIGKILLed. Started
// again on the same data, it hands them to the first bot that connects (a real Telegram edge, in this process, on the
// internal TLS link, sending to the local Bot API stand-in): each once, in order, before what is made after.
import t from "tap";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { EngineProcess } from "../bench/chaos.ts";
import { startRegtest, freePort } from "../src/regtest/harness.ts";
import { ensurePki, readPem } from "../src/tls/certs.ts";
import { generateKeyRingFile } from "../src/store/keyring.ts";
import { RemoteRelay } from "../src/edges/internal/client.ts";
import { buildTelegramEdge } from "../src/edges/telegram/bot.ts";
import { sealHandle } from "../src/store/sealed.ts";
import { loadConfig } from "../src/config.ts";
import { isRefusal } from "../src/domain/refusals.ts";
import { silentLogger } from "../src/log.ts";
import { BotApiStandIn } from "./support/bot-api.ts";
import { runigunBin } from "./support/cli.ts";

t.setTimeout(300_000);

const ALICE = { key: "u_durable_alice", chat: 7_001 };
const BOB = { key: "u_durable_bob01", chat: 7_002 };

/** Reads `read` until `done` says so (the engine is another process: its balances are the only sign it has worked). */
async function until<T>(read: () => Promise<T>, done: (v: T) => boolean, what: string, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await read();
    if (done(v)) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${ms / 1000} s (last: ${String(v)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

t.test("notices held while no bot was connected survive a SIGKILL of the engine: the first bot after the restart gets each once, in order", async (t) => {
  const node = await startRegtest();
  t.teardown(() => node.stop());
  const api = new BotApiStandIn();
  await api.start();
  t.teardown(() => api.stop());
  const dir = t.testdir({ pki: {}, data: {} });
  const pki = join(dir, "pki");
  await ensurePki(pki, { admin: "127.0.0.1", internal: "127.0.0.1" });
  const masterKey = join(dir, "master.key");
  generateKeyRingFile(masterKey);
  const edgeKey = randomBytes(32);
  const port = await freePort();
  const env = {
    ...process.env, NODE_ENV: "production", RUNIGUN_LOG_LEVEL: "error", RUNIGUN_DATA_DIR: join(dir, "data"), RUNIGUN_PKI_DIR: pki,
    RUNIGUN_MASTER_KEY_FILE: masterKey, RUNIGUN_PEPPER: randomBytes(32).toString("hex"), RUNIGUN_EDGE_KEY: edgeKey.toString("hex"),
    RUNIGUN_NODE_MANAGED: "false", RUNIGUN_NODE_RPC_URL: node.rpcUrl, RUNIGUN_NODE_RPC_USER: node.user, RUNIGUN_NODE_RPC_PASSWORD: node.password,
    RUNIGUN_NODE_ADDRESS_POOL_SIZE: "20", RUNIGUN_INTERNAL_PORT: String(port), RUNIGUN_ADMIN_ENABLED: "false", RUNIGUN_DEPOSITS_POLL_MS: "100",
    RUNIGUN_DEPOSITS_CONFIRMATIONS: "1", RUNIGUN_STORE_SYNC: "true", RUNIGUN_BACKUP_DIR: "",
  };
  const unexpected: string[] = [];
  const startEngine = () => EngineProcess.start([runigunBin, "engine"], env, unexpected, { ready: /engine ready/, timeoutMs: 120_000 });
  const tls = { ...readPem(pki, "bot-client"), ca: readPem(pki, "internal-ca").cert };
  const connect = () => RemoteRelay.connect({ url: `https://127.0.0.1:${port}`, tls, log: silentLogger, timeoutMs: 20_000 });

  let engine = await startEngine();
  t.teardown(() => engine.kill());
  // The engine's commands, as a bot would call them, without a notice stream: nobody takes the notices.
  const calls = await connect();
  for (const u of [ALICE, BOB]) t.notOk(isRefusal(await calls.start(u.key, sealHandle(edgeKey, { chatId: u.chat }))), "wallet opened");
  const address = await calls.depositAddress(ALICE.key);
  if (isRefusal(address)) throw new Error(address.message);
  await node.ensureMatureCoins();
  await node.fund(address.address, "0.01");
  await node.mine(1);
  await until(() => calls.balance(ALICE.key), (b) => !isRefusal(b) && b.available === 1_000_000n, "alice's deposit credited");
  for (const [i, sats] of [10_000, 20_000, 30_000].entries()) {
    t.notOk(isRefusal(await calls.transfer(ALICE.key, `durable-${i}`, BOB.key, `${sats} sats`)), `transfer of ${sats} sats`);
  }
  await until(() => calls.balance(BOB.key), (b) => !isRefusal(b) && b.available === 60_000n, "bob credited");
  // A write after the last credit (a wallet opened): its answer comes once it is durable, and the store writes in
  // order, so the notices' records, queued on the turn the credits were made, are on disk by then.
  t.notOk(isRefusal(await calls.start("u_durable_carol", sealHandle(edgeKey, { chatId: 7_003 }))));
  calls.close();

  // Before, the notices lived in the engine's memory only: gone with it.
  t.equal(await engine.kill(), true, "SIGKILL ended the engine");
  engine = await startEngine();

  const relay = await connect();
  t.teardown(() => relay.close());
  const config = loadConfig({ env: {}, overrides: {} });
  // Throttled as in production: one message a second per chat, in the order they were handed over.
  const edge = buildTelegramEdge({
    token: api.token, apiRoot: api.apiRoot, config, relay, identity: { userKey: async (id: number) => `u_${id}` }, handleKey: edgeKey,
    log: silentLogger, mode: "manual", throttle: true,
  });
  await edge.start();
  t.teardown(() => edge.stop());
  // What is made after the bot connected comes after them.
  t.notOk(isRefusal(await relay.transfer(ALICE.key, "durable-3", BOB.key, "40000 sats")));
  await api.waitForCall((c) => Number(c.params.chat_id) === BOB.chat && /received 0\.0004 BTC/.test(String(c.params.text)), 0, 30_000);
  const received = api.textsTo(BOB.chat).map((s) => /received (\S+) BTC/.exec(s)?.[1]);
  t.same(received, ["0.0001", "0.0002", "0.0003", "0.0004"], "bob is told of each transfer once, in order, the one after the restart last");
  const alice = api.textsTo(ALICE.chat);
  t.equal(alice.filter((s) => /Deposit confirmed: 0\.01 BTC/.test(s)).length, 1, "alice is told once that her deposit is confirmed");
  t.same(unexpected, [], "the engine exited only when killed");
});
