import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { apiKey, IDLE_LOCK_MS, lockReason, signIn, startIdleLock } from '../src/state';

const caller = { api_key: { key_id: '1', name: 'root', prefix: 'lp_live_AbCd', last4: 'wxyz', scopes: ['admin'], status: 'active' }, merchant: null };

describe('idle lock', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('forgets the key after 30 minutes without activity, and activity postpones it', () => {
    const stop = startIdleLock();
    signIn('lp_live_' + 'c'.repeat(36), caller as never);
    vi.advanceTimersByTime(IDLE_LOCK_MS - 60_000);
    window.dispatchEvent(new Event('keydown'));
    vi.advanceTimersByTime(IDLE_LOCK_MS - 60_000);
    expect(apiKey.value).not.toBeNull();
    vi.advanceTimersByTime(120_000);
    expect(apiKey.value).toBeNull();
    expect(sessionStorage.getItem('points-admin.api-key')).toBeNull();
    expect(lockReason.value).toMatch(/30 minutes/);
    stop();
  });
});
