// The split shape and the admin edge's start-up: `runigun engine` (actors + admin edge + internal TLS API,
// no other port) and `runigun bot` (the Telegram edge, reaching the engine only through that API).
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { loadConfig, type Config } from "./config.ts";
import { createLogger, type Logger } from "./log.ts";
import type { Engine } from "./engine.ts";
import { startEngineAlone, stopSignals } from "./app.ts";
import { ensureEnginePki, expiringCertificates, readPem } from "./tls/certs.ts";
import { buildAdmin, listenAdmin } from "./edges/admin/server.ts";
import { enginePort } from "./edges/admin/engine-port.ts";
import { OperatorStore } from "./edges/admin/operators.ts";
import { AuditLog } from "./edges/admin/audit.ts";
import { buildInternalEdge, listenInternal } from "./edges/internal/server.ts";
import { RemoteRelay } from "./edges/internal/client.ts";
import { buildTelegramEdge } from "./edges/telegram/bot.ts";
import { Identity, identityCheck, pinIdentity } from "./store/identity.ts";
import { loadEdgeSecrets, SetupError } from "./secrets.ts";
import { isRefusal } from "./domain/refusals.ts";

/** Starts the admin edge on the VPN address with the operators' CA; returns the app and its port. */
export async function startAdmin(config: Config, engine: Engine, log: Logger): Promise<{ app: FastifyInstance; port: number }> {
  for (const warning of (await ensureEnginePki(config)).warnings) log.warn(`admin edge: ${warning}`);
  const operators = new OperatorStore(engine.storage.store, {
    onTotpPause: (operator, ms) => log.error({ alert: true, operator, pause_s: Math.round(ms / 1000) }, "admin API: too many wrong TOTP codes within 24 h; this operator's codes are not checked for a while (someone may hold their certificate)"),
  });
  const app = await buildAdmin({
    config, log, tls: { ...readPem(config.pkiPath, "admin-server"), ca: readPem(config.pkiPath, "operators-ca").cert },
    operators, audit: new AuditLog(engine.storage.store), port: enginePort(engine),
  });
  // Certificates expire silently otherwise (an operator's after a year, the servers' after two): said at start, then daily.
  const checkCertificates = () => void watchCertificates(config.pkiPath, operators, log).catch((err: unknown) => log.warn({ err }, "certificate expiry check failed"));
  const daily = setInterval(checkCertificates, 24 * 3600_000).unref();
  app.addHook("onClose", async () => clearInterval(daily));
  const port = await listenAdmin(app, config);
  checkCertificates();
  return { app, port };
}

/** Logs each certificate in pkiDir that expires within 30 days (an alert within 7, or once expired). */
export async function watchCertificates(pkiDir: string, operators: OperatorStore, log: Logger, now = Date.now()): Promise<void> {
  const active = new Set((await operators.list()).filter((op) => !op.revoked).map((op) => op.fingerprint));
  for (const c of expiringCertificates(pkiDir, active, now)) {
    if (c.alert) log.error({ alert: true, certificate: c.file, notAfter: c.notAfter }, c.message);
    else log.warn({ certificate: c.file, notAfter: c.notAfter }, c.message);
  }
}

