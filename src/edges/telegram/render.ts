// How the Telegram edge says things: short, plain, one line per refusal. No money rule lives here.
import { describeAmount, formatBtc, groupDigits } from "../../domain/money.ts";
import type { RefusalCode } from "../../domain/refusals.ts";
import type { BalanceView, HistoryEntry, HistoryPage, Refusal, WalletNotice, WithdrawalQuote } from "../../relay.types.ts";

/** The edge's own words for each refusal; the engine's message adds the specifics. */
const PREFIX: Partial<Record<RefusalCode, string>> = {
  bad_amount: "⚠️",
  bad_address: "⚠️",
  wrong_network: "⚠️",
  insufficient_funds: "💸",
  below_dust: "⚠️",
  over_limit: "⛔",
  frozen: "🧊",
  not_found: "❓",
  unknown_command: "❓",
  stale: "⌛",
  expired: "⌛",
  busy: "⏳",
  node_unavailable: "⏳",
  draining: "🚪",
  paused: "⏸",
  internal: "⚠️",
};

export function refusal(r: Refusal): string {
  return `${PREFIX[r.code] ?? "⚠️"} ${r.message}`;
}

export const btc = (sats: bigint) => describeAmount(sats);

export function balance(b: BalanceView & { frozen?: string }): string {
  const lines = [
    `Available: ${btc(b.available)}`,
    `Pending: ${btc(b.pending)}`,
    `Reserved: ${btc(b.reserved)}`,
  ];
  if (b.frozen) lines.push(`🧊 Frozen by an operator: ${b.frozen}`);
  return lines.join("\n");
}

export function welcome(created: boolean, network: string, confirmations: number): string {
  return [
    created ? "Your wallet is ready." : "Welcome back.",
    "",
    `/deposit — an address to send bitcoin to (credited after ${confirmations} confirmation${confirmations === 1 ? "" : "s"})`,
    "/balance — what you have",
    "/withdraw <address> <amount> — send bitcoin out",
    "/history — what happened",
    "/cheque <amount> — a one-time link anyone can claim",
    "/help — this list",
    network === "mainnet" ? "" : `\nThis service runs on ${network}: its coins have no value.`,
  ].join("\n").trim();
}

export const HELP = [
  "/start — create or open your wallet",
  "/deposit — your deposit address (text and QR code)",
  "/balance — available, pending and reserved",
  "/history — your transactions, newest first",
  "/withdraw <address> <amount> — amounts like 0.001, 0.001 BTC, 100000 sats, 100k sats",
  "/cheque <amount> — a claim link; /cheque revoke <code> takes it back",
  "In a group: reply to someone's message with /tip <amount>",
].join("\n");

export function deposit(address: string, confirmations: number): string {
  return `Send bitcoin to:\n${address}\n\nIt shows as pending at once and becomes available after ${confirmations} confirmation${confirmations === 1 ? "" : "s"}.`;
}

export function quote(q: WithdrawalQuote): string {
  return [
    "Withdrawal quote",
    `To: ${q.address}`,
    `Amount: ${btc(q.amount)}`,
    `Network fee (at most): ${btc(q.fee)}`,
    `Total: ${btc(q.total)}`,
    "",
    "Press Confirm to send. Nothing moves until you do.",
  ].join("\n");
}

function entry(e: HistoryEntry): string {
  const when = new Date(e.at).toISOString().slice(0, 16).replace("T", " ");
  const sign = e.amount < 0n ? "−" : "+";
  const abs = e.amount < 0n ? -e.amount : e.amount;
  const what = { deposit: "deposit", withdrawal: "withdrawal", transfer_in: "received", transfer_out: "sent", adjustment: "adjustment" }[e.kind];
  return `${when}  ${sign}${formatBtc(abs)} BTC  ${what} (${e.status})`;
}

export function history(h: HistoryPage): string {
  if (h.total === 0) return "No transactions yet. Send /deposit to get an address.";
  return [`History — page ${h.page + 1} of ${h.pages}`, ...h.entries.map(entry)].join("\n");
}

export function notice(n: WalletNotice): string {
  switch (n.kind) {
    case "deposit_seen":
      return `📥 Deposit seen: ${btc(n.amount)} (pending until confirmed)`;
    case "deposit_confirmed":
      return `✅ Deposit confirmed: ${btc(n.amount)} is now available`;
    case "deposit_dropped":
      return `⚠️ A pending deposit of ${btc(n.amount)} left the network and was not credited`;
    case "withdrawal_broadcast":
      return `📤 Withdrawal of ${btc(n.amount)} broadcast: ${n.txid}`;
    case "withdrawal_sent":
      return `✅ Withdrawal of ${btc(n.amount)} confirmed (fee ${groupDigits(n.fee)} sats)`;
    case "withdrawal_released":
      return `↩️ A withdrawal could not be sent; ${btc(n.amount)} is available again`;
    case "transfer_received":
      return `🎁 You received ${btc(n.amount)}`;
  }
}
