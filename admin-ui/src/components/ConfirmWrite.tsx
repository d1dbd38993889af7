/** "Writes while acting for a merchant ask for confirmation": a promise-based confirm rendered once by the app shell. */
import { signal } from '@preact/signals';
import { Dialog } from './Dialog';
import { acting } from '../state';

const pending = signal<{ summary: string; resolve: (ok: boolean) => void } | null>(null);

/** Resolves true when the admin confirms a write made on behalf of the merchant being acted for. */
export function confirmWrite(summary: string): Promise<boolean> {
  if (!acting.value) return Promise.resolve(true);
  return new Promise((resolve) => {
    pending.value = { summary, resolve };
  });
}

export function ConfirmWriteHost() {
  const current = pending.value;
  const finish = (ok: boolean) => {
    current?.resolve(ok);
    pending.value = null;
  };
  return (
    <Dialog open={current !== null} title="Confirm write as merchant" onClose={() => finish(false)} className="confirm-write">
      <p>
        You are acting as <strong class="mono">{acting.value?.slug}</strong>. This change is made on the merchant's behalf and
        audited with your admin key:
      </p>
      <p class="confirm-summary">{current?.summary}</p>
      <div class="dialog-actions">
        <button type="button" onClick={() => finish(false)}>
          Cancel
        </button>
        <button type="button" class="primary" autoFocus onClick={() => finish(true)}>
          Confirm
        </button>
      </div>
    </Dialog>
  );
}
