import { fireEvent, render, screen, waitFor, within } from '@testing-library/preact';
import { afterEach, describe, expect, it } from 'vitest';
import { type Hold, merchantClient } from '../src/api/client';
import { captureAmount, holdBadge, holdStatus } from '../src/lib/holds';
import { HoldForm } from '../src/pages/AccountForms';
import { HoldsSection, useHolds } from '../src/pages/AccountHolds';
import { clearErrors } from '../src/state';
import { fail, mockFetch, ok, type Recorded, sampleEntry } from './helpers';

afterEach(() => clearErrors());

const inAnHour = () => new Date(Date.now() + 3600_000).toISOString();

function hold(overrides: Partial<Hold>): Hold {
  return {
    hold_id: '7',
    uid: 'alice',
    points: 100,
    captured_points: 0,
    status: 'active',
    expires_at: inAnHour(),
    reference: 'order-1',
    metadata: {},
    idempotency_key: 'k-hold',
    created_at: new Date().toISOString(),
    ...overrides,
  };
}

const account = (balance: number, held: number) => ({ uid: 'alice', balance, held, available: balance - held, expiring: [] });

function Host(props: { onChanged?: () => void }) {
  const client = merchantClient('m-1');
  const holds = useHolds(client, 'alice', 'm-1');
  return (
    <HoldsSection
      client={client}
      uid="alice"
      holds={holds}
      onChanged={() => {
        props.onChanged?.();
        holds.reload();
      }}
    />
  );
}

/** Answers the holds list with `list()` and capture/void with the next answer of `writes`. */
function serve(list: () => Hold[], ...writes: ((request: Recorded) => { status: number; body: unknown })[]) {
  let write = 0;
  return mockFetch((request) => {
    if (request.method === 'GET') return ok({ items: list(), next_page_token: null });
    const answer = writes[Math.min(write, writes.length - 1)];
    write += 1;
    return answer(request);
  });
}

const writesOf = (calls: Recorded[]) => calls.filter((c) => c.method === 'POST');
const keyOf = (call: Recorded) => (call.body as { idempotency_key: string }).idempotency_key;

describe('hold status and capture amounts', () => {
  it('reads an active hold past its expiry as expired at once', () => {
    const now = Date.parse('2026-12-06T12:00:00Z');
    expect(holdStatus({ status: 'active', expires_at: '2026-12-06T12:00:01Z' }, now)).toBe('active');
    expect(holdStatus({ status: 'active', expires_at: '2026-12-06T12:00:00Z' }, now)).toBe('expired');
    expect(holdStatus({ status: 'captured', expires_at: '2026-12-06T11:00:00Z' }, now)).toBe('captured');
    expect(holdBadge('active')).toBe('badge-info');
    expect(holdBadge('captured')).toBe('badge-ok');
    expect(holdBadge('expired')).toBe('badge-warn');
    expect(holdBadge('voided')).toBe('badge-neutral');
  });

  it('accepts a partial capture from 1 to the held points only', () => {
    expect(captureAmount('60', 100)).toEqual({ points: 60 });
    expect(captureAmount(' 100 ', 100)).toEqual({ points: 100 });
    expect(captureAmount('101', 100)).toEqual({ error: 'At most the 100 held points can be captured.' });
    for (const bad of ['0', '-5', '1.5', 'ten', '', '99999999999999999999']) expect(captureAmount(bad, 100)).toHaveProperty('error');
  });
});

