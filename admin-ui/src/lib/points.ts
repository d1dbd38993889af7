/** Points are integers end to end: every figure from the API is checked with Number.isSafeInteger. */

export class UnsafePointsError extends Error {}

/** Returns `value` if it is a safe integer, else throws (a programmer or server error, never rounded away). */
export function assertPoints(value: unknown, what = 'points'): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw new UnsafePointsError(`${what} is not a safe integer: ${String(value)}`);
  }
  return value;
}

/** Parses a user-typed points figure: digits only (optionally signed), safe integer, else null. */
export function parsePointsInput(text: string, options: { allowNegative?: boolean; allowZero?: boolean } = {}): number | null {
  const trimmed = text.trim();
  const pattern = options.allowNegative ? /^-?\d+$/ : /^\d+$/;
  if (!pattern.test(trimmed)) return null;
  const value = Number(trimmed);
  if (!Number.isSafeInteger(value)) return null;
  if (value === 0 && !options.allowZero) return null;
  return value;
}

const grouping = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** 1234567 → "1,234,567" after checking it is a safe integer. */
export function formatPoints(value: number | null | undefined): string {
  if (value === null || value === undefined) return '—';
  return grouping.format(assertPoints(value));
}

/** A signed delta: "+120" / "−40". */
export function formatDelta(value: number): string {
  assertPoints(value, 'delta');
  return value > 0 ? `+${grouping.format(value)}` : value < 0 ? `−${grouping.format(-value)}` : '0';
}
