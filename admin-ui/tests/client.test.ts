import { afterEach, describe, expect, it } from 'vitest';
import { ApiError, describeError, merchantClient, platformClient, reportError, unwrap } from '../src/api/client';
import { apiKey, clearErrors, errors, lockReason, me, signIn } from '../src/state';
import { fail, mockFetch, ok } from './helpers';

afterEach(() => {
  clearErrors();
  sessionStorage.clear();
});

const caller = { api_key: { key_id: '1', name: 'root', prefix: 'lp_live_AbCd', last4: 'wxyz', scopes: ['admin'], status: 'active' }, merchant: null };

describe('api client', () => {
  it('unwraps the envelope data on code 0', async () => {
    mockFetch(() => ok({ items: [], next_page_token: null }));
    await expect(unwrap(platformClient().GET('/api/v1/merchants'))).resolves.toEqual({ items: [], next_page_token: null });
  });

  it('turns error envelopes into ApiError with the SPEC code and message', async () => {
    mockFetch(() => fail(42201, 'insufficient points: balance 40', 422));
    const error = await unwrap(merchantClient('m').POST('/api/v1/points/spend', { body: { uid: 'a', points: 50, idempotency_key: 'k' } })).catch((e) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ code: 42201, status: 422, message: 'insufficient points: balance 40' });
    expect(describeError(error).hint).toMatch(/balance/);
  });

  it('explains an idempotency conflict', () => {
    const described = describeError(new ApiError(40902, 'idempotency key reused with a different request', 409));
    expect(described.code).toBe(40902);
    expect(described.hint).toMatch(/already used for a different request/);
  });

  it('reports a non-envelope answer as a transport error', async () => {
    mockFetch(() => ({ status: 502, body: 'bad gateway' }));
    await expect(unwrap(platformClient().GET('/api/v1/me'))).rejects.toMatchObject({ code: 0, status: 502 });
  });

  it('sends x-merchant-id only from the merchant client', async () => {
    signIn('lp_live_' + 'a'.repeat(36), caller as never);
    const { calls } = mockFetch(() => ok({ items: [] }));
    await unwrap(platformClient().GET('/api/v1/merchants'));
    await unwrap(merchantClient('m-9').GET('/api/v1/api-keys'));
    expect(calls[0].headers.get('x-merchant-id')).toBeNull();
    expect(calls[0].headers.get('x-api-key')).toBe('lp_live_' + 'a'.repeat(36));
    expect(calls[1].headers.get('x-merchant-id')).toBe('m-9');
  });

  it('forgets the key and returns to sign in when the key is rejected (40101)', () => {
    signIn('lp_live_' + 'b'.repeat(36), caller as never);
    expect(sessionStorage.getItem('points-admin.api-key')).not.toBeNull();
    reportError(new ApiError(40101, 'unauthenticated', 401));
    expect(apiKey.value).toBeNull();
    expect(me.value).toBeNull();
    expect(sessionStorage.getItem('points-admin.api-key')).toBeNull();
    expect(lockReason.value).toMatch(/40101/);
    expect(errors.value).toHaveLength(0);
  });
});
