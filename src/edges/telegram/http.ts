// The Bot API's HTTP client: undici's `request` on a pool of keep-alive connections, handed to grammY as its
// `fetch`. grammY reads nothing of an answer but `json()` (whatever the status: the Bot API answers errors in
// JSON too), so a whole WHATWG fetch is not needed. grammY's default, node-fetch on an http.Agent, was the
// largest single cost of answering an update (bench/README.md, telegram); this takes well under half its CPU.
import type { Readable } from "node:stream";
import type { ApiClientOptions } from "grammy";
import { Agent } from "undici";

type Fetch = NonNullable<ApiClientOptions["fetch"]>;
/** What grammY's API client passes: JSON as a string, or its multipart stream when a file is uploaded. */
interface ApiCallInit {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Readable;
  signal?: AbortSignal;
}

/** A `fetch` for one bot's API client, with its own connection pool (idle connections do not hold the process). */
export function botApiFetch(apiRoot: string): Fetch {
  // At most 64 sockets to the Bot API: an unbounded pool opens another socket whenever all are busy, so the runner's
  // up to 500 updates in flight left hundreds open, and spreading calls over them cost more than queueing
  // (bench/README.md, telegram).
  const dispatcher = new Agent({ connections: 64 });
  // grammY's URLs are `${apiRoot}/bot<token>/<method>`: split off the known origin instead of parsing each URL.
  const { origin } = new URL(apiRoot);
  const target = (url: string) => {
    if (url.startsWith(`${origin}/`)) return { origin, path: url.slice(origin.length) };
    const u = new URL(url);
    return { origin: u.origin, path: u.pathname + u.search };
  };
  const fetch = async (url: string, init: ApiCallInit = {}) => {
    const { method = "GET", headers, body, signal } = init;
    const res = await dispatcher.request({ ...target(url), method: method as "GET" | "POST", headers, body, signal });
    return { json: () => res.body.json() };
  };
  return fetch as unknown as Fetch;
}
