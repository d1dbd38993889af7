/** The aria-live region where API errors appear with their message and SPEC code. */
import { dismissError, errors, notice } from '../state';

export function ErrorRegion() {
  return (
    <div class="messages">
      <div role="alert" aria-live="assertive" aria-atomic="false" class="error-region">
        {errors.value.map((error) => (
          <div class="error-item" key={error.id}>
            <div>
              <strong>{error.message}</strong>
              {error.code !== 0 && <span class="code-chip"> code {error.code}</span>}
              {error.hint && <p class="hint">{error.hint}</p>}
            </div>
            <button type="button" class="icon-button" aria-label="Dismiss error" onClick={() => dismissError(error.id)}>
              ×
            </button>
          </div>
        ))}
      </div>
      <div role="status" aria-live="polite" class="notice-region">
        {notice.value && <div class="notice-item">{notice.value}</div>}
      </div>
    </div>
  );
}

/** An inline error under a form (also announced via the global region). */
export function InlineError(props: { error: { code: number; message: string; hint?: string } | null }) {
  if (!props.error) return null;
  return (
    <div class="inline-error">
      <strong>{props.error.message}</strong>
      {props.error.code !== 0 && <span class="code-chip"> code {props.error.code}</span>}
      {props.error.hint && <p class="hint">{props.error.hint}</p>}
    </div>
  );
}
