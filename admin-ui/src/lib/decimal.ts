/**
 * Exact decimal-string arithmetic with BigInt. Money amounts are never parsed into JS numbers.
 */

export interface Decimal {
  /** The digits as an integer: value = units / 10^scale. */
  units: bigint;
  scale: number;
}

const DECIMAL = /^(\d{1,30})(?:\.(\d{1,30}))?$/;

export function isDecimal(text: string): boolean {
  return DECIMAL.test(text.trim());
}

export function parseDecimal(text: string): Decimal {
  const m = DECIMAL.exec(text.trim());
  if (!m) throw new Error(`not a decimal amount: ${text}`);
  const fraction = m[2] ?? '';
  return { units: BigInt(m[1] + fraction), scale: fraction.length };
}

function align(a: Decimal, b: Decimal): [bigint, bigint] {
  const scale = Math.max(a.scale, b.scale);
  return [a.units * 10n ** BigInt(scale - a.scale), b.units * 10n ** BigInt(scale - b.scale)];
}

/** -1, 0 or 1. */
export function compareDecimal(a: string, b: string): number {
  const [x, y] = align(parseDecimal(a), parseDecimal(b));
  return x < y ? -1 : x > y ? 1 : 0;
}

export type Rounding = 'floor' | 'round' | 'ceil';

/** numerator / denominator (both > 0) rounded; `round` is half away from zero. */
export function divideRounded(numerator: bigint, denominator: bigint, rounding: Rounding): bigint {
  if (denominator <= 0n || numerator < 0n) throw new Error('divideRounded expects non-negative numerator, positive denominator');
  const quotient = numerator / denominator;
  const remainder = numerator % denominator;
  if (remainder === 0n) return quotient;
  if (rounding === 'floor') return quotient;
  if (rounding === 'ceil') return quotient + 1n;
  return remainder * 2n >= denominator ? quotient + 1n : quotient;
}

/** The exact quotient as a decimal string with up to `digits` fraction digits (truncated), for display. */
export function formatRatio(numerator: bigint, denominator: bigint, digits = 4): string {
  const scaled = (numerator * 10n ** BigInt(digits)) / denominator;
  const text = scaled.toString().padStart(digits + 1, '0');
  const whole = text.slice(0, text.length - digits);
  const fraction = text.slice(text.length - digits).replace(/0+$/, '');
  return fraction ? `${whole}.${fraction}` : whole;
}

export interface ConversionRule {
  unit_amount: string;
  points_per_unit: number;
  rounding: string;
  min_amount?: string | null;
  max_points?: number | null;
}

/**
 * Points for `amount` under a rule version, computed exactly: amount / unit_amount * points_per_unit, rounded,
 * 0 below `min_amount`, capped at `max_points`. Mirrors the server's calculation (SPEC §6).
 */
export function pointsFor(amount: string, rule: ConversionRule): { points: number; raw: string; capped: boolean; belowMinimum: boolean } {
  const value = parseDecimal(amount);
  const unit = parseDecimal(rule.unit_amount);
  const [a, u] = align(value, unit);
  if (u === 0n) throw new Error('unit_amount must be > 0');
  const numerator = a * BigInt(rule.points_per_unit);
  const raw = formatRatio(numerator, u);
  if (rule.min_amount && compareDecimal(amount, rule.min_amount) < 0) {
    return { points: 0, raw, capped: false, belowMinimum: true };
  }
  const rounding = (['floor', 'round', 'ceil'].includes(rule.rounding) ? rule.rounding : 'floor') as Rounding;
  let points = divideRounded(numerator, u, rounding);
  let capped = false;
  if (rule.max_points !== null && rule.max_points !== undefined && points > BigInt(rule.max_points)) {
    points = BigInt(rule.max_points);
    capped = true;
  }
  if (points > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error('points exceed the safe integer range');
  return { points: Number(points), raw, capped, belowMinimum: false };
}
