#!/usr/bin/env -S node --max-semi-space-size=64
// The `runigun` command: loads the TypeScript sources (bin/ts-register.mjs; no build step to forget), then runs the CLI.
// The shebang gives V8 a 64 MB young generation (README, "Deployment shapes"); `node bin/runigun.js` needs the flag itself.
import "./ts-register.mjs";

const { main } = await import("../src/cli.ts");
process.exitCode = await main(process.argv.slice(2));
