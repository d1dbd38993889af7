import { fireEvent, render, screen } from '@testing-library/preact';
import { useState } from 'preact/hooks';
import { describe, expect, it } from 'vitest';
import { ShowOnceDialog } from '../src/components/ShowOnceDialog';

const KEY = 'lp_live_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789';

function Host() {
  const [key, setKey] = useState<string | null>(KEY);
  return (
    <>
      <ShowOnceDialog plaintext={key} onClose={() => setKey(null)} />
      <p data-testid="held">{key === null ? 'dropped' : 'held'}</p>
    </>
  );
}

describe('show-once dialog', () => {
  it('needs "I stored it" before it can close, then drops the key', () => {
    render(<Host />);
    expect((screen.getByLabelText('API key') as HTMLInputElement).value).toBe(KEY);
    const close = screen.getByRole('button', { name: 'Close' });
    expect((close as HTMLButtonElement).disabled).toBe(true);
    // Escape does nothing before the confirmation.
    fireEvent(document.querySelector('dialog')!, new Event('cancel', { cancelable: true }));
    expect(screen.getByTestId('held').textContent).toBe('held');
    fireEvent.click(screen.getByLabelText('I stored it'));
    expect((close as HTMLButtonElement).disabled).toBe(false);
    fireEvent.click(close);
    expect(screen.getByTestId('held').textContent).toBe('dropped');
    expect(document.body.innerHTML).not.toContain(KEY);
  });

  it('offers select-and-copy when the clipboard is unavailable', async () => {
    render(<Host />);
    fireEvent.click(screen.getByRole('button', { name: 'Copy' }));
    expect(await screen.findByText(/Copied|select the key and copy it/)).toBeTruthy();
  });
});
