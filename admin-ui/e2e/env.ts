/** Where global setup leaves what the tests need (server URL, keys, seeded ids), and how they read it back. */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ADMIN_UI_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
export const STATE_FILE = join(ADMIN_UI_DIR, 'test-results', 'e2e-state.json');

export interface SeededMerchant {
  merchant_id: string;
  slug: string;
  key: string;
}

export interface E2eState {
  baseUrl: string;
  databaseUrl: string;
  databaseName: string;
  serverPid: number;
  adminKey: string;
  shop: SeededMerchant;
  ledger: SeededMerchant & { issued: number; redeemed: number; adjustedIn: number; reversedIn: number; reversedOut: number; outstanding: number };
  ruleV2From: string;
}

export function readState(): E2eState {
  return JSON.parse(readFileSync(STATE_FILE, 'utf8')) as E2eState;
}
