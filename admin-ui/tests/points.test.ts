import { describe, expect, it } from 'vitest';
import { assertPoints, formatDelta, formatPoints, parsePointsInput } from '../src/lib/points';

describe('number safety', () => {
  it('accepts safe integers only', () => {
    expect(assertPoints(42)).toBe(42);
    expect(() => assertPoints(1.5)).toThrow();
    expect(() => assertPoints(2 ** 53)).toThrow();
    expect(() => assertPoints('42')).toThrow();
    expect(() => formatPoints(Number.NaN)).toThrow();
  });

  it('parses typed points strictly', () => {
    expect(parsePointsInput('120')).toBe(120);
    expect(parsePointsInput(' 7 ')).toBe(7);
    expect(parsePointsInput('1e3')).toBeNull();
    expect(parsePointsInput('1.5')).toBeNull();
    expect(parsePointsInput('0')).toBeNull();
    expect(parsePointsInput('-5')).toBeNull();
    expect(parsePointsInput('-5', { allowNegative: true })).toBe(-5);
    expect(parsePointsInput('9007199254740993')).toBeNull();
  });

  it('formats deltas with their sign', () => {
    expect(formatDelta(1200)).toBe('+1,200');
    expect(formatDelta(-40)).toBe('−40');
  });
});
