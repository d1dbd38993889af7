/** Page helpers: sign in, axe (wcag2a/wcag2aa, fail on serious/critical), full-page screenshots. */
import AxeBuilder from '@axe-core/playwright';
import { expect, type Page } from '@playwright/test';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ADMIN_UI_DIR, readState } from './env';

export const state = readState();
export const url = (path: string) => `${state.baseUrl}/admin${path}`;
const SCREENSHOTS = join(ADMIN_UI_DIR, 'e2e', 'screenshots');

export async function signIn(page: Page, key = state.adminKey): Promise<void> {
  await page.goto(url('/'));
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('button', { name: 'Sign out' })).toBeVisible();
}

/** Runs axe on the page and fails on serious or critical violations (listing them). */
export async function checkA11y(page: Page, screen: string): Promise<void> {
  const results = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa']).analyze();
  const bad = results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  const summary = bad.map((v) => `${v.id} (${v.impact}): ${v.help}\n  ${v.nodes.map((n) => n.target.join(' ')).slice(0, 5).join('\n  ')}`);
  expect(summary, `axe violations on ${screen}`).toEqual([]);
}

export async function screenshot(page: Page, screen: string): Promise<void> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${screen}.png`), fullPage: true });
}

/** axe + screenshot of a screen. */
export async function inspect(page: Page, screen: string): Promise<void> {
  await checkA11y(page, screen);
  await screenshot(page, screen);
}

/** Accepts the "confirm write as merchant" dialog. */
export async function confirmActing(page: Page): Promise<void> {
  const dialog = page.getByRole('dialog', { name: 'Confirm write as merchant' });
  await expect(dialog).toBeVisible();
  await dialog.getByRole('button', { name: 'Confirm' }).click();
}
