// Found by a review: an unknown variable's message sent the operator to README "Configuration" for the list of
// variables, and there was none. The list is now made from the schema (configVariablesTable) and this test keeps the
// README's copy equal to it, so a setting added or a default changed cannot leave it behind.
import t from "tap";
import { readFileSync } from "node:fs";
import { configVariablesTable, envName, loadConfig } from "../../src/config.ts";

const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");

t.test("README \"Configuration\" holds the list of every setting's variable, as the schema makes it", async (t) => {
  const section = readme.slice(readme.indexOf("\n## Configuration\n"), readme.indexOf("\n## ", readme.indexOf("\n## Configuration\n") + 1));
  const m = /<!-- config-variables:start -->\n([\s\S]*?)\n<!-- config-variables:end -->/.exec(section);
  t.ok(m, "the list's markers are in the Configuration section");
  t.equal(m?.[1], configVariablesTable(),
    "the README's list is the schema's; print it with: node --import ./bin/ts-register.mjs -e 'import(\"./src/config.ts\").then((m) => console.log(m.configVariablesTable()))'");
  const table = configVariablesTable();
  for (const path of [["deposits", "confirmations"], ["identity", "memoryKiB"], ["admin", "console", "origins"], ["dataDir"], ["withdrawals", "dustSats"]]) {
    t.match(table, `| \`${envName(path)}\` | \`${path.join(".")}\` |`, envName(path));
  }
  t.match(table, /\| `RUNIGUN_LOG_LEVEL` \| `log\.level` \| one of `fatal`, `error`, `warn`, `info`, `debug`, `trace`, `silent` \| `info` \|/);
  t.match(table, /\| `RUNIGUN_DATA_DIR` \| `dataDir` \| .*absolute off regtest.* \| regtest: `data\/regtest`; signet: \(empty\); mainnet: \(empty\) \|/);
});

t.test("every variable the list names is one the loader takes", async (t) => {
  const listed = [...configVariablesTable().matchAll(/^\| `(RUNIGUN_[A-Z0-9_]+)` \|/gm)].map((r) => r[1]!);
  t.ok(listed.length > 60, `${listed.length} settings`);
  // An empty value: valid or not for its setting, only a name the loader does not know is refused as no setting.
  for (const name of listed.filter((n) => n !== "RUNIGUN_NETWORK")) {
    let message = "";
    try {
      loadConfig({ env: { [name]: "" } });
    } catch (e) {
      message = (e as Error).message;
    }
    t.notMatch(message, /is not a RuniGun setting/, name);
  }
});
