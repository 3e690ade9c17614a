#!/usr/bin/env node
// Provisions a real bitcoind for RuniGun's tests and `npm start`: Debian sid's bitcoin-knots package and the
// libraries it needs, unpacked into .cache/bitcoind/root and run through sid's own loader. The system is
// left untouched: a private apt configuration (its own lists, cache and an empty status file) reads the
// mirror this system already uses. `--if-missing` (npm postinstall) never fails the install: it explains.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const cache = join(repo, ".cache", "bitcoind");
const root = join(cache, "root");
const envFile = join(cache, "env.json");
const ifMissing = process.argv.includes("--if-missing");
const arch = "amd64";

function say(msg) {
  process.stderr.write(`[provision-bitcoind] ${msg}\n`);
}

function fail(msg) {
  say(msg);
  say("To bring your own node instead: set BITCOIND=/path/to/bitcoind and BITCOIN_CLI=/path/to/bitcoin-cli, or put bitcoind on PATH.");
  process.exit(ifMissing ? 0 : 1);
}

function onPath(bin) {
  try {
    execFileSync("sh", ["-c", `command -v ${bin}`], { stdio: "pipe" });
    return true;
  } catch {
    return false;
  }
}

function sh(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { stdio: ["ignore", "pipe", "pipe"], encoding: "utf8", ...opts });
}

/** The mirror this system already uses (deb822 .sources first, then sources.list); never a hard-coded host. */
function systemMirror() {
  const found = [];
  const dir = "/etc/apt/sources.list.d";
  if (existsSync(dir)) {
    for (const f of readdirSync(dir).filter((f) => f.endsWith(".sources"))) {
      const text = readFileSync(join(dir, f), "utf8");
      for (const block of text.split(/\n\s*\n/)) {
        const uris = /^URIs:\s*(.+)$/m.exec(block)?.[1]?.trim().split(/\s+/) ?? [];
        const suites = /^Suites:\s*(.+)$/m.exec(block)?.[1] ?? "";
        if (/security/.test(suites)) continue;
        found.push(...uris.filter((u) => /\/debian\/?$/.test(u)));
      }
    }
  }
  if (existsSync("/etc/apt/sources.list")) {
    for (const line of readFileSync("/etc/apt/sources.list", "utf8").split("\n")) {
      const m = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line.trim());
      if (m && /\/debian\/?$/.test(m[1]) && !/security/.test(m[2])) found.push(m[1]);
    }
  }
  return found[0];
}

function describe() {
  const lib = join(root, "usr/lib/x86_64-linux-gnu");
  return {
    loader: join(lib, "ld-linux-x86-64.so.2"),
    libraryPath: `${lib}:/lib/x86_64-linux-gnu`,
    bitcoind: join(root, "usr/bin/bitcoind"),
    bitcoinCli: join(root, "usr/bin/bitcoin-cli"),
  };
}

function version(d) {
  return sh(d.loader, ["--library-path", d.libraryPath, d.bitcoind, "-version"]).split("\n")[0];
}

if (ifMissing) {
  if (process.env.BITCOIND) process.exit(0);
  if (onPath("bitcoind")) process.exit(0);
  if (existsSync(envFile)) {
    try {
      version(JSON.parse(readFileSync(envFile, "utf8")));
      process.exit(0);
    } catch {
      say("the cached bitcoind does not run any more; provisioning it again");
    }
  }
}

if (process.platform !== "linux" || process.arch !== "x64") fail(`this recipe needs Linux on x86-64 (this is ${process.platform}/${process.arch}).`);
if (!onPath("apt-get") || !onPath("dpkg")) fail("this recipe needs a Debian-family system (apt-get and dpkg were not found).");
const mirror = systemMirror();
if (!mirror) fail("no Debian mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list.");

