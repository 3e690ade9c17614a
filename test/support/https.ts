// One HTTPS request over mutual TLS to an edge on 127.0.0.1 (the admin API, the console, fuzzers), answered
// with its status and body text. The caller picks the client certificate (or none), the headers and the body.
import { request } from "node:https";
import type { Pem } from "../../src/tls/certs.ts";

export interface Res {
  status: number;
  body: string;
}

export function mtls(port: number, ca: string, path: string, o: { client?: Pem; method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: "127.0.0.1", port, path, method: o.method ?? "GET", ca, servername: "localhost",
      ...(o.client ? { key: o.client.key, cert: o.client.cert } : {}), headers: o.headers ?? {},
    }, (res) => {
      let text = "";
      res.on("data", (d: Buffer) => (text += d.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on("error", reject);
    req.end(o.body);
  });
}
