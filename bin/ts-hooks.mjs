// Module hooks that load the TypeScript sources (registered by ts-register.mjs): each .ts file is stripped of its
// types by esbuild, with an inline source map, and nothing else. Not tsx: tsx always asks esbuild to keep function
// names, which wraps every closure the engine creates in a defineProperty call — about 15% of a durable transfer's
// CPU (bench/README.md, "write"). Without minifying, esbuild keeps the names anyway.
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { transform } from "esbuild";

const TS = /\.m?ts$/;

export async function load(url, context, nextLoad) {
  if (!url.startsWith("file:") || !TS.test(new URL(url).pathname)) return nextLoad(url, context);
  const path = fileURLToPath(url);
  const { code } = await transform(await readFile(path, "utf8"), {
    loader: "ts",
    format: "esm",
    target: `node${process.versions.node}`,
    sourcemap: "inline",
    sourcefile: path,
  });
  return { format: "module", source: code, shortCircuit: true };
}
