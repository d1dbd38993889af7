/**
 * App-wide state as signals: the API key (sessionStorage only), the signed-in caller, the merchant being acted for,
 * errors for the aria-live region, notices, and the audit-chain status.
 */
import { signal } from '@preact/signals';
import type { components } from './api/schema';

type Me = components['schemas']['Me'];
const KEY_STORAGE = 'points-admin.api-key';
export const IDLE_LOCK_MS = 30 * 60 * 1000;

function readStoredKey(): string | null {
  try {
    return sessionStorage.getItem(KEY_STORAGE);
  } catch {
    return null;
  }
}

export const apiKey = signal<string | null>(readStoredKey());
export const me = signal<Me | null>(null);
/** Why the session ended (shown on the sign-in page). */
export const lockReason = signal<string | null>(null);

export function signIn(key: string, caller: Me): void {
  apiKey.value = key;
  me.value = caller;
  lockReason.value = null;
  try {
    sessionStorage.setItem(KEY_STORAGE, key);
  } catch {
    // Storage may be disabled; the key then lives in memory for this tab only.
  }
  touchActivity();
}

/** Forgets the key (sign out, idle lock, or rejected key). */
export function lockSession(reason: string | null): void {
  apiKey.value = null;
  me.value = null;
  acting.value = null;
  lockReason.value = reason;
  try {
    sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    // nothing stored
  }
}

export interface ShownError {
  id: number;
  code: number;
  message: string;
  hint?: string;
}
let nextErrorId = 1;
export const errors = signal<ShownError[]>([]);
export function pushError(error: Omit<ShownError, 'id'>): void {
  errors.value = [...errors.value.slice(-3), { ...error, id: nextErrorId++ }];
}
export function dismissError(id: number): void {
  errors.value = errors.value.filter((e) => e.id !== id);
}
export function clearErrors(): void {
  errors.value = [];
}

export const notice = signal<string | null>(null);
let noticeTimer: ReturnType<typeof setTimeout> | undefined;
export function notify(message: string): void {
  notice.value = message;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => (notice.value = null), 6000);
}

/** The merchant the admin is acting for (set by the /admin/m/{id} pages). */
export const acting = signal<{ merchant_id: string; slug: string; name: string; status: string } | null>(null);

// Idle lock: any user input counts as activity; a timer checks every 30 s.
let lastActivity = Date.now();
export function touchActivity(): void {
  lastActivity = Date.now();
}
export function idleFor(now = Date.now()): number {
  return now - lastActivity;
}
export function startIdleLock(): () => void {
  const events = ['pointerdown', 'keydown', 'wheel', 'touchstart'] as const;
  events.forEach((e) => window.addEventListener(e, touchActivity, { passive: true }));
  const timer = setInterval(() => {
    if (apiKey.value && idleFor() >= IDLE_LOCK_MS) lockSession('Locked after 30 minutes without activity. Sign in again.');
  }, 30_000);
  return () => {
    events.forEach((e) => window.removeEventListener(e, touchActivity));
    clearInterval(timer);
  };
}
