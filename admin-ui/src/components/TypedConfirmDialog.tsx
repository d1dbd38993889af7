/** A confirmation that needs the user to type a given text (a slug, a key prefix) before the action is enabled. */
import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import { Dialog } from './Dialog';

export function TypedConfirmDialog(props: {
  open: boolean;
  title: string;
  expected: string;
  label: string;
  action: string;
  danger?: boolean;
  onConfirm: () => void | Promise<void>;
  onClose: () => void;
  children?: ComponentChildren;
}) {
  const [typed, setTyped] = useState('');
  const [busy, setBusy] = useState(false);
  const close = () => {
    setTyped('');
    props.onClose();
  };
  return (
    <Dialog open={props.open} title={props.title} onClose={close}>
      <form
        onSubmit={async (event) => {
          event.preventDefault();
          if (typed !== props.expected) return;
          setBusy(true);
          try {
            await props.onConfirm();
          } finally {
            setBusy(false);
            setTyped('');
          }
        }}
      >
        {props.children}
        <label for="typed-confirm">
          {props.label} <code>{props.expected}</code>
        </label>
        <input id="typed-confirm" class="mono" autoComplete="off" value={typed} onInput={(e) => setTyped(e.currentTarget.value)} />
        <div class="dialog-actions">
          <button type="button" onClick={close}>
            Cancel
          </button>
          <button type="submit" class={props.danger ? 'danger' : 'primary'} disabled={typed !== props.expected || busy}>
            {props.action}
          </button>
        </div>
      </form>
    </Dialog>
  );
}
