// The node actor: the one door to bitcoind and the only importer of its RPC client. Callers enqueue typed
// calls into a bounded mailbox; one nact actor drains it — a single call, or everything queued (up to
// batchMax) as one JSON-RPC batch — one round trip at a time. Only allowlisted methods pass; only calls
// that are safe to repeat are retried; while bitcoind is away the state is `unavailable`, calls wait
// (bounded) and resume when it answers again. Reads of engine state never come here.
import BitcoinCore from "bitcoin-core";
import type { Config } from "../config.ts";
import type { Logger } from "../log.ts";
import { btcNumberToSats, satsToBtcString } from "../domain/money.ts";
import { SetupError } from "../secrets.ts";
import type { ActorSystem, Ref } from "./runtime.ts";

export type NodeState = "starting" | "ready" | "unavailable";

/** Methods the engine may call, and whether repeating one after an unclear failure is harmless. */
const ALLOWED: Record<string, { safe: boolean }> = {
  getblockchaininfo: { safe: true }, getblockcount: { safe: true }, getblockhash: { safe: true }, getblockheader: { safe: true },
  getbalances: { safe: true }, getwalletinfo: { safe: true }, listwallets: { safe: true }, listsinceblock: { safe: true },
  gettransaction: { safe: true }, getaddressinfo: { safe: true }, estimatesmartfee: { safe: true },
  decoderawtransaction: { safe: true }, decodepsbt: { safe: true }, testmempoolaccept: { safe: true }, getmempoolentry: { safe: true },
  listunspent: { safe: true }, listdescriptors: { safe: true }, gettxout: { safe: true }, listtransactions: { safe: true },
  listlabels: { safe: true }, getaddressesbylabel: { safe: true }, getmempoolinfo: { safe: true },
  getreceivedbylabel: { safe: true }, getreceivedbyaddress: { safe: true },
  // A repeated getnewaddress or getrawchangeaddress only skips an address; a repeated sendrawtransaction of the same signed bytes
  // cannot pay twice; setlabel is idempotent.
  getnewaddress: { safe: true }, getrawchangeaddress: { safe: true }, sendrawtransaction: { safe: true }, setlabel: { safe: true },
  createwallet: { safe: false }, loadwallet: { safe: false },
  walletcreatefundedpsbt: { safe: false }, walletprocesspsbt: { safe: false }, finalizepsbt: { safe: true },
  psbtbumpfee: { safe: false }, lockunspent: { safe: false },
  walletpassphrase: { safe: false }, walletlock: { safe: true }, encryptwallet: { safe: false }, backupwallet: { safe: false },
};

export class NodeError extends Error {
  constructor(readonly code: number | string, message: string, readonly method: string) {
    super(message);
  }
}

export class NodeUnavailable extends Error {
  readonly code = "node_unavailable";
}

interface Call {
  method: string;
  params: unknown[];
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  /** performance.now() by which it fails: monotonic, so a step of the wall clock does not fail every waiting call. */
  deadline: number;
  attempts: number;
  /** Sent again once after bitcoind was found without the engine's wallet and it was loaded (see #rpcError). */
  reloaded?: boolean;
}

export interface NodeOptions {
  config: Config;
  log: Logger;
  system: ActorSystem;
  rpc: { url: string; user: string; password: string };
  /** How long a call may wait for bitcoind to come back before it fails (default 60 s). */
  maxWaitMs?: number;
  /** The wallet's passphrase: the wallet is encrypted with it at start and unlocked only inside `signing`. */
  walletPassphrase?: string;
  /** The node wallet's label of a deposit address handed out to a user (owner-label.ts; default: the user key). */
  ownerLabel?: (address: string, userKey: string) => string;
  /**
   * The user the owner index says the address was handed out to, if any. Without it, the deposit addresses an earlier
   * run left in the pool are not taken back at start: new ones are made.
   */
  ownerOf?: (address: string) => Promise<string | undefined>;
}

export interface NodeStats {
  state: NodeState;
  queue: number;
  calls: number;
  batches: number;
  roundTrips: number;
  errors: number;
  retries: number;
  unavailableSince?: number;
  lastError?: string;
  addressPool: number;
}

type RpcClient = { command(...args: unknown[]): Promise<unknown> };

export class NodeGateway {
  readonly #o: NodeOptions;
  readonly #client: RpcClient;
  readonly #log: Logger;
  readonly #ref: Ref<{ drain: true }>;
  #queue: Call[] = [];
  #draining = false;
  #state: NodeState = "starting";
  #pool: string[] = [];
  #refilling: Promise<void> | undefined;
  /** Addresses ever put in the pool: a caller waiting for a refill tells by it whether the refill made any. */
  #pooled = 0;
  #backoff = 100;
  #closed = false;
  #stopping: Promise<void> | undefined;
  /** The round trip on its way to bitcoind (stop waits for it before it locks the wallet). */
  #inFlight: Promise<void> | undefined;
  /** start() has the engine's wallet: from then on a call that finds it not loaded loads it again. */
  #hasWallet = false;
  /** A call found bitcoind without the engine's wallet (restarted without it): loaded before the next round trip. */
  #walletMissing = false;
  /** Why bitcoind refused to load it: the node stays `unavailable` until a load succeeds. */
  #walletError: string | undefined;
  /** Signings run one at a time: one's lock must not land in the middle of another. */
  #signingTurn: Promise<void> = Promise.resolve();
  /** A signing unlocked the wallet and no lock has been answered since. */
  #mayBeUnlocked = false;
  /** The late re-lock after an unlock that got no answer (see #relockLater). */
  #relock: Promise<void> | undefined;
  /** The change address of every withdrawal quote's dry run (see soloFee). */
  #dryRunChange: string | undefined;
  readonly stats: Omit<NodeStats, "state" | "queue" | "addressPool"> = { calls: 0, batches: 0, roundTrips: 0, errors: 0, retries: 0 };

