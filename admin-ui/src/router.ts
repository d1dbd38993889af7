/**
 * A small history-API router for paths under /admin/. `route` holds the current path (without the base) and query;
 * `navigate` pushes, `setQuery` replaces the query (filters live in the URL).
 */
import { signal } from '@preact/signals';

export const BASE = '/admin';

function current(): { path: string; query: URLSearchParams } {
  const { pathname, search } = window.location;
  let path = pathname.startsWith(BASE) ? pathname.slice(BASE.length) : pathname;
  if (path === '') path = '/';
  return { path, query: new URLSearchParams(search) };
}

export const route = signal(current());

export function href(path: string, query?: Record<string, string | undefined | null>): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== null && v !== '') params.set(k, v);
  const qs = params.toString();
  return `${BASE}${path}${qs ? `?${qs}` : ''}`;
}

export function navigate(to: string, options: { replace?: boolean } = {}): void {
  const url = to.startsWith(BASE) ? to : `${BASE}${to}`;
  if (options.replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  route.value = current();
  window.scrollTo?.(0, 0);
}

/** Replaces the query string (keeping the path); empty values are dropped. */
export function setQuery(values: Record<string, string | undefined | null>, options: { push?: boolean } = {}): void {
  const url = href(route.value.path, values);
  if (options.push) history.pushState(null, '', url);
  else history.replaceState(null, '', url);
  route.value = current();
}

export function startRouter(): () => void {
  const onPop = () => (route.value = current());
  window.addEventListener('popstate', onPop);
  // Same-origin links under /admin are handled here instead of reloading the page.
  const onClick = (event: MouseEvent) => {
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const anchor = (event.target as Element | null)?.closest?.('a');
    if (!anchor || anchor.target || anchor.hasAttribute('download')) return;
    if ((anchor.getAttribute('href') ?? '').startsWith('#')) return;
    const url = new URL(anchor.href, window.location.href);
    if (url.origin !== window.location.origin || !url.pathname.startsWith(BASE)) return;
    event.preventDefault();
    navigate(url.pathname + url.search);
  };
  document.addEventListener('click', onClick);
  return () => {
    window.removeEventListener('popstate', onPop);
    document.removeEventListener('click', onClick);
  };
}

/** Matches `pattern` like `/m/:id/accounts/:uid` against a path; returns decoded params or null. */
export function match(pattern: string, path: string): Record<string, string> | null {
  const p = pattern.split('/').filter(Boolean);
  const s = path.split('/').filter(Boolean);
  if (p.length !== s.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < p.length; i++) {
    if (p[i].startsWith(':')) params[p[i].slice(1)] = decodeURIComponent(s[i]);
    else if (p[i] !== s[i]) return null;
  }
  return params;
}
