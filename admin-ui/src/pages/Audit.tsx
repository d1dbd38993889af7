/**
 * Audit log (platform: /admin/audit; merchant: /admin/m/{id}/audit): filters in the URL, a detail drawer, and
 * "Verify chain" (full re-check) that jumps to the first bad record and shows its neighbours.
 */
import { useEffect, useState } from 'preact/hooks';
import { verifyChain } from '../api/audit';
import { type ApiClient, type AuditRecord, merchantClient, platformClient, reportError, unwrap } from '../api/client';
import { ChainBadge } from '../components/ChainBadge';
import { Dialog } from '../components/Dialog';
import { Pager } from '../components/Pager';
import { useLoad, usePaged } from '../lib/hooks';
import { formatTime, isoToLocalInput, localInputToIso } from '../lib/time';
import { href, route, setQuery } from '../router';
import { Time } from '../components/Time';

const FILTERS = ['from', 'to', 'method', 'outcome_code', 'key_id', 'uid'] as const;

function outcomeBadge(record: AuditRecord) {
  return (
    <span class={`badge ${record.outcome_code === 0 ? 'badge-ok' : 'badge-warn'}`}>
      {record.outcome} {record.outcome_code !== 0 ? `(${record.outcome_code})` : ''}
    </span>
  );
}