  constructor(o: NodeOptions) {
    this.#o = o;
    this.#log = o.log;
    const Client = BitcoinCore as unknown as new (opts: object) => RpcClient;
    this.#client = new Client({
      host: o.rpc.url, username: o.rpc.user, password: o.rpc.password, wallet: o.config.node.wallet,
      timeout: o.config.node.timeoutMs, logger: silentRpcLogger,
    });
    this.#ref = o.system.spawn<null, { drain: true }>("node", null, async (s) => {
      await this.#drainOnce();
      return s;
    }, { onCrash: (r) => (this.#log.error({ err: r.error }, "node actor crashed; resuming"), "resume") });
  }

  get state(): NodeState {
    return this.#state;
  }

  snapshot(): NodeStats {
    return { ...this.stats, state: this.#state, queue: this.#queue.length, addressPool: this.#pool.length };
  }

  /**
   * Loads or creates the engine's descriptor wallet, then fills the address pool. `mayCreate`: the books are new (no
   * deposit scan ever ran), so a missing wallet is created; otherwise it must be the one the books were kept with.
   */
  async start(o: { mayCreate?: boolean } = {}): Promise<void> {
    const name = this.#o.config.node.wallet;
    const network = this.#o.config.network;
    // Where real money is, the wallet's keys are encrypted and usable only inside `signing`: a wallet left in clear
    // would sign for anyone who reads bitcoind's wallet directory or reaches its RPC port.
    if (network !== "regtest" && !this.#o.walletPassphrase) {
      throw new SetupError(`no node wallet passphrase on ${network}: the engine's bitcoind wallet "${name}" must be encrypted and unlocked only to sign. Set RUNIGUN_NODE_WALLET_PASSPHRASE_FILE to a file (mode 600) holding its passphrase; a wallet not encrypted yet is encrypted with it at this start (keep a copy of the passphrase offline)`);
    }
    // Before any wallet is loaded or created: an engine on the wrong chain hands out addresses of another network, and
    // regtest settings against a mainnet node would skip every mainnet check.
    const chain = await this.blockchainInfo();
    if (chain.chain !== CHAIN_OF[network]) {
      const theirs = Object.entries(CHAIN_OF).find(([, c]) => c === chain.chain)?.[0];
      throw new SetupError(`bitcoind is on chain "${chain.chain}" but this engine is configured for ${network} (it expects "${CHAIN_OF[network]}"): ${theirs ? `set RUNIGUN_NETWORK=${theirs} if that node is the one meant, or ` : `RuniGun runs on regtest, signet and mainnet only; `}point node.rpcUrl (RUNIGUN_NODE_RPC_URL) at a ${network} node`);
    }
    // regtest's clock is whatever the tests mine. A node still catching up has an old tip: it says nothing of the host's
    // clock being ahead.
    if (network !== "regtest") {
      const skew = clockSkew(Date.now(), chain.mediantime, chain.initialblockdownload);
      if (skew) this.#log.error({ alert: true, skewMinutes: Math.round(skew.ms / 60_000), direction: skew.direction }, skew.message);
    }
    const loaded = await this.call<string[]>("listwallets", []);
    if (!loaded.includes(name)) {
      try {
        // load_on_startup: bitcoind loads it itself when it starts again (a service manager restarting it knows nothing of wallets).
        await this.call("loadwallet", [name, true]);
      } catch (e) {
        const code = (e as NodeError).code;
        if (code !== -18 && code !== -4) throw e;
        if (o.mayCreate === false) {
          // A new, empty wallet would issue addresses nobody funded and scan past the deposits to the real one's.
          throw new NodeError("wallet_missing", `bitcoind could not load the engine's wallet "${name}" (${(e as Error).message}); this store already has books, so no new wallet is created. Check node.wallet and bitcoind's -walletdir, then start again`, "loadwallet");
        }
        await this.call("createwallet", [name, false, false, "", false, true, true]);
        this.#log.info({ wallet: name }, "created the engine's descriptor wallet");
      }
    }
    this.#hasWallet = true;
    // unlocked_until is there only for an encrypted wallet.
    const encrypted = (await this.call<{ unlocked_until?: number }>("getwalletinfo")).unlocked_until !== undefined;
    if (!this.#o.walletPassphrase) {
      // Every signing would fail, once per block, with nothing said at start.
      if (encrypted) throw new SetupError(`the node wallet "${name}" is encrypted but no passphrase is configured, so nothing could be signed: set RUNIGUN_NODE_WALLET_PASSPHRASE_FILE to a file (mode 600) holding the passphrase it was encrypted with`);
    } else if (!encrypted) {
      // Not encrypted yet: encrypt it now; from here on its keys are only usable inside `signing`.
      await this.call("encryptwallet", [this.#o.walletPassphrase]);
      this.#log.warn({ wallet: name }, "encrypted the engine's wallet with the configured passphrase");
    } else {
      // A wrong passphrase would otherwise be found by the first payout, and by every one after it, quietly. Checked by
      // an unlock as short as bitcoind allows, in a signing's turn and with its lock right after: the wallet is locked
      // when the start goes on (also if an operator had left it unlocked).
      try {
        await this.#unlocked(1, "after checking the passphrase", async () => undefined);
      } catch (e) {
        if ((e as NodeError).code !== -14) throw e;
        throw new SetupError(`wrong passphrase for node wallet "${name}" (RUNIGUN_NODE_WALLET_PASSPHRASE[_FILE]): bitcoind refused it, so no payout could be signed. Set the passphrase the wallet was encrypted with (the engine trims spaces and line ends around it: a wallet encrypted with such a passphrase needs bitcoin-cli -rpcwallet=${name} walletpassphrasechange "<old>" "<trimmed>")`);
      }
    }
    void this.#refill(true);
  }

  /** Refuses further calls, except locks of the wallet: one is sent here if a signing may have left it unlocked. */
  stop(): Promise<void> {
    return (this.#stopping ??= this.#stop());
  }

  async #stop(): Promise<void> {
    this.#closed = true;
    const locks: Call[] = [];
    for (const c of this.#queue.splice(0)) {
      if (c.method === "walletlock") locks.push(c);
      else c.reject(new NodeUnavailable("the engine is shutting down"));
    }
    if (this.#mayBeUnlocked || locks.length > 0) {
      // What is on its way ends first: an unlock among it could land after a lock sent now.
      await this.#inFlight;
      const locked = this.#enqueue("walletlock", [], true);
      for (const c of locks) locked.then(c.resolve, c.reject);
      await this.#locked(locked, "while stopping");
    }
    await this.#relock;
  }

  /** Any allowlisted RPC, through the mailbox. */
  call<T = unknown>(method: string, params: unknown[] = []): Promise<T> {
    return this.#enqueue<T>(method, params, false);
  }

  /**
   * `first`: ahead of everything queued and never refused for a full queue (locking the wallet again). After stop() a
   * lock still goes, straight to bitcoind: the mailbox no longer drains, and the wallet must not stay unlocked.
   */
  #enqueue<T>(method: string, params: unknown[], first: boolean): Promise<T> {
    if (!ALLOWED[method]) return Promise.reject(new NodeError("not_allowed", `${method} is not an RPC the engine may call`, method));
    if (this.#closed) return method === "walletlock" ? this.#direct<T>(method, params) : Promise.reject(new NodeUnavailable("the engine is shutting down"));
    if (!first && this.#queue.length >= this.#o.config.node.maxQueue) {
      return Promise.reject(new NodeUnavailable(`the node's queue is full (${this.#queue.length} calls waiting); try again shortly`));
    }
    return new Promise<T>((resolve, reject) => {
      const c: Call = { method, params, resolve: resolve as (v: unknown) => void, reject, deadline: performance.now() + (this.#o.maxWaitMs ?? 60_000), attempts: 0 };
      if (first) this.#queue.unshift(c);
      else this.#queue.push(c);
      this.stats.calls++;
      this.#kick();
    });
  }

  rawCall<T = unknown>(method: string, params: unknown[]): Promise<T> {
    if (method === "walletpassphrase" || method === "encryptwallet") {
      return Promise.reject(new NodeError("not_allowed", `${method} is only used inside the node actor (see signing)`, method));
    }
    return this.call<T>(method, params);
  }

  /**
   * Runs `sign` with the wallet unlocked for a few seconds, and locks it again right after, whatever happens.
   * Signings run one at a time, after the late re-lock of an earlier unlock, so the unlocked window is never shared.
   */
  async signing<T>(sign: () => Promise<T>): Promise<T> {
    if (!this.#o.walletPassphrase) return sign();
    return this.#unlocked(30, "after signing", sign);
  }

  /** `run` with the wallet unlocked for at most `seconds`, in the signings' turn, and locked again right after. */
  async #unlocked<T>(seconds: number, when: string, run: () => Promise<T>): Promise<T> {
    const previous = this.#signingTurn;
    let done!: () => void;
    this.#signingTurn = new Promise<void>((r) => (done = r));
    try {
      await previous;
      // The late re-lock of an earlier unlock (see #relockLater) goes first: it would otherwise land in the middle of this one.
      await this.#relock;
      try {
        this.#mayBeUnlocked = true;
        // Inside the try: an unlock that timed out here may still have been done by the node, and is locked again.
        await this.call("walletpassphrase", [this.#o.walletPassphrase, seconds]);
        return await run();
      } finally {
        await this.#lock(when);
      }
    } finally {
      done();
    }
  }

  #lock(when: string): Promise<void> {
    return this.#locked(this.#enqueue("walletlock", [], true), when);
  }

  #locked(lock: Promise<unknown>, when: string): Promise<void> {
    return lock.then(
      () => void (this.#mayBeUnlocked = false),
      (e: unknown) => this.#log.error({ err: e }, `could not lock the wallet ${when}; it locks itself at most 30 s after the unlock`),
    );
  }

  /**
   * An unlock without an answer may still be carried out after the signing's own lock (bitcoind runs requests on
   * several threads): locked once more when it must have been, well before its own 30 s. Set inside the round trip
   * that failed, so the next signing and stop() find it and wait for it.
   */
  #relockLater(): void {
    const relock: Promise<void> = new Promise((r) => setTimeout(r, this.#o.config.node.timeoutMs))
      .then(() => this.#lock("after an unlock that got no answer"))
      .finally(() => void (this.#relock === relock && (this.#relock = undefined)));
    this.#relock = relock;
  }

  /** A call sent at once, outside the mailbox: only a lock after stop(), when the mailbox no longer drains. */
  #direct<T>(method: string, params: unknown[]): Promise<T> {
    this.stats.calls++;
    this.stats.roundTrips++;
    return withTimeout(this.#client.command(method, ...params), this.#o.config.node.timeoutMs + 1000).catch((e: unknown) => {
      throw new NodeError((e as { code?: number | string }).code ?? "transport", `${method} failed: ${(e as Error).message}`, method);
    }) as Promise<T>;
  }

  // --- typed calls ---

  blockchainInfo() {
    return this.call<{ chain: string; blocks: number; headers: number; bestblockhash: string; time?: number; mediantime: number; initialblockdownload: boolean }>("getblockchaininfo");
  }

  async balances(): Promise<{ trusted: bigint; untrustedPending: bigint; immature: bigint }> {
    const b = await this.call<{ mine: { trusted: number; untrusted_pending: number; immature: number } }>("getbalances");
    return { trusted: btcNumberToSats(b.mine.trusted), untrustedPending: btcNumberToSats(b.mine.untrusted_pending), immature: btcNumberToSats(b.mine.immature) };
  }

  /** n fresh bech32 addresses; queued together, they go out as one batch. */
  newAddresses(n: number, label: string): Promise<string[]> {
    return Promise.all(Array.from({ length: n }, () => this.call<string>("getnewaddress", [label, "bech32"])));
  }

  /**
   * A deposit address from the pool (refilled in the background), labelled with its owner (sealed: owner-label.ts),
   * ahead of every call queued (a refill's hundreds of getnewaddress): an address the node's wallet still labels as
   * the pool's was, but for that moment, never handed out, and a start takes those back (#reclaim). Not awaited:
   * `/deposit` is answered from the pool in a fraction of a millisecond, where the label's round trip would wait for
   * the batch in flight (tens of milliseconds during a refill).
   */
  async takeDepositAddress(userKey: string): Promise<string> {
    // A refill is sized when it starts, and every caller that finds the pool empty meanwhile waits for it: in a burst
    // there are more of them than it makes. Those left without one wait for the next refill, as long as refills make
    // addresses and within the time a call waits for bitcoind; a refill that made none (bitcoind away, or refusing)
    // ends it. The shift below is synchronous: no address goes to two callers.
    const until = performance.now() + (this.#o.maxWaitMs ?? 60_000);
    while (this.#pool.length === 0 && !this.#closed) {
      const before = this.#pooled;
      await this.#refill();
      if (this.#pooled === before || performance.now() >= until) break;
    }
    const address = this.#pool.shift();
    if (!address) throw new NodeUnavailable("no deposit address could be made");
    if (this.#pool.length < this.#o.config.node.addressPoolSize / 2) void this.#refill();
    this.#label(address, this.#o.ownerLabel?.(address, userKey) ?? userKey);
    return address;
  }

  /**
   * Sets a deposit address's owner label, ahead of the calls queued, and again (backing off to a minute) until bitcoind
   * takes it: one that never landed (bitcoind away longer than `maxWaitMs`) leaves the address labelled as the pool's,
   * and after a restore that lost its owner record a start would hand it to someone else. A start labels those the owner
   * index knows (#reclaim); this covers the run itself.
   */
  #label(address: string, label: string, delayMs = 1000, tries = 1): void {
    this.#enqueue("setlabel", [address, label], true).then(
      () => {
        if (tries > 1) this.#log.info({ tries }, "a deposit address's owner label reached the node");
      },
      (e: unknown) => {
        if (this.#closed) return void this.#log.warn({ err: e }, "could not label a deposit address with its owner; the next start does");
        this.#log.warn({ err: e, retryInS: delayMs / 1000 }, "could not label a deposit address with its owner; trying again");
        setTimeout(() => this.#label(address, label, Math.min(delayMs * 2, 60_000), tries + 1), delayMs).unref();
      },
    );
  }

  /**
   * Whether bitcoind takes the address (its checksum and format), and whether the node's wallet owns it (a deposit
   * address handed out, or a change address): one call, `getaddressinfo`, which refuses an invalid address (-5).
   */
  async addressInfo(address: string): Promise<{ valid: false } | { valid: true; mine: boolean }> {
    try {
      return { valid: true, mine: (await this.call<{ ismine: boolean }>("getaddressinfo", [address])).ismine };
    } catch (e) {
      if ((e as NodeError).code === -5) return { valid: false };
      throw e;
    }
  }

  listSinceBlock(blockhash: string | undefined, targetConfirmations: number) {
    return this.call<ListSinceBlock>("listsinceblock", [blockhash ?? "", targetConfirmations, false, true]);
  }

  /**
   * sat/vB for the target; without an estimate (regtest, a node that has not watched the mempool for long) the
   * configured fallback. Never below the node's mempool minimum fee (a full mempool raises it): a batch under it is
   * refused at build time. Capped at `withdrawals.maxFeeRateSatVb`, after that floor: with the floor above the cap the
   * rate is the cap, and the payout actor, reading the same floor (feeFloorOf), funds nothing while the rate is below
   * it (payout.ts, flush: the payouts stay queued, operators are alerted once), rather than paying more than operators
   * allowed.
   */
  async estimateFeeRate(confTarget: number): Promise<bigint> {
    const w = this.#o.config.withdrawals;
    const [r, pool] = await Promise.all([
      this.call<{ feerate?: number; errors?: string[] }>("estimatesmartfee", [confTarget]),
      this.call<MempoolInfo>("getmempoolinfo", []).catch(() => undefined),
    ]);
    // BTC/kvB → sat/vB, rounded up so a quote never undershoots.
    const perVb = (btcPerKvb: number) => (btcNumberToSats(btcPerKvb) + 999n) / 1000n;
    let rate = r.feerate === undefined ? BigInt(w.fallbackFeeRateSatVb) : perVb(r.feerate);
    const floor = (feeFloorOf(pool).satPerKvb + 999n) / 1000n;
    if (rate < floor) rate = floor;
    const max = BigInt(w.maxFeeRateSatVb);
    return rate < 1n ? 1n : rate > max ? max : rate;
  }

  /**
   * What the node's wallet would pay now to send `sats` to `address` alone at `rate` sat/vB, with the options a payout
   * batch is funded with: a dry run (nothing is signed, locked or broadcast). Coins as deep as a deposit must be first,
   * as a batch takes them (payout.ts, flush); if those are short (the change of the last batch not that deep yet),
   * younger ones too, to price it. `too_large`: the coins it needs do not fit one standard transaction; undefined: the
   * wallet cannot fund it now.
   */
  async soloFee(address: string, sats: bigint, rate: bigint): Promise<bigint | "too_large" | undefined> {
    // One change address for every dry run, of the type a batch's change is: left to itself, each funding takes a new
    // one from the wallet's change chain, and a quote per /withdraw would walk that chain past what a restored copy of the
    // wallet looks ahead for.
    this.#dryRunChange ??= await this.call<string>("getrawchangeaddress", ["bech32"]);
    for (const minconf of new Set([this.#o.config.deposits.confirmations, 0])) {
      try {
        const funded = await this.call<{ fee: number }>("walletcreatefundedpsbt", [
          [], [{ [address]: satsToBtcString(sats) }], 0, { fee_rate: Number(rate), replaceable: true, changeAddress: this.#dryRunChange, minconf },
        ]);
        return btcNumberToSats(funded.fee);
      } catch (e) {
        const err = e as { code?: number; message?: string };
        if (/maximum weight|too large/i.test(err.message ?? "")) return "too_large";
        if (err.code !== -4 && err.code !== -6) throw e;
      }
    }
    return undefined;
  }

  getTransaction(txid: string) {
    return this.call<{ confirmations: number; blockhash?: string; replaced_by_txid?: string; walletconflicts?: string[] }>("gettransaction", [txid]);
  }

  blockHash(height: number) {
    return this.call<string>("getblockhash", [height]);
  }

  // --- the mailbox ---

  #kick(): void {
    if (this.#draining) return;
    this.#draining = true;
    this.#o.system.tell(this.#ref, { drain: true });
  }

  async #drainOnce(): Promise<void> {
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        this.#expire();
        if (this.#queue.length === 0) break;
        if (this.#state === "unavailable") {
          await new Promise((r) => setTimeout(r, this.#backoff));
          // Never past half of what a call waits: calls that expire during the wait are dropped unsent, and with nothing
          // sent bitcoind's return would never be seen (a lone retried call, waitForNodeMs under the cap).
          this.#backoff = Math.min(this.#backoff * 2, 5000, Math.max(50, (this.#o.maxWaitMs ?? 60_000) / 2));
          this.#expire();
          if (this.#queue.length === 0 || this.#closed) break;
        }
        if (this.#walletMissing) {
          await (this.#inFlight = this.#loadWallet());
          if (this.#closed) break;
        }
        // An unlock goes in a round trip of its own, never in a batch behind the calls queued before it (a refill's
        // hundreds of getnewaddress): the signing waiting for it has its answer as soon as bitcoind has done it, and a
        // timeout of such a batch is not also the unlock's (a lost unlock fails the signing and is re-locked late).
        const unlock = this.#queue.findIndex((c) => c.method === "walletpassphrase");
        const batch = this.#queue.splice(0, unlock === 0 ? 1 : unlock > 0 ? Math.min(unlock, this.#o.config.node.batchMax) : this.#o.config.node.batchMax);
        await (this.#inFlight = this.#send(batch));
      }
    } finally {
      this.#draining = false;
      // Calls sent again by a round trip that ended after stop(): nothing will send them now.
      if (this.#closed) for (const c of this.#queue.splice(0)) c.reject(new NodeUnavailable("the engine is shutting down"));
      if (this.#queue.length > 0 && !this.#closed) this.#kick();
    }
  }

  async #send(batch: Call[]): Promise<void> {
    const again: Call[] = [];
    await this.#roundTrip(batch, again);
    // Ahead of what was queued meanwhile, in their order: they were sent before it.
    this.#queue.unshift(...again);
  }

  async #roundTrip(batch: Call[], again: Call[]): Promise<void> {
    this.stats.roundTrips++;
    if (batch.length > 1) this.stats.batches++;
    let results: unknown[];
    try {
      const request = batch.length === 1
        ? this.#client.command(batch[0]!.method, ...batch[0]!.params).then((r) => [r])
        : this.#client.command(batch.map((c) => ({ method: c.method, parameters: c.params }))) as Promise<unknown[]>;
      results = await withTimeout(request, this.#o.config.node.timeoutMs + 1000);
    } catch (e) {
      const rpcCode = (e as { code?: unknown }).code;
      if (batch.length === 1 && typeof rpcCode === "number" && rpcCode < 0) {
        // A single call's JSON-RPC error comes back as a rejection: bitcoind answered, the call failed.
        this.#rpcError(batch[0]!, rpcCode, (e as Error).message, again);
        return;
      }
      // The whole round trip failed: bitcoind unreachable, or it timed out.
      this.#transportFailure(batch, e);
      return;
    }
    if (this.#state !== "ready") this.#markReady();
    batch.forEach((c, i) => {
      const r = results[i];
      if (r instanceof Error) this.#rpcError(c, (r as { code?: number }).code, r.message, again);
      else c.resolve(r);
    });
  }

  /** `again`: calls to send once more, first (bitcoind was found without the engine's wallet). */
  #rpcError(c: Call, code: number | undefined, message: string, again: Call[]): void {
    if (code === -28) {
      // Still warming up (after a restart): bitcoind ran nothing, so any call waits and goes again, with backoff.
      this.stats.lastError = message;
      this.#markUnavailable();
      this.#retry(c);
      return;
    }
    if (this.#state !== "ready") this.#markReady();
    if (code === -18 && this.#hasWallet && c.method !== "loadwallet" && c.method !== "createwallet") {
      // bitcoind has not loaded the engine's wallet (it was restarted, and the wallet was not flagged to load at its
      // start): the call did nothing. The wallet is loaded again before the next round trip, and the call goes once more.
      this.#walletMissing = true;
      if (!c.reloaded && this.#walletError === undefined) {
        c.reloaded = true;
        this.stats.retries++;
        again.push(c);
        return;
      }
      message = `${message}: bitcoind has not loaded the engine's wallet "${this.#o.config.node.wallet}"${this.#walletError ? ` and could not load it (${this.#walletError})` : ""}; check bitcoind's -walletdir and the wallet's files`;
    }
    this.stats.errors++;
    c.reject(new NodeError(code ?? "rpc", message, c.method));
  }

  /** One loadwallet of the engine's wallet, in the mailbox's turn (nothing else is on its way meanwhile). */
  async #loadWallet(): Promise<void> {
    const name = this.#o.config.node.wallet;
    this.stats.roundTrips++;
    try {
      // load_on_startup: bitcoind loads it itself at its next start.
      await withTimeout(this.#client.command("loadwallet", name, true), this.#o.config.node.timeoutMs + 1000);
    } catch (e) {
      const code = (e as { code?: unknown }).code, message = (e as Error).message;
      if (typeof code !== "number" || code >= 0) return this.#transportFailure([], e);
      // -35: loaded meanwhile (by an operator). "Already loading": a load that timed out here is still under way.
      if (code !== -35) {
        this.stats.errors++;
        this.stats.lastError = message;
        if (/already loading/i.test(message)) return this.#markUnavailable();
        const first = this.#walletError === undefined;
        this.#walletError = message;
        this.#markUnavailable(false);
        if (first) {
          this.#log.error({ alert: true, wallet: name, lastError: message }, "bitcoind has not loaded the engine's wallet and could not load it: deposits and payouts wait. Check bitcoind's -walletdir and the wallet's files, then load it (`bitcoin-cli loadwallet <name> true`) or restart bitcoind");
        }
        return;
      }
    }
    const after = this.#walletError === undefined ? "bitcoind had not loaded the engine's wallet (restarted without it?): loaded it again" : "the engine's wallet is loaded again: deposits and payouts resume";
    this.#walletMissing = false;
    this.#walletError = undefined;
    this.#log.warn({ wallet: name }, after);
    this.#markReady();
  }

  #transportFailure(batch: Call[], e: unknown): void {
    const code = (e as { code?: string }).code ?? "";
    const refused = ["ECONNREFUSED", "ECONNRESET", "EPIPE", "EHOSTUNREACH"].includes(code) || /ECONNREFUSED|socket hang up/.test(String(e));
    const status = (e as { code?: number }).code;
    this.stats.errors++;
    this.stats.lastError = String((e as Error).message ?? e);
    if (refused || status === 503 || status === 401) this.#markUnavailable();
    for (const c of batch) {
      // A refused connection never reached bitcoind: any call may go again. A timeout is ambiguous: only safe ones.
      // A refused call waits for bitcoind until its deadline; a timed-out safe call gets `retries` more tries.
      if (refused || (ALLOWED[c.method]!.safe && c.attempts < this.#o.config.node.retries)) this.#retry(c);
      else {
        // An unlock that may have reached bitcoind: its answer is lost, not the unlock.
        if (c.method === "walletpassphrase") this.#relockLater();
        c.reject(new NodeError(code || "transport", `${c.method} failed: ${this.stats.lastError}`, c.method));
      }
    }
  }

  #retry(c: Call): void {
    c.attempts++;
    this.stats.retries++;
    this.#queue.push(c);
  }

  #expire(): void {
    const now = performance.now();
    const keep: Call[] = [];
    for (const c of this.#queue) {
      if (c.deadline < now) c.reject(new NodeUnavailable(`bitcoind did not answer ${c.method} in time (it is ${this.#state})`));
      else keep.push(c);
    }
    this.#queue = keep;
  }

  /** `alert`: false when the caller says why itself. */
  #markUnavailable(alert = true): void {
    if (this.#state === "unavailable") return;
    this.#state = "unavailable";
    this.stats.unavailableSince = Date.now();
    if (alert) this.#log.error({ alert: true, lastError: this.stats.lastError }, "bitcoind is unavailable; money-moving work waits for it");
  }

  #markReady(): void {
    // bitcoind answers, but without the engine's wallet no deposit is seen and no payout signed.
    if (this.#walletError !== undefined) return;
    const was = this.#state;
    this.#state = "ready";
    this.#backoff = 100;
    delete this.stats.unavailableSince;
    if (was === "unavailable") this.#log.info("bitcoind is back");
  }

  /** `reclaim` (at start): the addresses an earlier run left in the pool first (see #reclaim), then new ones for the rest. */
  #refill(reclaim = false): Promise<void> {
    if (this.#refilling) return this.#refilling;
    const fill = async () => {
      const want = this.#o.config.node.addressPoolSize - this.#pool.length;
      if (want <= 0 && this.#pool.length > 0) return;
      this.#put(await this.newAddresses(Math.max(1, want), POOL_LABEL));
    };
    // Without anything to take back, the new addresses are queued at once (before any call made after this one).
    this.#refilling = (reclaim && this.#o.ownerOf
      ? this.#reclaim().catch((e: unknown) => this.#log.warn({ err: e }, "could not take back the deposit addresses an earlier run left in the pool; new ones are made")).then(fill)
      : fill())
      .catch((e: unknown) => this.#log.warn({ err: e }, "could not refill the deposit address pool"))
      .finally(() => (this.#refilling = undefined));
    return this.#refilling;
  }

  /** Settles when the pool's refill under way, if any, has ended (never rejects; tests wait for the pool by it). */
  refilled(): Promise<void> {
    return this.#refilling ?? Promise.resolve();
  }

  #put(addresses: string[]): void {
    this.#pool.push(...addresses);
    this.#pooled += addresses.length;
  }

  /**
   * The deposit addresses an earlier run left in the pool (still labelled POOL_LABEL), up to addressPoolSize, taken back
   * before any new one is made: otherwise every start makes addressPoolSize new ones, and a few restarts walk the
   * wallet's chain past what a restored copy of it looks ahead for (README, restore). Never one the owner index knows
   * (handed out, its owner's label never set), nor one that received anything, even unconfirmed (a payment to an address
   * nobody owns must not be credited to a user given it later). Without the owner check, none. Addresses are checked
   * only as far as needed: a wallet may hold thousands labelled so, from releases that did not take them back. Those
   * left out lose the pool's label, so no later start asks about them again: one handed out gets its owner's, one paid
   * that nobody owns UNOWNED_PAID_LABEL (an operator finds it by that label).
   */
  async #reclaim(): Promise<void> {
    const ownerOf = this.#o.ownerOf;
    const size = this.#o.config.node.addressPoolSize;
    if (!ownerOf || size <= 0) return;
    let labelled: string[];
    try {
      labelled = Object.keys(await this.call<Record<string, unknown>>("getaddressesbylabel", [POOL_LABEL]));
    } catch (e) {
      if ((e as NodeError).code === -11) return; // no address has the label
      throw e;
    }
    if (labelled.length === 0) return;
    // One pass over the wallet's transactions for all of them: when none received anything (as a rule), no address is
    // asked about one by one (getreceivedbyaddress makes that pass for each).
    const anyPaid = (await this.call<number>("getreceivedbylabel", [POOL_LABEL, 0])) !== 0;
    const reused: string[] = [];
    let checked = 0, handedOut = 0, paidUnowned = 0;
    while (reused.length < size && checked < labelled.length) {
      const batch = labelled.slice(checked, checked + size - reused.length);
      checked += batch.length;
      const owners = await Promise.all(batch.map((a) => ownerOf(a)));
      const free = batch.filter((_, i) => owners[i] === undefined);
      // Queued together: they go out as one JSON-RPC batch (or a few).
      const paid = anyPaid ? await Promise.all(free.map((a) => this.call<number>("getreceivedbyaddress", [a, 0]))) : [];
      const taken = free.filter((_, i) => !anyPaid || paid[i] === 0);
      reused.push(...taken);
      // The rest lose the pool's label: the owner's (sealed), or UNOWNED_PAID_LABEL for one paid that nobody owns.
      const relabel: Array<[string, string]> = [
        ...batch.flatMap((a, i): Array<[string, string]> => (owners[i] === undefined ? [] : [[a, this.#o.ownerLabel?.(a, owners[i]!) ?? owners[i]!]])),
        ...free.filter((a) => !taken.includes(a)).map((a): [string, string] => [a, UNOWNED_PAID_LABEL]),
      ];
      await Promise.all(relabel.map((args) => this.call("setlabel", args)));
      handedOut += batch.length - free.length;
      paidUnowned += free.length - taken.length;
    }
    this.#put(reused);
    this.#log.info({ reused: reused.length, checked }, "deposit addresses an earlier run left in the pool are used again");
    if (handedOut > 0) this.#log.warn({ addresses: handedOut }, "deposit addresses handed out whose owner label had not reached the node (still labelled as the pool's) are labelled with their owners now");
    if (paidUnowned > 0) this.#log.warn({ addresses: paidUnowned, label: UNOWNED_PAID_LABEL }, `deposit addresses nobody was given received coins: never handed out; labelled "${UNOWNED_PAID_LABEL}" in the node wallet for an operator to look at`);
  }
}

/** The `chain` getblockchaininfo reports for each network the engine runs on (never "test" or "testnet4"). */
const CHAIN_OF: Record<Config["network"], string> = { regtest: "regtest", signet: "signet", mainnet: "main" };

/** How far the host clock may be behind the tip's median time, and ahead of it (that time trails the tip's by ~1 hour). */
export const CLOCK_BEHIND_MAX_MS = 2 * 3600_000;
export const CLOCK_AHEAD_MAX_MS = 6 * 3600_000;

/**
 * The host clock against the chain: TOTP codes and cheque expiry go by the host clock, and a clock hours off makes
 * codes fail and cheques expire early or late. `mediantime` in seconds (getblockchaininfo); `syncing`: the node is in
 * initial block download, its tip old, so a clock ahead of it is not a finding.
 */
export function clockSkew(nowMs: number, mediantime: number, syncing = false): { direction: "behind" | "ahead"; ms: number; message: string } | undefined {
  const ms = nowMs - mediantime * 1000;
  const hours = (x: number) => `${(Math.abs(x) / 3600_000).toFixed(1)} h`;
  const why = "TOTP codes and cheque expiry depend on it: set the host's clock (NTP)";
  if (-ms > CLOCK_BEHIND_MAX_MS) {
    return { direction: "behind", ms: -ms, message: `the host clock is ${hours(ms)} behind the median time of bitcoind's tip (a right clock never is by more than ${hours(CLOCK_BEHIND_MAX_MS)}: no block is stamped further ahead): ${why}` };
  }
  if (ms > CLOCK_AHEAD_MAX_MS && !syncing) {
    return { direction: "ahead", ms, message: `the host clock is ${hours(ms)} ahead of the median time of bitcoind's tip (more than ${hours(CLOCK_AHEAD_MAX_MS)}): ${why}, or see why bitcoind is that far behind the chain (no peers?)` };
  }
  return undefined;
}

/** What the engine reads of `getmempoolinfo`: BTC/kvB. */
export interface MempoolInfo {
  mempoolminfee?: number;
  minrelaytxfee?: number;
}

/**
 * The lowest fee rate the node's mempool takes now, in sat/kvB (0 when its answer says nothing): the higher of its
 * relay minimum (-minrelaytxfee) and the mempool's own minimum, raised while it is full. `full`: whether the mempool's
 * minimum is the higher (its reason is then "mempool min fee not met", else "min relay fee not met"). A transaction
 * paying less is refused whatever else is right with it: estimateFeeRate never quotes below it, and the payout actor
 * builds nothing while the rate it may pay (capped) is below it (payout.ts, flush).
 */
export function feeFloorOf(info: MempoolInfo | undefined): { satPerKvb: bigint; full: boolean } {
  const relay = info?.minrelaytxfee === undefined ? 0n : btcNumberToSats(info.minrelaytxfee);
  const pool = info?.mempoolminfee === undefined ? 0n : btcNumberToSats(info.mempoolminfee);
  return pool > relay ? { satPerKvb: pool, full: true } : { satPerKvb: relay, full: false };
}

/** The node wallet's label of deposit addresses not handed out yet (one handed out is labelled with its owner). */
export const POOL_LABEL = "pool";
/** The label of a pool address that received coins though the owner index knows no one it was given to (see #reclaim). */
export const UNOWNED_PAID_LABEL = "paid-unowned";

export interface ListSinceBlock {
  transactions: Array<{ address?: string; category: string; amount: number; vout: number; txid: string; confirmations: number; blockhash?: string; blockheight?: number; label?: string; abandoned?: boolean }>;
  removed?: Array<{ address?: string; category: string; amount: number; vout: number; txid: string; confirmations: number }>;
  lastblock: string;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(Object.assign(new Error(`timed out after ${ms} ms`), { code: "ETIMEDOUT" })), ms);
    p.then((v) => (clearTimeout(t), resolve(v)), (e: unknown) => (clearTimeout(t), reject(e)));
  });
}

/** The client logs every request through debugnyan; ours stay in pino (and never log credentials). */
const silentRpcLogger = { debug() {}, info() {}, warn() {}, error() {}, child() { return silentRpcLogger; } };
