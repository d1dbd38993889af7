/** The admin app's main flows against the real server (see global-setup.ts for the seeded data). */
import { expect, test } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import { api } from './api';
import { checkA11y, confirmActing, inspect, screenshot, signIn, state, url } from './helpers';

// Tests run in file order on one worker (they share the seeded data, e.g. balances).

const psql = (sql: string) =>
  execFileSync('psql', [state.databaseUrl, '-v', 'ON_ERROR_STOP=1', '-At', '-c', sql], { encoding: 'utf8' }).trim();
const schemaOf = (merchantId: string) => `merchant_${merchantId.replace(/-/g, '')}`;

test('sign in with the admin key and see the merchants', async ({ page }) => {
  const cspViolations: string[] = [];
  page.on('console', (message) => {
    if (/Content Security Policy|Refused to/i.test(message.text())) cspViolations.push(message.text());
  });
  const response = await page.goto(url('/'));
  const csp = response?.headers()['content-security-policy'] ?? '(none)';
  test.info().annotations.push({ type: 'content-security-policy', description: csp });
  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
  await inspect(page, 'sign-in');
  await page.getByLabel('API key').fill('lp_live_notakey');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByText(/does not look like an API key/)).toBeVisible();
  await signIn(page);
  await expect(page.getByRole('heading', { name: 'Overview' })).toBeVisible();
  await expect(page.getByTestId('kpi-merchants')).toHaveText('2 active');
  await expect(page.getByTestId('chain-badge').first()).toHaveAttribute('data-state', 'ok');
  await page.locator('.chart canvas').first().waitFor();
  await inspect(page, 'overview');
  await page.getByRole('link', { name: 'Merchants', exact: true }).click();
  await expect(page.getByRole('heading', { name: 'Merchants', level: 1 })).toBeVisible();
  await expect(page.getByRole('link', { name: 'e2e-shop', exact: true })).toBeVisible();
  await expect(page.getByRole('link', { name: 'e2e-ledger', exact: true })).toBeVisible();
  await page.getByLabel('Search').fill('ledger');
  await expect(page).toHaveURL(/q=ledger/);
  await expect(page.getByRole('link', { name: 'e2e-shop', exact: true })).toHaveCount(0);
  await page.getByLabel('Search').fill('');
  await inspect(page, 'merchants');
  expect(cspViolations).toEqual([]);
});

test('keyboard only: sign in and navigate with Tab and Enter', async ({ page }) => {
  await page.goto(url('/'));
  const focused = () => page.evaluate(() => document.activeElement?.getAttribute('id') ?? document.activeElement?.textContent ?? '');
  for (let i = 0; i < 10 && (await focused()) !== 'api-key'; i++) await page.keyboard.press('Tab');
  expect(await focused()).toBe('api-key');
  await page.keyboard.type(state.adminKey);
  await page.keyboard.press('Enter');
  await expect(page.getByRole('heading', { name: 'Overview' })).toBeVisible();
  for (let i = 0; i < 15 && (await focused()) !== 'Merchants'; i++) await page.keyboard.press('Tab');
  expect(await focused()).toBe('Merchants');
  await page.keyboard.press('Enter');
  await expect(page.getByRole('heading', { name: 'Merchants', level: 1 })).toBeVisible();
  await expect(page.getByRole('link', { name: 'e2e-shop', exact: true })).toBeVisible();
  for (let i = 0; i < 30 && (await focused()) !== 'e2e-shop'; i++) await page.keyboard.press('Tab');
  await page.keyboard.press('Enter');
  await expect(page.getByText('Acting as e2e-shop')).toBeVisible();
});

