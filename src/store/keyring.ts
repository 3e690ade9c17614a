// The master key ring: one or more 32-byte master keys by id, one of them current. Data keys are derived
// per purpose with HKDF, so the master key itself never encrypts anything. Loaded from a 0600 file or
// from the environment; written atomically (temp file + rename).
import { hkdfSync, randomBytes } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { createFileDurably, writeFileDurably } from "./files.ts";
import { StoreError } from "./errors.ts";

export type KeyPurpose = "store" | "audit" | "backup" | "handle";

interface KeyFile {
  format: "runigun-keyring-1";
  current: number;
  keys: Record<string, string>;
  /** Keys a completed rotation replaced (absent: none). */
  retired?: number[];
}

export class KeyRing {
  readonly #masters = new Map<number, Buffer>();
  readonly #derived = new Map<string, Buffer>();
  readonly current: number;
  /**
   * Keys a completed rotation replaced: kept to open what was sealed under them before (archives, segments), but
   * a backup sealed under one is refused unless a restore names it (`allowing`): after a rotation for a suspected leak,
   * an archive forged with the leaked key must not pass for the operator's own.
   */
  readonly retired: ReadonlySet<number>;

  constructor(keys: Map<number, Uint8Array>, current: number, retired: Iterable<number> = []) {
    if (!keys.has(current)) throw new StoreError("missing_key", `the key ring has no key ${current} although it is marked current`);
    for (const [id, k] of keys) {
      if (k.length !== 32) throw new StoreError("bad_format", `master key ${id} is ${k.length} bytes; it must be 32`);
      if (!Number.isInteger(id) || id < 1 || id > 0xffffffff) throw new StoreError("bad_format", `key id ${id} must be a whole number from 1`);
      this.#masters.set(id, Buffer.from(k));
    }
    this.current = current;
    this.retired = new Set([...retired].filter((id) => id !== current && keys.has(id)));
  }