export function AuditPage(props: { merchantId: string | null }) {
  const client = props.merchantId ? merchantClient(props.merchantId) : platformClient();
  const chain = props.merchantId ?? 'platform';
  const auditPath = props.merchantId ? `/m/${props.merchantId}/audit` : '/audit';
  const query = route.value.query;
  const filters = Object.fromEntries(FILTERS.map((f) => [f, query.get(f) ?? ''])) as Record<(typeof FILTERS)[number], string>;
  const badId = query.get('bad');
  const openId = query.get('record');
  const q = () => Object.fromEntries(query.entries());
  const page = usePaged(
    (page_token) =>
      unwrap(
        client.GET('/api/v1/audit-logs', {
          params: {
            query: {
              from: filters.from || undefined,
              to: filters.to || undefined,
              method: filters.method || undefined,
              outcome_code: filters.outcome_code && /^\d+$/.test(filters.outcome_code) ? Number(filters.outcome_code) : undefined,
              key_id: filters.key_id || undefined,
              uid: filters.uid || undefined,
              page_size: 50,
              page_token,
            },
          },
        }),
      ),
    `${chain}|${FILTERS.map((f) => filters[f]).join('|')}`,
  );
  const [verifying, setVerifying] = useState(false);
  const runVerify = async () => {
    setVerifying(true);
    try {
      const status = await verifyChain(client, chain, true);
      setQuery({ ...q(), verify: 'full', bad: status.state === 'broken' ? status.firstBadAuditId ?? undefined : undefined });
      page.reload();
    } catch (cause) {
      reportError(cause);
    } finally {
      setVerifying(false);
    }
  };
  useEffect(() => {
    // Arriving from a red badge (?verify=full) re-runs the full verification.
    if (query.get('verify') === 'full') void runVerify();
    else verifyChain(client, chain, false).catch(() => undefined);
  }, [chain]);
  const setFilter = (name: string, value: string | undefined) => setQuery({ ...q(), [name]: value, page_token: undefined });
  const entryLink = (record: AuditRecord) =>
    record.merchant_id && record.uid ? href(`/m/${record.merchant_id}/accounts/${encodeURIComponent(record.uid)}`) : undefined;
  return (
    <section>
      <h1>{props.merchantId ? 'Audit log' : 'Platform audit log'}</h1>
      <div class="toolbar">
        <ChainBadge chain={chain} auditPath={auditPath} />
        <button type="button" class="primary" onClick={runVerify} disabled={verifying}>
          {verifying ? 'Verifying…' : 'Verify chain'}
        </button>
      </div>
      {badId && <BadRecord client={client} auditId={badId} onOpen={(id) => setQuery({ ...q(), record: id })} />}
      <form class="filters" role="search" aria-label="Audit filters" onSubmit={(e) => e.preventDefault()}>
        <label>
          From (UTC)
          <input type="datetime-local" value={isoToLocalInput(filters.from)} onChange={(e) => setFilter('from', localInputToIso(e.currentTarget.value))} />
        </label>
        <label>
          To (UTC)
          <input type="datetime-local" value={isoToLocalInput(filters.to)} onChange={(e) => setFilter('to', localInputToIso(e.currentTarget.value))} />
        </label>
        <label>
          Method
          <input list="audit-methods" value={filters.method} placeholder="/points.v1.PointsService/Earn" onChange={(e) => setFilter('method', e.currentTarget.value)} />
        </label>
        <datalist id="audit-methods">
          {Array.from(new Set(page.items.map((r) => r.method))).map((m) => (
            <option value={m} key={m} />
          ))}
        </datalist>
        <label>
          Outcome code
          <input inputMode="numeric" value={filters.outcome_code} placeholder="0, 40101, 42201…" onChange={(e) => setFilter('outcome_code', e.currentTarget.value)} />
        </label>
        <label>
          Key id
          <input value={filters.key_id} onChange={(e) => setFilter('key_id', e.currentTarget.value)} />
        </label>
        <label>
          uid
          <input value={filters.uid} onChange={(e) => setFilter('uid', e.currentTarget.value)} />
        </label>
        <button type="button" onClick={() => setQuery({})}>
          Clear filters
        </button>
      </form>
      <div class="table-wrap">
        <table class="data-table">
          <caption class="visually-hidden">Audit records</caption>
          <thead>
            <tr>
              <th scope="col">#</th>
              <th scope="col">When</th>
              <th scope="col">Method</th>
              <th scope="col">Outcome</th>
              <th scope="col">Key</th>
              <th scope="col">uid</th>
              <th scope="col" class="num">
                Latency
              </th>
              <th scope="col">Entries</th>
            </tr>
          </thead>
          <tbody>
            {page.items.map((r) => (
              <tr key={r.audit_id} data-audit-id={r.audit_id} class={r.audit_id === badId ? 'bad-row' : undefined}>
                <td>
                  <button type="button" class="link-button mono" onClick={() => setQuery({ ...q(), record: r.audit_id })} aria-label={`Open audit record ${r.audit_id}`}>
                    {r.audit_id}
                  </button>
                </td>
                <td><Time iso={r.occurred_at} /></td>
                <td class="mono small">{r.method}</td>
                <td>{outcomeBadge(r)}</td>
                <td class="mono small">{r.key_prefix ?? '—'}</td>
                <td>{r.uid ?? '—'}</td>
                <td class="num">{(r.latency_us / 1000).toFixed(1)} ms</td>
                <td>{r.entry_ids.length || '—'}</td>
              </tr>
            ))}
            {page.items.length === 0 && !page.loading && (
              <tr>
                <td colSpan={8} class="muted">
                  No audit records match.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      <Pager label="Audit" {...page} />
      <RecordDrawer client={client} auditId={openId} entryLink={entryLink} onClose={() => setQuery({ ...q(), record: undefined })} />
    </section>
  );
}

/** The first bad record of a broken chain, with its neighbours (two before and two after, by id). */
function BadRecord(props: { client: ApiClient; auditId: string; onOpen: (id: string) => void }) {
  const loaded = useLoad(async () => {
    const record = await unwrap(props.client.GET('/api/v1/audit-logs/{audit_id}', { params: { path: { audit_id: props.auditId } } }));
    let around: AuditRecord[] = [record];
    if (record.occurred_at) {
      const t = new Date(record.occurred_at).getTime();
      const page = await unwrap(
        props.client.GET('/api/v1/audit-logs', {
          params: { query: { from: new Date(t - 60_000).toISOString(), to: new Date(t + 60_000).toISOString(), page_size: 500 } },
        }),
      );
      const sorted = [...page.items].sort((a, b) => Number(a.audit_id) - Number(b.audit_id));
      const index = sorted.findIndex((r) => r.audit_id === record.audit_id);
      if (index >= 0) around = sorted.slice(Math.max(0, index - 2), index + 3);
    }
    return { record, around };
  }, [props.auditId]);
  return (
    <section class="card card-bad" aria-labelledby="bad-record-title" data-testid="bad-record">
      <h2 id="bad-record-title">First bad record: #{props.auditId}</h2>
      <p>The chain no longer matches from this record on: it was changed or a record before it was deleted.</p>
      {loaded.data && (
        <table class="data-table">
          <caption>Record #{props.auditId} and its neighbours</caption>
          <thead>
            <tr>
              <th scope="col">#</th>
              <th scope="col">When</th>
              <th scope="col">Method</th>
              <th scope="col">Outcome</th>
            </tr>
          </thead>
          <tbody>
            {loaded.data.around.map((r) => (
              <tr key={r.audit_id} class={r.audit_id === props.auditId ? 'bad-row' : undefined}>
                <td>
                  <button type="button" class="link-button mono" onClick={() => props.onOpen(r.audit_id)}>
                    {r.audit_id}
                  </button>
                  {r.audit_id === props.auditId && <span class="badge badge-bad">first bad</span>}
                </td>
                <td><Time iso={r.occurred_at} /></td>
                <td class="mono small">{r.method}</td>
                <td>{outcomeBadge(r)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function RecordDrawer(props: { client: ApiClient; auditId: string | null; entryLink: (r: AuditRecord) => string | undefined; onClose: () => void }) {
  const loaded = useLoad(
    async () => (props.auditId ? unwrap(props.client.GET('/api/v1/audit-logs/{audit_id}', { params: { path: { audit_id: props.auditId } } })) : null),
    [props.auditId],
  );
  const record = loaded.data;
  const link = record ? props.entryLink(record) : undefined;
  return (
    <Dialog open={props.auditId !== null} title={`Audit record #${props.auditId ?? ''}`} onClose={props.onClose} className="drawer">
      {!record ? (
        <p aria-busy="true">Loading…</p>
      ) : (
        <dl class="facts">
          {Object.entries(record).map(([field, value]) => (
            <div class="fact" key={field}>
              <dt>{field}</dt>
              <dd class={typeof value === 'string' && field.endsWith('id') ? 'mono' : undefined}>
                {field === 'entry_ids' && Array.isArray(value) ? (
                  value.length === 0 ? (
                    '—'
                  ) : (
                    <ul>
                      {value.map((id: string) => (
                        <li key={id}>{link ? <a href={`${link}?entry=${encodeURIComponent(id)}#entry-${id}`}>{id}</a> : <span class="mono">{id}</span>}</li>
                      ))}
                    </ul>
                  )
                ) : value === null || value === undefined ? (
                  '—'
                ) : field.endsWith('_at') && typeof value === 'string' ? (
                  formatTime(value)
                ) : (
                  String(value)
                )}
              </dd>
            </div>
          ))}
        </dl>
      )}
    </Dialog>
  );
}
