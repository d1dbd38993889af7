/** The status shown for an API key: active / expires soon / in grace until T / expired / revoked. */
import type { components } from '../api/schema';

type ApiKey = components['schemas']['ApiKey'];
export const SOON_MS = 7 * 24 * 3600 * 1000;

export type KeyStatus =
  | { kind: 'revoked' }
  | { kind: 'expired'; at: string }
  | { kind: 'grace'; until: string }
  | { kind: 'expires-soon'; at: string }
  | { kind: 'active' };

/**
 * A key is "in grace" when a newer key with the same name and scopes exists (it was rotated) and it has not expired yet.
 * The API does not link a rotated key to its successor, so this is inferred; `rotatedIds` holds keys rotated in this session.
 */
export function keyStatus(key: ApiKey, all: ApiKey[], now = Date.now(), rotatedIds: ReadonlySet<string> = new Set()): KeyStatus {
  if (key.status === 'revoked') return { kind: 'revoked' };
  if (key.expires_at) {
    const at = new Date(key.expires_at).getTime();
    if (at <= now) return { kind: 'expired', at: key.expires_at };
    const created = key.created_at ? new Date(key.created_at).getTime() : 0;
    const successor = all.some(
      (other) =>
        other.key_id !== key.key_id &&
        other.name === key.name &&
        other.status === 'active' &&
        (other.created_at ? new Date(other.created_at).getTime() : 0) >= created &&
        other.scopes.join(' ') === key.scopes.join(' '),
    );
    if (rotatedIds.has(key.key_id) || successor) return { kind: 'grace', until: key.expires_at };
    if (at - now <= SOON_MS) return { kind: 'expires-soon', at: key.expires_at };
  }
  return { kind: 'active' };
}

export function expiresWithin(key: ApiKey, ms: number, now = Date.now()): boolean {
  if (key.status === 'revoked' || !key.expires_at) return false;
  const at = new Date(key.expires_at).getTime();
  return at > now && at - now <= ms;
}

export const SCOPE_MEANINGS: Record<string, string> = {
  'points:read': 'Read balances, entries, accounts and liability reports',
  'points:write': 'Earn, spend, adjust and reverse points',
  'rules:read': 'Read conversion rules and calculate points',
  'rules:write': 'Create rule versions and sync rules',
  'audit:read': 'Read and verify the audit log',
  'keys:manage': "Create, rotate and revoke this merchant's keys",
};
