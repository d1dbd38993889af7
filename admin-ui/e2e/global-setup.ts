/**
 * Starts the release server on a fresh database and seeds it through the REST API:
 * fresh database name → `points migrate` → `points admin create-key` (parse the printed key) → `points` on free ports
 * serving admin-ui/dist from disk → wait for /readyz → register two merchants, rules and ledger entries.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, openSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { api, idem } from './api';
import { ADMIN_UI_DIR, type E2eState, STATE_FILE } from './env';

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => done(port));
    });
  });
}

async function waitReady(baseUrl: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const response = await fetch(`${baseUrl}/readyz`);
      if (response.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`server at ${baseUrl} not ready after ${timeoutMs} ms`);
}

export default async function globalSetup(): Promise<void> {
  const bin = resolve(ADMIN_UI_DIR, process.env.POINTS_BIN ?? '../target/release/points');
  const pgBase = process.env.E2E_PG_URL ?? 'postgres://postgres@127.0.0.1:5432';
  const databaseName = `points_e2e_${randomBytes(6).toString('hex')}`;
  const databaseUrl = `${pgBase}/${databaseName}`;
  const [grpcPort, httpPort] = [await freePort(), await freePort()];
  // By default the server serves the build embedded in the binary — what ships. E2E_FROM_DIST=1 serves
  // admin-ui/dist from disk instead, to iterate on the app without rebuilding the Rust binary.
  const { POINTS_ADMIN_UI_DIR: _ignored, ...inherited } = process.env;
  const env = {
    ...inherited,
    DATABASE_URL: databaseUrl,
    POINTS_GRPC_ADDR: `127.0.0.1:${grpcPort}`,
    POINTS_HTTP_ADDR: `127.0.0.1:${httpPort}`,
    ...(process.env.E2E_FROM_DIST === '1' ? { POINTS_ADMIN_UI_DIR: join(ADMIN_UI_DIR, 'dist') } : {}),
    POINTS_LOG_FORMAT: 'json',
  };
  execFileSync(bin, ['migrate'], { env, stdio: 'pipe', timeout: 60_000 });
  const printed = execFileSync(bin, ['admin', 'create-key', '--name', 'e2e'], { env, encoding: 'utf8', timeout: 60_000 });
  const adminKey = /lp_(live|test)_[A-Za-z0-9]{36}/.exec(printed)?.[0];
  if (!adminKey) throw new Error(`no key in the output of create-key:\n${printed}`);

  mkdirSync(dirname(STATE_FILE), { recursive: true });
  const log = openSync(join(dirname(STATE_FILE), 'server.log'), 'w');
  const server = spawn(bin, [], { env, stdio: ['ignore', log, log], detached: false });
  const baseUrl = `http://127.0.0.1:${httpPort}`;
  await waitReady(baseUrl, 30_000);

  type Registered = { merchant: { merchant_id: string; slug: string }; api_key: { key: string } };
  const register = async (slug: string, name: string) => {
    const r = await api<Registered>(baseUrl, adminKey, 'POST', '/merchants', { slug, name });
    return { merchant_id: r.merchant.merchant_id, slug: r.merchant.slug, key: r.api_key.key };
  };
  const shop = await register('e2e-shop', 'E2E Coffee Shop');
  const ledger = await register('e2e-ledger', 'E2E Ledger Bakery');

  // Rules of the ledger merchant: v1 now (1 point per 1.00), v2 scheduled in an hour (10 points per 3.00, round).
  const ruleV2From = new Date(Date.now() + 3600_000).toISOString().replace(/\.\d+Z$/, 'Z');
  const asLedger = (method: string, path: string, body?: unknown) => api(baseUrl, adminKey, method, path, body, ledger.merchant_id);
  await asLedger('PUT', '/rules/default', { currency: 'EUR', unit_amount: '1.00', points_per_unit: 1, rounding: 'floor' });
  await asLedger('PUT', '/rules/default', { currency: 'EUR', unit_amount: '3.00', points_per_unit: 10, rounding: 'round', effective_from: ruleV2From });

  // Ledger merchant entries: the liability test compares the table with these figures.
  await asLedger('POST', '/points/earn', { uid: 'carol', points: 500, idempotency_key: idem('earn') });
  await asLedger('POST', '/points/earn', { uid: 'dave', amount: '100.00', currency: 'EUR', idempotency_key: idem('earn') });
  const spent = (await asLedger('POST', '/points/spend', { uid: 'carol', points: 120, idempotency_key: idem('spend') })) as { entry: { entry_id: string } };
  await asLedger('POST', '/points/adjust', { uid: 'dave', delta: 7, reason: 'goodwill', idempotency_key: idem('adjust') });
  await asLedger('POST', `/points/entries/${spent.entry.entry_id}/reverse`, { idempotency_key: idem('reverse'), reason: 'refund' });

  // Shop merchant: a rule and one account with history.
  const asShop = (method: string, path: string, body?: unknown) => api(baseUrl, adminKey, method, path, body, shop.merchant_id);
  await asShop('PUT', '/rules/default', { currency: 'EUR', unit_amount: '1.00', points_per_unit: 2, rounding: 'floor' });
  await asShop('POST', '/points/earn', { uid: 'alice', points: 300, idempotency_key: idem('earn'), reference: 'order-1' });
  await asShop('POST', '/points/spend', { uid: 'alice', points: 50, idempotency_key: idem('spend') });
  await asShop('POST', '/points/earn', { uid: 'bob', points: 40, idempotency_key: idem('earn') });

  const state: E2eState = {
    baseUrl,
    databaseUrl,
    databaseName,
    serverPid: server.pid ?? 0,
    adminKey,
    shop,
    // carol +500 −120, dave +100 (rule v1) +7, reversal of the spend gives 120 back.
    ledger: { ...ledger, issued: 600, redeemed: 120, adjustedIn: 7, reversedIn: 120, reversedOut: 0, outstanding: 607 },
    ruleV2From,
  };
  writeFileSync(STATE_FILE, JSON.stringify(state, null, 2));
  process.env.E2E_BASE_URL = baseUrl;
  server.unref();
}
