#!/usr/bin/env node
// Finds a Chromium for the operator console's browser tests (playwright-core drives it; nothing is downloaded by
// playwright): $CHROMIUM, then /usr/bin/chromium, then chromium on PATH. If there is none and we run as root on
// Debian, installs Debian's `chromium` package with apt-get (noninteractive); otherwise fails with what to do.
// Run directly it prints the path; tests import `provisionChromium()`.
import { execFileSync } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { fileURLToPath } from "node:url";

function say(msg) {
  process.stderr.write(`[provision-chromium] ${msg}\n`);
}

function executable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(bin) {
  try {
    return execFileSync("sh", ["-c", `command -v ${bin}`], { stdio: ["ignore", "pipe", "ignore"], encoding: "utf8" }).trim() || undefined;
  } catch {
    return undefined;
  }
}

export function findChromium(env = process.env) {
  if (env.CHROMIUM) {
    if (!executable(env.CHROMIUM)) throw new Error(`CHROMIUM=${env.CHROMIUM} is not an executable file`);
    return env.CHROMIUM;
  }
  if (executable("/usr/bin/chromium")) return "/usr/bin/chromium";
  return onPath("chromium") ?? onPath("chromium-browser");
}

export function provisionChromium(env = process.env) {
  const found = findChromium(env);
  if (found) return found;
  const root = typeof process.getuid === "function" && process.getuid() === 0;
  if (!root || !onPath("apt-get")) {
    throw new Error(
      "no Chromium found for the console's browser tests. Install Debian's package (sudo apt-get install chromium), " +
        "or point CHROMIUM at a Chromium/Chrome binary.",
    );
  }
  say("installing Debian's chromium with apt-get (one time, about 100 MB)…");
  const aptEnv = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  // apt-get's own output goes to stderr: run directly, this script's stdout is the path alone (a test reads it; apt's
  // output there once made the path a page of package lists, on the first run of a fresh machine).
  const aptIo = ["ignore", 2, "inherit"];
  const install = () => execFileSync("apt-get", ["install", "-y", "--no-install-recommends", "chromium"], { stdio: aptIo, env: aptEnv });
  try {
    install();
  } catch {
    // A fresh machine may have no package lists yet.
    execFileSync("apt-get", ["update"], { stdio: aptIo, env: aptEnv });
    install();
  }
  const after = findChromium(env);
  if (!after) throw new Error("apt-get installed chromium but no chromium binary was found; set CHROMIUM");
  return after;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    process.stdout.write(provisionChromium() + "\n");
  } catch (e) {
    say(e.message);
    process.exit(1);
  }
}
