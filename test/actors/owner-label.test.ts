// The node wallet's label of a deposit address: its owner sealed, opened only for that address.
import t from "tap";
import { randomBytes } from "node:crypto";
import { EncryptedStore } from "../../src/store/db.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { ownerLabel, ownerOfLabel } from "../../src/actors/owner-label.ts";

t.test("a sealed owner label opens for its address only; a label from before (the user key itself) is still read", async (t) => {
  const store = await EncryptedStore.open({ path: t.testdir(), keyring: new KeyRing(new Map([[1, randomBytes(32)]]), 1), sync: false });
  t.teardown(() => store.close());
  const label = ownerLabel(store, "bcrt1qaddressone", "u_alice0000001");
  t.notMatch(label, /alice/, "the user key is not in it");
  t.not(ownerLabel(store, "bcrt1qaddressone", "u_alice0000001"), label, "a fresh seal each time: two labels of one owner do not match");
  t.equal(ownerOfLabel(store, "bcrt1qaddressone", label), "u_alice0000001");
  t.equal(ownerOfLabel(store, "bcrt1qaddresstwo", label), undefined, "moved to another address, it opens nothing");
  t.equal(ownerOfLabel(store, "bcrt1qaddressone", label.slice(0, -2) + "AA"), undefined, "altered, nothing");
  t.equal(ownerOfLabel(store, "bcrt1qaddressone", "u_bob000000001"), "u_bob000000001", "a label from before labels were sealed");
  t.equal(ownerOfLabel(store, "bcrt1qaddressone", "house float"), undefined, "anything else is no one's");
});