export async function runEngineOnly(): Promise<number> {
  const config = loadConfig();
  const log = createLogger({ level: config.log.level });
  // The internal API's certificates, made here on a first start (the admin edge's start made them only when it is on).
  await ensureEnginePki(config);
  // A signal during the start is acted on once it is done; a second one, or a stop past its deadline, ends the
  // process anyway (stopSignals).
  const signals = stopSignals(log);
  // Without the edge's secrets (the pepper, the edge key): they are the bot's, on its own host.
  const app = await startEngineAlone(config, log).catch((e: unknown) => {
    signals.done();
    throw e;
  });
  let admin: Awaited<ReturnType<typeof startAdmin>> | undefined;
  let internal: FastifyInstance | undefined;
  let port: number;
  try {
    admin = config.admin.enabled ? await startAdmin(config, app.engine, log) : undefined;
    internal = await buildInternalEdge({ relay: app.engine.relay, log, tls: { ...readPem(config.pkiPath, "internal-server"), ca: readPem(config.pkiPath, "internal-ca").cert } });
    port = await listenInternal(internal, config);
  } catch (e) {
    // A start that fails after the engine is up (a busy port) stops what did start, instead of staying up headless.
    await internal?.close().catch(() => undefined);
    await admin?.app.close().catch(() => undefined);
    await app.stop().catch(() => undefined);
    signals.done();
    throw e;
  }
  log.info({ internal: `${config.internal.host}:${port}`, admin: admin ? `${config.admin.host}:${admin.port}` : "off" }, "engine ready (split shape)");
  process.stdout.write(`engine ready: internal API https://${config.internal.host}:${port} (client certificates from ${config.pkiPath}/internal-ca)${admin ? `, admin edge https://${config.admin.host}:${admin.port}` : ""}\n`);
  await signals.signalled;
  signals.begin();
  try {
    signals.step("the internal API to close (the bot's calls being answered)");
    await internal.close();
    signals.step("the admin edge to close (requests being answered)");
    await admin?.app.close();
    signals.step("the engine to stop (actors, the store)");
    await app.stop();
  } finally {
    signals.done();
  }
  return 0;
}

export async function runBotOnly(): Promise<number> {
  const config = loadConfig();
  const log = createLogger({ level: config.log.level });
  const token = config.secrets.telegramToken;
  if (!token) throw new SetupError("runigun bot needs RUNIGUN_TELEGRAM_TOKEN (the local chat runs with `runigun start`)");
  if (!config.internal.port) throw new SetupError("set internal.port (RUNIGUN_INTERNAL_PORT) to the engine's internal API port");
  // The edge's own secrets: the pepper that turns Telegram ids into user keys, and the chat-handle key.
  const secrets = loadEdgeSecrets(config, log);
  let tls: { key: string; cert: string; ca: string };
  try {
    // The internal CA's certificate only: its private key stays on the engine's host.
    tls = { ...readPem(config.pkiPath, "bot-client"), ca: readFileSync(join(config.pkiPath, "internal-ca.crt"), "utf8") };
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException).path ?? config.pkiPath;
    throw new SetupError(`cannot read ${missing}: copy internal-ca.crt and bot-client.crt/.key (only these; never internal-ca.key) from the engine's pkiDir (made by \`runigun engine\` or \`runigun keys pki\`) into ${config.pkiPath}, or set RUNIGUN_PKI_DIR`);
  }
  const signals = stopSignals(log);
  const url = `https://${config.internal.host}:${config.internal.port}`;
  const relay = await RemoteRelay.connect({ url, log, tls }).catch((e: unknown) => {
    signals.done();
    throw engineSetupError(e, url, config.pkiPath);
  });
  const identity = new Identity({ ...config.identity, pepper: secrets.pepper, log: log.child({ actor: "identity" }) });
  try {
    // Pinned both in this data directory and in the engine's store (this directory may be new, and another bot may
    // have made the wallets); each is checked before either is recorded, as `runigun start` does. A pin written here
    // before the engine refused would stay: the same directory started again with the right pepper would then be
    // refused by it, told to delete it "only to abandon every wallet made so far".
    if (existsSync(join(config.dataPath, "identity.pin"))) await pinIdentity(identity, config.dataPath); // only compares: it writes a missing pin alone
    const pinned = await relay.identityPin(await identityCheck(identity));
    if (isRefusal(pinned)) throw new SetupError(`the engine refused this bot's identity settings: ${pinned.message}`);
    await pinIdentity(identity, config.dataPath);
  } catch (e) {
    relay.close();
    await identity.close();
    signals.done();
    throw e;
  }
  const edge = buildTelegramEdge({ token, config, relay, identity, handleKey: secrets.handleKey, log });
  try {
    await edge.start();
  } catch (e) {
    await edge.stop().catch(() => undefined);
    relay.close();
    await identity.close();
    signals.done();
    throw e;
  }
  process.stdout.write(`bot ready: @${edge.bot.botInfo.username} → engine https://${config.internal.host}:${config.internal.port}\n`);
  await signals.signalled;
  signals.begin();
  try {
    signals.step("the Telegram edge to stop (updates being handled, notices being sent: a few seconds at most)");
    await edge.stop();
    relay.close();
    signals.step("the identity worker to close");
    await identity.close();
  } finally {
    signals.done();
  }
  return 0;
}

/** The bot's first call to the engine failed: what to start, set or copy. */
function engineSetupError(e: unknown, url: string, pkiPath: string): SetupError {
  const err = e as NodeJS.ErrnoException;
  const code = err.code ?? "";
  if (["ECONNREFUSED", "ENOTFOUND", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN", "ETIMEDOUT"].includes(code)) {
    return new SetupError(`cannot reach the engine's internal API at ${url} (${code}): start \`runigun engine\` first (it prints this address when ready), or check internal.host and internal.port (RUNIGUN_INTERNAL_HOST, RUNIGUN_INTERNAL_PORT)`);
  }
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    return new SetupError(`the engine's certificate at ${url} does not name that host (${err.message}): it was made for another internal.host. On the engine's host, move ${pkiPath}/internal-server.* aside and run \`runigun keys pki\`, then start the engine again`);
  }
  if (/CERT|SSL|TLS|certificate|alert/i.test(`${code} ${err.message}`) || code === "ECONNRESET") {
    return new SetupError(`the engine at ${url} and this bot did not agree on TLS (${code || err.message}): internal-ca.crt and bot-client.crt/.key in ${pkiPath} must come from the pkiDir of the engine at that address`);
  }
  return new SetupError(`the engine's internal API at ${url} did not answer (${err.message}): is \`runigun engine\` running there?`);
}
