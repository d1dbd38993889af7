/**
 * One account: balance, held, available, points expiring soon; holds (capture, void); entries (paginated, kind filter in
 * the URL); actions.
 */
import { useState } from 'preact/hooks';
import { type Entry, type Merchant, merchantClient, unwrap } from '../api/client';
import { Pager } from '../components/Pager';
import { useLoad, usePaged } from '../lib/hooks';
import { formatDelta, formatPoints } from '../lib/points';
import { href, route, setQuery } from '../router';
import { AdjustForm, EarnForm, HoldForm, ReverseForm, SpendForm } from './AccountForms';
import { HoldsSection, useHolds } from './AccountHolds';
import { Time } from '../components/Time';

const ACTIONS = ['earn', 'spend', 'hold', 'adjust', 'reverse'] as const;
type Action = (typeof ACTIONS)[number];
const KINDS = ['earn', 'spend', 'adjust', 'reverse', 'expire'] as const;

export function AccountPage(props: { merchant: Merchant; uid: string }) {
  const client = merchantClient(props.merchant.merchant_id);
  const query = route.value.query;
  const kind = (KINDS as readonly string[]).includes(query.get('kind') ?? '') ? (query.get('kind') as (typeof KINDS)[number]) : undefined;
  const highlighted = query.get('entry');
  const account = useLoad(
    () => unwrap(client.GET('/api/v1/points/accounts/{uid}', { params: { path: { uid: props.uid } } })),
    [props.merchant.merchant_id, props.uid],
  );
  const entries = usePaged(
    (page_token) =>
      unwrap(
        client.GET('/api/v1/points/accounts/{uid}/entries', {
          params: { path: { uid: props.uid }, query: { kind, page_size: 50, page_token } },
        }),
      ),
    `${props.merchant.merchant_id}|${props.uid}|${kind ?? ''}`,
  );
  const holds = useHolds(client, props.uid, props.merchant.merchant_id);
  const [action, setAction] = useState<Action>('earn');
  const [reverseId, setReverseId] = useState('');
  const refresh = () => {
    account.reload();
    entries.reload();
    holds.reload();
  };
  const reversedBy = new Map<string, Entry>();
  for (const e of entries.items) if (e.reverses_entry_id) reversedBy.set(e.reverses_entry_id, e);
  const a = account.data;
  return (
    <section>
      <p class="breadcrumb">
        <a href={href(`/m/${props.merchant.merchant_id}/accounts`)}>Accounts</a> /
      </p>
      <h1>
        Account <span class="mono">{props.uid}</span>
      </h1>
      <div class="tiles" aria-busy={account.loading}>
        <div class="tile">
          <span class="tile-label">Balance</span>
          <span class="tile-value" data-testid="balance">
            {a ? formatPoints(a.balance) : '…'}
          </span>
        </div>
        <div class="tile">
          <span class="tile-label">Held</span>
          <span class="tile-value" data-testid="held">
            {a ? formatPoints(a.held) : '…'}
          </span>
        </div>
        <div class="tile">
          <span class="tile-label">Available</span>
          <span class="tile-value" data-testid="available">
            {a ? formatPoints(a.available) : '…'}
          </span>
        </div>
        <div class="tile">
          <span class="tile-label">Expiring in 30 days</span>
          <span class="tile-value">{a ? formatPoints(a.expiring.reduce((sum, x) => sum + x.points, 0)) : '…'}</span>
          {a && a.expiring.length > 0 && (
            <ul class="small">
              {a.expiring.map((x, i) => (
                <li key={i}>
                  {formatPoints(x.points)} on <Time iso={x.expires_at} />
                </li>
              ))}
            </ul>
          )}
        </div>
      </div>
      <HoldsSection client={client} uid={props.uid} holds={holds} onChanged={refresh} />
      <div class="grid-account">
        <section class="card" aria-labelledby="actions-title">
          <h2 id="actions-title">Actions</h2>
          <div role="group" aria-label="Action" class="segmented">
            {ACTIONS.map((x) => (
              <button type="button" key={x} aria-pressed={action === x} onClick={() => setAction(x)}>
                {x[0].toUpperCase() + x.slice(1)}
              </button>
            ))}
          </div>
          {action === 'earn' && <EarnForm client={client} uid={props.uid} onDone={refresh} />}
          {action === 'spend' && <SpendForm client={client} uid={props.uid} onDone={refresh} />}
          {action === 'hold' && <HoldForm client={client} uid={props.uid} onDone={refresh} />}
          {action === 'adjust' && <AdjustForm client={client} uid={props.uid} onDone={refresh} />}
          {action === 'reverse' && <ReverseForm client={client} uid={props.uid} entryId={reverseId} onEntryId={setReverseId} onDone={refresh} />}
        </section>
        <section class="card" aria-labelledby="entries-title">
          <div class="card-header">
            <h2 id="entries-title">Entries</h2>
            <label class="inline">
              Kind{' '}
              <select value={kind ?? ''} onChange={(e) => setQuery({ kind: e.currentTarget.value })}>
                <option value="">All</option>
                {KINDS.map((k) => (
                  <option value={k} key={k}>
                    {k}
                  </option>
                ))}
              </select>
            </label>
          </div>
          <div class="table-wrap">
            <table class="data-table entries">
              <caption class="visually-hidden">Entries of {props.uid}</caption>
              <thead>
                <tr>
                  <th scope="col">When</th>
                  <th scope="col">Kind</th>
                  <th scope="col" class="num">
                    Delta
                  </th>
                  <th scope="col" class="num">
                    Balance after
                  </th>
                  <th scope="col">Rule</th>
                  <th scope="col">Amount</th>
                  <th scope="col">Reference</th>
                  <th scope="col">Details</th>
                  <th scope="col">Actions</th>
                </tr>
              </thead>
              <tbody>
                {entries.items.map((e) => {
                  const reversal = reversedBy.get(e.entry_id);
                  return (
                    <tr key={e.entry_id} id={`entry-${e.entry_id}`} data-entry-id={e.entry_id} class={highlighted === e.entry_id ? 'highlight' : undefined}>
                      <td><Time iso={e.created_at} /></td>
                      <td>
                        <span class={`kind kind-${e.kind}`}>{e.kind}</span>
                      </td>
                      <td class="num">{formatDelta(e.delta)}</td>
                      <td class="num">{formatPoints(e.balance_after)}</td>
                      <td>{e.rule_code ? `${e.rule_code}@${e.rule_version}` : '—'}</td>
                      <td>{e.amount ? `${e.amount} ${e.currency ?? ''}` : '—'}</td>
                      <td>{e.reference ?? '—'}</td>
                      <td>
                        <details>
                          <summary>
                            <span class="mono">{e.entry_id}</span>
                          </summary>
                          <dl class="facts small">
                            <dt>Idempotency key</dt>
                            <dd class="mono">{e.idempotency_key}</dd>
                            {e.description && (
                              <>
                                <dt>Description</dt>
                                <dd>{e.description}</dd>
                              </>
                            )}
                            {e.expires_at && (
                              <>
                                <dt>Expires</dt>
                                <dd><Time iso={e.expires_at} /></dd>
                              </>
                            )}
                            <dt>Metadata</dt>
                            <dd>
                              <pre>{JSON.stringify(e.metadata ?? {}, null, 2)}</pre>
                            </dd>
                          </dl>
                        </details>
                        {e.reverses_entry_id && (
                          <div class="small">
                            reverses <a href={`#entry-${e.reverses_entry_id}`}>{e.reverses_entry_id}</a>
                          </div>
                        )}
                        {e.hold_id && (
                          <div class="small">
                            capture of hold <span class="mono">#{e.hold_id}</span>
                          </div>
                        )}
                        {reversal && (
                          <div class="small">
                            reversed by <a href={`#entry-${reversal.entry_id}`}>{reversal.entry_id}</a>
                          </div>
                        )}
                      </td>
                      <td>
                        {e.kind !== 'reverse' && e.kind !== 'expire' && !reversal && (
                          <button
                            type="button"
                            aria-label={`Reverse entry ${e.entry_id}`}
                            onClick={() => {
                              setReverseId(e.entry_id);
                              setAction('reverse');
                              setTimeout(() => document.getElementById('reverse-reason')?.focus(), 0);
                            }}
                          >
                            Reverse…
                          </button>
                        )}
                      </td>
                    </tr>
                  );
                })}
                {entries.items.length === 0 && !entries.loading && (
                  <tr>
                    <td colSpan={9} class="muted">
                      No entries yet; an unknown uid has balance 0.
                    </td>
                  </tr>
                )}
              </tbody>
            </table>
          </div>
          <Pager label="Entries" {...entries} />
        </section>
      </div>
    </section>
  );
}
