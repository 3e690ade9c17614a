// The private PKI: the admin edge's certificate names what operators' browsers reach it by (the console's
// WebAuthn relying party id must be such a name), the internal API's names internal.host (the bot checks it against
// the host it connects to), and certificates are made once, never silently replaced.
import t from "tap";
import { X509Certificate } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { ensurePki } from "../../src/tls/certs.ts";

t.test("ensurePki: the admin certificate carries the console's name; keys are 0600; a second run keeps them", async (t) => {
  const dir = t.testdir();
  await ensurePki(dir, { admin: "10.8.0.1", internal: "127.0.0.1", adminNames: ["ops.runigun.vpn"] });
  const admin = new X509Certificate(readFileSync(join(dir, "admin-server.crt")));
  t.match(admin.subjectAltName ?? "", /IP Address:10\.8\.0\.1/, "the VPN address");
  t.match(admin.subjectAltName ?? "", /DNS:ops\.runigun\.vpn/, "the console's relying party id");
  t.match(admin.subjectAltName ?? "", /DNS:localhost/);
  t.equal(statSync(join(dir, "admin-server.key")).mode & 0o777, 0o600, "private keys are 0600");
  t.ok(admin.verify(new X509Certificate(readFileSync(join(dir, "operators-ca.crt"))).publicKey), "issued by the operators' CA");
  const before = readFileSync(join(dir, "admin-server.crt"), "utf8");
  await ensurePki(dir, { admin: "10.8.0.2", internal: "127.0.0.1" });
  t.equal(readFileSync(join(dir, "admin-server.crt"), "utf8"), before, "existing certificates are kept (rotate them on purpose, not by a config change)");
});

t.test("ensurePki: the internal API's certificate names internal.host, which the bot checks it against", async (t) => {
  const dir = t.testdir();
  await ensurePki(dir, { admin: "127.0.0.1", internal: "10.8.0.7" });
  const internal = new X509Certificate(readFileSync(join(dir, "internal-server.crt")));
  t.match(internal.subjectAltName ?? "", /IP Address:10\.8\.0\.7/);
  t.ok(internal.checkIP("10.8.0.7"), "valid for a connection to https://10.8.0.7:…");
  t.notOk(internal.checkIP("10.8.0.8"));
});
