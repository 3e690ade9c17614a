// Schema pieces the admin API and the console share. The admin edge's validator converts nothing (server.ts), so a
// number in a query string is declared as digits and read with `numberText`.
import { Type } from "@sinclair/typebox";

/** A whole number in a query string, as text. */
export const NumberText = Type.String({ pattern: "^[0-9]{1,6}$" });

/** A NumberText's value, at most `max`; `fallback` when absent. */
export const numberText = (text: string | undefined, fallback: number, max: number): number => (text === undefined ? fallback : Math.min(Number(text), max));
