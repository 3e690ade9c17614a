// The Bot API stand-in in a process of its own, for the Telegram bench: Telegram's servers are not in the
// engine's process, so their cost must not be measured as the engine's. Prints its API root and token as JSON.
import { BotApiStandIn } from "../../test/support/bot-api.ts";

const api = new BotApiStandIn();
await api.start();
process.stdout.write(JSON.stringify({ apiRoot: api.apiRoot, token: api.token }) + "\n");
process.on("SIGTERM", () => void api.stop().then(() => process.exit(0)));