describe('holds section', () => {
  it('lists holds with their state and offers capture and void on active holds only', async () => {
    serve(() => [
      hold({}),
      hold({ hold_id: '6', status: 'captured', captured_points: 60, capture_entry_id: '55', closed_at: new Date().toISOString(), reference: 'order-0' }),
      hold({ hold_id: '5', status: 'active', expires_at: new Date(Date.now() - 1000).toISOString(), reference: null }),
    ]);
    render(<Host />);
    const active = (await screen.findByText('#7')).closest('tr')!;
    expect(within(active).getByTestId('hold-status').textContent).toBe('active');
    expect(within(active).getByRole('button', { name: 'Capture hold 7 (order-1)' })).toBeTruthy();
    expect(within(active).getByRole('button', { name: 'Void hold 7 (order-1)' })).toBeTruthy();
    const captured = screen.getByText('#6').closest('tr')!;
    expect(within(captured).getByTestId('hold-status').textContent).toBe('captured');
    expect(captured.textContent).toContain('40 released');
    expect(within(captured).getByRole('link', { name: '55' }).getAttribute('href')).toBe('#entry-55');
    expect(within(captured).queryAllByRole('button', { name: /^(Capture|Void) / })).toHaveLength(0);
    // Active on the server but past its expiry: shown expired, without actions.
    const lapsed = screen.getByText('#5').closest('tr')!;
    expect(within(lapsed).getByTestId('hold-status').textContent).toBe('expired');
    expect(within(lapsed).queryAllByRole('button', { name: /^(Capture|Void) / })).toHaveLength(0);
  });

  it('reloads held and available when a listed active hold lapses', async () => {
    let reloads = 0;
    serve(() => [hold({ expires_at: new Date(Date.now() - 1000).toISOString() })]);
    render(<Host onChanged={() => (reloads += 1)} />);
    await waitFor(() => expect(reloads).toBe(1));
  });

  it('captures part of a hold after checking the amount, and shows what was released', async () => {
    let current = hold({});
    const { calls } = serve(
      () => [current],
      (request) => {
        current = hold({ status: 'captured', captured_points: 60, capture_entry_id: '101', closed_at: new Date().toISOString() });
        expect(request.url).toContain('/api/v1/points/holds/7/capture');
        return ok({ hold: current, account: account(240, 0), replayed: false, entry: { ...sampleEntry, delta: -60, hold_id: '7' } }, 201);
      },
    );
    render(<Host />);
    fireEvent.click(await screen.findByRole('button', { name: 'Capture hold 7 (order-1)' }));
    const dialog = screen.getByRole('dialog', { name: 'Capture hold #7' });
    fireEvent.click(within(dialog).getByRole('radio', { name: /Part of it/ }));
    fireEvent.input(within(dialog).getByLabelText('Points to capture'), { target: { value: '150' } });
    fireEvent.click(within(dialog).getByRole('button', { name: 'Capture' }));
    await within(dialog).findByText('At most the 100 held points can be captured.');
    expect(writesOf(calls)).toHaveLength(0);
    fireEvent.input(within(dialog).getByLabelText('Points to capture'), { target: { value: '60' } });
    fireEvent.click(within(dialog).getByRole('button', { name: 'Capture' }));
    const result = await screen.findByTestId('hold-action-result');
    expect(result.textContent).toContain('Hold #7 captured: 60 points spent (entry 101), 40 released');
    expect(result.textContent).toContain('available 240');
    expect(writesOf(calls)[0].body).toEqual({ idempotency_key: keyOf(writesOf(calls)[0]), points: 60 });
    expect(writesOf(calls)[0].headers.get('x-merchant-id')).toBe('m-1');
    await waitFor(() => expect(screen.getByText('#7').closest('tr')!.getAttribute('data-status')).toBe('captured'));
  });

  it('captures the whole hold without a points field', async () => {
    const { calls } = serve(
      () => [hold({})],
      () => ok({ hold: hold({ status: 'captured', captured_points: 100 }), account: account(200, 0), replayed: false }, 201),
    );
    render(<Host />);
    fireEvent.click(await screen.findByRole('button', { name: 'Capture hold 7 (order-1)' }));
    fireEvent.click(within(screen.getByRole('dialog', { name: 'Capture hold #7' })).getByRole('button', { name: 'Capture' }));
    await screen.findByTestId('hold-action-result');
    expect(writesOf(calls)[0].body).toEqual({ idempotency_key: keyOf(writesOf(calls)[0]) });
  });

  it('shows the envelope error in the dialog and keeps the idempotency key across a reopen; a replay shows its badge', async () => {
    const { calls } = serve(
      () => [hold({})],
      () => fail(50301, 'database unavailable; retry', 503),
      () => ok({ hold: hold({ status: 'voided', closed_at: new Date().toISOString() }), account: account(300, 0), replayed: true }),
    );
    render(<Host />);
    fireEvent.click(await screen.findByRole('button', { name: 'Void hold 7 (order-1)' }));
    let dialog = screen.getByRole('dialog', { name: 'Void hold #7' });
    fireEvent.click(within(dialog).getByRole('button', { name: 'Void hold' }));
    await within(dialog).findByText('database unavailable; retry');
    expect(dialog.textContent).toContain('code 50301');
    fireEvent.click(within(dialog).getByRole('button', { name: 'Cancel' }));
    fireEvent.click(screen.getByRole('button', { name: 'Void hold 7 (order-1)' }));
    dialog = screen.getByRole('dialog', { name: 'Void hold #7' });
    fireEvent.click(within(dialog).getByRole('button', { name: 'Void hold' }));
    const result = await screen.findByTestId('hold-action-result');
    expect(result.textContent).toContain('replayed');
    expect(result.textContent).toContain('Hold #7 voided: 100 points released');
    expect(result.textContent).toContain('nothing changed');
    const [first, second] = writesOf(calls);
    expect(first.url).toContain('/api/v1/points/holds/7/void');
    expect(keyOf(second)).toBe(keyOf(first));
  });

  it('explains a hold that is no longer active', async () => {
    serve(
      () => [hold({})],
      () => fail(42203, 'hold 7 is voided', 422),
    );
    render(<Host />);
    fireEvent.click(await screen.findByRole('button', { name: 'Capture hold 7 (order-1)' }));
    const dialog = screen.getByRole('dialog', { name: 'Capture hold #7' });
    fireEvent.click(within(dialog).getByRole('button', { name: 'Capture' }));
    await within(dialog).findByText('hold 7 is voided');
    expect(dialog.textContent).toContain('code 42203');
    expect(dialog.textContent).toContain('no longer active');
  });
});

