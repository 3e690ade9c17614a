// Certificates for the engine's private PKIs: the operators' CA (client certificates for the admin edge), the admin
// server's CA (the one operators' browsers and curl trust for the admin edge) and the internal CA (the bot ⇄ engine
// link in the split shape). ECDSA P-256 via WebCrypto and @peculiar/x509; keys are written 0600 and never leave the
// machine that made them (an operator's goes to an export directory for the operator, never into pkiDir). The CAs
// people install (the admin server's) or might (the operators') are name-constrained (RFC 5280 4.2.1.10): their keys
// sit online in pkiDir, and a CA trusted as an authority must vouch for no other site.
import { createHash, webcrypto } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { BlockList } from "node:net";
import { join } from "node:path";
// @peculiar/x509 uses tsyringe, which needs the Reflect metadata polyfill loaded first.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { AsnConvert } from "@peculiar/asn1-schema";
import { GeneralName, GeneralSubtree, GeneralSubtrees, NameConstraints, id_ce_nameConstraints } from "@peculiar/asn1-x509";

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
x509.cryptoProvider.set(webcrypto as never);

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

export interface Pem {
  cert: string;
  key: string;
}

async function keyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", key));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString("base64").match(/.{1,64}/g)!.join("\n")}\n-----END PRIVATE KEY-----\n`;
}

async function importKey(pem: string): Promise<CryptoKey> {
  const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ""), "base64");
  return webcrypto.subtle.importKey("pkcs8", der, ALG, true, ["sign"]);
}

const serial = () => Buffer.from(webcrypto.getRandomValues(new Uint8Array(16))).toString("hex").replace(/^[89a-f]/, "1");
const years = (n: number) => new Date(Date.now() + n * 365 * 24 * 3600 * 1000);

const isIp = (h: string) => /^[\d.]+$|:/.test(h);

/**
 * A critical name-constraints extension permitting only `names` (DNS names, each with its subdomains; IP addresses,
 * each alone). OpenSSL, browsers and curl then refuse any certificate under the CA that names something else — and a
 * client certificate naming no host (a subject CN without a dot, no alternative names) is not a name they check. A
 * name type with no permitted entry is not constrained at all (RFC 5280 4.2.1.10), so an IP family none of `names` is
 * in is excluded whole: a CA permitting only DNS names would otherwise vouch for every IP address.
 */
function permitOnly(names: readonly string[]): x509.Extension {
  // An address alone, or a whole family ("0.0.0.0/0", "::/0": the exclusions below).
  const subtree = (n: string) => new GeneralSubtree({ base: new GeneralName(isIp(n.split("/")[0]!) ? { iPAddress: n.includes("/") ? n : `${n}/${n.includes(":") ? 128 : 32}` } : { dNSName: n }) });
  const v6 = (n: string) => isIp(n) && n.includes(":");
  const excluded = [...(names.some((n) => isIp(n) && !v6(n)) ? [] : ["0.0.0.0/0"]), ...(names.some(v6) ? [] : ["::/0"])];
  const constraints = new NameConstraints({
    permittedSubtrees: new GeneralSubtrees(names.map(subtree)),
    ...(excluded.length ? { excludedSubtrees: new GeneralSubtrees(excluded.map(subtree)) } : {}),
  });
  return new x509.Extension(id_ce_nameConstraints, true, AsnConvert.serialize(constraints));
}

/**
 * A self-signed CA. `permit`: the only names it may vouch for (see permitOnly); `use`: the one purpose of the
 * certificates it signs (an extended key usage on the CA itself, which verifiers apply to the chain below it).
 */
export async function createCA(name: string, o: { permit?: readonly string[]; use?: "client" | "server" } = {}): Promise<Pem> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(), name: `CN=${name}`, notBefore: new Date(Date.now() - 60_000), notAfter: years(10), keys: keys as never, signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey as never),
      ...(o.permit ? [permitOnly(o.permit)] : []),
      ...(o.use ? [new x509.ExtendedKeyUsageExtension([o.use === "client" ? x509.ExtendedKeyUsage.clientAuth : x509.ExtendedKeyUsage.serverAuth])] : []),
    ],
  });
  return { cert: cert.toString("pem") + "\n", key: await keyPem(keys.privateKey) };
}

/** A certificate signed by `ca`: a client (operators, the bot) or a server (with its IP/DNS names). */
export async function issue(ca: Pem, o: { name: string; kind: "client" | "server"; hosts?: string[]; years?: number }): Promise<Pem> {
  const caCert = new x509.X509Certificate(ca.cert);
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
  const sans = (o.hosts ?? []).map((h) => (isIp(h) ? { type: "ip" as const, value: h } : { type: "dns" as const, value: h }));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(), subject: `CN=${o.name}`, issuer: caCert.subject, notBefore: new Date(Date.now() - 60_000), notAfter: years(o.years ?? 2),
    publicKey: keys.publicKey as never, signingKey: (await importKey(ca.key)) as never, signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
      new x509.ExtendedKeyUsageExtension([o.kind === "client" ? x509.ExtendedKeyUsage.clientAuth : x509.ExtendedKeyUsage.serverAuth]),
      ...(sans.length ? [new x509.SubjectAlternativeNameExtension(sans)] : []),
      await x509.AuthorityKeyIdentifierExtension.create(caCert, false),
    ],
  });
  return { cert: cert.toString("pem") + "\n", key: await keyPem(keys.privateKey) };
}

