/** Liability section: range (7/30/90 days/custom) and bucket in the URL query, chart or table, reconciliation. */
import { useState } from 'preact/hooks';
import type { ApiClient } from '../api/client';
import { fetchLiability, type LiabilityReport } from '../api/reports';
import { useLoad } from '../lib/hooks';
import { liabilityRows } from '../lib/liability';
import { formatPoints } from '../lib/points';
import { utcDay } from '../lib/time';
import { route, setQuery } from '../router';
import { LiabilityChart, LiabilityTable } from './LiabilityChart';
import { Time } from './Time';

const RANGES = ['7', '30', '90', 'custom'] as const;

export function rangeToQuery(range: string, customFrom: string, customTo: string, now = new Date()): { from?: string; to?: string } {
  if (range === 'custom') {
    return {
      from: customFrom ? `${customFrom}T00:00:00Z` : undefined,
      to: customTo ? `${customTo}T23:59:59Z` : undefined,
    };
  }
  const days = Number(range) || 30;
  const start = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() - (days - 1)));
  return { from: start.toISOString().replace('.000Z', 'Z'), to: now.toISOString().replace(/\.\d+Z$/, 'Z') };
}

export function LiabilityPanel(props: { client: ApiClient; scopeKey: string; title: string; onReport?: (r: LiabilityReport) => void }) {
  const query = route.value.query;
  const range = query.get('range') ?? '30';
  const bucket = (['day', 'week', 'month'].includes(query.get('bucket') ?? '') ? query.get('bucket') : 'day') as 'day' | 'week' | 'month';
  const customFrom = query.get('from') ?? utcDay(new Date(Date.now() - 29 * 86400000));
  const customTo = query.get('to') ?? utcDay(new Date());
  const [asTable, setAsTable] = useState(query.get('view') === 'table');
  const update = (values: Record<string, string | undefined>) =>
    setQuery({ ...Object.fromEntries(query.entries()), ...values });
  const report = useLoad(async () => {
    const result = await fetchLiability(props.client, { ...rangeToQuery(range, customFrom, customTo), bucket, tz: 'UTC' });
    props.onReport?.(result);
    return result;
  }, [props.scopeKey, range, bucket, range === 'custom' ? customFrom : '', range === 'custom' ? customTo : '']);
  const data = report.data;
  const rows = data ? liabilityRows(data.opening_outstanding, data.buckets) : [];
  return (
    <section class="card" aria-labelledby="liability-title">
      <div class="card-header">
        <h2 id="liability-title">{props.title}</h2>
        <div class="toolbar">
          <div role="group" aria-label="Range" class="segmented">
            {RANGES.map((r) => (
              <button type="button" key={r} aria-pressed={range === r} onClick={() => update({ range: r })}>
                {r === 'custom' ? 'Custom' : `${r} days`}
              </button>
            ))}
          </div>
          <label class="inline">
            Bucket{' '}
            <select value={bucket} onChange={(e) => update({ bucket: e.currentTarget.value })}>
              <option value="day">Day</option>
              <option value="week">Week</option>
              <option value="month">Month</option>
            </select>
          </label>
          <button
            type="button"
            aria-pressed={asTable}
            onClick={() => {
              setAsTable(!asTable);
              update({ view: asTable ? undefined : 'table' });
            }}
          >
            {asTable ? 'View as chart' : 'View as table'}
          </button>
        </div>
      </div>
      {range === 'custom' && (
        <div class="toolbar">
          <label class="inline">
            From (UTC){' '}
            <input type="date" value={customFrom} onChange={(e) => update({ from: e.currentTarget.value })} />
          </label>
          <label class="inline">
            To (UTC){' '}
            <input type="date" value={customTo} onChange={(e) => update({ to: e.currentTarget.value })} />
          </label>
        </div>
      )}
      {report.loading && !data && <p aria-busy="true">Loading the liability report…</p>}
      {data && (
        <>
          <p class="muted">
            <Time iso={data.from} /> → <Time iso={data.to} /> ({data.tz}) · opening {formatPoints(data.opening_outstanding)} · closing{' '}
            <strong>{formatPoints(data.closing_outstanding)}</strong> · reconciliation{' '}
            {data.reconciliation.ok ? (
              <span class="badge badge-ok">ok: sum of balances {formatPoints(data.reconciliation.sum_of_balances)}</span>
            ) : (
              <span class="badge badge-bad">
                mismatch: closing {formatPoints(data.reconciliation.closing_outstanding)} ≠ sum of balances{' '}
                {formatPoints(data.reconciliation.sum_of_balances)}
              </span>
            )}
          </p>
          {asTable ? (
            <LiabilityTable rows={rows} opening={data.opening_outstanding} closing={data.closing_outstanding} caption={`${props.title} per ${data.bucket}`} />
          ) : (
            <>
              <LiabilityChart rows={rows} bucket={data.bucket} />
              <p class="visually-hidden">Chart of the same figures; use "View as table" to read them.</p>
            </>
          )}
          {data.merchants && data.merchants.length > 0 && (
            <details>
              <summary>Outstanding per merchant ({data.merchants.length})</summary>
              <table class="data-table">
                <thead>
                  <tr>
                    <th scope="col">Merchant</th>
                    <th scope="col" class="num">
                      Closing outstanding
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {data.merchants.map((m) => (
                    <tr key={m.merchant_id}>
                      <td>
                        <a href={`/admin/m/${m.merchant_id}`}>{m.slug}</a>
                      </td>
                      <td class="num">{formatPoints(m.closing_outstanding)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </details>
          )}
        </>
      )}
    </section>
  );
}