describe('hold form', () => {
  it('creates a hold with the chosen expiry and shows the available points', async () => {
    const { calls } = mockFetch(() => ok({ hold: hold({ points: 80, reference: 'order-9' }), account: account(300, 80), replayed: false }, 201));
    render(<HoldForm client={merchantClient('m-1')} uid="alice" onDone={() => undefined} />);
    fireEvent.input(screen.getByLabelText('Points'), { target: { value: 'eighty' } });
    fireEvent.click(screen.getByRole('button', { name: 'Hold' }));
    await screen.findByText('Points must be a whole number greater than 0.');
    expect(calls).toHaveLength(0);
    fireEvent.input(screen.getByLabelText('Points'), { target: { value: '80' } });
    fireEvent.click(screen.getByRole('radio', { name: '1 hour' }));
    fireEvent.input(screen.getByLabelText('Reference (optional)'), { target: { value: 'order-9' } });
    const before = Date.now();
    fireEvent.click(screen.getByRole('button', { name: 'Hold' }));
    const result = await screen.findByTestId('hold-result');
    expect(result.textContent).toContain('Hold 7 of 80 points');
    expect(result.textContent).toContain('available now 220');
    const body = calls[0].body as { uid: string; points: number; reference: string; expires_at: string; idempotency_key: string };
    expect(body).toMatchObject({ uid: 'alice', points: 80, reference: 'order-9' });
    expect(body.idempotency_key).toMatch(/^hold-[0-9a-f]{32}$/);
    const ahead = Date.parse(body.expires_at) - before;
    expect(ahead).toBeGreaterThanOrEqual(3600_000 - 1000);
    expect(ahead).toBeLessThanOrEqual(3600_000 + 5000);
  });
});
