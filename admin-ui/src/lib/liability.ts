/**
 * Liability report math: per-bucket net movement, the running outstanding balance (opening + Σ net), and the rows of
 * the "view as table" toggle. The server's `outstanding` is cross-checked against the running figure.
 */
import { assertPoints } from './points';

export interface LiabilityBucket {
  /** Always sent by the server; typed optional because the OpenAPI schema marks it nullable. */
  start?: string | null;
  issued: number;
  redeemed: number;
  expired: number;
  adjusted_in: number;
  adjusted_out: number;
  reversed_in: number;
  reversed_out: number;
  outstanding: number;
}

export interface LiabilityRow extends LiabilityBucket {
  /** issued − redeemed − expired + adjusted_in − adjusted_out + reversed_in − reversed_out */
  net: number;
  /** opening + Σ net up to and including this bucket. */
  running: number;
  /** True when the server's `outstanding` equals the running figure. */
  consistent: boolean;
}

const MOVEMENTS = ['issued', 'redeemed', 'expired', 'adjusted_in', 'adjusted_out', 'reversed_in', 'reversed_out', 'outstanding'] as const;

export function netMovement(bucket: LiabilityBucket): number {
  for (const field of MOVEMENTS) assertPoints(bucket[field], field);
  return (
    bucket.issued - bucket.redeemed - bucket.expired + bucket.adjusted_in - bucket.adjusted_out + bucket.reversed_in - bucket.reversed_out
  );
}

export function liabilityRows(opening: number, buckets: LiabilityBucket[]): LiabilityRow[] {
  let running = assertPoints(opening, 'opening_outstanding');
  return buckets.map((bucket) => {
    const net = netMovement(bucket);
    running = assertPoints(running + net, 'running outstanding');
    return { ...bucket, net, running, consistent: running === bucket.outstanding };
  });
}

export interface LiabilityTotals {
  issued: number;
  redeemed: number;
  expired: number;
  adjusted_in: number;
  adjusted_out: number;
  reversed_in: number;
  reversed_out: number;
  net: number;
}

export function liabilityTotals(rows: LiabilityRow[]): LiabilityTotals {
  const totals: LiabilityTotals = { issued: 0, redeemed: 0, expired: 0, adjusted_in: 0, adjusted_out: 0, reversed_in: 0, reversed_out: 0, net: 0 };
  for (const row of rows) {
    for (const key of Object.keys(totals) as (keyof LiabilityTotals)[]) totals[key] = assertPoints(totals[key] + row[key]);
  }
  return totals;
}

/** Chart series: signed bars (issued up; redeemed and expired down; adjusted and reversed as net) and the outstanding line. */
export function chartSeries(rows: LiabilityRow[]): {
  x: number[];
  issued: number[];
  redeemed: number[];
  expired: number[];
  adjusted: number[];
  reversed: number[];
  outstanding: number[];
} {
  return {
    x: rows.map((r) => Math.floor(new Date(r.start ?? 0).getTime() / 1000)),
    issued: rows.map((r) => r.issued),
    redeemed: rows.map((r) => -r.redeemed),
    expired: rows.map((r) => -r.expired),
    adjusted: rows.map((r) => r.adjusted_in - r.adjusted_out),
    reversed: rows.map((r) => r.reversed_in - r.reversed_out),
    outstanding: rows.map((r) => r.outstanding),
  };
}
