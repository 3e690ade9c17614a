// How checkLinks words a refused node address (found by the security re-review): a URL with no host (unix:/…, or
// user:password@127.0.0.1:8332 without its scheme) was called "  is a name"; an https:// node was refused as "plain
// HTTP … in clear"; the example was mainnet's port on every network; and a node in a docker container (the usual
// reason for a name) was not said. The URL itself is never echoed: it may hold the RPC password.
import t from "tap";
import { loadConfig } from "../../src/config.ts";

const on = (network: string, env: Record<string, string>) => ({ env: { RUNIGUN_NETWORK: network, RUNIGUN_DATA_DIR: `/var/lib/runigun/${network}`, ...env } });

t.test("a URL with no host is said to have none, and its password is not echoed", async (t) => {
  for (const url of ["unix:/run/bitcoind/rpc.sock", "rpcuser:hunter2pw@127.0.0.1:8332", "127.0.0.1:8332"]) {
    const err = t.throws(() => loadConfig(on("mainnet", { RUNIGUN_NODE_RPC_URL: url })), {
      code: "config_invalid", message: /^config key node\.rpcUrl: not a URL with a host, like http:\/\/127\.0\.0\.1:8332 \(env RUNIGUN_NODE_RPC_URL\)$/,
    }, url) as Error;
    t.notMatch(err.message, /is a name|hunter2pw|rpc\.sock/);
  }
  t.throws(() => loadConfig(on("mainnet", { RUNIGUN_DEPOSITS_ZMQ: "tcp:///x" })), { message: /^config key deposits\.zmq: not a URL with a host, like tcp:\/\/127\.0\.0\.1:28332 \(env RUNIGUN_DEPOSITS_ZMQ\)$/ });
  t.equal(loadConfig(on("mainnet", { RUNIGUN_DEPOSITS_ZMQ: "ipc:///run/bitcoind/zmq" })).deposits.zmq, "ipc:///run/bitcoind/zmq", "ipc:// has no host and needs none");
});

t.test("https:// to a node outside this host and the VPN: refused for where the credentials go, not as plain HTTP", async (t) => {
  const err = t.throws(() => loadConfig(on("mainnet", { RUNIGUN_NODE_RPC_URL: "https://u:hunter2pw@203.0.113.5:8443" })), {
    message: /^config key node\.rpcUrl: 203\.0\.113\.5 is neither loopback nor inside admin\.vpnCidrs; on mainnet every RPC call carries the node's user and password .*over https:\/\/ they would still reach a host outside this machine and the VPN\. /,
  }) as Error;
  t.notMatch(err.message, /plain HTTP|in clear|hunter2pw/);
  t.throws(() => loadConfig(on("mainnet", { RUNIGUN_NODE_RPC_URL: "http://203.0.113.5:8332" })), /bitcoind's RPC is plain HTTP.* in clear/, "plain http:// is still said to be in clear");
  t.equal(loadConfig(on("mainnet", { RUNIGUN_NODE_RPC_URL: "https://127.0.0.1:8443" })).node.rpcUrl, "https://127.0.0.1:8443", "a TLS proxy on this host");
});

t.test("the example names the network's own RPC port, and a node in a docker container is said", async (t) => {
  for (const [network, port] of [["mainnet", 8332], ["signet", 38332]] as const) {
    t.throws(() => loadConfig(on(network, { RUNIGUN_NODE_RPC_URL: "http://u:hunter2pw@bitcoind:1234" })), {
      message: new RegExp(`^config key node\\.rpcUrl: bitcoind is a name, not an address; on ${network} .*Give the node's IP address: on this host \\(http://127\\.0\\.0\\.1:${port}\\), or on your VPN with the VPN's range in admin\\.vpnCidrs; for a node in a container, its fixed address on the docker network, with that network's range in admin\\.vpnCidrs \\(env RUNIGUN_NODE_RPC_URL\\)$`),
    }, network);
    t.throws(() => loadConfig(on(network, { RUNIGUN_NODE_RPC_URL: "not a url" })), { message: new RegExp(`not a URL with a host, like http://127\\.0\\.0\\.1:${port} `) });
  }
  // What the clause says works: a docker network's range in admin.vpnCidrs, and the container's address.
  const docker = loadConfig(on("signet", { RUNIGUN_ADMIN_VPN_CIDRS: "172.18.0.0/16", RUNIGUN_NODE_RPC_URL: "http://172.18.0.2:38332", RUNIGUN_DEPOSITS_ZMQ: "tcp://172.18.0.2:28332" }));
  t.same([docker.node.rpcUrl, docker.deposits.zmq], ["http://172.18.0.2:38332", "tcp://172.18.0.2:28332"]);
});
