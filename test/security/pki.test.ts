// The private PKI: the admin edge's certificate names what operators' browsers reach it by (the console's
// WebAuthn relying party id must be such a name), the internal API's names internal.host (the bot checks it against
// the host it connects to), and certificates are made once, never silently replaced. The CAs an operator installs
// (the admin server's) or might (the operators') vouch for no other site: they are name-constrained.
import t from "tap";
import { X509Certificate } from "node:crypto";
import { chmodSync, existsSync, lstatSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:tls";
import { join } from "node:path";
import { EncryptedStore } from "../../src/store/db.ts";
import { generateKeyRingFile } from "../../src/store/keyring.ts";
import { OperatorStore, addOperator } from "../../src/edges/admin/operators.ts";
import { createLogger } from "../../src/log.ts";
import { watchCertificates } from "../../src/split.ts";
import { createCA, ensurePki, expiringCertificates, fingerprint, issue, permitsAll, readPem, writePem, type Pem } from "../../src/tls/certs.ts";

/** Whether a TLS client trusting `ca` (and presenting `client`, if given) accepts `server` as `name`; the server's `trust` checks clients. */
async function handshake(o: { server: Pem; ca: string; name: string; client?: Pem; trust?: string }): Promise<{ client: string; server?: string }> {
  let seen: string | undefined;
  const srv = createServer({ ...o.server, ...(o.trust ? { ca: o.trust, requestCert: true, rejectUnauthorized: false } : {}) }, (sock) => {
    seen = sock.authorized ? "authorized" : String(sock.authorizationError);
    sock.end();
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  try {
    const client = await new Promise<string>((resolve) => {
      const c = connect({ host: "127.0.0.1", port, servername: /^[\d.]+$/.test(o.name) ? undefined : o.name, ca: o.ca, ...(o.client ?? {}), checkServerIdentity: () => undefined }, () => {
        c.once("close", () => resolve("accepted"));
        c.resume();
      });
      c.once("error", (e) => resolve(e.message));
    });
    return seen === undefined ? { client } : { client, server: seen };
  } finally {
    srv.close();
  }
}

t.test("ensurePki: the admin certificate carries the console's name; keys are 0600; a second run keeps them", async (t) => {
  const dir = t.testdir();
  await ensurePki(dir, { admin: "10.8.0.1", internal: "127.0.0.1", adminNames: ["ops.runigun.vpn"] });
  const admin = new X509Certificate(readFileSync(join(dir, "admin-server.crt")));
  t.match(admin.subjectAltName ?? "", /IP Address:10\.8\.0\.1/, "the VPN address");
  t.match(admin.subjectAltName ?? "", /DNS:ops\.runigun\.vpn/, "the console's relying party id");
  t.match(admin.subjectAltName ?? "", /DNS:localhost/);
  t.equal(statSync(join(dir, "admin-server.key")).mode & 0o777, 0o600, "private keys are 0600");
  t.ok(admin.verify(new X509Certificate(readFileSync(join(dir, "admin-server-ca.crt"))).publicKey), "issued by the admin server's CA");
  t.notOk(admin.verify(new X509Certificate(readFileSync(join(dir, "operators-ca.crt"))).publicKey), "not by the operators' CA");
  const before = readFileSync(join(dir, "admin-server.crt"), "utf8");
  await ensurePki(dir, { admin: "10.8.0.2", internal: "127.0.0.1" });
  t.equal(readFileSync(join(dir, "admin-server.crt"), "utf8"), before, "existing certificates are kept (rotate them on purpose, not by a config change)");
});

t.test("a key written again (its certificate moved aside for a renewal) is a new 0600 file: not the old file's mode, not through a link", async (t) => {
  const base = t.testdir(), dir = join(base, "pki");
  await ensurePki(dir, { admin: "127.0.0.1", internal: "127.0.0.1" });
  // admin-server.key left 0644 (a copy made by hand, an older version); internal-server.key a link planted to elsewhere.
  renameSync(join(dir, "admin-server.crt"), join(base, "admin-server.crt.old"));
  chmodSync(join(dir, "admin-server.key"), 0o644);
  renameSync(join(dir, "internal-server.crt"), join(base, "internal-server.crt.old"));
  const elsewhere = join(base, "elsewhere.txt");
  writeFileSync(elsewhere, "not a key\n", { mode: 0o644 });
  rmSync(join(dir, "internal-server.key"));
  symlinkSync(elsewhere, join(dir, "internal-server.key"));
  await ensurePki(dir, { admin: "127.0.0.1", internal: "127.0.0.1" });
  t.equal(statSync(join(dir, "admin-server.key")).mode & 0o777, 0o600, "the renewed key is 0600, whatever the old file's mode");
  t.notOk(lstatSync(join(dir, "internal-server.key")).isSymbolicLink(), "the link is replaced by a file of ours");
  t.equal(statSync(join(dir, "internal-server.key")).mode & 0o777, 0o600);
  t.equal(readFileSync(elsewhere, "utf8"), "not a key\n", "nothing written where the link led");
  t.equal(statSync(join(dir, "admin-server.crt")).mode & 0o777, 0o644, "certificates stay readable");
  const renewed = readPem(dir, "internal-server");
  t.match(renewed.key, /BEGIN PRIVATE KEY/);
  t.not(readFileSync(join(dir, "admin-server.crt"), "utf8"), readFileSync(join(base, "admin-server.crt.old"), "utf8"), "a new certificate");
});

t.test("ensurePki: the internal API's certificate names internal.host, which the bot checks it against", async (t) => {
  const dir = t.testdir();
  await ensurePki(dir, { admin: "127.0.0.1", internal: "10.8.0.7" });
  const internal = new X509Certificate(readFileSync(join(dir, "internal-server.crt")));
  t.match(internal.subjectAltName ?? "", /IP Address:10\.8\.0\.7/);
  t.ok(internal.checkIP("10.8.0.7"), "valid for a connection to https://10.8.0.7:…");
  t.notOk(internal.checkIP("10.8.0.8"));
});

t.test("the admin server's CA vouches for the admin edge's names only, the operators' CA for no server; operators' certificates still work", async (t) => {
  const dir = t.testdir();
  t.same((await ensurePki(dir, { admin: "127.0.0.1", internal: "127.0.0.1", adminNames: ["ops.runigun.vpn"] })).warnings, [], "a new PKI: nothing to warn about");
  const serverCa = readPem(dir, "admin-server-ca"), operatorsCa = readPem(dir, "operators-ca");
  t.equal((await handshake({ server: readPem(dir, "admin-server"), ca: serverCa.cert, name: "127.0.0.1" })).client, "accepted", "the admin edge's own certificate");
  // What a thief of the CA keys in pkiDir could sign: a certificate for any site.
  const forged = await issue(serverCa, { name: "bank", kind: "server", hosts: ["bank.example"] });
  t.match((await handshake({ server: forged, ca: serverCa.cert, name: "bank.example" })).client, /permitted subtree violation/, "another site under the admin server's CA: refused");
  const sub = await issue(serverCa, { name: "sub", kind: "server", hosts: ["x.ops.runigun.vpn"] });
  t.equal((await handshake({ server: sub, ca: serverCa.cert, name: "x.ops.runigun.vpn" })).client, "accepted", "a name under the console's name is the console's");
  const anyIp = await issue(serverCa, { name: "ip", kind: "server", hosts: ["10.9.9.9"] });
  t.match((await handshake({ server: anyIp, ca: serverCa.cert, name: "10.9.9.9" })).client, /permitted subtree violation/, "another IP address under the admin server's CA: refused");
  const viaOperators = await issue(operatorsCa, { name: "bank", kind: "server", hosts: ["bank.example", "127.0.0.1"] });
  t.match((await handshake({ server: viaOperators, ca: operatorsCa.cert, name: "bank.example" })).client, /permitted subtree violation|unsuitable certificate purpose/, "a server under the operators' CA: refused");
  const alice = await issue(operatorsCa, { name: "alice", kind: "client" });
  const r = await handshake({ server: readPem(dir, "admin-server"), ca: serverCa.cert, name: "127.0.0.1", client: alice, trust: operatorsCa.cert });
  t.same(r, { client: "accepted", server: "authorized" }, "an operator's client certificate is accepted under the constrained operators' CA");
});

t.test("a renewal stays under the admin server's CA while it permits the names; other names get a new CA and a warning", async (t) => {
  const dir = t.testdir();
  await ensurePki(dir, { admin: "127.0.0.1", internal: "127.0.0.1" });
  const ca = readFileSync(join(dir, "admin-server-ca.crt"), "utf8");
  const aside = (base: string) => {
    renameSync(join(dir, `${base}.crt`), join(dir, `${base}.old.crt`));
    renameSync(join(dir, `${base}.key`), join(dir, `${base}.old.key`));
  };
  aside("admin-server");
  t.same((await ensurePki(dir, { admin: "127.0.0.1", internal: "127.0.0.1" })).warnings, [], "same names: no warning");
  t.equal(readFileSync(join(dir, "admin-server-ca.crt"), "utf8"), ca, "same names: the CA operators trust is kept");
  t.ok(existsSync(join(dir, "admin-server.crt")), "a new certificate");
  aside("admin-server");
  const { warnings } = await ensurePki(dir, { admin: "10.8.0.1", internal: "127.0.0.1" });
  t.match(warnings.join("\n"), /did not permit 10\.8\.0\.1, localhost: a new admin-server-ca\.crt was made/);
  t.not(readFileSync(join(dir, "admin-server-ca.crt"), "utf8"), ca, "a new CA");
  t.equal((await handshake({ server: readPem(dir, "admin-server"), ca: readPem(dir, "admin-server-ca").cert, name: "10.8.0.1" })).client, "accepted", "the new certificate is valid under it");
});

t.test("an admin certificate from before the admin server's CA is kept, with a warning until it is moved aside", async (t) => {
  const dir = t.testdir();
  // The layout older versions made: the admin edge's certificate signed by the operators' CA, which had no constraints.
  const operatorsCa = await createCA("RuniGun operators CA");
  writePem(dir, "operators-ca", operatorsCa);
  writePem(dir, "admin-server", await issue(operatorsCa, { name: "runigun-admin", kind: "server", hosts: ["127.0.0.1", "localhost"] }));
  const before = readFileSync(join(dir, "admin-server.crt"), "utf8");
  const { warnings } = await ensurePki(dir, { admin: "127.0.0.1", internal: "127.0.0.1" });
  t.match(warnings.join("\n"), /signed by the operators' CA.*move admin-server\.crt and admin-server\.key aside and start again/);
  t.equal(readFileSync(join(dir, "admin-server.crt"), "utf8"), before, "kept: operators' curl and browsers still reach it");
  t.notOk(existsSync(join(dir, "admin-server-ca.crt")), "no CA made beside it");
  renameSync(join(dir, "admin-server.crt"), join(dir, "admin-server.old.crt"));
  renameSync(join(dir, "admin-server.key"), join(dir, "admin-server.old.key"));
  t.same((await ensurePki(dir, { admin: "127.0.0.1", internal: "127.0.0.1" })).warnings, [], "moved aside: a new layout, no warning");
  t.ok(new X509Certificate(readFileSync(join(dir, "admin-server.crt"))).verify(new X509Certificate(readFileSync(join(dir, "admin-server-ca.crt"))).publicKey));
});

t.test("certificates about to expire are named with what to do: a warning within 30 days, an alert within 7 or once expired", async (t) => {
  const dir = t.testdir();
  await ensurePki(dir, { admin: "127.0.0.1", internal: "127.0.0.1" });
  const day = 24 * 3600_000, now = Date.now();
  // An operator's certificate valid for 20 more days, and a revoked operator's file left behind, valid for 1.
  const alice = await issue(readPem(dir, "operators-ca"), { name: "alice", kind: "client", years: 20 / 365 });
  writePem(join(dir, "operators"), "alice", alice);
  writePem(join(dir, "operators"), "bob", await issue(readPem(dir, "operators-ca"), { name: "bob", kind: "client", years: 1 / 365 }));
  const active = new Set([fingerprint(alice.cert)]);
  t.same(expiringCertificates(dir, active, now - 60 * day), [], "nothing within 30 days");
  const soon = expiringCertificates(dir, active, now);
  t.same(soon.map((c) => [c.file, c.alert]), [["operators/alice.crt", false]], "the active operator's, a warning; not the revoked one's");
  t.match(soon[0]!.message, /expires on \d{4}-\d\d-\d\d \(in 19 days\): revoke and add the operator again \(runigun keys operator revoke\|add alice\)/);
  const late = expiringCertificates(dir, active, now + 15 * day);
  t.same(late.map((c) => [c.file, c.alert]), [["operators/alice.crt", true]], "within 7 days: an alert");
  t.match(expiringCertificates(dir, active, now + 25 * day)[0]!.message, /operators\/alice\.crt in .* expired on /);
  // Two years on, the engine's own certificates (made for 2 years) are due; the CAs (10 years) are not.
  const engine = expiringCertificates(dir, new Set(), now + 2 * 365 * day - 10 * day);
  t.same(engine.map((c) => c.file).sort(), ["admin-server.crt", "bot-client.crt", "internal-server.crt"]);
  t.match(engine.find((c) => c.file === "admin-server.crt")!.message, /move admin-server\.\* aside and run runigun keys pki/);
  t.notOk(engine.some((c) => c.alert), "10 days left: warnings");
});

t.test("the engine's check logs an active operator's certificate, not a revoked one's, an alert once within 7 days", async (t) => {
  const base = t.testdir(), dir = join(base, "pki");
  await ensurePki(dir, { admin: "127.0.0.1", internal: "127.0.0.1" });
  const store = await EncryptedStore.open({ path: join(base, "store"), keyring: generateKeyRingFile(join(base, "master.key")) });
  t.teardown(() => store.close());
  const operators = new OperatorStore(store);
  await addOperator({ pkiDir: dir, store: operators, name: "alice", out: join(base, "operator-alice") });
  await addOperator({ pkiDir: dir, store: operators, name: "bob", out: join(base, "operator-bob") });
  await operators.revoke("bob");
  const lines: Array<{ level: number; msg: string; alert?: boolean; certificate?: string }> = [];
  const log = createLogger({ level: "info", destination: { write: (l: string) => void lines.push(JSON.parse(l)) } });
  const day = 24 * 3600_000;
  // Operators' certificates are made for a year.
  await watchCertificates(dir, operators, log, Date.now() + 365 * day - 20 * day);
  t.same(lines.map((l) => [l.certificate, l.level, l.alert]), [["operators/alice.crt", 40, undefined]], "a warning for alice; bob is revoked");
  lines.length = 0;
  await watchCertificates(dir, operators, log, Date.now() + 365 * day - 3 * day);
  t.same(lines.map((l) => [l.certificate, l.level, l.alert]), [["operators/alice.crt", 50, true]], "an alert 3 days before");
});

t.test("a CA's name constraints, read back: IPv4 and IPv6 addresses alone, DNS names with the names under them", async (t) => {
  const ca = (await createCA("test", { permit: ["10.8.0.1", "fd00::1", "ops.runigun.vpn"] })).cert;
  t.ok(permitsAll(ca, ["10.8.0.1", "fd00:0:0:0:0:0:0:1", "ops.runigun.vpn", "a.ops.runigun.vpn"]), "the names it was made for (an IPv6 address however written)");
  for (const other of ["10.8.0.2", "fd00::2", "runigun.vpn", "xops.runigun.vpn", "localhost"]) t.notOk(permitsAll(ca, [other]), `not ${other}`);
  t.ok(permitsAll((await createCA("unconstrained")).cert, ["anything.example"]), "a CA without constraints permits anything");
});

t.test("a CA permitting DNS names only vouches for no IP address, of either family; one permitting IPv4 only, for no IPv6", async (t) => {
  // What operators' browsers would accept from a thief of the CA's key: a name type with no permitted entry is
  // unconstrained unless excluded.
  const dnsOnly = await createCA("dns only", { permit: ["admin.vpn.example", "localhost"], use: "server" });
  for (const ip of ["127.0.0.1", "::1"]) {
    const leaf = await issue(dnsOnly, { name: "x", kind: "server", hosts: [ip] });
    t.match((await handshake({ server: leaf, ca: dnsOnly.cert, name: ip })).client, /excluded subtree violation|permitted subtree violation/, `${ip}: refused`);
  }
  const v4 = await createCA("v4", { permit: ["127.0.0.1", "localhost"], use: "server" });
  t.equal((await handshake({ server: await issue(v4, { name: "x", kind: "server", hosts: ["127.0.0.1"] }), ca: v4.cert, name: "127.0.0.1" })).client, "accepted", "its own address");
  t.match((await handshake({ server: await issue(v4, { name: "x", kind: "server", hosts: ["::1"] }), ca: v4.cert, name: "::1" })).client, /excluded subtree violation|permitted subtree violation/, "an IPv6 address: refused");
  // The operators' CA, as ensurePki makes it, without its client-only purpose (which a browser might not apply to a root).
  const bare = await createCA("operators, no purpose", { permit: ["operators.runigun.invalid"] });
  t.match((await handshake({ server: await issue(bare, { name: "x", kind: "server", hosts: ["127.0.0.1"] }), ca: bare.cert, name: "127.0.0.1" })).client, /subtree violation/, "the operators' constraints alone refuse an address");
});
