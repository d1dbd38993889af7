/** The audit-chain badge: "verified N records, checked T ago", "broken at record #id" (a link), checking, or unknown. */
import { chains } from '../api/audit';
import { href } from '../router';
import { ago } from '../lib/time';
import { formatPoints } from '../lib/points';
import { useNow } from '../lib/hooks';

export function ChainBadge(props: { chain: string; auditPath: string; label?: string }) {
  useNow(10_000);
  const status = chains.value[props.chain];
  const label = props.label ?? 'Audit chain';
  if (!status) return <span class="badge badge-neutral" data-testid="chain-badge" data-state="unknown">{label}: not checked yet</span>;
  if (status.state === 'checking' && status.checked === undefined) {
    return <span class="badge badge-neutral" data-testid="chain-badge" data-state="checking">{label}: checking…</span>;
  }
  if (status.state === 'error') {
    return (
      <span class="badge badge-warn" data-testid="chain-badge" data-state="error">
        {label}: could not verify ({status.message})
      </span>
    );
  }
  if (status.state === 'broken' || (status.state === 'checking' && status.firstBadAuditId)) {
    return (
      <a
        class="badge badge-bad"
        data-testid="chain-badge"
        data-state="broken"
        href={href(props.auditPath, { verify: 'full', bad: status.firstBadAuditId ?? undefined })}
      >
        {label}: broken at record #{status.firstBadAuditId}
        {status.reason ? ` (${status.reason})` : ''}
      </a>
    );
  }
  const records = status.chainLength ?? status.checked ?? 0;
  return (
    <span class="badge badge-ok" data-testid="chain-badge" data-state={status.state === 'checking' ? 'checking' : 'ok'}>
      {label}: verified {formatPoints(records)} records, checked {ago(new Date(status.verifiedAt).toISOString())}
    </span>
  );
}
