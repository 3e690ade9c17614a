// Records of one namespace that an actor writes beside its journal, in the same batch as the event (`op`, or `mark`
// for a record whose presence is all it says), and reads back on the calling thread on a hot path (`get`, `has`: a
// lookup LevelDB's bloom filters mostly answer from memory). A record key that would reveal something (an id, an
// outpoint) goes through `key`, an HMAC (EncryptedStore.mac).
import type { EncryptedStore, StoreOp } from "./db.ts";

export class Shelf<T> {
  readonly #store: EncryptedStore;
  readonly #ns: string;
  readonly #key: (ref: string) => string;

  constructor(store: EncryptedStore, ns: string, key: (ref: string) => string = (ref) => ref) {
    this.#store = store;
    this.#ns = ns;
    this.#key = key;
  }

  get(ref: string): T | undefined {
    return this.#store.getSync<T>(this.#ns, this.#key(ref));
  }

  op(ref: string, value: T): StoreOp {
    return { type: "put", ns: this.#ns, key: this.#key(ref), value };
  }

  /** Whether the record is there, without opening it (a mark has nothing to open). */
  has(ref: string): boolean {
    return this.#store.hasSync(this.#ns, this.#key(ref));
  }

  /** A mark (db.ts, StoreOp): the key alone. */
  mark(ref: string): StoreOp {
    return { type: "mark", ns: this.#ns, key: this.#key(ref) };
  }
}
