// Loads the TypeScript sources without a build step that could go stale: `node --import ./bin/ts-register.mjs x.ts`,
// or imported first (bin/runigun.js). Stack traces point into the .ts files through the inline source maps.
import { register } from "node:module";

process.setSourceMapsEnabled(true);
register("./ts-hooks.mjs", import.meta.url);
