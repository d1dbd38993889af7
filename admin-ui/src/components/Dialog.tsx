/**
 * A native <dialog> opened with showModal(): the browser makes the page behind it inert (focus stays inside) and
 * Escape cancels. Focus returns to the element that opened it.
 */
import type { ComponentChildren } from 'preact';
import { useEffect, useRef } from 'preact/hooks';

let dialogIds = 0;

export function Dialog(props: {
  open: boolean;
  title: string;
  onClose: () => void;
  /** When false, Escape does nothing (e.g. a show-once key not yet confirmed as stored). */
  dismissable?: boolean;
  className?: string;
  children: ComponentChildren;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const opener = useRef<Element | null>(null);
  const titleId = useRef(`dialog-title-${++dialogIds}`);
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (props.open && !dialog.open) {
      opener.current = document.activeElement;
      if (typeof dialog.showModal === 'function') dialog.showModal();
      else dialog.setAttribute('open', '');
      const first = dialog.querySelector<HTMLElement>('[autofocus], input:not([type=hidden]), select, textarea, button');
      first?.focus();
    } else if (!props.open && dialog.open) {
      if (typeof dialog.close === 'function') dialog.close();
      else dialog.removeAttribute('open');
      (opener.current as HTMLElement | null)?.focus?.();
    }
  }, [props.open]);
  useEffect(() => {
    const dialog = ref.current;
    return () => {
      if (dialog?.open && typeof dialog.close === 'function') dialog.close();
    };
  }, []);
  return (
    <dialog
      ref={ref}
      class={`dialog ${props.className ?? ''}`}
      aria-labelledby={titleId.current}
      onCancel={(event) => {
        event.preventDefault();
        if (props.dismissable !== false) props.onClose();
      }}
    >
      {props.open && (
        <div class="dialog-body">
          <header class="dialog-header">
            <h2 id={titleId.current}>{props.title}</h2>
            {props.dismissable !== false && (
              <button type="button" class="icon-button" aria-label="Close dialog" onClick={props.onClose}>
                ×
              </button>
            )}
          </header>
          {props.children}
        </div>
      )}
    </dialog>
  );
}
