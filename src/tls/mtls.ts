// The Fastify options both of the engine's own edges (the admin edge, the internal API) listen with.

/** A server's key and certificate, and the CA whose client certificates it takes. */
export interface MtlsFiles {
  key: string;
  cert: string;
  ca: string;
}

/**
 * TLS 1.3 only, with a client certificate from `tls.ca` (under 1.2 the client certificate, which names an operator or
 * the bot, crosses the VPN in the clear), and the request limits: a request must arrive whole, headers included, within
 * `requestTimeout` (checked every second: Node's default checks every 30 s, and swaps a longer headers timeout in as the
 * request's), and an idle connection is closed after ten minutes, longer than any action takes (a backup, a rescan).
 * Without them a client holding a valid certificate could keep sockets open without end, or hold a request's body back
 * for hours.
 */
export function mtlsServer(tls: MtlsFiles, requestTimeout: number) {
  return {
    https: {
      key: tls.key, cert: tls.cert, ca: [tls.ca], requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.3" as const,
      headersTimeout: requestTimeout, connectionsCheckingInterval: Math.min(1_000, requestTimeout),
    },
    requestTimeout,
    connectionTimeout: 10 * 60_000,
  };
}