/** SHA-256 of the DER certificate, lowercase hex: how operators are recognised (and revoked). */
export function fingerprint(certPem: string): string {
  const der = Buffer.from(certPem.replace(/-----[^-]+-----|\s/g, ""), "base64");
  return createHash("sha256").update(der).digest("hex");
}

/**
 * A new file of ours under `path`, `mode` from its creation (0600 unless said): created exclusively, so never through a
 * link planted under its name, after removing whatever was there (writing over an old file would keep that file's mode:
 * a key left 0644 by an older version, or a revoked certificate's, would stay readable).
 */
export function writeNewFile(path: string, data: string | Buffer, mode = 0o600): void {
  rmSync(path, { force: true });
  writeFileSync(path, data, { mode, flag: "wx" });
}

export function writePem(dir: string, base: string, pem: Pem): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeNewFile(join(dir, `${base}.crt`), pem.cert, 0o644);
  writeNewFile(join(dir, `${base}.key`), pem.key);
}

export function readPem(dir: string, base: string): Pem {
  return { cert: readFileSync(join(dir, `${base}.crt`), "utf8"), key: readFileSync(join(dir, `${base}.key`), "utf8") };
}

/**
 * A name no certificate an operator's browser checks can carry: the operators' CA is constrained to it, so that CA,
 * which signs client certificates only, vouches for no site even where someone installed it as an authority.
 */
export const OPERATORS_ONLY_NAME = "operators.runigun.invalid";

/**
 * The engine's PKI in `dir`, made once (later calls read what is there): the operators' CA (client certificates; it
 * vouches for no host), the admin server's CA (constrained to the admin edge's names: what operators' browsers and
 * curl trust) and its certificate, the internal CA (which only the bot trusts) with the internal API's certificate
 * and the bot's client certificate. `adminNames` are extra DNS names for the admin edge's certificate — the console's
 * WebAuthn relying party id must be a name the browser reached it by.
 *
 * Returns what an operator should know about the PKI found there: an admin certificate made before the admin server
 * had a CA of its own is signed by the operators' CA, which then has to be trusted as an authority for any site.
 */
export async function ensurePki(dir: string, hosts: { admin: string; internal: string; adminNames?: string[] }): Promise<{ warnings: string[] }> {
  const make = async (base: string, f: () => Promise<Pem>) => {
    if (!existsSync(join(dir, `${base}.crt`))) writePem(dir, base, await f());
  };
  const adminHosts = [...new Set([hosts.admin, "localhost", ...(hosts.adminNames ?? [])])];
  await make("operators-ca", () => createCA("RuniGun operators CA", { permit: [OPERATORS_ONLY_NAME], use: "client" }));
  const legacyAdmin = existsSync(join(dir, "admin-server.crt")) && !existsSync(join(dir, "admin-server-ca.crt"));
  const warnings: string[] = [];
  if (!legacyAdmin && !existsSync(join(dir, "admin-server.crt"))) {
    // A renewal (the old certificate moved aside) stays under the CA operators already trust while its constraints
    // permit the names; names it does not permit (admin.host or the console's name changed) need a new CA.
    const caPath = join(dir, "admin-server-ca.crt");
    if (existsSync(caPath) && !permitsAll(readFileSync(caPath, "utf8"), adminHosts)) {
      rmSync(caPath);
      warnings.push(`the admin server's CA in ${dir} did not permit ${adminHosts.join(", ")}: a new admin-server-ca.crt was made; give it to operators to trust instead of the old one`);
    }
    await make("admin-server-ca", () => createCA("RuniGun admin server CA", { permit: adminHosts, use: "server" }));
    await make("admin-server", () => issue(readPem(dir, "admin-server-ca"), { name: "runigun-admin", kind: "server", hosts: adminHosts }));
  }
  // Not name-constrained: only the bot trusts it, and a new internal.host is a new certificate under the same CA.
  await make("internal-ca", () => createCA("RuniGun internal CA"));
  await make("internal-server", () => issue(readPem(dir, "internal-ca"), { name: "runigun-engine", kind: "server", hosts: [hosts.internal, "localhost"] }));
  await make("bot-client", () => issue(readPem(dir, "internal-ca"), { name: "runigun-bot", kind: "client" }));
  const leftovers = operatorSecretsWarning(dir);
  if (leftovers) warnings.push(leftovers);
  if (legacyAdmin) {
    warnings.push(`the admin edge's certificate in ${dir} is signed by the operators' CA, so operators' browsers and curl trust that CA, whose key is online here, for any site: move admin-server.crt and admin-server.key aside and start again (a name-constrained admin-server-ca.crt and a new certificate are made), then give operators admin-server-ca.crt to trust instead, and have them remove the operators' CA from what they trust`);
  }
  return { warnings };
}