  /** Every key but the current one retired (a rotation has re-sealed everything under the current one). */
  withRetired(): KeyRing {
    return new KeyRing(this.#masters, this.current, this.ids.filter((id) => id !== this.current));
  }

  /** The same ring, trusting these retired keys again for one use (a restore of an archive made before a rotation). */
  allowing(ids: readonly number[]): KeyRing {
    for (const id of ids) if (!this.#masters.has(id)) throw new StoreError("missing_key", `the key ring has no key ${id} to allow`);
    return new KeyRing(this.#masters, this.current, [...this.retired].filter((id) => !ids.includes(id)));
  }

  get ids(): number[] {
    return [...this.#masters.keys()].sort((a, b) => a - b);
  }

  has(id: number): boolean {
    return this.#masters.has(id);
  }

  /** The data key for a purpose under master key `id` (default: current). */
  dataKey(purpose: KeyPurpose, id = this.current): Buffer {
    const cacheKey = `${id}:${purpose}`;
    let k = this.#derived.get(cacheKey);
    if (!k) {
      const master = this.#masters.get(id);
      if (!master) throw new StoreError("unknown_key_id", `data was sealed under master key ${id}, which is not in the key ring; add it back to RUNIGUN_MASTER_KEY_FILE`);
      k = Buffer.from(hkdfSync("sha256", master, "runigun-keyring-v1", `runigun/${purpose}`, 32));
      this.#derived.set(cacheKey, k);
    }
    return k;
  }

  /** Parses a key ring: the JSON file format, or a bare 32-byte key as hex/base64 (key id 1). */
  static parse(text: string, source: string): KeyRing {
    const trimmed = text.trim();
    if (trimmed.startsWith("{")) {
      let f: KeyFile;
      try {
        f = JSON.parse(trimmed) as KeyFile;
      } catch {
        throw new StoreError("bad_format", `${source} is not valid JSON`);
      }
      if (f.format !== "runigun-keyring-1" || typeof f.keys !== "object") throw new StoreError("bad_format", `${source} is not a RuniGun key ring`);
      const keys = new Map(Object.entries(f.keys).map(([id, b64]) => [Number(id), Buffer.from(b64, "base64")] as const));
      if (f.retired !== undefined && (!Array.isArray(f.retired) || !f.retired.every((id) => Number.isInteger(id)))) throw new StoreError("bad_format", `${source}: "retired" must be a list of key ids`);
      return new KeyRing(keys, f.current, f.retired ?? []);
    }
    const raw = /^[0-9a-f]{64}$/i.test(trimmed) ? Buffer.from(trimmed, "hex") : Buffer.from(trimmed, "base64");
    if (raw.length !== 32) throw new StoreError("bad_format", `${source} does not hold a 32-byte key (hex or base64)`);
    return new KeyRing(new Map([[1, raw]]), 1);
  }

  toJSON(): KeyFile {
    const keys = Object.fromEntries([...this.#masters].map(([id, k]) => [String(id), k.toString("base64")]));
    return this.retired.size === 0 ? { format: "runigun-keyring-1", current: this.current, keys } : { format: "runigun-keyring-1", current: this.current, keys, retired: [...this.retired].sort((a, b) => a - b) };
  }

  /** A ring with one more key, which becomes current (for rotation). */
  withNewKey(): KeyRing {
    const next = Math.max(...this.ids) + 1;
    const keys = new Map<number, Uint8Array>(this.#masters);
    keys.set(next, randomBytes(32));
    return new KeyRing(keys, next, this.retired);
  }
}

/**
 * Reads a key ring from a file, refusing one that others can read. `storePath`: the store this ring opens, so that a
 * missing file is answered for what it is (a new key is advice only where no store exists yet: for a store sealed
 * with the lost one, a new key opens nothing, and the engine would refuse it).
 */
export function loadKeyRingFile(path: string, o: { storePath?: string } = {}): KeyRing {
  if (!existsSync(path)) throw new StoreError("missing_key", missingKeyFile(path, o.storePath));
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new StoreError("key_file_permissions", `master key file ${path} is readable by others (mode ${mode.toString(8)}); run chmod 600 ${path}`);
  }
  return KeyRing.parse(readFileSync(path, "utf8"), path);
}

function missingKeyFile(path: string, storePath: string | undefined): string {
  const restore = `restore it from your offline copy to ${path} (or point RUNIGUN_MASTER_KEY_FILE at it): a new key cannot open a store sealed with the old one`;
  if (storePath === undefined) {
    return `master key file ${path} does not exist. If a store was made with it, ${restore}. Only for a new installation with no store yet: create one with "runigun keys generate --out ${path}"`;
  }
  if (existsSync(storePath)) return `master key file ${path} does not exist, but the store at ${storePath} was sealed with it: ${restore}`;
  return `master key file ${path} does not exist; create one with "runigun keys generate --out ${path}" (there is no store at ${storePath} yet)`;
}

export function loadKeyRing(opts: { file?: string; value?: string; storePath?: string }): KeyRing {
  if (opts.file) return loadKeyRingFile(opts.file, opts.storePath === undefined ? {} : { storePath: opts.storePath });
  if (opts.value) return KeyRing.parse(opts.value, "RUNIGUN_MASTER_KEY");
  throw new StoreError("missing_key", "no master key: set RUNIGUN_MASTER_KEY_FILE (see `runigun keys generate`) or RUNIGUN_MASTER_KEY");
}

/** Writes a key ring atomically and durably (files.ts) with mode 0600. */
export function writeKeyRingFile(path: string, ring: KeyRing): void {
  writeFileDurably(path, JSON.stringify(ring.toJSON(), null, 2) + "\n");
}

export function generateKeyRingFile(path: string): KeyRing {
  const ring = new KeyRing(new Map([[1, randomBytes(32)]]), 1);
  try {
    createFileDurably(path, JSON.stringify(ring.toJSON(), null, 2) + "\n");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") throw new StoreError("bad_input", `${path} already exists; refusing to overwrite a master key`);
    throw e;
  }
  return ring;
}
