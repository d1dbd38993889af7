/** Side-by-side diff of two rule versions, with the effect of each on a 100.00 purchase. */
import { pointsFor } from './decimal';

export interface RuleVersionLike {
  code: string;
  version: number;
  currency: string;
  unit_amount: string;
  points_per_unit: number;
  rounding: string;
  min_amount?: string | null;
  max_points?: number | null;
  points_ttl_days?: number | null;
  effective_from?: string | null;
  effective_to?: string | null;
  created_at?: string | null;
}

export const DIFF_FIELDS = [
  'currency',
  'unit_amount',
  'points_per_unit',
  'rounding',
  'min_amount',
  'max_points',
  'points_ttl_days',
  'effective_from',
  'effective_to',
] as const;

export interface DiffRow {
  field: string;
  left: string;
  right: string;
  changed: boolean;
}

function show(value: unknown): string {
  return value === null || value === undefined || value === '' ? '—' : String(value);
}

/** Compares field by field; decimals compare as written (a change from "1.00" to "1.0" is shown, it is what was stored). */
export function diffRules(left: RuleVersionLike, right: RuleVersionLike): DiffRow[] {
  return DIFF_FIELDS.map((field) => {
    const l = show(left[field]);
    const r = show(right[field]);
    return { field, left: l, right: r, changed: l !== r };
  });
}

export const SAMPLE_PURCHASE = '100.00';

/** Points a `SAMPLE_PURCHASE` earns under each version and the difference (right − left). */
export function effectOnPurchase(
  left: RuleVersionLike,
  right: RuleVersionLike,
  amount = SAMPLE_PURCHASE,
): { left: number; right: number; difference: number } {
  const l = pointsFor(amount, left).points;
  const r = pointsFor(amount, right).points;
  return { left: l, right: r, difference: r - l };
}

/** A rule version's state at `now`: scheduled (starts later), ended (effective_to passed) or active. */
export function ruleState(version: RuleVersionLike, now = Date.now()): 'active' | 'scheduled' | 'ended' {
  if (version.effective_to && new Date(version.effective_to).getTime() <= now) return 'ended';
  if (version.effective_from && new Date(version.effective_from).getTime() > now) return 'scheduled';
  return 'active';
}
