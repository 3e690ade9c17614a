// Found by a review: config errors that did not say what to do. A choice among words said "Expected union value"; a
// list's bad item named RUNIGUN_ADMIN_CONSOLE_ORIGINS_0, which does not exist; an unknown variable pointed at a list
// the README did not have, and RUNIGUN_IDENTITY_MEMORY_KIB was refused without the real name (…_KI_B).
import t from "tap";
import { loadConfig } from "../../src/config.ts";

const fails = (env: Record<string, string>) => {
  try {
    loadConfig({ env });
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error(`loaded: ${JSON.stringify(env)}`);
};

t.test("a choice among words lists the words", async (t) => {
  t.equal(fails({ RUNIGUN_LOG_LEVEL: "verbose" }), 'config key log.level: "verbose" is not one of fatal, error, warn, info, debug, trace, silent (env RUNIGUN_LOG_LEVEL)');
  t.equal(fails({ RUNIGUN_TELEGRAM_MODE: "Webhook" }), 'config key telegram.mode: "Webhook" is not one of polling, webhook (env RUNIGUN_TELEGRAM_MODE)');
  t.match(fails({ RUNIGUN_ADMIN_CONSOLE_USER_VERIFICATION: "always" }), /"always" is not one of required, preferred, discouraged \(env RUNIGUN_ADMIN_CONSOLE_USER_VERIFICATION\)/);
});

t.test("a list's bad item is named by its setting's one variable, with the item and its value", async (t) => {
  const m = fails({ RUNIGUN_ADMIN_CONSOLE_ORIGINS: "https://ops.example:8443, http://x" });
  t.equal(m, `config key admin.console.origins: item 2 ("http://x"): Expected string to match '^https://[^/]+$' (env RUNIGUN_ADMIN_CONSOLE_ORIGINS)`);
  t.notMatch(m, /_\d+\b/, "no RUNIGUN_…_0");
});

t.test("an unknown variable: the nearest known one is suggested, when one is near", async (t) => {
  t.match(fails({ RUNIGUN_IDENTITY_MEMORY_KIB: "65536" }), /^environment variable RUNIGUN_IDENTITY_MEMORY_KIB is not a RuniGun setting; did you mean RUNIGUN_IDENTITY_MEMORY_KI_B\? \(see README "Configuration" for the list\)$/);
  t.match(fails({ RUNIGUN_DEPOSIT_CONFIRMATIONS: "6" }), /did you mean RUNIGUN_DEPOSITS_CONFIRMATIONS\?/);
  t.match(fails({ RUNIGUN_PEPPER_FIEL: "/x" }), /did you mean RUNIGUN_PEPPER_FILE\?/, "secrets' names too");
  t.match(fails({ RUNIGUN_NETWORKS: "mainnet" }), /did you mean RUNIGUN_NETWORK\?/, "and the loader's");
  t.match(fails({ RUNIGUN_CONFIRMATIONS: "6" }), /did you mean RUNIGUN_DEPOSITS_CONFIRMATIONS\?/, "a section left out");
  t.match(fails({ RUNIGUN_MAX_PENDING_PER_WALLET: "6" }), /did you mean RUNIGUN_DEPOSITS_MAX_PENDING_PER_WALLET\?/);
  t.equal(fails({ RUNIGUN_COLOUR: "blue" }), 'environment variable RUNIGUN_COLOUR is not a RuniGun setting (see README "Configuration" for the list)', "nothing near: no guess");
  t.match(fails({ RUNIGUN_PORT: "1" }), /RUNIGUN_PORT is not a RuniGun setting \(see/, "a tail of several (admin, internal, webhook): no guess");
});
