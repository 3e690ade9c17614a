#!/usr/bin/env node
// The `runigun` command: loads the TypeScript sources through tsx (no build step to forget), then runs the CLI.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../src/cli.ts");
process.exitCode = await main(process.argv.slice(2));
