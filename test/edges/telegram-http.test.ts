// The edge's Bot API HTTP client (undici under grammY's Api) against the Bot API stand-in: JSON calls, file
// uploads, the Bot API's errors, an API root spelled differently from its URL origin, and aborts.
import t from "tap";
import { Api, GrammyError, HttpError, InputFile } from "grammy";
import { BotApiStandIn } from "../support/bot-api.ts";
import { botApiFetch } from "../../src/edges/telegram/http.ts";

const api = new BotApiStandIn();
await api.start();
t.teardown(() => api.stop());
const client = (apiRoot: string, token = api.token) => new Api(token, { apiRoot, fetch: botApiFetch(apiRoot) });

t.test("a JSON call and an upload reach the Bot API and return its result", async (t) => {
  const bot = client(api.apiRoot);
  const sent = await bot.sendMessage(42, "héllo ✓");
  t.equal(sent.text, "héllo ✓");
  t.same(api.calls.at(-1)?.params, { chat_id: 42, text: "héllo ✓" });
  await bot.sendPhoto(42, new InputFile(Buffer.from("PNGDATA"), "a.png"), { caption: "cap" });
  const upload = api.calls.at(-1)!;
  t.equal(upload.method, "sendPhoto");
  t.equal(upload.params.caption, "cap");
  t.ok(upload.raw?.includes("PNGDATA"), "the file's bytes were sent");
});

t.test("the Bot API's errors come back as GrammyError with their code", async (t) => {
  api.failNext("sendMessage", { error_code: 400, description: "Bad Request: chat not found" });
  const e = await client(api.apiRoot).sendMessage(42, "x").catch((err: unknown) => err);
  t.ok(e instanceof GrammyError);
  t.equal((e as GrammyError).error_code, 400);
  const unauthorized = await client(api.apiRoot, "1:WRONG").getMe().catch((err: unknown) => err);
  t.equal((unauthorized as GrammyError).error_code, 401);
});

t.test("an API root spelled unlike its URL origin still reaches it", async (t) => {
  const root = api.apiRoot.replace("http://", "HTTP://"); // the origin is "http://…": URLs are parsed whole
  t.equal((await client(root).getMe()).username, api.botInfo.username);
});

t.test("nothing listening, or an aborted call: HttpError", async (t) => {
  const closed = new BotApiStandIn();
  await closed.start();
  const root = closed.apiRoot;
  await closed.stop();
  t.ok((await client(root).getMe().catch((err: unknown) => err)) instanceof HttpError);
  const controller = new AbortController();
  const pending = client(api.apiRoot).getUpdates({ timeout: 5 }, controller.signal as Parameters<Api["getUpdates"]>[1]).catch((err: unknown) => err);
  setTimeout(() => controller.abort(), 50);
  t.ok((await pending) instanceof HttpError, "the long poll is cut short");
});
