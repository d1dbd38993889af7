/** The admin app's main flows against the real server (see global-setup.ts for the seeded data). */
import { expect, test } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import { api, idem } from './api';
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
  await expect(page.locator('table.entries tbody tr').first()).toContainText('default@1');
  // The server currently answers the amount as "12.5" (scale not kept); either spelling is the same amount.
  await expect(page.locator('table.entries tbody tr').first()).toContainText(/12\.50? EUR/);

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

test('holds: reserve, see held and available, capture part of one, void another', async ({ page }) => {
  const shop = state.shop.merchant_id;
  const asShop = <T,>(method: string, path: string, body?: unknown) => api<T>(state.baseUrl, state.adminKey, method, path, body, shop);
  type HoldResult = { hold: { hold_id: string; status: string; points: number; captured_points: number } };
  const account = `/m/${shop}/accounts/erin`;
  const tiles = async (balance: string, held: string, available: string) => {
    await expect(page.getByTestId('balance')).toHaveText(balance);
    await expect(page.getByTestId('held')).toHaveText(held);
    await expect(page.getByTestId('available')).toHaveText(available);
  };
  await signIn(page);
  await page.goto(url(account));
  await expect(page.getByRole('heading', { name: 'Holds' })).toBeVisible();
  await expect(page.getByText('No holds.')).toBeVisible();
  const earn = page.getByRole('form', { name: 'Earn points' });
  await earn.getByRole('textbox', { name: 'Points', exact: true }).fill('500');
  await earn.getByRole('button', { name: 'Earn' }).click();
  await confirmActing(page);
  await tiles('500', '0', '500');

  // A hold through the form: available goes down, the balance does not.
  await page.getByRole('group', { name: 'Action' }).getByRole('button', { name: 'Hold' }).click();
  const holdForm = page.getByRole('form', { name: 'Hold points' });
  await holdForm.getByLabel('Points').fill('200');
  await holdForm.getByLabel('1 hour').check();
  await holdForm.getByLabel('Reference (optional)').fill('order-501');
  await holdForm.getByRole('button', { name: 'Hold' }).click();
  await confirmActing(page);
  await expect(page.getByTestId('hold-result')).toContainText('available now 300');
  const firstId = (await page.getByTestId('hold-result').locator('code').textContent()) ?? '';
  await tiles('500', '200', '300');
  // A second hold through the API.
  const second = await asShop<HoldResult>('POST', '/points/holds', { uid: 'erin', points: 100, idempotency_key: idem('hold'), reference: 'order-502' });
  await page.reload();
  await tiles('500', '300', '200');
  const firstRow = page.locator(`tr[data-hold-id="${firstId}"]`);
  const secondRow = page.locator(`tr[data-hold-id="${second.hold.hold_id}"]`);
  await expect(firstRow.getByTestId('hold-status')).toHaveText('active');
  await expect(secondRow.getByTestId('hold-status')).toHaveText('active');
  await expect(secondRow).toContainText('order-502');

  // A spend beyond what is available (not the balance) is refused with the envelope's message and code.
  await page.getByRole('group', { name: 'Action' }).getByRole('button', { name: 'Spend' }).click();
  await page.getByRole('form', { name: 'Spend points' }).getByLabel('Points').fill('250');
  await page.getByRole('form', { name: 'Spend points' }).getByRole('button', { name: 'Spend' }).click();
  await confirmActing(page);
  await expect(page.locator('.error-region')).toContainText('available balance 200');
  await expect(page.locator('.error-region')).toContainText('code 42201');
  await page.getByRole('button', { name: 'Dismiss error' }).click();
  await inspect(page, 'account-holds-active');

  // The account list shows the held points.
  await page.goto(url(`/m/${shop}/accounts?uid_prefix=erin`));
  const listed = page.locator('tbody tr', { has: page.getByRole('link', { name: 'erin', exact: true }) });
  await expect(listed.locator('td.num')).toHaveText(['500', '300', '200']);
  await inspect(page, 'accounts-held');
  await page.goto(url(account));

  // Capture 150 of the first hold: one spend entry of 150 with the hold's id; the other 50 are released.
  await firstRow.getByRole('button', { name: `Capture hold ${firstId} (order-501)` }).click();
  const capture = page.getByRole('dialog', { name: `Capture hold #${firstId}` });
  await capture.getByLabel(/Part of it/).check();
  await capture.getByLabel('Points to capture').fill('250');
  await capture.getByRole('button', { name: 'Capture' }).click();
  await expect(capture).toContainText('At most the 200 held points can be captured.');
  await capture.getByLabel('Points to capture').fill('150');
  await inspect(page, 'hold-capture-dialog');
  await capture.getByRole('button', { name: 'Capture' }).click();
  await confirmActing(page);
  await expect(capture).toBeHidden();
  await expect(page.getByTestId('hold-action-result')).toContainText(`Hold #${firstId} captured: 150 points spent`);
  await expect(page.getByTestId('hold-action-result')).toContainText('50 released');
  await expect(page.getByTestId('hold-action-result')).toBeFocused();
  await expect(firstRow.getByTestId('hold-status')).toHaveText('captured');
  await expect(firstRow).toContainText('50 released');
  await tiles('350', '100', '250');
  const captureEntry = page.locator('table.entries tbody tr').first();
  await expect(captureEntry).toContainText('−150');
  await expect(captureEntry).toContainText(`capture of hold #${firstId}`);
  await expect(captureEntry).toContainText('order-501');

  // Void the second: its points are available again.
  await secondRow.getByRole('button', { name: `Void hold ${second.hold.hold_id} (order-502)` }).click();
  const voiding = page.getByRole('dialog', { name: `Void hold #${second.hold.hold_id}` });
  await voiding.getByRole('button', { name: 'Void hold' }).click();
  await confirmActing(page);
  await expect(page.getByTestId('hold-action-result')).toContainText(`Hold #${second.hold.hold_id} voided: 100 points released`);
  await expect(secondRow.getByTestId('hold-status')).toHaveText('voided');
  await expect(secondRow.getByRole('button', { name: /^(Capture|Void) / })).toHaveCount(0);
  await tiles('350', '0', '350');

  // A hold voided elsewhere while the page shows it active: the capture answers HOLD_NOT_ACTIVE in the dialog.
  const stale = await asShop<HoldResult>('POST', '/points/holds', { uid: 'erin', points: 50, idempotency_key: idem('hold'), reference: 'order-503' });
  await page.reload();
  await tiles('350', '50', '300');
  await asShop('POST', `/points/holds/${stale.hold.hold_id}/void`, { idempotency_key: idem('void') });
  await page.getByRole('button', { name: `Capture hold ${stale.hold.hold_id} (order-503)` }).click();
  const staleDialog = page.getByRole('dialog', { name: `Capture hold #${stale.hold.hold_id}` });
  await staleDialog.getByRole('button', { name: 'Capture' }).click();
  await confirmActing(page);
  await expect(staleDialog).toContainText('code 42203');
  await expect(staleDialog).toContainText('no longer active');
  await staleDialog.getByRole('button', { name: 'Cancel' }).click();
  await page.reload();
  await expect(page.locator(`tr[data-hold-id="${stale.hold.hold_id}"]`).getByTestId('hold-status')).toHaveText('voided');

  // A hold that lapses while on screen turns expired and its points count as available again, without a reload.
  const lapsing = await asShop<HoldResult>('POST', '/points/holds', {
    uid: 'erin',
    points: 30,
    idempotency_key: idem('hold'),
    reference: 'order-504',
    expires_at: new Date(Date.now() + 4000).toISOString(),
  });
  await page.reload();
  await tiles('350', '30', '320');
  const lapsingRow = page.locator(`tr[data-hold-id="${lapsing.hold.hold_id}"]`);
  await expect(lapsingRow.getByTestId('hold-status')).toHaveText('active');
  await expect(lapsingRow.getByTestId('hold-status')).toHaveText('expired', { timeout: 15_000 });
  await tiles('350', '0', '350');

  // The server agrees: statuses, captured points and the balance.
  const read = (id: string) => asShop<HoldResult['hold']>('GET', `/points/holds/${id}`);
  expect(await read(firstId)).toMatchObject({ status: 'captured', points: 200, captured_points: 150 });
  expect(await read(second.hold.hold_id)).toMatchObject({ status: 'voided', captured_points: 0 });
  expect(await read(lapsing.hold.hold_id)).toMatchObject({ status: 'expired', captured_points: 0 });
  expect(await asShop('GET', '/points/accounts/erin')).toMatchObject({ balance: 350, held: 0, available: 350 });

  await inspect(page, 'account-holds');
  await page.emulateMedia({ colorScheme: 'dark' });
  await inspect(page, 'account-holds-dark');
});
