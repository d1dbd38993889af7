/**
 * Shows a freshly issued API key once. Closing needs the "I stored it" confirmation; on close the parent drops the key
 * from memory (this component keeps no copy).
 */
import { useRef, useState } from 'preact/hooks';
import { Dialog } from './Dialog';
import { copyText } from '../lib/clipboard';

export function ShowOnceDialog(props: { plaintext: string | null; title?: string; context?: string; onClose: () => void }) {
  const [stored, setStored] = useState(false);
  const [copyState, setCopyState] = useState<'idle' | 'copied' | 'manual'>('idle');
  const input = useRef<HTMLInputElement>(null);
  const close = () => {
    if (!stored) return;
    setStored(false);
    setCopyState('idle');
    props.onClose();
  };
  return (
    <Dialog open={props.plaintext !== null} title={props.title ?? 'New API key'} onClose={close} dismissable={stored}>
      <p>
        {props.context ? `${props.context} ` : ''}
        This is the only time the key is shown. Store it in your secret manager now; it cannot be retrieved later.
      </p>
      <label for="show-once-key">API key</label>
      <div class="copy-row">
        <input id="show-once-key" ref={input} class="mono" readOnly value={props.plaintext ?? ''} onFocus={(e) => e.currentTarget.select()} />
        <button
          type="button"
          onClick={async () => {
            const ok = await copyText(props.plaintext ?? '', input.current);
            setCopyState(ok ? 'copied' : 'manual');
          }}
        >
          Copy
        </button>
      </div>
      <p class="muted" role="status">
        {copyState === 'copied' ? 'Copied to the clipboard.' : copyState === 'manual' ? 'Copy is not available here: select the key and copy it.' : ''}
      </p>
      <label class="checkbox">
        <input type="checkbox" checked={stored} onChange={(e) => setStored(e.currentTarget.checked)} /> I stored it
      </label>
      <div class="dialog-actions">
        <button type="button" class="primary" disabled={!stored} onClick={close}>
          Close
        </button>
      </div>
    </Dialog>
  );
}
