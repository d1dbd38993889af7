import { render, screen } from '@testing-library/preact';
import { describe, expect, it } from 'vitest';
import { pointsFor, compareDecimal, divideRounded } from '../src/lib/decimal';
import { diffRules, effectOnPurchase, ruleState } from '../src/lib/ruleDiff';
import { RuleDiffTable } from '../src/pages/Rules';

const v1 = { code: 'default', version: 1, currency: 'EUR', unit_amount: '1.00', points_per_unit: 1, rounding: 'floor', min_amount: null, max_points: null };
const v2 = { ...v1, version: 2, unit_amount: '3.00', points_per_unit: 10, rounding: 'round', max_points: 300 };

describe('exact decimal conversion', () => {
  it('converts with floor, round (half away from zero) and ceil without floating point', () => {
    expect(pointsFor('100.00', { ...v1, unit_amount: '3.00', points_per_unit: 1, rounding: 'floor' }).points).toBe(33);
    expect(pointsFor('100.00', { ...v1, unit_amount: '3.00', points_per_unit: 1, rounding: 'ceil' }).points).toBe(34);
    expect(pointsFor('10.50', { ...v1, unit_amount: '1', points_per_unit: 1, rounding: 'round' }).points).toBe(11);
    expect(pointsFor('0.30', { ...v1, unit_amount: '0.1', points_per_unit: 1, rounding: 'floor' }).points).toBe(3); // 0.3/0.1 is 2.999… in floats
    expect(divideRounded(5n, 2n, 'round')).toBe(3n);
  });

  it('earns nothing below the minimum amount and caps at max points', () => {
    expect(pointsFor('4.99', { ...v1, min_amount: '5.00' })).toMatchObject({ points: 0, belowMinimum: true });
    expect(pointsFor('1000.00', { ...v1, max_points: 300 })).toMatchObject({ points: 300, capped: true });
    expect(compareDecimal('5.0', '5.00')).toBe(0);
  });
});

describe('rule diff', () => {
  it('marks the fields that changed between two versions', () => {
    const rows = diffRules(v1, v2);
    const changed = rows.filter((r) => r.changed).map((r) => r.field);
    expect(changed).toEqual(['unit_amount', 'points_per_unit', 'rounding', 'max_points']);
    expect(rows.find((r) => r.field === 'unit_amount')).toMatchObject({ left: '1.00', right: '3.00' });
  });

  it('computes the effect on a 100.00 purchase', () => {
    // v1: 100 points; v2: 100/3*10 = 333.33 → round 333 → capped at 300.
    expect(effectOnPurchase(v1, v2)).toEqual({ left: 100, right: 300, difference: 200 });
  });

  it('renders side by side with the effect row', () => {
    render(<RuleDiffTable left={v1} right={v2} />);
    expect(screen.getByTestId('effect-left').textContent).toBe('100 points');
    expect(screen.getByTestId('effect-right').textContent).toBe('300 points (+200)');
    expect(screen.getByRole('row', { name: /points_per_unit \(changed\) 1 10/ })).toBeTruthy();
  });

  it('tells active, scheduled and ended versions apart', () => {
    const now = Date.parse('2026-12-02T00:00:00Z');
    expect(ruleState({ ...v1, effective_from: '2026-01-01T00:00:00Z' }, now)).toBe('active');
    expect(ruleState({ ...v1, effective_from: '2027-01-01T00:00:00Z' }, now)).toBe('scheduled');
    expect(ruleState({ ...v1, effective_to: '2026-06-01T00:00:00Z' }, now)).toBe('ended');
  });
});