test('register a merchant, store its show-once key and use it; rename, suspend and reactivate', async ({ page }) => {
  await signIn(page);
  await page.goto(url('/merchants'));
  await page.getByLabel('Slug').fill('e2e-fresh');
  await page.getByLabel('Name').fill('Fresh Market');
  await page.getByRole('button', { name: 'Register' }).click();
  const dialog = page.getByRole('dialog', { name: 'First API key' });
  await expect(dialog).toBeVisible();
  const key = await dialog.getByLabel('API key').inputValue();
  expect(key).toMatch(/^lp_(live|test)_[A-Za-z0-9]{36}$/);
  await expect(dialog.getByRole('button', { name: 'Close', exact: true })).toBeDisabled();
  await checkA11y(page, 'register-show-once');
  await screenshot(page, 'register-show-once');
  await dialog.getByLabel('I stored it').check();
  await dialog.getByRole('button', { name: 'Close', exact: true }).click();
  await expect(dialog).toBeHidden();
  expect(await page.content()).not.toContain(key);
  const me = await api<{ merchant: { slug: string }; api_key: { scopes: string[] } }>(state.baseUrl, key, 'GET', '/me');
  expect(me.merchant.slug).toBe('e2e-fresh');
  // The merchant's own key signs in too (a fresh context: sessionStorage is per tab) and lands on its merchant.
  const merchantPage = await page.context().browser()!.newPage();
  await signIn(merchantPage, key);
  await expect(merchantPage.getByRole('heading', { level: 1 })).toContainText('Fresh Market');
  await expect(merchantPage.getByTestId('chain-badge')).toHaveAttribute('data-state', 'ok');
  await expect(merchantPage.getByRole('link', { name: 'Merchants', exact: true })).toHaveCount(0);
  await merchantPage.close();

  await page.getByRole('table').getByRole('link', { name: 'e2e-fresh', exact: true }).click();
  await expect(page.getByText('Acting as e2e-fresh')).toBeVisible();
  await page.getByLabel('Display name').fill('Fresh Market & Deli');
  await page.getByRole('button', { name: 'Rename' }).click();
  await expect(page.getByRole('heading', { level: 1 })).toContainText('Fresh Market & Deli');
  await page.getByRole('button', { name: 'Suspend…' }).click();
  const confirm = page.getByRole('dialog', { name: 'Suspend e2e-fresh' });
  await expect(confirm.getByRole('button', { name: 'Suspend' })).toBeDisabled();
  await confirm.getByLabel(/Type the merchant's slug/).fill('e2e-fresh');
  await confirm.getByRole('button', { name: 'Suspend' }).click();
  await expect(page.locator('.badges .badge').first()).toHaveText('suspended');
  await expect(fetch(`${state.baseUrl}/api/v1/me`, { headers: { 'x-api-key': key } }).then((r) => r.status)).resolves.toBeGreaterThanOrEqual(401);
  await page.getByRole('button', { name: 'Reactivate…' }).click();
  const reactivate = page.getByRole('dialog', { name: 'Reactivate e2e-fresh' });
  await reactivate.getByLabel(/Type the merchant's slug/).fill('e2e-fresh');
  await reactivate.getByRole('button', { name: 'Reactivate' }).click();
  await expect(page.locator('.badges .badge').first()).toHaveText('active');
  await inspect(page, 'merchant-detail');
});

test('rotate a key with a grace period and create a key', async ({ page }) => {
  await signIn(page);
  await page.goto(url(`/m/${state.shop.merchant_id}/keys`));
  await expect(page.getByRole('heading', { name: 'API keys' })).toBeVisible();
  await inspect(page, 'keys');
  await page.getByRole('button', { name: /^Rotate / }).first().click();
  const rotate = page.getByRole('dialog', { name: /^Rotate / });
  await rotate.getByLabel('1 hour').check();
  await rotate.getByRole('button', { name: 'Rotate key' }).click();
  await confirmActing(page);
  const shown = page.getByRole('dialog', { name: 'New API key' });
  await expect(shown).toContainText('keeps working until');
  const fresh = await shown.getByLabel('API key').inputValue();
  await shown.getByLabel('I stored it').check();
  await shown.getByRole('button', { name: 'Close', exact: true }).click();
  await expect(page.getByText(/in grace until/)).toBeVisible();
  await expect(page.locator('.countdown')).toHaveText(/59 min/);
  // Both the old key (in grace) and the new one work.
  expect((await api<{ merchant: { slug: string } }>(state.baseUrl, fresh, 'GET', '/me')).merchant.slug).toBe('e2e-shop');
  expect((await api<{ merchant: { slug: string } }>(state.baseUrl, state.shop.key, 'GET', '/me')).merchant.slug).toBe('e2e-shop');

  await page.getByRole('button', { name: 'Create key…' }).click();
  const create = page.getByRole('dialog', { name: 'Create an API key' });
  await create.getByLabel('Name').fill('POS terminal 1');
  await create.getByLabel('30 days').check();
  await checkA11y(page, 'key-create');
  await create.getByRole('button', { name: 'Create key' }).click();
  await confirmActing(page);
  await page.getByRole('dialog', { name: 'New API key' }).getByLabel('I stored it').check();
  await page.getByRole('dialog', { name: 'New API key' }).getByRole('button', { name: 'Close', exact: true }).click();
  await expect(page.getByRole('cell', { name: 'POS terminal 1', exact: true })).toBeVisible();
  await screenshot(page, 'keys-after-rotate');

  // Revoke needs the key's prefix typed.
  const row = page.locator('tr', { has: page.getByRole('cell', { name: 'POS terminal 1', exact: true }) });
  const prefix = ((await row.locator('td.mono').textContent()) ?? '').split('…')[0];
  await row.getByRole('button', { name: /^Revoke / }).click();
  const revoke = page.getByRole('dialog', { name: 'Revoke POS terminal 1' });
  await expect(revoke.getByRole('button', { name: 'Revoke' })).toBeDisabled();
  await revoke.getByLabel(/Type the key's prefix/).fill(prefix);
  await revoke.getByRole('button', { name: 'Revoke' }).click();
  await confirmActing(page);
  await expect(row.locator('.badge')).toHaveText('revoked');
});

test('earn and reverse from the account page', async ({ page }) => {
  await signIn(page);
  await page.goto(url(`/m/${state.shop.merchant_id}/accounts?order=balance_desc`));
  await expect(page.getByRole('heading', { name: 'Accounts' })).toBeVisible();
  await expect(page.locator('tbody tr').first()).toContainText('alice');
  await inspect(page, 'accounts');
  await page.getByRole('link', { name: 'alice', exact: true }).click();
  await expect(page.getByTestId('balance')).toHaveText('250');
  await page.getByRole('textbox', { name: 'Points', exact: true }).fill('100');
  await page.getByLabel('Reference (optional)').fill('order-77');
  await page.getByRole('form', { name: 'Earn points' }).getByRole('button', { name: 'Earn' }).click();
  await confirmActing(page);
  await expect(page.getByTestId('earn-result')).toContainText('balance now 350');
  await expect(page.getByTestId('balance')).toHaveText('350');
  const entryId = (await page.getByTestId('earn-result').locator('code').textContent()) ?? '';
  await page.getByRole('button', { name: `Reverse entry ${entryId}` }).click();
  await expect(page.getByLabel('Entry id')).toHaveValue(entryId);
  await page.getByLabel('Reason (optional)').fill('order cancelled');
  await page.getByRole('form', { name: 'Reverse an entry' }).getByRole('button', { name: 'Reverse' }).click();
  await confirmActing(page);
  await expect(page.getByTestId('reverse-result')).toContainText('balance now 250');
  await expect(page.getByTestId('balance')).toHaveText('250');
  await expect(page.locator(`tr[data-entry-id="${entryId}"]`)).toContainText('reversed by');
  // Overspending shows the envelope's message (with the balance) and its code in the live region.
  await page.getByRole('group', { name: 'Action' }).getByRole('button', { name: 'Spend' }).click();
  await page.getByRole('form', { name: 'Spend points' }).getByLabel('Points').fill('100000');
  await page.getByRole('form', { name: 'Spend points' }).getByRole('button', { name: 'Spend' }).click();
  await confirmActing(page);
  const alert = page.locator('.error-region');
  await expect(alert).toContainText('balance 250');
  await expect(alert).toContainText('code 42201');
  await inspect(page, 'account');

  // Earning by amount previews the points with the rule in effect, and the entry records rule and amount.
  await page.goto(url(`/m/${state.shop.merchant_id}/accounts/bob`));
  await expect(page.getByTestId('balance')).toHaveText('40');
  const earn = page.getByRole('form', { name: 'Earn points' });
  await earn.getByRole('radio', { name: 'Money amount' }).check();
  await earn.getByLabel('Amount', { exact: true }).fill('12.50');
  await expect(page.getByTestId('earn-preview')).toContainText('25 points (rule default@1)');
  await earn.getByRole('button', { name: 'Earn' }).click();
  await confirmActing(page);
  await expect(page.getByTestId('balance')).toHaveText('65');
  await expect(page.locator('tbody tr').first()).toContainText('default@1');
  // The server currently answers the amount as "12.5" (scale not kept); either spelling is the same amount.
  await expect(page.locator('tbody tr').first()).toContainText(/12\.50? EUR/);

  await page.goto(url(`/m/${state.shop.merchant_id}/accounts/alice`));
  await expect(page.getByTestId('balance')).toHaveText('250');
  await page.emulateMedia({ colorScheme: 'dark' });
  await checkA11y(page, 'account-dark');
  await screenshot(page, 'account-dark');
});

test('deep link to an account loads after signing in', async ({ page }) => {
  await signIn(page);
  await page.goto(url(`/m/${state.shop.merchant_id}/accounts/alice`));
  await expect(page.getByRole('heading', { name: 'Account alice' })).toBeVisible();
  await expect(page.getByTestId('balance')).toHaveText('250');
  await expect(page.getByText('Acting as e2e-shop')).toBeVisible();
});

test('rule versions diff and the calculator as of a time', async ({ page }) => {
  await signIn(page);
  await page.goto(url(`/m/${state.ledger.merchant_id}/rules`));
  await page.getByRole('link', { name: 'Open rule default' }).click();
  await expect(page.getByRole('heading', { name: 'Versions of default' })).toBeVisible();
  await expect(page.locator('.timeline-item')).toHaveCount(2);
  await expect(page.locator('.timeline-item').nth(1)).toContainText('scheduled');
  await page.getByLabel('Left').selectOption('1');
  await page.getByLabel('Right').selectOption('2');
  await expect(page.getByTestId('effect-left')).toHaveText('100 points');
  await expect(page.getByTestId('effect-right')).toHaveText('333 points (+233)');
  // The new-version form is prefilled from the active version (v1), decimals as strings.
  await expect(page.getByLabel('Unit amount')).toHaveValue('1.00');

  await page.getByLabel('Amount', { exact: true }).fill('100.00');
  await page.getByRole('button', { name: 'Calculate' }).click();
  await expect(page.getByTestId('calc-result')).toContainText('100 points with rule default@1');
  const later = new Date(Date.parse(state.ruleV2From) + 3600_000).toISOString().slice(0, 16);
  await page.getByLabel('As of (UTC, optional)').fill(later);
  await page.getByRole('button', { name: 'Calculate' }).click();
  await expect(page.getByTestId('calc-result')).toContainText('333 points with rule default@2');
  await inspect(page, 'rules');

  await page.getByLabel('As of (UTC)', { exact: true }).fill(later);
  await expect(page).toHaveURL(/at=/);
  await expect(page.getByRole('heading', { name: /Rules in effect at/ })).toBeVisible();
  await expect(page.locator('tbody tr').first()).toContainText('v2');
});

test('the liability table agrees with the entries created', async ({ page }) => {
  await signIn(page);
  await page.goto(url(`/m/${state.ledger.merchant_id}?range=7`));
  await page.getByRole('button', { name: 'View as table' }).click();
  const today = new Date().toISOString().slice(0, 10);
  const row = page.locator('.liability-table tbody tr', { hasText: today });
  const cell = (col: string) => row.locator(`[data-col="${col}"]`);
  await expect(cell('issued')).toHaveText(String(state.ledger.issued));
  await expect(cell('redeemed')).toHaveText(String(state.ledger.redeemed));
  await expect(cell('adjusted_in')).toHaveText(String(state.ledger.adjustedIn));
  await expect(cell('reversed_in')).toHaveText(String(state.ledger.reversedIn));
  await expect(cell('reversed_out')).toHaveText(String(state.ledger.reversedOut));
  await expect(cell('outstanding')).toHaveText(String(state.ledger.outstanding));
  await expect(page.locator('.liability-table [data-col="closing"]')).toHaveText(String(state.ledger.outstanding));
  await expect(page.getByText(/reconciliation ok/)).toBeVisible();
  await expect(page.locator('.liability-table .mismatch')).toHaveCount(0);
  await inspect(page, 'liability-table');

  // The platform total on the overview reconciles too.
  await page.goto(url('/overview?view=table'));
  await expect(page.locator('.liability-table [data-col="closing"]')).toBeVisible();
  await expect(page.getByText(/reconciliation ok/)).toBeVisible();
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.goto(url('/overview'));
  await page.locator('.chart canvas').first().waitFor();
  await inspect(page, 'overview-dark');
});

test('a tampered audit record turns the chain badge red and points at it', async ({ page }) => {
  await signIn(page);
  await page.goto(url('/audit'));
  await expect(page.getByRole('heading', { name: 'Platform audit log' })).toBeVisible();
  await inspect(page, 'platform-audit');

  await page.goto(url(`/m/${state.shop.merchant_id}/audit`));
  await expect(page.getByRole('heading', { name: 'Audit log' })).toBeVisible();
  await page.getByRole('button', { name: 'Verify chain' }).click();
  await expect(page.getByTestId('chain-badge')).toHaveAttribute('data-state', 'ok');
  await page.getByRole('button', { name: /^Open audit record / }).first().click();
  const drawer = page.getByRole('dialog', { name: /^Audit record #/ });
  await expect(drawer).toContainText('request_digest');
  await inspect(page, 'audit-drawer');
  await drawer.getByRole('button', { name: 'Close dialog' }).click();
  await inspect(page, 'audit');

  const schema = schemaOf(state.shop.merchant_id);
  const victim = psql(`SELECT audit_id FROM ${schema}.audit_records WHERE seq IS NOT NULL ORDER BY seq OFFSET 3 LIMIT 1`);
  expect(victim).toMatch(/^\d+$/);
  psql(`SET session_replication_role = replica; UPDATE ${schema}.audit_records SET outcome = 'TAMPERED' WHERE audit_id = ${victim}`);

  await page.getByRole('button', { name: 'Verify chain' }).click();
  const badge = page.getByTestId('chain-badge');
  await expect(badge).toHaveAttribute('data-state', 'broken');
  await expect(badge).toContainText(`#${victim}`);
  const bad = page.getByTestId('bad-record');
  await expect(bad).toContainText(`First bad record: #${victim}`);
  await expect(bad.locator('tr.bad-row')).toContainText(victim);
  await expect(page).toHaveURL(new RegExp(`bad=${victim}`));
  await inspect(page, 'audit-broken');

  // The merchant page shows the same red badge, linking to the record.
  await page.goto(url(`/m/${state.shop.merchant_id}/audit?verify=full`));
  await expect(page.getByTestId('chain-badge')).toHaveAttribute('data-state', 'broken');
});
