// The operator console in a real browser: Debian's chromium driven by playwright-core, the client certificate
// presented by playwright (`clientCertificates`), FIDO2 security keys from DevTools' virtual authenticator, and
// the real engine on a regtest node behind the admin edge. Screenshots of every page go to test-output/console/.
// The actions that move money or change who can do what need a step-up: the confirmation page's script asks the
// authenticator for a touch of a registered key for that action before it sends the form.
import t from "tap";
import { execFileSync } from "node:child_process";
import { createServer, type Server } from "node:http";
import { mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type BrowserContext, type CDPSession, type Page } from "playwright-core";
import { fundedWallet, startTestEngine } from "../support/engine.ts";
import { mtls } from "../support/https.ts";
import { buildAdmin, listenAdmin } from "../../src/edges/admin/server.ts";
import { enginePort } from "../../src/edges/admin/engine-port.ts";
import { OperatorStore, addOperator } from "../../src/edges/admin/operators.ts";
import { AuditLog } from "../../src/edges/admin/audit.ts";
import { ensurePki, readPem, type Pem } from "../../src/tls/certs.ts";
import { silentLogger } from "../../src/log.ts";
import { isRefusal } from "../../src/domain/refusals.ts";
import { btc } from "../../src/edges/admin/console/html.ts";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const SHOTS = join(repo, "test-output", "console");
const COOKIE = "__Host-runigun-console";
/** The little of the DOM the in-page functions use (the project's TypeScript has no DOM library). */
interface Win {
  document: { getElementById(id: string): { textContent: string | null } | null; querySelector(sel: string): { getAttribute(name: string): string | null } | null };
  SimpleWebAuthnBrowser: { startAuthentication(o: { optionsJSON: unknown }): Promise<unknown> };
}
/**
 * Runs in the page: the ceremony has finished, one way or the other (its status line no longer asks for a touch).
 * Functions, not strings: the console's Content-Security-Policy forbids eval, for tests too.
 */
const SETTLED = () => {
  const s = (globalThis as unknown as Win).document.getElementById("status")?.textContent ?? "";
  return s !== "" && !/Touch your/.test(s);
};

/** A request from outside the browser (an attacker's or a replayer's), over the same mutual TLS. */
const call = (port: number, ca: string, path: string, o: { client: Pem; method?: string; headers?: Record<string, string>; body?: string }) => mtls(port, ca, path, o);


