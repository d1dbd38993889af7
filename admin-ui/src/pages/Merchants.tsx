/** Merchants: search and status filter (in the URL), paginated list, register → show-once dialog for the first key. */
import { useState } from 'preact/hooks';
import { describeError, type Merchant, platformClient, reportError, unwrap } from '../api/client';
import { InlineError } from '../components/ErrorRegion';
import { Pager } from '../components/Pager';
import { ShowOnceDialog } from '../components/ShowOnceDialog';
import { usePaged } from '../lib/hooks';
import { href, route, setQuery } from '../router';
import { notify } from '../state';
import { Time } from '../components/Time';

const SLUG = /^[a-z0-9-]{3,40}$/;
const PAGE_SIZE = 50;
const MERCHANT_SCAN_PAGES_MAX = 10;

export function MerchantsPage() {
  const query = route.value.query;
  const search = query.get('q') ?? '';
  const status = query.get('status') ?? '';
  const client = platformClient();
  const needle = search.trim().toLowerCase();
  const matches = (m: Merchant) =>
    (!status || m.status === status) &&
    (!needle || m.slug.includes(needle) || m.name.toLowerCase().includes(needle) || m.merchant_id.toLowerCase().startsWith(needle));
  // The API lists merchants without search or status filters: with a filter, the page scans API pages (following their
  // tokens) until it has a page of matches; "Next page" continues the scan from the last API token.
  const page = usePaged(async (page_token) => {
    const found: Merchant[] = [];
    let token = page_token;
    for (let scanned = 0; scanned < MERCHANT_SCAN_PAGES_MAX; scanned++) {
      const apiPage = await unwrap(client.GET('/api/v1/merchants', { params: { query: { page_size: PAGE_SIZE, page_token: token } } }));
      found.push(...apiPage.items.filter(matches));
      token = apiPage.next_page_token ?? undefined;
      if (!token || found.length >= PAGE_SIZE || (!needle && !status)) break;
    }
    return { items: found, next_page_token: token ?? null };
  }, `merchants|${needle}|${status}`);
  const items = page.items;
  const [slug, setSlug] = useState('');
  const [name, setName] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ReturnType<typeof describeError> | null>(null);
  const [shown, setShown] = useState<{ plaintext: string; slug: string; merchantId: string } | null>(null);
  const [lastRegistered, setLastRegistered] = useState<{ slug: string; merchantId: string } | null>(null);
  const filters = (values: Record<string, string>) => setQuery({ q: search, status, ...values, page_token: undefined });

  return (
    <section>
      <h1>Merchants</h1>
      <div class="grid-2">
        <section class="card" aria-labelledby="merchant-list-title">
          <h2 id="merchant-list-title">All merchants</h2>
          <form class="toolbar" role="search" onSubmit={(e) => e.preventDefault()}>
            <label class="inline">
              Search{' '}
              <input type="search" value={search} placeholder="slug, name or id" onInput={(e) => filters({ q: e.currentTarget.value })} />
            </label>
            <label class="inline">
              Status{' '}
              <select value={status} onChange={(e) => filters({ status: e.currentTarget.value })}>
                <option value="">Any</option>
                <option value="active">Active</option>
                <option value="suspended">Suspended</option>
              </select>
            </label>
          </form>
          {page.loading && page.items.length === 0 ? (
            <p aria-busy="true">Loading merchants…</p>
          ) : (
            <div class="table-wrap">
              <table class="data-table">
                <caption class="visually-hidden">Merchants</caption>
                <thead>
                  <tr>
                    <th scope="col">Slug</th>
                    <th scope="col">Name</th>
                    <th scope="col">Status</th>
                    <th scope="col">Created</th>
                    <th scope="col">Manage</th>
                  </tr>
                </thead>
                <tbody>
                  {items.map((m) => (
                    <tr key={m.merchant_id}>
                      <td>
                        <a class="mono" href={href(`/m/${m.merchant_id}`)}>
                          {m.slug}
                        </a>
                      </td>
                      <td>{m.name}</td>
                      <td>
                        <span class={`badge ${m.status === 'active' ? 'badge-ok' : 'badge-warn'}`}>{m.status}</span>
                      </td>
                      <td><Time iso={m.created_at} /></td>
                      <td class="actions">
                        <a href={href(`/m/${m.merchant_id}/keys`)} aria-label={`Keys of ${m.slug}`}>
                          Keys
                        </a>
                        <a href={href(`/m/${m.merchant_id}/accounts`)} aria-label={`Accounts of ${m.slug}`}>
                          Accounts
                        </a>
                      </td>
                    </tr>
                  ))}
                  {items.length === 0 && (
                    <tr>
                      <td colSpan={5} class="muted">
                        {needle || status ? 'No merchant matches the filters.' : 'No merchants yet.'}
                      </td>
                    </tr>
                  )}
                </tbody>
              </table>
            </div>
          )}
          <Pager label="Merchants" {...page} />
        </section>
        <section class="card" aria-labelledby="register-title">
          <h2 id="register-title">Register a merchant</h2>
          <form
            class="stack"
            onSubmit={async (event) => {
              event.preventDefault();
              if (!SLUG.test(slug)) {
                setError({ code: 0, message: 'The slug must be 3–40 characters: lowercase letters, digits and dashes.' });
                return;
              }
              setBusy(true);
              setError(null);
              try {
                const registered = await unwrap(client.POST('/api/v1/merchants', { body: { slug, name: name.trim() } }));
                setShown({ plaintext: registered.api_key.key ?? '', slug: registered.merchant.slug, merchantId: registered.merchant.merchant_id });
                setLastRegistered({ slug: registered.merchant.slug, merchantId: registered.merchant.merchant_id });
                setSlug('');
                setName('');
                page.reload();
              } catch (cause) {
                reportError(cause);
              } finally {
                setBusy(false);
              }
            }}
          >
            <label for="merchant-slug">Slug</label>
            <input
              id="merchant-slug"
              class="mono"
              required
              pattern="[a-z0-9-]{3,40}"
              aria-describedby="merchant-slug-help"
              value={slug}
              onInput={(e) => setSlug(e.currentTarget.value)}
            />
            <p id="merchant-slug-help" class="muted">
              3–40 lowercase letters, digits or dashes; unique; cannot change later.
            </p>
            <label for="merchant-name">Name</label>
            <input id="merchant-name" required value={name} onInput={(e) => setName(e.currentTarget.value)} />
            <div role="alert">
              <InlineError error={error} />
            </div>
            <button type="submit" class="primary" disabled={busy}>
              {busy ? 'Registering…' : 'Register'}
            </button>
          </form>
          {lastRegistered && (
            <p role="status">
              Registered <a href={href(`/m/${lastRegistered.merchantId}`)}>{lastRegistered.slug}</a>.
            </p>
          )}
        </section>
      </div>
      <ShowOnceDialog
        plaintext={shown?.plaintext ?? null}
        title="First API key"
        context={shown ? `Merchant ${shown.slug} is registered with a key holding every merchant scope.` : undefined}
        onClose={() => {
          // Drop the plaintext from memory.
          setShown(null);
          notify('The key was dropped from memory.');
        }}
      />
    </section>
  );
}
