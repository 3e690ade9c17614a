// What crosses the network in clear, and where the VPN ranges may be (found by the security review): off regtest the
// node's RPC (Basic credentials on every call, the wallet passphrase when signing) and its ZMQ stay on loopback or
// inside admin.vpnCidrs; the Bot API is reached over plain HTTP only on this host (the token is in every URL); and
// admin.vpnCidrs holds private ranges only, since admin.host, internal.host and webhookHost may bind inside them.
import t from "tap";
import { loadConfig } from "../../src/config.ts";

const mainnet = { RUNIGUN_NETWORK: "mainnet", RUNIGUN_DATA_DIR: "/var/lib/runigun/mainnet" };

t.test("off regtest, the node's RPC and ZMQ must be on loopback or inside admin.vpnCidrs", async (t) => {
  // The reviewer's probe: a public address, plain http and tcp.
  t.throws(() => loadConfig({ env: { ...mainnet, RUNIGUN_NODE_RPC_URL: "http://203.0.113.5:8332" } }), {
    code: "config_invalid",
    message: /^config key node\.rpcUrl: 203\.0\.113\.5 is neither loopback nor inside admin\.vpnCidrs; on mainnet .*in clear\. Give the node's IP address: on this host \(http:\/\/127\.0\.0\.1:8332\), or on your VPN with the VPN's range in admin\.vpnCidrs; for a node in a container, .*\(env RUNIGUN_NODE_RPC_URL\)$/,
  });
  t.throws(() => loadConfig({ env: { ...mainnet, RUNIGUN_DEPOSITS_ZMQ: "tcp://203.0.113.5:28332" } }), {
    message: /^config key deposits\.zmq: 203\.0\.113\.5 is neither loopback nor inside admin\.vpnCidrs.*\(env RUNIGUN_DEPOSITS_ZMQ\)$/,
  });
  t.throws(() => loadConfig({ env: { ...mainnet, RUNIGUN_NETWORK: "signet", RUNIGUN_NODE_RPC_URL: "https://203.0.113.5:8332" } }), /node\.rpcUrl: 203\.0\.113\.5/, "signet too, whatever the scheme");
  // A name cannot be checked without resolving it: its address is asked for.
  t.throws(() => loadConfig({ env: { ...mainnet, RUNIGUN_NODE_RPC_URL: "http://bitcoind:8332" } }), /node\.rpcUrl: bitcoind is a name, not an address/);
  // A password written into the URL is never echoed.
  const err = t.throws(() => loadConfig({ env: { ...mainnet, RUNIGUN_NODE_RPC_URL: "http://engine:s3cret-pw@198.51.100.7:8332" } })) as Error;
  t.notMatch(err.message, /s3cret-pw/, "the URL's password is not in the message");
  t.throws(() => loadConfig({ env: { ...mainnet, RUNIGUN_NODE_RPC_URL: "not a url s3cret-pw" } }), { message: /^config key node\.rpcUrl: not a URL with a host, like http:\/\/127\.0\.0\.1:8332/ });

  // Loopback, the VPN, and a socket file are accepted.
  t.equal(loadConfig({ env: mainnet }).node.rpcUrl, "http://127.0.0.1:8332", "mainnet's default");
  t.equal(loadConfig({ env: { ...mainnet, RUNIGUN_NODE_RPC_URL: "http://[::1]:8332" } }).node.rpcUrl, "http://[::1]:8332");
  t.equal(loadConfig({ env: { ...mainnet, RUNIGUN_NODE_RPC_URL: "http://localhost:8332" } }).node.rpcUrl, "http://localhost:8332");
  const vpn = loadConfig({ env: { ...mainnet, RUNIGUN_ADMIN_VPN_CIDRS: "10.8.0.0/24", RUNIGUN_NODE_RPC_URL: "http://10.8.0.3:8332", RUNIGUN_DEPOSITS_ZMQ: "tcp://10.8.0.3:28332" } });
  t.same([vpn.node.rpcUrl, vpn.deposits.zmq], ["http://10.8.0.3:8332", "tcp://10.8.0.3:28332"]);
  t.throws(() => loadConfig({ env: { ...mainnet, RUNIGUN_ADMIN_VPN_CIDRS: "10.8.0.0/24", RUNIGUN_NODE_RPC_URL: "http://10.9.0.3:8332" } }), /node\.rpcUrl: 10\.9\.0\.3/, "another VPN's address");
  t.equal(loadConfig({ env: { ...mainnet, RUNIGUN_DEPOSITS_ZMQ: "ipc:///run/bitcoind/zmq" } }).deposits.zmq, "ipc:///run/bitcoind/zmq");

  // Regtest's nodes are the tests' own: not checked.
  t.equal(loadConfig({ env: { RUNIGUN_NODE_RPC_URL: "http://203.0.113.5:18443" } }).node.rpcUrl, "http://203.0.113.5:18443");
});