t.test("operator console: client certificate + FIDO2 key, pages, an audited fee bump, CSRF and origin checks", async (t) => {
  const chromePath = execFileSync(process.execPath, [join(repo, "scripts", "provision-chromium.mjs")], { encoding: "utf8" }).trim();
  mkdirSync(SHOTS, { recursive: true });

  const te = await startTestEngine();
  t.teardown(() => te.stop());
  const base = t.testdir(), pki = join(base, "pki");
  await ensurePki(pki, { admin: "127.0.0.1", internal: "127.0.0.1" });
  const store = te.engine.storage.store;
  const operators = new OperatorStore(store);
  const ttl = te.config.admin.console.enrollTtlMs;
  const alice = await addOperator({ pkiDir: pki, store: operators, name: "alice", out: join(base, "operator-alice"), enrollTtlMs: ttl });
  const bob = await addOperator({ pkiDir: pki, store: operators, name: "bob", out: join(base, "operator-bob"), enrollTtlMs: ttl });
  const carol = await addOperator({ pkiDir: pki, store: operators, name: "carol", out: join(base, "operator-carol") });
  const audit = new AuditLog(store);
  let skew = 0;
  const app = await buildAdmin({
    config: te.config, log: silentLogger, tls: { ...readPem(pki, "admin-server"), ca: readPem(pki, "operators-ca").cert },
    operators, audit, port: enginePort(te.engine), rateLimit: 10_000, consoleClock: () => Date.now() + skew,
  });
  const port = await listenAdmin(app, te.config);
  t.teardown(() => app.close());
  const origin = `https://localhost:${port}`;
  const ca = readPem(pki, "admin-server-ca").cert;
  const certs = { alice: readPem(alice.dir, "alice"), bob: readPem(bob.dir, "bob") };

  // Money to look at: a user with a deposit (and a sealed chat handle that must never show), and a payout in flight.
  await te.node.ensureMatureCoins();
  const userKey = "u_consolewallet01";
  await fundedWallet(te, userKey, "0.5", "sealed-chat-handle-must-not-show");
  await te.mine(1);
  const dest = await te.node.outsideAddress();
  const q = await te.engine.relay.quoteWithdrawal(userKey, dest, "0.05");
  if (isRefusal(q)) throw new Error(q.message);
  const conf = await te.engine.relay.confirmWithdrawal(userKey, q.id);
  if (isRefusal(conf)) throw new Error(conf.message);
  await te.engine.payouts.flush();
  const [batchId, batchBefore] = Object.entries((await te.engine.payouts.state()).batches)[0]!;

  const browser = await chromium.launch({ executablePath: chromePath });
  t.teardown(() => browser.close());

  interface Seat { ctx: BrowserContext; page: Page; cdp: CDPSession; authenticator: string }
  /** A browser context presenting an operator's certificate, with a virtual FIDO2 authenticator attached. */
  const seat = async (who: keyof typeof certs): Promise<Seat> => {
    const ctx = await browser.newContext({ clientCertificates: [{ origin, cert: Buffer.from(certs[who].cert), key: Buffer.from(certs[who].key) }], ignoreHTTPSErrors: true });
    ctx.setDefaultTimeout(10_000);
    const page = await ctx.newPage();
    const cdp = await ctx.newCDPSession(page);
    await cdp.send("WebAuthn.enable");
    const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
      options: { protocol: "ctap2", transport: "usb", hasResidentKey: true, hasUserVerification: true, isUserVerified: true },
    });
    return { ctx, page, cdp, authenticator: authenticatorId };
  };
  const shot = (page: Page, name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  const status = (page: Page) => page.locator("#status").textContent();
  const auditCount = async () => (await audit.list(500)).length;
  /** Enrolls through the link and waits for the page to say so (or to refuse). */
  const enroll = async (s: Seat, token: string) => {
    await s.page.goto("about:blank"); // a fresh load: only the fragment would differ from the page already open
    await s.page.goto(`${origin}/console/enroll#t=${token}`);
    await s.page.click("#enroll");
    await s.page.waitForFunction(SETTLED);
    return status(s.page);
  };
  const login = async (s: Seat) => {
    await s.page.goto(`${origin}/console/login`);
    await Promise.all([s.page.waitForURL(`${origin}/console/`), s.page.click("#login")]);
  };
  /**
   * Signs in the hard way, to see what the server says about a key the browser would not even offer: the options'
   * allowed keys are replaced by the given credential before the authenticator is asked.
   */
  const forcedLogin = async (s: Seat, credentialId: string): Promise<{ status: number; error?: string }> => {
    await s.page.goto(`${origin}/console/login`);
    return s.page.evaluate(async (id) => {
      const w = globalThis as unknown as Win;
      const csrf = w.document.querySelector('meta[name="csrf-token"]')!.getAttribute("content")!;
      const post = (u: string, b: unknown) => fetch(u, { method: "POST", headers: { "content-type": "application/json", "x-csrf-token": csrf }, body: JSON.stringify(b) });
      const options = (await (await post("/console/login/options", {})).json()) as { allowCredentials: unknown[] };
      options.allowCredentials = [{ id, type: "public-key" }];
      const response = await w.SimpleWebAuthnBrowser.startAuthentication({ optionsJSON: options });
      const r = await post("/console/login/verify", { response });
      return { status: r.status, error: ((await r.json()) as { error?: string }).error };
    }, credentialId);
  };
  /**
   * A step-up for `forPath` made in the page (the keys page loads the scripts), as a confirmation page's script makes
   * it: what the server answered to its verification, or what the authenticator said.
   */
  const touch = async (s: Seat, forPath: string): Promise<{ status: number; error?: string }> => {
    await s.page.goto(`${origin}/console/keys`);
    return s.page.evaluate(async (forPath) => {
      const w = globalThis as unknown as Win;
      const csrf = w.document.querySelector('meta[name="csrf-token"]')!.getAttribute("content")!;
      const post = (u: string, b: unknown) => fetch(u, { method: "POST", headers: { "content-type": "application/json", "x-csrf-token": csrf }, body: JSON.stringify(b) });
      const options = await post("/console/step-up/options", { for: forPath });
      if (!options.ok) return { status: options.status, error: ((await options.json()) as { error?: string }).error };
      let response: unknown;
      try {
        response = await w.SimpleWebAuthnBrowser.startAuthentication({ optionsJSON: await options.json() });
      } catch (e) {
        return { status: 0, error: (e as Error).name };
      }
      const r = await post("/console/step-up/verify", { response });
      return { status: r.status, error: ((await r.json()) as { error?: string }).error };
    }, forPath);
  };
  const credentials = async (s: Seat) =>
    (await s.cdp.send("WebAuthn.getCredentials", { authenticatorId: s.authenticator })).credentials;
  const b64url = (b64: string) => Buffer.from(b64, "base64").toString("base64url");

  await t.test("without the client certificate the console does not load at all", async (t) => {
    const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
    t.teardown(() => ctx.close());
    await t.rejects((await ctx.newPage()).goto(`${origin}/console/`), "the TLS handshake is refused");
  });

  const a = await seat("alice");
  t.teardown(() => a.ctx.close());

  await t.test("with the certificate but no security key, only the login page loads", async (t) => {
    for (const path of ["/console/", "/console/payouts", "/console/audit", "/console/charts", "/console/wallets?userKey=u_consolewallet01"]) {
      await a.page.goto(origin + path);
      t.equal(a.page.url(), `${origin}/console/login`, `${path} → login`);
    }
    t.match(await a.page.textContent("main"), /No security key is registered for alice/);
    await shot(a.page, "01-login-without-key");
    const res = await a.page.goto(`${origin}/console/login`);
    const csp = res!.headers()["content-security-policy"]!;
    t.match(csp, /script-src 'self'/);
    t.notMatch(csp, /unsafe-inline|unsafe-eval|https?:/, "no inline script, no outside source");
    t.equal(res!.headers()["cache-control"], "no-store");
    const ck = (await a.ctx.cookies(origin)).find((c) => c.name === COOKIE)!;
    t.match(ck, { httpOnly: true, secure: true, sameSite: "Strict", path: "/" }, "HttpOnly; Secure; SameSite=Strict");
    t.equal((await call(port, ca, "/console/", { client: certs.alice, headers: { cookie: `${COOKIE}=${ck.value}` } })).status, 303, "a pre-login session opens nothing");
  });

  await t.test("an expired enrollment link, or another operator's, is refused", async (t) => {
    const expired = await operators.issueEnrollment(alice.fingerprint, { ttlMs: ttl, now: Date.now() - ttl - 1000 });
    t.match(await enroll(a, expired.token), /expired/);
    await shot(a.page, "02-enroll-expired");
    t.match(await enroll(a, bob.enrollment!.token), /not valid/, "bob's link does not work with alice's certificate");
    t.same((await operators.get(alice.fingerprint))!.keys ?? [], [], "no key was registered");
  });

  let aliceKey1 = "";
  await t.test("enrollment through a fresh link registers the key; the link works once", async (t) => {
    const link = await operators.issueEnrollment(alice.fingerprint, { ttlMs: ttl });
    t.match(await enroll(a, link.token), /Security key registered/);
    t.equal(a.page.url(), `${origin}/console/enroll`, "the token is taken out of the address bar");
    await shot(a.page, "03-enrolled");
    const op = (await operators.get(alice.fingerprint))!;
    t.equal(op.keys?.length, 1);
    t.equal(op.enroll, undefined, "the link is consumed");
    aliceKey1 = op.keys![0]!.id;
    t.equal(aliceKey1, b64url((await credentials(a))[0]!.credentialId), "the authenticator's credential");
    t.match(await enroll(a, link.token), /not valid/, "a second use is refused");
    t.equal((await operators.get(alice.fingerprint))!.keys?.length, 1);
  });

  let replayBody = "";
  await t.test("login with the security key opens the console; the session id changes", async (t) => {
    const before = (await a.ctx.cookies(origin)).find((c) => c.name === COOKIE)!.value;
    a.page.on("request", (r) => {
      if (r.url().endsWith("/console/login/verify")) replayBody = r.postData() ?? "";
    });
    await login(a);
    t.match(await a.page.textContent("main"), /Tip height/);
    const after = (await a.ctx.cookies(origin)).find((c) => c.name === COOKIE)!.value;
    t.not(after, before, "a new session id after login");
    t.equal((await call(port, ca, "/console/", { client: certs.alice, headers: { cookie: `${COOKIE}=${before}` } })).status, 303, "the pre-login id is worth nothing");
    t.equal((await call(port, ca, "/console/", { client: certs.bob, headers: { cookie: `${COOKIE}=${after}` } })).status, 303, "a session is bound to the certificate that opened it");
    t.match((await audit.list(5)).find((e) => e.action === "console-login"), { operator: "alice" });
  });

  await t.test("a replayed assertion is refused", async (t) => {
    t.ok(replayBody.includes("authenticatorData"), "captured a real assertion");
    const ck = (await a.ctx.cookies(origin)).find((c) => c.name === COOKIE)!.value;
    const csrf = (await a.page.getAttribute('meta[name="csrf-token"]', "content"))!;
    const headers = { cookie: `${COOKIE}=${ck}`, origin, "x-csrf-token": csrf, "content-type": "application/json" };
    let r = await call(port, ca, "/console/login/verify", { client: certs.alice, method: "POST", headers, body: replayBody });
    t.equal(r.status, 401, "no challenge pending");
    r = await call(port, ca, "/console/login/options", { client: certs.alice, method: "POST", headers, body: "{}" });
    t.equal(r.status, 200);
    r = await call(port, ca, "/console/login/verify", { client: certs.alice, method: "POST", headers, body: replayBody });
    t.equal(r.status, 401, "an old assertion does not answer a new challenge");
    t.match(r.body, /did not verify/);
  });

  await t.test("every page renders with live data; screenshots for review", async (t) => {
    await a.page.goto(`${origin}/console/`);
    const overview = (await a.page.textContent("main"))!;
    t.match(overview, /regtest/);
    t.match(overview, /Last backup\s*never/, "no backup yet: never");
    t.match(overview, /solvent/);
    t.match(overview, /Resident/);
    await shot(a.page, "04-overview");
    await a.page.goto(`${origin}/console/wallets`);
    await a.page.fill('input[name="userKey"]', userKey);
    await Promise.all([a.page.waitForURL(/userKey=/), a.page.click('form.lookup button')]);
    const wallet = (await a.page.content());
    t.match(wallet, /0\.44\d{6} BTC/, "available after the withdrawal's reservation");
    t.match(wallet, /withdrawal/);
    t.notMatch(wallet, /sealed-chat-handle|chatHandle/, "never a chat handle");
    await shot(a.page, "05-wallet");
    await a.page.goto(`${origin}/console/deposits?status=confirmed`);
    t.match(await a.page.textContent("main"), /0\.50000000 BTC/);
    await shot(a.page, "06-deposits");
    await a.page.goto(`${origin}/console/payouts`);
    t.match(await a.page.textContent("main"), new RegExp(batchBefore.txid));
    await shot(a.page, "07-payouts");
    await a.page.goto(`${origin}/console/charts`);
    t.equal(await a.page.locator("figure.chart svg").count(), 3, "three charts");
    t.ok((await a.page.locator("#flows rect").count()) >= 2, "bars for the hour's deposit and payout");
    t.match(await a.page.locator("#flows desc").textContent(), /deposits: 24 points, total 1/);
    await shot(a.page, "08-charts");
  });

  /** The first step of a console action: the reason on the page that offers it, then its review page. */
  const toReview = async (action: string, reason: string) => {
    const form = a.page.locator(`form[action="${action}/review"]`);
    await form.locator('input[name="reason"]').fill(reason);
    await Promise.all([a.page.waitForURL(`${origin}${action}/review`), form.locator("button").click()]);
    return (await a.page.textContent("main"))!;
  };
  /** The confirmation: the only step that runs the action. */
  const confirm = async (action: string) => {
    const url = `${origin}${action}`;
    const [resp] = await Promise.all([
      a.page.waitForResponse((r) => r.url() === url && r.request().method() === "POST"), a.page.waitForURL(url),
      a.page.locator(`form[action="${action}"] button`).click(),
    ]);
    return { status: resp.status(), text: (await a.page.textContent("main"))! };
  };
  const isFrozen = async () => {
    const bal = await te.engine.relay.balance(userKey);
    if (isRefusal(bal)) throw new Error(bal.message);
    return bal.frozen !== undefined;
  };
  /** A real browser POST of an action with the page's session and token, as an old tab would send it. */
  const sameSitePost = async (path: string, body: string) => {
    const ck = (await a.ctx.cookies(origin)).find((c) => c.name === COOKIE)!.value;
    const csrf = (await a.page.getAttribute('meta[name="csrf-token"]', "content"))!;
    return call(port, ca, path, { client: certs.alice, method: "POST", headers: { cookie: `${COOKIE}=${ck}`, origin, "content-type": "application/x-www-form-urlencoded" }, body: `_csrf=${csrf}&${body}` });
  };

  await t.test("cross-site POSTs without the CSRF token or from another origin are refused; nothing changes", async (t) => {
    const entries = await auditCount();
    const ck = (await a.ctx.cookies(origin)).find((c) => c.name === COOKIE)!.value;
    const csrf = (await a.page.getAttribute('meta[name="csrf-token"]', "content"))!;
    const form = (extra: string) => `feeRateSatVb=70&reason=${encodeURIComponent("not really me")}&confirm=yes${extra}`;
    // Every operator action of the console, and every confirmation page on the way to one.
    const actions = [`/console/payouts/${batchId}/bump`, `/console/payouts/${batchId}/release`, `/console/wallets/${userKey}/freeze`, `/console/wallets/${userKey}/unfreeze`,
      "/console/payouts/queued/wd_test/unqueue", "/console/payouts/pause", "/console/payouts/resume", "/console/drain/on", "/console/drain/off", "/console/backup",
      "/console/operators/bob/revoke", "/console/payouts/ambiguous/wd_test/adopt"];
    for (const path of [...actions, ...actions.map((p) => `${p}/review`)]) {
      const post = (headers: Record<string, string>, body: string) =>
        call(port, ca, path, { client: certs.alice, method: "POST", headers: { cookie: `${COOKIE}=${ck}`, "content-type": "application/x-www-form-urlencoded", ...headers }, body });
      t.equal((await post({ origin }, form(""))).status, 403, `${path}: no CSRF token`);
      t.equal((await post({ origin }, form("&_csrf=wrong"))).status, 403, `${path}: a wrong CSRF token`);
      t.equal((await post({ origin: "https://evil.example" }, form(`&_csrf=${csrf}`))).status, 403, `${path}: another origin, even with the token`);
      t.equal((await post({}, form(`&_csrf=${csrf}`))).status, 403, `${path}: no origin at all`);
    }

    // A real cross-site page in the same browser: a form that posts itself to the console.
    const evil: Server = createServer((req, res) => {
      res.setHeader("content-type", "text/html");
      const target = req.url === "/freeze" ? `${origin}/console/wallets/${userKey}/freeze` : req.url === "/drain" ? `${origin}/console/drain/on` : `${origin}/console/payouts/${batchId}/bump`;
      res.end(`<form id="f" method="post" action="${target}"><input name="feeRateSatVb" value="90"><input name="reason" value="csrf attack"><input name="confirm" value="yes"></form><script>document.getElementById("f").submit()</script>`);
    });
    await new Promise<void>((r) => evil.listen(0, "127.0.0.1", r));
    t.teardown(() => evil.close());
    const evilUrl = `http://127.0.0.1:${(evil.address() as { port: number }).port}/`;
    for (const [which, path] of [["", "/bump"], ["freeze", "/freeze"], ["drain", "/drain/on"]] as const) {
      const attacked = await a.ctx.newPage();
      const [resp] = await Promise.all([attacked.waitForResponse((r) => r.url().startsWith(origin) && r.url().endsWith(path)), attacked.goto(evilUrl + which)]);
      t.equal(resp.status(), 403, `the browser's cross-site form post to …${path} is refused`);
      await attacked.close();
    }

    t.equal(await auditCount(), entries, "no action was even attempted");
    const batch = (await te.engine.payouts.state()).batches[batchId]!;
    t.equal(batch.txid, batchBefore.txid, "the payout is untouched");
    const balance = await te.engine.relay.balance(userKey);
    t.ok(!isRefusal(balance) && balance.frozen === undefined, "the wallet is not frozen");
    t.equal(te.engine.draining, undefined, "drain mode is off");
    t.equal(te.engine.payouts.paused, undefined, "payouts are not paused");
    t.notOk((await operators.get(bob.fingerprint))!.revoked, "bob is not revoked");
  });

  await t.test("resume payouts while they run: no button; an old tab's request changes nothing", async (t) => {
    await a.page.goto(`${origin}/console/`);
    t.equal(te.engine.payouts.paused, undefined, "payouts run");
    t.equal(await a.page.locator('form[action="/console/payouts/resume/review"]').count(), 0, "no resume button while payouts run");
    t.equal(await a.page.locator('form[action="/console/payouts/pause/review"]').count(), 1, "a pause button instead");
    t.equal(await a.page.locator("#restore-incident").count(), 0, "no incident box without an incident");
    // The review says so; the confirmed action is the engine's to judge (audited like the API's), and changes nothing.
    let r = await sameSitePost("/console/payouts/resume/review", "reason=just+in+case");
    t.equal(r.status, 200);
    t.match(r.body, /Payouts are not paused: resuming changes nothing/);
    r = await sameSitePost("/console/payouts/resume", "reason=just+in+case");
    t.equal(r.status, 400, "without the confirmation step");
    t.match(r.body, /Not confirmed: nothing was done/);
    t.notOk((await audit.list(5)).some((e) => e.action === "resume-payouts"), "not even attempted");
    // Confirmed, but without a touch of a security key for it (an old tab, a script, a page without its script): refused.
    r = await sameSitePost("/console/payouts/resume", "reason=just+in+case&confirm=yes");
    t.equal(r.status, 403, "no touch for it");
    t.match(r.body, /needs a fresh touch of one of your security keys .* nothing was done/);
    t.notOk((await audit.list(5)).some((e) => e.action === "resume-payouts"), "not even attempted");
    t.same(await touch(a, "/console/payouts/resume"), { status: 200 }, "touched for it");
    r = await sameSitePost("/console/payouts/resume", "reason=just+in+case&confirm=yes");
    t.equal(r.status, 200);
    t.match(r.body, /Payouts are running/);
    t.equal(te.engine.payouts.paused, undefined, "still running, nothing changed");
    t.match((await audit.list(5)).find((e) => e.action === "resume-payouts"), { operator: "alice", target: "payouts", reason: "just in case" });
    // Giving back a queued payout: the engine's refusal for one it does not have, shown as its message, and audited.
    r = await sameSitePost("/console/payouts/queued/wd_nobody/unqueue/review", "reason=the+user+asked");
    t.match(r.body, /Confirm: give back the queued payout/);
    t.match(r.body, /data-step-up/, "its confirmation asks for a touch");
    await touch(a, "/console/payouts/queued/wd_nobody/unqueue");
    r = await sameSitePost("/console/payouts/queued/wd_nobody/unqueue", "reason=the+user+asked&confirm=yes");
    t.equal(r.status, 409);
    t.match(r.body, /No payout wd_nobody in the book/);
    t.match((await audit.list(5)).find((e) => e.action === "unqueue-payout"), { operator: "alice", target: "wd_nobody", reason: "the user asked" });
  });

  await t.test("a fee bump from the console: reason, confirmation step, audited, shown after the next block", async (t) => {
    await a.page.goto(`${origin}/console/payouts?status=broadcast`);
    await a.page.click(`a[href="/console/payouts/${batchId}/bump"]`);
    await a.page.fill('input[name="feeRateSatVb"]', "60");
    await a.page.fill('textarea[name="reason"]', "stuck in the mempool at 3 a.m.");
    await shot(a.page, "09-bump-form");
    await a.page.click('button[type="submit"]:has-text("Review")');
    t.match(await a.page.textContent("main"), /Confirm: replace the transaction/);
    // The fee it comes to, in BTC: the rate times the transaction's size (bitcoind's own count of it).
    const { vsize } = await te.node.rpc<{ vsize: number }>("decoderawtransaction", [batchBefore.hex]);
    t.equal(await a.page.textContent("#bump-fee"), btc(String(60n * BigInt(vsize))), "the fee in all, before confirming");
    t.equal((await te.engine.payouts.state()).batches[batchId]!.txid, batchBefore.txid, "nothing happens before the confirmation");
    t.match(await a.page.textContent("main"), /Confirming asks for a touch of your security key/);
    await shot(a.page, "10-bump-confirm");
    // The page's script asks the authenticator for the touch, then sends the form.
    const touched = a.page.waitForResponse((r) => r.url() === `${origin}/console/step-up/verify`);
    await Promise.all([a.page.waitForURL(`${origin}/console/payouts/${batchId}/bump`), a.page.click('button:has-text("Confirm fee bump")')]);
    t.equal((await touched).status(), 200, "touched first");
    t.match(await a.page.textContent("main"), /was bumped/);
    await shot(a.page, "11-bump-done");
    const after = (await te.engine.payouts.state()).batches[batchId]!;
    t.not(after.txid, batchBefore.txid, "a replacement transaction");
    t.same(after.replaced, [batchBefore.txid]);
    const log = await audit.list(10);
    t.match(log.find((e) => e.action === "bump-fee"), { operator: "alice", target: batchId, reason: "stuck in the mempool at 3 a.m." });
    t.match(log.find((e) => e.action === "bump-fee:outcome"), { outcome: "done" });

    await te.mine(1);
    await a.page.goto(`${origin}/console/payouts?status=confirmed`);
    const text = (await a.page.textContent("main"))!;
    t.match(text, new RegExp(after.txid), "the confirmed batch shows the replacement's txid");
    t.notMatch(text, /No batches with this status/);
    await shot(a.page, "12-payouts-confirmed");
    await a.page.goto(`${origin}/console/audit`);
    t.match(await a.page.textContent("main"), /bump-fee.*stuck in the mempool at 3 a\.m\./s);
    await shot(a.page, "13-audit");
  });

  await t.test("a release from the console goes through the same review, and the payout actor's refusal is shown and audited", async (t) => {
    // A confirmed batch is not offered for release; asked anyway, the actor refuses and says why.
    await a.page.goto(`${origin}/console/payouts/${batchId}/release`);
    t.match(await a.page.textContent("main"), /spent back to the node's wallet/, "the page says what a release does");
    await a.page.fill('input[name="feeRateSatVb"]', "5");
    await a.page.fill('textarea[name="reason"]', "refused by every mempool");
    await a.page.click('button[type="submit"]:has-text("Review")');
    t.match(await a.page.textContent("main"), /Confirm: give up/);
    await Promise.all([a.page.waitForURL(`${origin}/console/payouts/${batchId}/release`), a.page.click('button:has-text("Confirm release")')]);
    t.match(await a.page.textContent("main"), /confirmed, not stuck: only a stuck batch can be released/);
    t.equal((await te.engine.payouts.state()).batches[batchId]!.status, "confirmed", "nothing changed");
    const log = await audit.list(10);
    t.match(log.find((e) => e.action === "release-payout:outcome"), { outcome: /^refused: Batch .* is confirmed, not stuck/ });
  });

  await t.test("freeze and unfreeze from the wallet page: reason, confirmation, audited; withdrawals stop, then work again", async (t) => {
    const dest2 = await te.node.outsideAddress();
    const walletPage = `${origin}/console/wallets?userKey=${userKey}`;
    const freeze = `/console/wallets/${userKey}/freeze`, unfreeze = `/console/wallets/${userKey}/unfreeze`;
    await a.page.goto(walletPage);
    t.equal(await a.page.locator(`form[action="${unfreeze}/review"]`).count(), 0, "an open wallet offers a freeze, not an unfreeze");
    const review = await toReview(freeze, "user reports a stolen phone");
    t.match(review, /Confirm: freeze the wallet u_consolewallet01/);
    t.match(review, /user reports a stolen phone/);
    await shot(a.page, "15-freeze-confirm");
    t.notOk(await isFrozen(), "nothing happens before the confirmation");
    const done = await confirm(freeze);
    t.equal(done.status, 200);
    t.match(done.text, /u_consolewallet01 is frozen/);
    t.ok(await isFrozen());
    t.match(await te.engine.relay.quoteWithdrawal(userKey, dest2, "0.001"), { code: "frozen" }, "a withdrawal quote is refused");
    let log = await audit.list(10);
    t.match(log.find((e) => e.action === "freeze"), { operator: "alice", target: userKey, reason: "user reports a stolen phone" });
    t.match(log.find((e) => e.action === "freeze:outcome"), { outcome: "done" });
    await a.page.goto(walletPage);
    t.match(await a.page.textContent("main"), /frozen\s*by alice: user reports a stolen phone/);
    t.equal(await a.page.locator(`form[action="${freeze}/review"]`).count(), 0, "a frozen wallet offers an unfreeze");
    await shot(a.page, "16-wallet-frozen");
    await a.page.goto(`${origin}/console/audit`);
    t.match(await a.page.textContent("main"), /alice\s*freeze\s*u_consolewallet01\s*user reports a stolen phone/);

    await a.page.goto(walletPage);
    t.match(await toReview(unfreeze, "owner confirmed by video call"), /Confirm: unfreeze the wallet u_consolewallet01/);
    t.ok(await isFrozen(), "still frozen before the confirmation");
    const undone = await confirm(unfreeze);
    t.equal(undone.status, 200);
    t.match(undone.text, /u_consolewallet01 is open again/);
    t.notOk(await isFrozen());
    const q2 = await te.engine.relay.quoteWithdrawal(userKey, dest2, "0.001");
    t.notOk(isRefusal(q2), "a withdrawal quote works again");
    log = await audit.list(10);
    t.match(log.find((e) => e.action === "unfreeze"), { operator: "alice", target: userKey, reason: "owner confirmed by video call" });
    t.match(log.find((e) => e.action === "unfreeze:outcome"), { outcome: "done" });
  });

  await t.test("drain mode on and off from the overview", async (t) => {
    await a.page.goto(`${origin}/console/`);
    t.match(await toReview("/console/drain/on", "moving users to the new service"), /Confirm: switch drain mode on/);
    t.equal(te.engine.draining, undefined, "nothing happens before the confirmation");
    const on = await confirm("/console/drain/on");
    t.equal(on.status, 200);
    t.match(on.text, /Drain mode is on/);
    t.equal(te.engine.draining?.reason, "moving users to the new service");
    await te.engine.drainAnnounced();
    await a.page.goto(`${origin}/console/`);
    t.match(await a.page.textContent("main"), /Drain mode\s*on\s*moving users to the new service/);
    await shot(a.page, "17-overview-draining");
    t.match((await audit.list(10)).find((e) => e.action === "drain-on"), { operator: "alice", target: "engine", reason: "moving users to the new service" });

    t.match(await toReview("/console/drain/off", "the move was called off"), /Confirm: switch drain mode off/);
    t.ok(te.engine.draining, "still draining before the confirmation");
    const off = await confirm("/console/drain/off");
    t.match(off.text, /Drain mode is off/);
    t.equal(te.engine.draining, undefined);
    await a.page.goto(`${origin}/console/`);
    t.match(await a.page.textContent("main"), /Drain mode\s*off/);
    t.match((await audit.list(10)).find((e) => e.action === "drain-off"), { operator: "alice", target: "engine", reason: "the move was called off" });
  });

  await t.test("back up now, with backups off: the port's refusal is shown and audited", async (t) => {
    await a.page.goto(`${origin}/console/`);
    t.match(await toReview("/console/backup", "before the node upgrade"), /Confirm: write a snapshot archive/);
    const r = await confirm("/console/backup");
    t.equal(r.status, 409);
    t.match(r.text, /Backups are off: set backup\.dir/);
    await shot(a.page, "18-backup-refused");
    t.match((await audit.list(10)).find((e) => e.action === "backup:outcome"), { outcome: /^refused: Backups are off/ });
  });

  await t.test("resume payouts: refused while the hole is open, with the refusal's message; a restore incident in plain sight", async (t) => {
    // Coins spent behind the engine's back: the watchdog pauses payouts (it may have already: the fee bump above
    // was paid from the service's side, and this engine has no surplus to pay it from). And the incident a restore's
    // reconciliation leaves (test/backup/restore.test.ts makes a real one), as health() reports it.
    await te.node.rpc("send", [{ [await te.node.outsideAddress()]: 0.2 }], "engine");
    await te.mine(1);
    t.match(te.engine.payouts.paused, /watchdog: /, "paused by the watchdog");
    const unknownTxid = "ab".repeat(32);
    te.engine.restoreIncident = { at: Date.now(), archive: "snapshot-0001.rgs", unknownSpends: [{ txid: unknownTxid, confirmations: 1, outputs: [] }], frozen: [userKey] };
    await a.page.goto(`${origin}/console/`);
    const box = (await a.page.locator("#restore-incident[role=alert]").textContent())!;
    t.match(box, unknownTxid, "the unknown spend's txid");
    t.match(box, /1 wallet\(s\)/, "the frozen wallets' count");
    await shot(a.page, "19-overview-paused-incident");
    t.match(await toReview("/console/payouts/resume", "node wallet checked, all good"), /Confirm: resume payouts, paused because: watchdog/);
    const refused = await confirm("/console/payouts/resume");
    t.equal(refused.status, 409);
    t.match(refused.text, /Payouts stay paused: .*Cover the hole first\./);
    await shot(a.page, "20-resume-refused");
    t.match(te.engine.payouts.paused, /watchdog: /, "still paused");
    t.ok(te.engine.restoreIncident, "the incident stays");
    t.match((await audit.list(10)).find((e) => e.action === "resume-payouts:outcome"), { outcome: /^refused: Payouts stay paused/ });

    // An operator's pause on top of the watchdog's (from an old tab: the page offers no pause while paused): the first
    // reason stays, and the answer says so.
    t.equal(await a.page.locator('form[action="/console/payouts/pause/review"]').count(), 0, "no pause button while paused");
    const again = await sameSitePost("/console/payouts/pause", "reason=checking+the+node&confirm=yes");
    t.equal(again.status, 200);
    t.match(again.body, /Payouts were already paused: watchdog: /);
    t.match(te.engine.payouts.paused, /watchdog: /, "the watchdog's reason stays");

    // Covered: the resume goes through, and the incident is settled with it.
    await te.node.fund(await te.node.rpc<string>("getnewaddress", ["", "bech32"], "engine"), "0.3");
    await te.mine(1);
    await a.page.goto(`${origin}/console/`);
    await toReview("/console/payouts/resume", "hole covered from the reserve");
    const resumed = await confirm("/console/payouts/resume");
    t.equal(resumed.status, 200);
    t.match(resumed.text, /Payouts are running/);
    t.equal(te.engine.payouts.paused, undefined);
    t.equal(te.engine.restoreIncident, undefined);
    await a.page.goto(`${origin}/console/`);
    t.equal(await a.page.locator("#restore-incident").count(), 0, "the incident box is gone");
    t.match((await audit.list(10)).find((e) => e.action === "resume-payouts"), { operator: "alice", reason: "hole covered from the reserve" });

    // Paused by hand from the overview, shown there, and resumed from it.
    await toReview("/console/payouts/pause", "a withdrawal looks wrong");
    const paused = await confirm("/console/payouts/pause");
    t.equal(paused.status, 200);
    t.match(paused.text, /Payouts are paused\./);
    t.equal(te.engine.payouts.paused, "paused by operator alice: a withdrawal looks wrong");
    await a.page.goto(`${origin}/console/`);
    t.match(await a.page.locator("body").textContent(), /paused by operator alice: a withdrawal looks wrong/, "the overview shows who paused them, and why");
    await shot(a.page, "20b-overview-paused-by-operator");
    await toReview("/console/payouts/resume", "checked, all good");
    t.equal((await confirm("/console/payouts/resume")).status, 200);
    t.equal(te.engine.payouts.paused, undefined, "running again");
    t.match((await audit.list(10)).find((e) => e.action === "pause-payouts"), { operator: "alice", target: "payouts", reason: "a withdrawal looks wrong" });
  });

  const b = await seat("bob");
  t.teardown(() => b.ctx.close());

  await t.test("a wrong key: bob's registered key does not open alice's console", async (t) => {
    t.match(await enroll(b, bob.enrollment!.token), /Security key registered/);
    const bobCred = (await credentials(b))[0]!;
    const mallory = await seat("alice");
    t.teardown(() => mallory.ctx.close());
    await mallory.cdp.send("WebAuthn.addCredential", { authenticatorId: mallory.authenticator, credential: { ...bobCred } });
    await mallory.page.goto(`${origin}/console/login`);
    await mallory.page.click("#login");
    await mallory.page.waitForFunction(SETTLED);
    t.match(await status(mallory.page), /Sign-in refused/);
    t.equal(mallory.page.url(), `${origin}/console/login`, "the browser finds no key for alice: still on the login page");
    const forced = await forcedLogin(mallory, b64url(bobCred.credentialId));
    t.same(forced, { status: 401, error: "this security key is not registered for alice" }, "the server refuses it too");
    await mallory.page.goto(`${origin}/console/`);
    t.equal(mallory.page.url(), `${origin}/console/login`);
  });

  await t.test("an unlocked laptop: someone else's authenticator is not added, and confirmations do nothing without alice's key", async (t) => {
    // Alice's signed-in session, in a browser with only the passer-by's own authenticator (no credential of alice's).
    const laptop = await seat("alice");
    t.teardown(() => laptop.ctx.close());
    await laptop.ctx.addCookies(await a.ctx.cookies(origin));
    const entries = await auditCount();
    await laptop.page.goto(`${origin}/console/keys`);
    t.equal(laptop.page.url(), `${origin}/console/keys`, "the session opens the keys page");
    t.ok(await laptop.page.locator("#add-key").isDisabled(), "registering waits for the touch of a registered key");
    await laptop.page.click("#step-up-key");
    await laptop.page.waitForFunction(SETTLED);
    t.match(await status(laptop.page), /^Not confirmed/, "no key of alice's answers");
    t.ok(await laptop.page.locator("#add-key").isDisabled());
    await shot(laptop.page, "23-keys-no-touch");
    // Straight to the server, as a script in that browser could.
    const asked = await laptop.page.evaluate(async () => {
      const w = globalThis as unknown as Win;
      const csrf = w.document.querySelector('meta[name="csrf-token"]')!.getAttribute("content")!;
      const r = await fetch("/console/keys/options", { method: "POST", headers: { "content-type": "application/json", "x-csrf-token": csrf }, body: "{}" });
      return { status: r.status, error: ((await r.json()) as { error?: string }).error };
    });
    t.equal(asked.status, 403, "no registration options without the touch");
    t.match(asked.error, /needs a fresh touch of one of your security keys/);
    t.equal((await operators.get(alice.fingerprint))!.keys?.length, 1, "no key was added");

    // A confirmation page in that browser: its touch fails, so the form is never sent.
    await laptop.page.goto(`${origin}/console/`);
    const form = laptop.page.locator('form[action="/console/drain/on/review"]');
    await form.locator('input[name="reason"]').fill("not alice");
    await Promise.all([laptop.page.waitForURL(`${origin}/console/drain/on/review`), form.locator("button").click()]);
    let sent = false;
    laptop.page.on("request", (r) => {
      if (r.url() === `${origin}/console/drain/on`) sent = true;
    });
    await laptop.page.click('button:has-text("Confirm drain mode on")');
    await laptop.page.waitForFunction(SETTLED);
    t.match(await status(laptop.page), /^Not confirmed, nothing was done/);
    await shot(laptop.page, "24-confirm-no-touch");
    t.notOk(sent, "the confirmation was not sent");
    t.equal(te.engine.draining, undefined, "drain mode stays off");
    t.same(await touch(laptop, "/console/drain/on"), { status: 0, error: "NotAllowedError" }, "the authenticator has nothing to answer with");
    t.equal((await sameSitePost("/console/drain/on", "reason=not+alice&confirm=yes")).status, 403, "and the POST alone is refused");
    t.equal(te.engine.draining, undefined);
    t.equal(await auditCount(), entries, "nothing audited");
  });

  await t.test("a second key is added after a touch of the first; a removed key is refused from then on", async (t) => {
    const first = (await credentials(a))[0]!;
    await a.page.goto(`${origin}/console/keys`);
    t.match(await a.page.textContent("main"), /First confirm it is you with a key already registered for you/);
    await a.page.click("#step-up-key");
    await a.page.waitForFunction(SETTLED);
    t.match(await status(a.page), /Confirmed\. Now insert the new security key/, "touched with the first key");
    // A second physical key: the first one is unplugged while the second is registered.
    await a.cdp.send("WebAuthn.removeVirtualAuthenticator", { authenticatorId: a.authenticator });
    a.authenticator = (await a.cdp.send("WebAuthn.addVirtualAuthenticator", { options: { protocol: "ctap2", transport: "usb", hasResidentKey: true, hasUserVerification: true, isUserVerified: true } })).authenticatorId;
    await a.page.fill("#key-label", "spare key in the safe");
    await Promise.all([a.page.waitForURL(`${origin}/console/keys`), a.page.click("#add-key")]);
    await a.page.waitForSelector("text=spare key in the safe");
    t.equal((await operators.get(alice.fingerprint))!.keys?.length, 2);
    await shot(a.page, "14-keys");
    t.match((await audit.list(5)).find((e) => e.action === "console-key-add"), { operator: "alice", target: "alice" });
    // Remove the first key (the one this session signed in with), with a touch of the spare: this session ends with it.
    const row = a.page.locator("tr", { hasText: "security key" }).filter({ hasNotText: "spare" });
    await row.locator('input[name="reason"]').fill("key lost on the train");
    await Promise.all([a.page.waitForURL(`${origin}/console/login`), row.locator("button").click()]);
    t.same((await operators.get(alice.fingerprint))!.keys!.map((k) => k.label), ["spare key in the safe"]);
    t.match((await audit.list(5)).find((e) => e.action === "console-key-remove"), { operator: "alice", reason: "key lost on the train" });

    const old = await seat("alice");
    t.teardown(() => old.ctx.close());
    await old.cdp.send("WebAuthn.addCredential", { authenticatorId: old.authenticator, credential: { ...first } });
    t.same(await forcedLogin(old, aliceKey1), { status: 401, error: "this security key is not registered for alice" }, "the removed key is refused");
    await login(a);
    t.match(await a.page.textContent("main"), /Tip height/, "the spare key signs in");
  });

  await t.test("an operator revoked from the Operators page: reason, confirmation, audited like the API", async (t) => {
    await a.page.click('nav a[href="/console/operators"]');
    const list = (await a.page.textContent("main"))!;
    t.match(list, /alice\s*you\s*active/);
    t.notMatch(await a.page.content(), (await operators.get(carol.fingerprint))!.totpSecret, "never a TOTP secret");
    await shot(a.page, "21-operators");
    t.match(await toReview("/console/operators/carol/revoke", "carol's laptop was stolen"), /Confirm: revoke the operator carol/);
    t.notOk((await operators.get(carol.fingerprint))!.revoked, "nothing happens before the confirmation");
    const done = await confirm("/console/operators/carol/revoke");
    t.equal(done.status, 200);
    t.match(done.text, /carol is revoked/);
    t.ok((await operators.get(carol.fingerprint))!.revoked);
    await a.page.goto(`${origin}/console/operators`);
    t.match(await a.page.textContent("main"), /carol\s*revoked/);
    t.equal(await a.page.locator('form[action="/console/operators/carol/revoke/review"]').count(), 0, "nothing more to revoke on carol");
    await shot(a.page, "22-operator-revoked");
    const log = await audit.list(10);
    t.match(log.find((e) => e.action === "revoke-operator"), { operator: "alice", target: "carol", reason: "carol's laptop was stolen" });
    t.match(log.find((e) => e.action === "revoke-operator:outcome"), { operator: "alice", target: "carol", outcome: "done" });
  });

  await t.test("sessions are short, and logging out ends them", async (t) => {
    skew = te.config.admin.console.sessionTtlMs + 1000;
    await a.page.goto(`${origin}/console/payouts`);
    t.equal(a.page.url(), `${origin}/console/login`, "an expired session opens nothing");
    skew = 0;
    await login(a);
    const ck = (await a.ctx.cookies(origin)).find((c) => c.name === COOKIE)!.value;
    t.equal((await call(port, ca, "/health", { client: certs.alice, headers: { cookie: `${COOKIE}=${ck}` } })).status, 401, "the JSON API still wants TOTP: a console session is no second factor for it");
    await Promise.all([a.page.waitForURL(`${origin}/console/login`), a.page.click('form.logout button')]);
    await a.page.goto(`${origin}/console/audit`);
    t.equal(a.page.url(), `${origin}/console/login`);
  });

});
