/** Browse a merchant's accounts: uid prefix, order (uid or top holders), paginated; open any uid directly. */
import { useState } from 'preact/hooks';
import { type Merchant, merchantClient, unwrap } from '../api/client';
import { Pager } from '../components/Pager';
import { usePaged } from '../lib/hooks';
import { formatPoints } from '../lib/points';
import { href, navigate, route, setQuery } from '../router';
import { Time } from '../components/Time';

export function AccountsPage(props: { merchant: Merchant }) {
  const client = merchantClient(props.merchant.merchant_id);
  const query = route.value.query;
  const uidPrefix = query.get('uid_prefix') ?? '';
  const order = (query.get('order') === 'balance_desc' ? 'balance_desc' : 'uid') as 'uid' | 'balance_desc';
  const page = usePaged(
    (page_token) =>
      unwrap(
        client.GET('/api/v1/points/accounts', {
          params: { query: { uid_prefix: uidPrefix || undefined, order, page_size: 50, page_token } },
        }),
      ),
    `${props.merchant.merchant_id}|${uidPrefix}|${order}`,
  );
  const [openUid, setOpenUid] = useState('');
  const base = `/m/${props.merchant.merchant_id}/accounts`;
  return (
    <section>
      <h1>Accounts</h1>
      <div class="toolbar">
        <form class="toolbar" role="search" onSubmit={(e) => e.preventDefault()}>
          <label class="inline">
            uid prefix{' '}
            <input type="search" value={uidPrefix} onInput={(e) => setQuery({ uid_prefix: e.currentTarget.value, order })} />
          </label>
          <label class="inline">
            Order{' '}
            <select value={order} onChange={(e) => setQuery({ uid_prefix: uidPrefix, order: e.currentTarget.value })}>
              <option value="uid">By uid</option>
              <option value="balance_desc">Top holders</option>
            </select>
          </label>
        </form>
        <form
          class="toolbar"
          onSubmit={(event) => {
            event.preventDefault();
            if (openUid.trim()) navigate(`${base}/${encodeURIComponent(openUid.trim())}`);
          }}
        >
          <label class="inline">
            Open uid <input value={openUid} onInput={(e) => setOpenUid(e.currentTarget.value)} />
          </label>
          <button type="submit">Open</button>
        </form>
      </div>
      <div class="table-wrap">
        <table class="data-table">
          <caption class="visually-hidden">Accounts of {props.merchant.slug}</caption>
          <thead>
            <tr>
              <th scope="col">uid</th>
              <th scope="col" class="num">
                Balance
              </th>
              <th scope="col" class="num">
                Held
              </th>
              <th scope="col" class="num">
                Available
              </th>
              <th scope="col">Updated</th>
            </tr>
          </thead>
          <tbody>
            {page.items.map((a) => (
              <tr key={a.uid}>
                <td>
                  <a class="mono" href={href(`${base}/${encodeURIComponent(a.uid)}`)}>
                    {a.uid}
                  </a>
                </td>
                <td class="num">{formatPoints(a.balance)}</td>
                <td class="num">{formatPoints(a.held)}</td>
                <td class="num">{formatPoints(a.available)}</td>
                <td><Time iso={a.updated_at} /></td>
              </tr>
            ))}
            {page.items.length === 0 && !page.loading && (
              <tr>
                <td colSpan={5} class="muted">
                  No accounts{uidPrefix ? ` starting with “${uidPrefix}”` : ''}.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      <Pager label="Accounts" {...page} />
    </section>
  );
}
