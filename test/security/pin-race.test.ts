// The identity pin in the engine's store (engine.ts, pinIdentityInStore) when two bots with different peppers pin a
// fresh store at once, as split-shape bots do while the engine serves: exactly one is told "pinned", and the stored
// pin is that one's. Its read and write were two steps with nothing between them: both were told "pinned", and the pin
// was whichever write landed last (the other bot's users then refused after its next restart). A real store on disk.
import t from "tap";
import { randomBytes } from "node:crypto";
import { EncryptedStore } from "../../src/store/db.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { pinIdentityInStore, storedIdentityPin } from "../../src/engine.ts";

t.test("two pins racing a fresh store: one wins, the other is refused, and the stored pin is the winner's", async (t) => {
  const store = await EncryptedStore.open({ path: t.testdir(), keyring: new KeyRing(new Map([[1, randomBytes(32)]]), 1) });
  t.teardown(() => store.close());
  const A = "a".repeat(64), B = "b".repeat(64);
  const [a, b] = await Promise.all([pinIdentityInStore(store, A), pinIdentityInStore(store, B)]);
  t.same([a, b], [true, false], "the first is pinned, the second refused");
  t.equal(await storedIdentityPin(store), A, "the stored pin is the one that was told so");
  t.equal(await pinIdentityInStore(store, A), true, "the winner's check still passes");
  t.equal(await pinIdentityInStore(store, B), false, "the other's is still refused");
});
