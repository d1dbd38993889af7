/** Copy text: navigator.clipboard needs a secure context, so over plain http fall back to execCommand on a selection. */
export async function copyText(text: string, source?: HTMLInputElement | HTMLTextAreaElement | null): Promise<boolean> {
  try {
    if (window.isSecureContext && navigator.clipboard) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // fall through to the selection fallback
  }
  try {
    if (source) {
      source.focus();
      source.select();
      return document.execCommand('copy');
    }
  } catch {
    // the caller tells the user to select and copy
  }
  return false;
}
