import { fireEvent, render, screen, waitFor } from '@testing-library/preact';
import { afterEach, describe, expect, it } from 'vitest';
import { merchantClient } from '../src/api/client';
import { newIdempotencyKey } from '../src/lib/idempotency';
import { SpendForm } from '../src/pages/AccountForms';
import { clearErrors, errors } from '../src/state';
import { fail, mockFetch, ok, sampleEntry } from './helpers';

afterEach(() => clearErrors());

function submitSpend(points: string) {
  fireEvent.input(screen.getByLabelText('Points'), { target: { value: points } });
  fireEvent.click(screen.getByRole('button', { name: 'Spend' }));
}

describe('idempotency keys', () => {
  it('are random and long enough without crypto.randomUUID', () => {
    const a = newIdempotencyKey('spend');
    expect(a).toMatch(/^spend-[0-9a-f]{32}$/);
    expect(newIdempotencyKey('spend')).not.toBe(a);
  });

  it('reuses the form key on retry after a failure and starts a new one after success', async () => {
    const { calls } = mockFetch(
      () => fail(50301, 'database unavailable; retry', 503),
      () => ok({ entry: sampleEntry, balance: 70, replayed: false }, 201),
      () => ok({ entry: sampleEntry, balance: 40, replayed: false }, 201),
    );
    render(<SpendForm client={merchantClient('m-1')} uid="alice" onDone={() => undefined} />);
    submitSpend('30');
    await waitFor(() => expect(calls.length).toBe(1));
    await waitFor(() => expect(errors.value[0]).toMatchObject({ code: 50301, message: 'database unavailable; retry' }));
    submitSpend('30');
    await waitFor(() => expect(screen.getByTestId('spend-result').textContent).toContain('balance now 70'));
    const first = (calls[0].body as { idempotency_key: string }).idempotency_key;
    expect((calls[1].body as { idempotency_key: string }).idempotency_key).toBe(first);
    expect(calls[1].headers.get('x-merchant-id')).toBe('m-1');
    submitSpend('30');
    await waitFor(() => expect(calls.length).toBe(3));
    expect((calls[2].body as { idempotency_key: string }).idempotency_key).not.toBe(first);
  });

  it('shows a replayed badge when the server answers with the stored result', async () => {
    mockFetch(() => ok({ entry: sampleEntry, balance: 70, replayed: true }, 200));
    render(<SpendForm client={merchantClient('m-1')} uid="alice" onDone={() => undefined} />);
    submitSpend('30');
    const result = await screen.findByTestId('spend-result');
    expect(result.textContent).toContain('replayed');
    expect(result.textContent).toContain('nothing changed');
  });

  it('explains insufficient points with the balance and idempotency conflicts', async () => {
    mockFetch(() => fail(42201, 'insufficient points: balance 20, requested 30', 422));
    render(<SpendForm client={merchantClient('m-1')} uid="alice" onDone={() => undefined} />);
    submitSpend('30');
    await waitFor(() => expect(errors.value.length).toBe(1));
    expect(errors.value[0]).toMatchObject({ code: 42201, message: 'insufficient points: balance 20, requested 30' });
    expect(errors.value[0].hint).toMatch(/balance/);
  });
});
