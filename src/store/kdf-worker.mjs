// Worker thread for the identity KDF: argon2id runs here so the event loop never waits on it.
// Plain JS so it loads the same way under tsx, tap and plain node.
import { parentPort } from "node:worker_threads";
import { argon2id } from "@noble/hashes/argon2.js";

parentPort.on("message", ({ id, input, pepper, salt, t, m, p }) => {
  try {
    const out = argon2id(input, salt, { t, m, p, key: pepper, dkLen: 16 });
    parentPort.postMessage({ id, out });
  } catch (e) {
    parentPort.postMessage({ id, error: String(e && e.message ? e.message : e) });
  }
});
// Loaded and listening: the engine counts a lookup's time limit from here (start-up can take seconds on a busy host).
parentPort.postMessage({ ready: true });