/**
 * What older versions of `keys operator add` left under `<dir>/operators/` besides the certificate: the operator's private
 * key and TOTP secret (URI and QR code). Named (`operators/NAME.key`, …), never read.
 */
export function operatorSecretsIn(dir: string): string[] {
  const opsDir = join(dir, "operators");
  if (!existsSync(opsDir)) return [];
  return readdirSync(opsDir).filter((f) => /\.key$|\.otpauth$|-totp\.png$/.test(f)).sort().map((f) => `operators/${f}`);
}

/** What to tell about operatorSecretsIn(dir) (at start, and by `keys pki` and `keys operator`), if anything is there. */
export function operatorSecretsWarning(dir: string): string | undefined {
  const files = operatorSecretsIn(dir);
  if (!files.length) return undefined;
  return `operators' secrets from an older version are in ${dir}: ${files.join(", ")} (client-certificate private keys and TOTP secrets: whoever reads this host or its backups gets both factors of those operators). The engine needs only the operators' .crt files: make sure each operator has their own copy, then move these files off this host (nothing deletes them for you)`;
}

/** Whether a CA's name constraints permit every one of `hosts` (a CA without constraints permits anything). */
export function permitsAll(caPem: string, hosts: readonly string[]): boolean {
  const ext = new x509.X509Certificate(caPem).getExtension(id_ce_nameConstraints);
  if (!ext) return true;
  const ips = new BlockList(), dns: string[] = [];
  for (const { base } of AsnConvert.parse(ext.value, NameConstraints).permittedSubtrees ?? []) {
    if (base.dNSName !== undefined) dns.push(base.dNSName);
    const [address, prefix] = base.iPAddress?.split("/") ?? [];
    if (address && prefix) ips.addSubnet(address, Number(prefix), address.includes(":") ? "ipv6" : "ipv4");
  }
  return hosts.every((h) => (isIp(h) ? ips.check(h, h.includes(":") ? "ipv6" : "ipv4") : dns.some((d) => h === d || h.endsWith(`.${d}`))));
}

/** The engine's PKI for its settings (ensurePki with the configured names): what the engine, `keys pki` and `keys operator add` make. */
export function ensureEnginePki(config: { pkiPath: string; admin: { host: string; console: { rpId: string } }; internal: { host: string } }): Promise<{ warnings: string[] }> {
  return ensurePki(config.pkiPath, { admin: config.admin.host, internal: config.internal.host, adminNames: [config.admin.console.rpId] });
}

/** How long before a certificate expires the engine starts saying so (warnings), and when it becomes an alert. */
export const EXPIRY_WARN_MS = 30 * 24 * 3600_000;
export const EXPIRY_ALERT_MS = 7 * 24 * 3600_000;

export interface CertificateNotice {
  /** Its path under pkiDir (an operator's: `operators/NAME.crt`). */
  file: string;
  notAfter: string;
  alert: boolean;
  message: string;
}

/**
 * The certificates in `dir` (the engine's, and the operators' under `operators/`, only those whose fingerprint is in
 * `activeOperators`: a revoked operator's file stays behind) that expire within EXPIRY_WARN_MS of `now`, or have: each
 * with what to do. Within EXPIRY_ALERT_MS, or expired, it is an alert: an expired admin certificate or CA locks every
 * operator out, an expired internal one cuts the bot off, an operator's own locks that operator out.
 */
export function expiringCertificates(dir: string, activeOperators: ReadonlySet<string>, now = Date.now()): CertificateNotice[] {
  const files = ["operators-ca", "admin-server-ca", "admin-server", "internal-ca", "internal-server", "bot-client"].map((b) => `${b}.crt`);
  const opsDir = join(dir, "operators");
  if (existsSync(opsDir)) for (const f of readdirSync(opsDir)) if (f.endsWith(".crt")) files.push(`operators/${f}`);
  const out: CertificateNotice[] = [];
  for (const file of files) {
    const path = join(dir, file);
    if (!existsSync(path)) continue;
    const pem = readFileSync(path, "utf8");
    if (file.startsWith("operators/") && !activeOperators.has(fingerprint(pem))) continue;
    const notAfter = new x509.X509Certificate(pem).notAfter;
    const left = notAfter.getTime() - now;
    if (left > EXPIRY_WARN_MS) continue;
    const days = Math.floor(left / (24 * 3600_000));
    const when = left <= 0 ? `expired on ${notAfter.toISOString().slice(0, 10)}` : `expires on ${notAfter.toISOString().slice(0, 10)} (in ${days} day${days === 1 ? "" : "s"})`;
    const renew = file.startsWith("operators/")
      ? `revoke and add the operator again (runigun keys operator revoke|add ${file.slice("operators/".length, -".crt".length)})`
      : file.endsWith("-ca.crt")
        ? "a new CA means new certificates under it: see README, \"Certificates\""
        : `with the engine stopped, move ${file.replace(/\.crt$/, ".*")} aside and run runigun keys pki (README, "Certificates")`;
    out.push({ file, notAfter: notAfter.toISOString(), alert: left <= EXPIRY_ALERT_MS, message: `certificate ${file} in ${dir} ${when}: ${renew}` });
  }
  return out;
}
