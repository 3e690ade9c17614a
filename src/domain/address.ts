// Destination checks before bitcoind is asked: which network an address belongs to (bech32 HRP or base58
// version byte) and whether its checksum holds, so a person hears "this is a mainnet address, this service
// runs on regtest" rather than a generic "invalid". bitcoind's getaddressinfo runs after this, as well.
import { sha256 } from "@noble/hashes/sha2.js";
import { bech32, bech32m, createBase58check } from "@scure/base";
import { refuse, type Refusal } from "./refusals.ts";

export type Network = "mainnet" | "signet" | "regtest";
export type AddressNetwork = "mainnet" | "testnet" | "regtest";

const HRP: Record<string, AddressNetwork> = { bc: "mainnet", tb: "testnet", bcrt: "regtest" };
const BASE58_VERSION: Record<number, AddressNetwork> = { 0x00: "mainnet", 0x05: "mainnet", 0x6f: "testnet", 0xc4: "testnet" };
const base58check = createBase58check(sha256);

/** Which networks' addresses a service on `network` may pay. Regtest shares testnet's base58 version
 * bytes (bitcoind accepts m…/n…/2… there) but has its own bech32 prefix, bcrt. */
function accepts(network: Network, p: ParsedAddress): boolean {
  if (network === "mainnet") return p.network === "mainnet";
  if (network === "signet") return p.network === "testnet";
  return p.network === "regtest" || (p.network === "testnet" && (p.kind === "p2pkh" || p.kind === "p2sh"));
}
const NAME: Record<AddressNetwork, string> = { mainnet: "a mainnet", testnet: "a testnet or signet", regtest: "a regtest" };

export interface ParsedAddress {
  network: AddressNetwork;
  /** `segwit`: a witness version or program size no output type has yet (v2–16, or v1 not 32 bytes). */
  kind: "segwit-v0" | "taproot" | "segwit" | "p2pkh" | "p2sh";
}

export function parseAddress(input: string): ParsedAddress | Refusal {
  const addr = input.trim();
  if (addr.length < 14 || addr.length > 90) return refuse("bad_address", "That is not a Bitcoin address (wrong length).");
  if (!/^[A-Za-z0-9]+$/.test(addr)) return refuse("bad_address", "That is not a Bitcoin address (it has characters addresses never have).");
  const sep = addr.lastIndexOf("1");
  const hrp = sep > 0 ? addr.slice(0, sep).toLowerCase() : "";
  if (HRP[hrp]) {
    if (addr !== addr.toLowerCase() && addr !== addr.toUpperCase()) return refuse("bad_address", "That address mixes upper and lower case; copy it again.");
    const lower = addr.toLowerCase() as `${string}1${string}`;
    const v0 = bech32.decodeUnsafe(lower, 90);
    const v1 = v0 ? undefined : bech32m.decodeUnsafe(lower, 90);
    const decoded = v0 ?? v1;
    if (!decoded || decoded.words.length === 0) return refuse("bad_address", "That address has a typo: its checksum does not match.");
    const version = decoded.words[0]!;
    // BIP 350: version 0 uses bech32, later versions bech32m.
    if ((version === 0) !== (v0 !== undefined)) return refuse("bad_address", "That address has a typo: its checksum does not match.");
    const program = (v0 ? bech32 : bech32m).fromWordsUnsafe(decoded.words.slice(1));
    if (!program || program.length < 2 || program.length > 40 || version > 16) return refuse("bad_address", "That is not a valid SegWit address.");
    if (version === 0 && program.length !== 20 && program.length !== 32) return refuse("bad_address", "That is not a valid SegWit address.");
    return { network: HRP[hrp]!, kind: version === 0 ? "segwit-v0" : version === 1 && program.length === 32 ? "taproot" : "segwit" };
  }
  let bytes: Uint8Array;
  try {
    bytes = base58check.decode(addr);
  } catch {
    return refuse("bad_address", "That is not a Bitcoin address, or it has a typo (its checksum does not match).");
  }
  const network = BASE58_VERSION[bytes[0]!];
  if (bytes.length !== 21 || !network) return refuse("bad_address", "That is not a Bitcoin address.");
  return { network, kind: bytes[0] === 0x00 || bytes[0] === 0x6f ? "p2pkh" : "p2sh" };
}

/**
 * One spelling per destination: a bech32 address in lower case (BIP 173 allows all upper case too, the QR-code form),
 * anything else as given (base58 is case-sensitive). bitcoind refuses a transaction that pays one destination twice,
 * however it is spelled.
 */
export function canonicalAddress(input: string): string {
  const addr = input.trim();
  const sep = addr.lastIndexOf("1");
  return sep > 0 && HRP[addr.slice(0, sep).toLowerCase()] ? addr.toLowerCase() : addr;
}

/** true, or a refusal that says why this service cannot pay the address. */
export function checkAddressFor(network: Network, input: string): true | Refusal {
  const p = parseAddress(input);
  if ("refused" in p) return p;
  if (!accepts(network, p)) {
    return refuse("wrong_network", `That is ${NAME[p.network]} address; this service runs on ${network}. Send an address for ${network}.`);
  }
  // Valid by BIP 350, and anyone-can-spend by today's consensus rules: bitcoind pays them, and whoever sees the output
  // first could take it. No wallet hands such addresses out; one pasted is a mistake or a trap.
  if (p.kind === "segwit") {
    return refuse("bad_address", "That address uses a SegWit version that no wallet uses yet: coins sent to it could be taken by anyone. Send an address your wallet gave you (bc1q… or bc1p…).");
  }
  return true;
}
