// The relay's contract: what every edge (Telegram, local chat, script, the split-mode TLS client) may ask
// of the engine, in user terms. Edges parse, authenticate and render; every rule lives behind this line.
// Amount and address arguments are the user's raw text: the engine parses and validates them.
import type { Refusal } from "./domain/refusals.ts";
import type { BalanceView, HistoryEntry, WalletNotice } from "./actors/wallet.messages.ts";

export type { Refusal, BalanceView, HistoryEntry, WalletNotice };
export type Result<T> = T | Refusal;

export interface WithdrawalQuote {
  /** Also the withdrawal id once confirmed: a second confirm of the same quote does nothing. */
  id: string;
  address: string;
  amount: bigint;
  fee: bigint;
  total: bigint;
  feeRateSatVb: bigint;
  expiresAt: number;
}

export interface ConfirmedWithdrawal {
  id: string;
  /** true when this quote had already been confirmed: nothing new happened. */
  repeated: boolean;
  amount: bigint;
  /** The fee charged once sent; the quoted fee until then. */
  fee: bigint;
  status: "reserved" | "broadcast" | "sent" | "released";
  txid?: string;
  balance: BalanceView;
}

export interface Cheque {
  code: string;
  amount: bigint;
  expiresAt: number;
}

/** One of a creator's cheques that can still be claimed (or waits for its funds). */
export interface MyChequeView {
  amount: bigint;
  expiresAt: number;
  /** False while its funding transfer has not reached the cheque (the amount left the wallet, or will). */
  funded: boolean;
  /** Undefined for a cheque made before the engine kept what derives it. */
  code: string | undefined;
}

export interface HistoryPage {
  entries: HistoryEntry[];
  page: number;
  pages: number;
  total: number;
}

/** A notification for one user, addressed by the sealed chat handle the edge gave at /start. */
export interface Notification {
  userKey: string;
  chatHandle: string | undefined;
  notice: WalletNotice;
}

export interface Relay {
  /** Creates the wallet if needed and remembers the (sealed) chat handle for notifications. */
  /** `firstStart`: this start set the wallet's first chat handle (its owner's first /start, the wallet made earlier by a tip). */
  start(userKey: string, chatHandle?: string): Promise<Result<{ created: boolean; firstStart?: boolean; balance: BalanceView }>>;
  balance(userKey: string): Promise<Result<BalanceView & { frozen?: string }>>;
  history(userKey: string, page: number, pageSize?: number): Promise<Result<HistoryPage>>;
  /** A bech32 deposit address of this user's (reused until something arrives on it). */
  depositAddress(userKey: string): Promise<Result<{ address: string }>>;
  /** Validates address and amount, quotes the fee. Nothing is reserved until confirm. */
  quoteWithdrawal(userKey: string, address: string, amount: string): Promise<Result<WithdrawalQuote>>;
  /** Reserves amount + fee under the quote id and hands it to the payout side. Idempotent per quote. */
  confirmWithdrawal(userKey: string, quoteId: string): Promise<Result<ConfirmedWithdrawal>>;
  cancelQuote(userKey: string, quoteId: string): Promise<Result<{ cancelled: boolean }>>;
  /** Off-chain transfer to another user key; `id` makes it take effect once (e.g. the Telegram update id). */
  transfer(userKey: string, id: string, toUserKey: string, amount: string): Promise<Result<{ repeated: boolean; balance: BalanceView }>>;
  createCheque(userKey: string, id: string, amount: string): Promise<Result<Cheque>>;
  /** `balance` after it, when the wallet could say (the claim or revoke is done either way). */
  claimCheque(userKey: string, code: string): Promise<Result<{ amount: bigint; balance?: BalanceView }>>;
  revokeCheque(userKey: string, code: string): Promise<Result<{ amount: bigint; balance?: BalanceView }>>;
  /**
   * The user's own cheques that can still be claimed, newest first, with their codes (to share again or revoke): the
   * newest that fit one message, and how many older ones there are besides.
   */
  myCheques(userKey: string): Promise<Result<{ cheques: MyChequeView[]; more: number }>>;
  /**
   * Subscribes to notifications; returns an unsubscribe function. Notices made while no edge listens are held, and
   * given to every listener there is when the first one that delivers them subscribes. `observer`: a listener that only
   * watches (a test script's inbox): it neither receives nor releases held notices before an edge subscribes.
   * `settles`: a listener that delivers calls `settled` once it is done with each notice (the Telegram edge: its send
   * was answered, or refused for good); only then does the engine forget it (its store record deleted, or the bot's
   * acknowledgement sent), and what it has not settled when it unsubscribes is held for the next edge. Without
   * `settles`, a notice is done with once it is handed over. (`settled` is optional to a listener's eye: a relay
   * written before it, a test's stand-in, may not pass it.) `settled("given up")`: done with it undelivered; the
   * engine keeps it (held.ts, NoticeSettle). `cancelled`: aborted when the notice is taken back before it settled (the
   * bot's stream to the engine closed: the engine gives it to the next stream); a send not gone out yet is dropped.
   */
  onNotification(listener: (n: Notification, settled?: (outcome?: "given up") => void, cancelled?: AbortSignal) => void, o?: { observer?: boolean; settles?: boolean }): () => void;
  /**
   * Pins the identity settings of the edge that turns Telegram ids into user keys (`check`: store/identity.ts,
   * identityCheck) to the engine's store: the first edge's are recorded, an edge with others is refused — its users
   * would all get new, empty wallets. (A bot in the split shape; its own data directory may be new.)
   */
  identityPin(check: string): Promise<Result<{ pinned: true }>>;
  /** Facts an edge may show (network name, confirmation target…). */
  /** `minDepositSats`: a deposit below it (the dust limit) is not credited; the deposit answer says so. */
  /** `maxTransferSats`: the most one transfer may move; a tip over it is refused before the tipper's balance is read. */
  info(): { network: string; confirmations: number; draining: boolean; minDepositSats?: bigint; maxTransferSats?: bigint };
}
