/**
 * Idempotency keys: one per form, generated once and reused on every retry of that form's request until it succeeds;
 * a success starts a new operation with a fresh key. Uses crypto.getRandomValues (available over plain http,
 * unlike crypto.randomUUID).
 */
import { useRef, useState } from 'preact/hooks';

export function newIdempotencyKey(prefix = 'admin'): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  return `${prefix}-${hex}`;
}

/** A form's idempotency key: `key` stays the same across retries; `renew()` after a success. */
export function useIdempotencyKey(prefix = 'admin'): { key: string; renew: () => void } {
  const initial = useRef<string | null>(null);
  if (initial.current === null) initial.current = newIdempotencyKey(prefix);
  const [key, setKey] = useState(initial.current);
  return { key, renew: () => setKey(newIdempotencyKey(prefix)) };
}

/**
 * Idempotency keys for actions on listed items (capture or void a hold): one key per item and action, reused on every
 * retry — also after the dialog was closed and reopened — until the request succeeds; `renew` after a success.
 */
export function useIdempotencyKeys(prefix = 'admin'): { keyFor: (id: string) => string; renew: (id: string) => void } {
  const keys = useRef(new Map<string, string>());
  return {
    keyFor: (id) => {
      let key = keys.current.get(id);
      if (key === undefined) {
        key = newIdempotencyKey(prefix);
        keys.current.set(id, key);
      }
      return key;
    },
    renew: (id) => {
      keys.current.delete(id);
    },
  };
}