t.test("plain http:// to the Bot API only on this host, on every network: the bot token is in each request's path", async (t) => {
  // The reviewer's probe.
  t.throws(() => loadConfig({ env: { ...mainnet, RUNIGUN_TELEGRAM_API_ROOT: "http://203.0.113.9:8081" } }), {
    code: "config_invalid",
    message: /^config key telegram\.apiRoot: plain http:\/\/ to 203\.0\.113\.9 would send the bot token in clear .*use https:\/\/, or http:\/\/ only to a Bot API server on this host .*\(env RUNIGUN_TELEGRAM_API_ROOT\)$/,
  });
  t.throws(() => loadConfig({ env: { RUNIGUN_TELEGRAM_API_ROOT: "http://10.8.0.9:8081", RUNIGUN_ADMIN_VPN_CIDRS: "10.8.0.0/24" } }), /telegram\.apiRoot/, "regtest too, and a VPN address too");
  t.equal(loadConfig({ env: { ...mainnet, RUNIGUN_TELEGRAM_API_ROOT: "https://203.0.113.9:8081" } }).telegram.apiRoot, "https://203.0.113.9:8081");
  t.equal(loadConfig({ env: { ...mainnet, RUNIGUN_TELEGRAM_API_ROOT: "http://127.0.0.1:8081" } }).telegram.apiRoot, "http://127.0.0.1:8081", "a local Bot API server");
  t.equal(loadConfig({ env: mainnet }).telegram.apiRoot, "https://api.telegram.org");
});

t.test("admin.vpnCidrs: private ranges only", async (t) => {
  // The reviewer's probe: a public /8 made a public admin.host acceptable.
  t.throws(() => loadConfig({ env: { ...mainnet, RUNIGUN_ADMIN_HOST: "8.8.8.8", RUNIGUN_ADMIN_VPN_CIDRS: "8.0.0.0/8" } }), {
    code: "config_invalid",
    message: /^config key admin\.vpnCidrs: "8\.0\.0\.0\/8" is not a private range; a VPN's addresses are inside 10\.0\.0\.0\/8, 172\.16\.0\.0\/12, 192\.168\.0\.0\/16, 100\.64\.0\.0\/10 \(or loopback\), and a public range would .*\(env RUNIGUN_ADMIN_VPN_CIDRS\)$/,
  });
  for (const cidr of ["203.0.113.0/24", "172.32.0.0/16", "172.0.0.0/8", "100.128.0.0/16", "192.169.0.0/16", "11.0.0.0/8"]) {
    t.throws(() => loadConfig({ env: { RUNIGUN_ADMIN_VPN_CIDRS: cidr } }), /is not a private range/, `${cidr} refused (on regtest too)`);
  }
  // Wider than a private range, though it starts inside one.
  t.throws(() => loadConfig({ env: { RUNIGUN_ADMIN_VPN_CIDRS: "192.168.0.0/15" } }), /"192\.168\.0\.0\/15" is not a private range/);
  const ok = loadConfig({ env: { ...mainnet, RUNIGUN_ADMIN_VPN_CIDRS: "10.0.0.0/8,172.20.0.0/16,192.168.1.0/24,100.64.0.0/10,127.0.0.0/8", RUNIGUN_ADMIN_HOST: "100.100.1.2" } });
  t.equal(ok.admin.host, "100.100.1.2", "a Tailscale address inside 100.64.0.0/10");
  t.equal(ok.admin.vpnCidrs.length, 5);
});
