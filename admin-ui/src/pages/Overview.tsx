/**
 * Overview: KPI tiles (merchants active/suspended, points outstanding, issued and redeemed today, keys expiring within
 * 7 days), the platform liability chart and the audit-chain badge (platform chain and every merchant's, incremental).
 */
import { useEffect, useState } from 'preact/hooks';
import { chains, verifyChain } from '../api/audit';
import { type Merchant, merchantClient, platformClient, unwrap } from '../api/client';
import { fetchLiability } from '../api/reports';
import { ChainBadge } from '../components/ChainBadge';
import { LiabilityPanel } from '../components/LiabilityPanel';
import { useLoad } from '../lib/hooks';
import { expiresWithin, SOON_MS } from '../lib/keyStatus';
import { formatPoints } from '../lib/points';
import { href } from '../router';

/** Caps the fan-out of per-merchant calls on the overview (the API has no platform-wide key or chain query). */
const MERCHANT_FAN_OUT = 100;

async function allMerchants(): Promise<Merchant[]> {
  const client = platformClient();
  const all: Merchant[] = [];
  let page_token: string | undefined;
  for (let i = 0; i < 20; i++) {
    const page = await unwrap(client.GET('/api/v1/merchants', { params: { query: { page_size: 500, page_token } } }));
    all.push(...page.items);
    if (!page.next_page_token) break;
    page_token = page.next_page_token;
  }
  return all;
}

async function inBatches<T>(items: T[], size: number, run: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(run));
}

function Tile(props: { label: string; value: string; detail?: string; testId?: string }) {
  return (
    <div class="tile">
      <span class="tile-label">{props.label}</span>
      <span class="tile-value" data-testid={props.testId}>
        {props.value}
      </span>
      {props.detail && <span class="tile-detail">{props.detail}</span>}
    </div>
  );
}

export function OverviewPage() {
  const client = platformClient();
  const merchants = useLoad(allMerchants, []);
  const today = useLoad(async () => {
    const now = new Date();
    const start = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()));
    return fetchLiability(client, { from: start.toISOString(), to: now.toISOString(), bucket: 'day', tz: 'UTC' });
  }, []);
  const [expiringKeys, setExpiringKeys] = useState<number | null>(null);
  const list = merchants.data ?? [];
  useEffect(() => {
    if (!merchants.data) return;
    let cancelled = false;
    const subset = merchants.data.slice(0, MERCHANT_FAN_OUT);
    void (async () => {
      let count = 0;
      await inBatches(subset, 4, async (m) => {
        try {
          const keys = await unwrap(merchantClient(m.merchant_id).GET('/api/v1/api-keys', { params: { query: { page_size: 500 } } }));
          count += keys.items.filter((k) => expiresWithin(k, SOON_MS)).length;
        } catch {
          // a suspended merchant or a missing scope: not counted
        }
      });
      if (!cancelled) setExpiringKeys(count);
    })();
    verifyChain(client, 'platform', false).catch(() => undefined);
    void inBatches(subset, 4, async (m) => {
      if (!cancelled) await verifyChain(merchantClient(m.merchant_id), m.merchant_id, false).catch(() => undefined);
    });
    return () => {
      cancelled = true;
    };
  }, [merchants.data]);
  const active = list.filter((m) => m.status === 'active').length;
  const suspended = list.filter((m) => m.status === 'suspended').length;
  const todayBucket = today.data?.buckets[today.data.buckets.length - 1];
  const broken = list.filter((m) => chains.value[m.merchant_id]?.state === 'broken');
  return (
    <section>
      <h1>Overview</h1>
      <div class="tiles">
        <Tile label="Merchants" value={merchants.data ? `${active} active` : '…'} detail={merchants.data ? `${suspended} suspended` : undefined} testId="kpi-merchants" />
        <Tile label="Points outstanding" value={today.data ? formatPoints(today.data.closing_outstanding) : '…'} testId="kpi-outstanding" />
        <Tile label="Issued today" value={today.data ? formatPoints(todayBucket?.issued ?? 0) : '…'} testId="kpi-issued-today" />
        <Tile label="Redeemed today" value={today.data ? formatPoints(todayBucket?.redeemed ?? 0) : '…'} testId="kpi-redeemed-today" />
        <Tile label="Keys expiring within 7 days" value={expiringKeys === null ? '…' : formatPoints(expiringKeys)} testId="kpi-expiring-keys" />
      </div>
      <section class="card" aria-labelledby="chains-title">
        <h2 id="chains-title">Audit chains</h2>
        <div class="badges">
          <ChainBadge chain="platform" auditPath="/audit" label="Platform chain" />
          {broken.map((m) => (
            <ChainBadge key={m.merchant_id} chain={m.merchant_id} auditPath={`/m/${m.merchant_id}/audit`} label={`Chain of ${m.slug}`} />
          ))}
        </div>
        <p class="muted small">
          {list.length > 0 &&
            `${list.filter((m) => chains.value[m.merchant_id]?.state === 'ok').length} of ${Math.min(list.length, MERCHANT_FAN_OUT)} merchant chains verified incrementally. `}
          Open a merchant's audit log and use “Verify chain” for a full re-check.
        </p>
      </section>
      <LiabilityPanel client={client} scopeKey="platform" title="Points liability (platform)" />
      <p>
        <a href={href('/merchants')}>Manage merchants →</a>
      </p>
    </section>
  );
}
