// Schema pieces the admin API and the console share. The admin edge's validator converts nothing (server.ts), so a
// number in a query string is declared as digits and read with `numberText`.
import { Type } from "@sinclair/typebox";

/** A whole number in a query string, as text. */
export const NumberText = Type.String({ pattern: "^[0-9]{1,6}$" });

/** A NumberText's value, at most `max`; `fallback` when absent. */
export const numberText = (text: string | undefined, fallback: number, max: number): number => (text === undefined ? fallback : Math.min(Number(text), max));

/**
 * GET /audit's query (the console's audit page takes the same): a page of `limit` entries (1–500) numbered below
 * `before`, of one `action` (with its outcomes) and one `target`. An empty field is no filter (a console form sends
 * every field); an unknown one is refused, never ignored (a mistyped `befor=` would read as the newest page).
 */
export const AuditQuery = Type.Object({
  limit: Type.Optional(Type.String({ pattern: "^[0-9]{0,6}$" })),
  before: Type.Optional(Type.String({ pattern: "^[0-9]{0,12}$" })),
  action: Type.Optional(Type.String({ pattern: "^([a-z][a-z:-]{0,39})?$" })),
  target: Type.Optional(Type.String({ maxLength: 200 })),
}, { additionalProperties: false });

export interface AuditQueryText {
  limit?: string;
  before?: string;
  action?: string;
  target?: string;
}

/** An AuditQuery read: what AuditLog.page takes. */
export function auditQuery(q: AuditQueryText): { limit: number; before?: number; action?: string; target?: string } {
  const given = (s: string | undefined) => (s === undefined || s.trim() === "" ? undefined : s.trim());
  const limit = given(q.limit), before = given(q.before), action = given(q.action), target = given(q.target);
  return {
    limit: Math.max(1, numberText(limit, 100, 500)),
    ...(before !== undefined ? { before: Number(before) } : {}),
    ...(action !== undefined ? { action } : {}),
    ...(target !== undefined ? { target } : {}),
  };
}
