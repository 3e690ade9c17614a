// Certificates for the engine's two private PKIs: the operators' CA (client certificates for the admin edge)
// and the internal CA (the bot ⇄ engine link in the split shape). ECDSA P-256 via WebCrypto and
// @peculiar/x509; keys are written 0600 and never leave the machine that made them.
import { createHash, webcrypto } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
// @peculiar/x509 uses tsyringe, which needs the Reflect metadata polyfill loaded first.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";

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

export async function createCA(name: string): Promise<Pem> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(), name: `CN=${name}`, notBefore: new Date(Date.now() - 60_000), notAfter: years(10), keys: keys as never, signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey as never),
    ],
  });
  return { cert: cert.toString("pem") + "\n", key: await keyPem(keys.privateKey) };
}

/** A certificate signed by `ca`: a client (operators, the bot) or a server (with its IP/DNS names). */
export async function issue(ca: Pem, o: { name: string; kind: "client" | "server"; hosts?: string[]; years?: number }): Promise<Pem> {
  const caCert = new x509.X509Certificate(ca.cert);
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
  const sans = (o.hosts ?? []).map((h) => (/^[\d.]+$|:/.test(h) ? { type: "ip" as const, value: h } : { type: "dns" as const, value: h }));
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

export function writePem(dir: string, base: string, pem: Pem): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, `${base}.crt`), pem.cert, { mode: 0o644 });
  writeFileSync(join(dir, `${base}.key`), pem.key, { mode: 0o600 });
}

export function readPem(dir: string, base: string): Pem {
  return { cert: readFileSync(join(dir, `${base}.crt`), "utf8"), key: readFileSync(join(dir, `${base}.key`), "utf8") };
}

/**
 * The engine's PKI in `dir`: both CAs, the admin edge's and the internal API's server certificates, and the
 * bot's client certificate. Made once; later calls read what is there.
 */
/**
 * The two private CAs and the engine's certificates, made once. `adminNames` are extra DNS names for the admin
 * edge's certificate — the console's WebAuthn relying party id must be a name the browser reached it by.
 */
export async function ensurePki(dir: string, hosts: { admin: string; internal: string; adminNames?: string[] }): Promise<void> {
  const make = async (base: string, f: () => Promise<Pem>) => {
    if (!existsSync(join(dir, `${base}.crt`))) writePem(dir, base, await f());
  };
  await make("operators-ca", () => createCA("RuniGun operators CA"));
  await make("internal-ca", () => createCA("RuniGun internal CA"));
  await make("admin-server", () => issue(readPem(dir, "operators-ca"), { name: "runigun-admin", kind: "server", hosts: [...new Set([hosts.admin, "localhost", ...(hosts.adminNames ?? [])])] }));
  await make("internal-server", () => issue(readPem(dir, "internal-ca"), { name: "runigun-engine", kind: "server", hosts: [hosts.internal, "localhost"] }));
  await make("bot-client", () => issue(readPem(dir, "internal-ca"), { name: "runigun-bot", kind: "client" }));
}
