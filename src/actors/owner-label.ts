// The node wallet's label of a deposit address handed out: its owner, sealed. The node's wallet.dat and RPC keep labels
// in clear; with the user key as the label, anyone with the node's files could list every user's deposit addresses
// (and so their coins on chain), which the store's MACed address index exists to prevent. Sealed under the store's
// data key with the address as associated data (a label moved to another address does not open), it still gives the
// owner back to the engine when the store's own record of it was lost (a restore from before it was written).
import type { EncryptedStore } from "../store/db.ts";
import { keyIdOf } from "../store/envelope.ts";
import { USER_KEY } from "../store/identity.ts";

const NS = "owner-label";
const PREFIX = "rg1:";

/** Whether a label is one of this engine's sealed owner labels (whether or not it opens). */
export function isSealedLabel(label: string): boolean {
  return label.startsWith(PREFIX);
}

/** The label for `address` handed out to `userKey`. */
export function ownerLabel(store: EncryptedStore, address: string, userKey: string): string {
  return PREFIX + store.sealValue(NS, address, userKey).toString("base64url");
}

/**
 * The owner a label names, or undefined (another label, one that does not open for this address). A label that is a
 * user key in clear (written before labels were sealed) is read too.
 */
export function ownerOfLabel(store: EncryptedStore, address: string, label: string): string | undefined {
  if (label.startsWith(PREFIX)) {
    try {
      const owner = store.openValue<unknown>(NS, address, Buffer.from(label.slice(PREFIX.length), "base64url"));
      return typeof owner === "string" && USER_KEY.test(owner) ? owner : undefined;
    } catch {
      return undefined;
    }
  }
  return USER_KEY.test(label) ? label : undefined;
}

/**
 * Labels the node wallet's deposit addresses again where their label is the owner's user key in clear (handed out
 * before labels were sealed) or sealed under a key other than the ring's current one (a rotation: a key that leaked
 * must not keep opening them). `call` is a node RPC. Returns how many were labelled again.
 */
export async function resealLabels(store: EncryptedStore, call: <T>(method: string, params?: unknown[]) => Promise<T>): Promise<number> {
  let sealed = 0;
  for (const label of await call<string[]>("listlabels")) {
    if (isSealedLabel(label)) {
      let keyId: number | undefined;
      try {
        keyId = keyIdOf(Buffer.from(label.slice(PREFIX.length), "base64url"), NS);
      } catch {
        continue;
      }
      if (keyId === store.keyring.current) continue;
    } else if (!USER_KEY.test(label)) continue;
    for (const address of Object.keys(await call<Record<string, unknown>>("getaddressesbylabel", [label]))) {
      const owner = ownerOfLabel(store, address, label);
      // One that does not open stays as it is (the alert comes with its first deposit).
      if (!owner) continue;
      await call("setlabel", [address, ownerLabel(store, address, owner)]);
      sealed++;
    }
  }
  return sealed;
}
