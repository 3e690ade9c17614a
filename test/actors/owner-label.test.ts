// The node wallet's label of a deposit address: its owner sealed, opened only for that address.
import t from "tap";
import { randomBytes } from "node:crypto";
import { EncryptedStore } from "../../src/store/db.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { ownerLabel, ownerOfLabel, resealLabels } from "../../src/actors/owner-label.ts";
import { keyIdOf } from "../../src/store/envelope.ts";
import { startRegtest } from "../../src/regtest/harness.ts";

t.test("a sealed owner label opens for its address only; a label from before (the user key itself) is still read", async (t) => {
  const store = await EncryptedStore.open({ path: t.testdir(), keyring: new KeyRing(new Map([[1, randomBytes(32)]]), 1), sync: false });
  t.teardown(() => store.close());
  const label = ownerLabel(store, "bcrt1qaddressone", "u_alice0000001");
  t.notMatch(label, /alice/, "the user key is not in it");
  t.not(ownerLabel(store, "bcrt1qaddressone", "u_alice0000001"), label, "a fresh seal each time: two labels of one owner do not match");
  t.equal(ownerOfLabel(store, "bcrt1qaddressone", label), "u_alice0000001");
  t.equal(ownerOfLabel(store, "bcrt1qaddresstwo", label), undefined, "moved to another address, it opens nothing");
  // A character in the middle (six whole bits of the seal): the last ones may carry only padding bits, or already be
  // what they are replaced with.
  const at = label.length - 10;
  t.equal(ownerOfLabel(store, "bcrt1qaddressone", label.slice(0, at) + (label[at] === "A" ? "B" : "A") + label.slice(at + 1)), undefined, "altered, nothing");
  t.equal(ownerOfLabel(store, "bcrt1qaddressone", "u_bob000000001"), "u_bob000000001", "a label from before labels were sealed");
  t.equal(ownerOfLabel(store, "bcrt1qaddressone", "house float"), undefined, "anything else is no one's");
});

t.test("labels in clear, and labels sealed before a key rotation, are sealed again under the current key; others are left", async (t) => {
  const node = await startRegtest();
  t.teardown(() => node.stop());
  const call = <T>(method: string, params: unknown[] = []) => node.rpc<T>(method, params, "engine");
  const path = t.testdir();
  const k1 = randomBytes(32), k2 = randomBytes(32);
  const before = await EncryptedStore.open({ path, keyring: new KeyRing(new Map([[1, k1]]), 1), sync: false });
  const [old, clear, house] = [await call<string>("getnewaddress"), await call<string>("getnewaddress"), await call<string>("getnewaddress")];
  await call("setlabel", [old, ownerLabel(before, old, "u_alice0000001")]);
  await call("setlabel", [clear, "u_bob000000001"]);
  await call("setlabel", [house, "house float"]);
  await before.close();
  // The ring rotated: key 2 current, key 1 kept to open what it sealed.
  const store = await EncryptedStore.open({ path, keyring: new KeyRing(new Map([[1, k1], [2, k2]]), 2), sync: false });
  t.teardown(() => store.close());
  t.equal(await resealLabels(store, call), 2, "two labelled again");
  const labelOf = async (a: string) => (await call<{ labels: string[] }>("getaddressinfo", [a])).labels[0]!;
  for (const [address, owner] of [[old, "u_alice0000001"], [clear, "u_bob000000001"]] as const) {
    const label = await labelOf(address);
    t.equal(keyIdOf(Buffer.from(label.slice(4), "base64url"), "owner-label"), 2, "sealed under the current key");
    t.equal(ownerOfLabel(store, address, label), owner, "naming the same owner");
  }
  t.equal(await labelOf(house), "house float", "a label that names no user is left as it is");
  t.equal(await resealLabels(store, call), 0, "nothing more to do the next time");
});
