import { render, screen, within } from '@testing-library/preact';
import { describe, expect, it } from 'vitest';
import { LiabilityTable } from '../src/components/LiabilityChart';
import { chartSeries, liabilityRows, liabilityTotals, netMovement, type LiabilityBucket } from '../src/lib/liability';

const bucket = (start: string, values: Partial<LiabilityBucket>): LiabilityBucket => ({
  start,
  issued: 0,
  redeemed: 0,
  expired: 0,
  adjusted_in: 0,
  adjusted_out: 0,
  reversed_in: 0,
  reversed_out: 0,
  outstanding: 0,
  ...values,
});

const buckets = [
  bucket('2026-12-01T00:00:00Z', { issued: 100, redeemed: 30, outstanding: 570 }),
  bucket('2026-12-02T00:00:00Z', { issued: 50, expired: 10, adjusted_in: 5, adjusted_out: 2, reversed_in: 30, reversed_out: 50, outstanding: 593 }),
];

describe('liability math', () => {
  it('computes the net movement of a bucket from every movement', () => {
    expect(netMovement(buckets[0])).toBe(70);
    expect(netMovement(buckets[1])).toBe(50 - 10 + 5 - 2 + 30 - 50);
  });

  it('runs the outstanding balance from the opening figure and flags buckets that disagree with the server', () => {
    const rows = liabilityRows(500, buckets);
    expect(rows.map((r) => r.running)).toEqual([570, 593]);
    expect(rows.every((r) => r.consistent)).toBe(true);
    const wrong = liabilityRows(500, [{ ...buckets[0], outstanding: 571 }]);
    expect(wrong[0].consistent).toBe(false);
  });

  it('totals the movements of the period', () => {
    const totals = liabilityTotals(liabilityRows(500, buckets));
    expect(totals).toMatchObject({ issued: 150, redeemed: 30, expired: 10, reversed_in: 30, reversed_out: 50, net: 93 });
  });

  it('draws redeemed and expired as negative bars and adjusted/reversed as their net', () => {
    const series = chartSeries(liabilityRows(500, buckets));
    expect(series.redeemed).toEqual([-30, -0]);
    expect(series.expired[1]).toBe(-10);
    expect(series.adjusted[1]).toBe(3);
    expect(series.reversed[1]).toBe(-20);
    expect(series.x[0]).toBe(Date.UTC(2026, 11, 1) / 1000);
  });

  it('refuses figures that are not safe integers', () => {
    expect(() => liabilityRows(0, [bucket('2026-12-01T00:00:00Z', { issued: 0.5 })])).toThrow(/safe integer/);
    expect(() => liabilityRows(Number.MAX_SAFE_INTEGER, [bucket('2026-12-01T00:00:00Z', { issued: 1 })])).toThrow(/safe integer/);
  });

  it('shows the same figures in the table view, with opening and closing', () => {
    render(<LiabilityTable rows={liabilityRows(500, buckets)} opening={500} closing={593} caption="Liability per day" />);
    const table = screen.getByRole('table', { name: 'Liability per day' });
    const secondDay = within(table).getByRole('row', { name: /2026-12-02/ });
    const cell = (col: string) => secondDay.querySelector(`[data-col="${col}"]`)?.textContent;
    expect(cell('issued')).toBe('50');
    expect(cell('reversed_out')).toBe('50');
    expect(cell('net')).toBe('23');
    expect(cell('outstanding')).toBe('593');
    expect(table.querySelector('[data-col="closing"]')?.textContent).toBe('593');
    expect(table.querySelector('.mismatch')).toBeNull();
  });
});