const started = Date.now();
const apt = join(cache, "apt");
const debs = join(cache, "debs");
for (const d of [join(apt, "lists/partial"), join(apt, "archives/partial"), join(apt, "etc/preferences.d"), debs]) mkdirSync(d, { recursive: true });
// Signatures are checked against Debian's archive keyring, as for the system's own sources.
const keyring = ["/usr/share/keyrings/debian-archive-keyring.gpg", "/etc/apt/trusted.gpg.d/debian-archive-keyring.gpg"].find((k) => existsSync(k));
writeFileSync(join(apt, "etc/sources.list"), `deb ${keyring ? `[signed-by=${keyring}] ` : ""}${mirror} sid main\n`);
const aptArgs = [
  "-o", `Dir::Etc::SourceList=${join(apt, "etc/sources.list")}`,
  "-o", "Dir::Etc::SourceParts=-",
  "-o", `Dir::Etc::Preferences=${join(apt, "etc/preferences")}`,
  "-o", `Dir::Etc::PreferencesParts=${join(apt, "etc/preferences.d")}`,
  "-o", `Dir::State::Lists=${join(apt, "lists")}`,
  "-o", `Dir::Cache=${join(apt, "cache")}`,
  "-o", `Dir::Cache::archives=${join(apt, "archives")}`,
  "-o", "Dir::State::status=/dev/null",
  "-o", `APT::Architecture=${arch}`,
  "-o", "APT::Architectures::=",
  "-o", `APT::Architectures::=${arch}`,
  "-o", "Debug::NoLocking=1",
];

/** Package names from a Depends field, first alternative of each, without version constraints. */
function depends(pkg) {
  const show = sh("apt-cache", [...aptArgs, "show", pkg]);
  const first = show.split(/\n\n/)[0];
  const line = /^Depends:\s*(.+)$/m.exec(first)?.[1] ?? "";
  return line.split(",").map((d) => d.split("|")[0].trim().split(/[\s(:]/)[0]).filter(Boolean);
}

try {
  say(`reading sid's package lists from ${mirror} (private apt state in .cache/bitcoind/apt)`);
  sh("apt-get", [...aptArgs, "update"], { stdio: ["ignore", "pipe", "pipe"] });
  // The runtime closure that bookworm's own libraries cannot satisfy: knots, its libraries, and a glibc/libstdc++
  // new enough for them (run through sid's loader, so they never mix with the system's).
  const wanted = new Set(["bitcoin-knots", "libc6", "libstdc++6", "libgcc-s1"]);
  const queue = ["bitcoin-knots"];
  const skip = new Set(["debconf", "adduser", "libc6", "libgcc-s1", "libstdc++6", "init-system-helpers", "perl-base", "sysvinit-utils", "libcap2"]);
  while (queue.length) {
    const pkg = queue.shift();
    for (const dep of depends(pkg)) {
      if (skip.has(dep) || wanted.has(dep) || /^debconf|^adduser/.test(dep)) continue;
      // Only shared libraries: bitcoind needs nothing else at run time.
      if (!/^lib/.test(dep)) continue;
      wanted.add(dep);
      queue.push(dep);
    }
  }
  const have = new Set(readdirSync(debs).map((f) => f.split("_")[0]));
  const missing = [...wanted].filter((p) => !have.has(p));
  if (missing.length) {
    say(`downloading ${missing.join(", ")}`);
    sh("apt-get", [...aptArgs, "download", ...missing], { cwd: debs });
  }
  rmSync(root, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  for (const f of readdirSync(debs).filter((f) => f.endsWith(".deb"))) sh("dpkg", ["-x", join(debs, f), root]);
  const d = describe();
  const v = version(d);
  writeFileSync(envFile, JSON.stringify({ ...d, version: v, packages: [...wanted], mirror, provisionedAt: new Date().toISOString() }, null, 2));
  say(`${v} ready in ${((Date.now() - started) / 1000).toFixed(1)} s (${[...wanted].length} packages, cached in .cache/bitcoind/debs)`);
} catch (e) {
  const stderr = e.stderr ? String(e.stderr).trim().split("\n").slice(-3).join(" | ") : e.message;
  fail(`could not provision bitcoin-knots from Debian sid: ${stderr}`);
}
