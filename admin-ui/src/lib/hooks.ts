/** Data-loading hooks: `useLoad` (one call, reported errors) and `usePaged` (API page tokens, token kept in the URL). */
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { reportError } from '../api/client';
import { route, setQuery } from '../router';

export interface Loaded<T> {
  data: T | undefined;
  loading: boolean;
  error: unknown;
  reload: () => void;
}

export function useLoad<T>(run: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<unknown>(undefined);
  const [generation, setGeneration] = useState(0);
  const runRef = useRef(run);
  runRef.current = run;
  useEffect(() => {
    let cancelled = false;
    setLoading(true);
    runRef
      .current()
      .then((value) => {
        if (!cancelled) {
          setData(value);
          setError(undefined);
        }
      })
      .catch((cause) => {
        if (!cancelled) {
          setError(cause);
          reportError(cause);
        }
      })
      .finally(() => {
        if (!cancelled) setLoading(false);
      });
    return () => {
      cancelled = true;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, generation]);
  const reload = useCallback(() => setGeneration((g) => g + 1), []);
  return { data, loading, error, reload };
}

export interface Page<T> {
  items: T[];
  next_page_token?: string | null;
}

/**
 * A paginated list. The current page token lives in the URL (`page_token`, or `tokenParam` when a screen pages two lists),
 * with the filters, so a link reproduces the page; "Previous" walks back through the tokens seen in this tab.
 */
export function usePaged<T>(fetchPage: (pageToken: string | undefined) => Promise<Page<T>>, filterKey: string, tokenParam = 'page_token') {
  const token = route.value.query.get(tokenParam) ?? undefined;
  const history = useRef<(string | undefined)[]>([]);
  const loaded = useLoad(() => fetchPage(token), [token, filterKey]);
  const filterRef = useRef(filterKey);
  if (filterRef.current !== filterKey) {
    filterRef.current = filterKey;
    history.current = [];
  }
  const query = () => Object.fromEntries(route.value.query.entries());
  return {
    ...loaded,
    items: loaded.data?.items ?? [],
    hasNext: Boolean(loaded.data?.next_page_token),
    hasPrevious: token !== undefined,
    next: () => {
      history.current.push(token);
      setQuery({ ...query(), [tokenParam]: loaded.data?.next_page_token ?? undefined }, { push: true });
    },
    previous: () => {
      const previous = history.current.pop();
      setQuery({ ...query(), [tokenParam]: previous }, { push: true });
    },
    first: () => {
      history.current = [];
      setQuery({ ...query(), [tokenParam]: undefined }, { push: true });
    },
  };
}

/** Re-renders every `ms` milliseconds (live countdowns, "checked T ago"). */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(timer);
  }, [ms]);
  return now;
}
