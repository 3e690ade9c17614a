// Starting against something that is not there or not set up: the engine's bitcoind (down, no RPC user, wrong
// credentials) and the bot's engine (not started yet). Each is a sentence naming what is wrong and what to set or
// start, exit 1, never a stack trace.
import t from "tap";
import { createServer } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { readFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { runigun } from "../support/cli.ts";
import { freePort } from "../../src/regtest/harness.ts";
import { ensurePki } from "../../src/tls/certs.ts";

const base = { NODE_ENV: "production", RUNIGUN_IDENTITY_MEMORY_KI_B: "1024", RUNIGUN_IDENTITY_TIME_COST: "1", RUNIGUN_LOG_LEVEL: "fatal", RUNIGUN_ADMIN_ENABLED: "false" };
const own = (url: string) => ({ RUNIGUN_NODE_MANAGED: "false", RUNIGUN_NODE_RPC_URL: url, RUNIGUN_NODE_RPC_PASSWORD: "pw" });
const STACK = /at .*\.ts:\d+|^\s+at /m;

t.test("an own node without node.rpcUser: refused before anything starts, naming the setting", async (t) => {
  const dir = t.testdir();
  const r = await runigun(["start"], { ...base, ...own("http://127.0.0.1:8332"), RUNIGUN_DATA_DIR: dir });
  t.equal(r.code, 1, r.out);
  t.match(r.out, /node\.rpcUser \(RUNIGUN_NODE_RPC_USER\)/);
  t.notMatch(r.out, /no auth mechanism/);
  t.notMatch(r.out, STACK, "a sentence, not a stack trace");
});

t.test("bitcoind refusing the RPC credentials: the URL and the settings to check", async (t) => {
  const server = createServer((_req, res) => void res.writeHead(401).end());
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.teardown(() => new Promise((r) => server.close(r)));
  const port = (server.address() as { port: number }).port;
  const dir = t.testdir();
  const r = await runigun(["start"], { ...base, ...own(`http://127.0.0.1:${port}`), RUNIGUN_NODE_RPC_USER: "engine", RUNIGUN_DATA_DIR: dir });
  t.equal(r.code, 1, r.out);
  t.match(r.out, new RegExp(`bitcoind at http://127\\.0\\.0\\.1:${port}/? refused the RPC user and password.*RUNIGUN_NODE_RPC_USER.*RUNIGUN_NODE_RPC_PASSWORD`));
  t.notMatch(r.out, STACK);
});

t.test("bitcoind not running: after the node's wait, the URL and what to do", async (t) => {
  const port = await freePort();
  const dir = t.testdir();
  // The node's wait shortened from its minute (node.waitForNodeMs).
  const r = await runigun(["start"], { ...base, ...own(`http://127.0.0.1:${port}`), RUNIGUN_NODE_RPC_USER: "engine", RUNIGUN_DATA_DIR: dir, RUNIGUN_NODE_WAIT_FOR_NODE_MS: "2000" });
  t.equal(r.code, 1, r.out);
  t.match(r.out, new RegExp(`bitcoind at http://127\\.0\\.0\\.1:${port}/? is not answering.*start it.*node\\.rpcUrl \\(RUNIGUN_NODE_RPC_URL\\)`));
  t.notMatch(r.out, STACK);
});

t.test("the bot started before the engine: says to start the engine first, or check the internal address", async (t) => {
  const dir = t.testdir();
  await ensurePki(join(dir, "pki"), { admin: "127.0.0.1", internal: "127.0.0.1" });
  const port = await freePort();
  const r = await runigun(["bot"], {
    ...base, RUNIGUN_DATA_DIR: join(dir, "bot"), RUNIGUN_PKI_DIR: join(dir, "pki"), RUNIGUN_TELEGRAM_TOKEN: "4242:TEST-TOKEN",
    RUNIGUN_INTERNAL_PORT: String(port), RUNIGUN_PEPPER: randomBytes(32).toString("hex"), RUNIGUN_EDGE_KEY: randomBytes(32).toString("hex"),
  });
  t.equal(r.code, 1, r.out);
  t.match(r.out, new RegExp(`cannot reach the engine's internal API at https://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\).*runigun engine.*RUNIGUN_INTERNAL_PORT`));
  t.notMatch(r.out, STACK);
});

t.test("the engine's certificate made for another internal.host: says to remake it, not that the CAs differ", async (t) => {
  const dir = t.testdir();
  // The engine's certificate names localhost only (made when internal.host was localhost); the bot dials 127.0.0.1.
  await ensurePki(join(dir, "pki"), { admin: "127.0.0.1", internal: "localhost" });
  const pem = (name: string) => readFileSync(join(dir, "pki", name));
  const server = createHttpsServer({ key: pem("internal-server.key"), cert: pem("internal-server.crt") }, (_req, res) => void res.end("{}"));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.teardown(() => new Promise((r) => server.close(r)));
  const port = (server.address() as { port: number }).port;
  const r = await runigun(["bot"], {
    ...base, RUNIGUN_DATA_DIR: join(dir, "bot"), RUNIGUN_PKI_DIR: join(dir, "pki"), RUNIGUN_TELEGRAM_TOKEN: "4242:TEST-TOKEN",
    RUNIGUN_INTERNAL_PORT: String(port), RUNIGUN_PEPPER: randomBytes(32).toString("hex"), RUNIGUN_EDGE_KEY: randomBytes(32).toString("hex"),
  });
  t.equal(r.code, 1, r.out);
  t.match(r.out, /certificate at https:\/\/127\.0\.0\.1:\d+ does not name that host.*internal-server\.\* aside and run `runigun keys pki`/);
  t.notMatch(r.out, STACK);
});
