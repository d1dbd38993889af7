/** One merchant: facts, rename, suspend/reactivate (typed slug confirmation), audit-chain badge and its liability. */
import { useEffect, useState } from 'preact/hooks';
import { verifyChain } from '../api/audit';
import { describeError, type Merchant, merchantClient, platformClient, reportError, unwrap } from '../api/client';
import { ChainBadge } from '../components/ChainBadge';
import { InlineError } from '../components/ErrorRegion';
import { LiabilityPanel } from '../components/LiabilityPanel';
import { TypedConfirmDialog } from '../components/TypedConfirmDialog';
import { href } from '../router';
import { acting, me, notify } from '../state';
import { Time } from '../components/Time';

export function MerchantDetailPage(props: { merchant: Merchant }) {
  const [merchant, setMerchant] = useState(props.merchant);
  const [name, setName] = useState(props.merchant.name);
  const [error, setError] = useState<ReturnType<typeof describeError> | null>(null);
  const [confirming, setConfirming] = useState(false);
  const isAdmin = me.value?.api_key.scopes.includes('admin') ?? false;
  const client = merchantClient(merchant.merchant_id);
  useEffect(() => {
    setMerchant(props.merchant);
    setName(props.merchant.name);
  }, [props.merchant.merchant_id]);
  useEffect(() => {
    verifyChain(client, merchant.merchant_id, false).catch(() => undefined);
  }, [merchant.merchant_id]);
  const update = async (body: { name?: string; status?: 'active' | 'suspended' }) => {
    setError(null);
    try {
      const updated = await unwrap(
        platformClient().PATCH('/api/v1/merchants/{merchant_id}', { params: { path: { merchant_id: merchant.merchant_id } }, body }),
      );
      setMerchant(updated);
      setName(updated.name);
      if (acting.value) acting.value = updated;
      notify(body.status ? `Merchant ${updated.slug} is now ${updated.status}.` : `Merchant renamed to ${updated.name}.`);
    } catch (cause) {
      reportError(cause);
    }
  };
  const suspended = merchant.status === 'suspended';
  return (
    <section>
      <h1>
        {merchant.name} <span class="mono muted">{merchant.slug}</span>
      </h1>
      <div class="badges">
        <span class={`badge ${suspended ? 'badge-warn' : 'badge-ok'}`}>{merchant.status}</span>
        <ChainBadge chain={merchant.merchant_id} auditPath={`/m/${merchant.merchant_id}/audit`} />
      </div>
      <div class="grid-2">
        <section class="card" aria-labelledby="facts-title">
          <h2 id="facts-title">Details</h2>
          <dl class="facts">
            <dt>Merchant id</dt>
            <dd class="mono">{merchant.merchant_id}</dd>
            <dt>Slug</dt>
            <dd class="mono">{merchant.slug}</dd>
            <dt>Created</dt>
            <dd><Time iso={merchant.created_at} /></dd>
          </dl>
          <ul class="link-list">
            <li>
              <a href={href(`/m/${merchant.merchant_id}/keys`)}>API keys</a>
            </li>
            <li>
              <a href={href(`/m/${merchant.merchant_id}/accounts`)}>Accounts</a>
            </li>
            <li>
              <a href={href(`/m/${merchant.merchant_id}/rules`)}>Rules</a>
            </li>
            <li>
              <a href={href(`/m/${merchant.merchant_id}/audit`)}>Audit log</a>
            </li>
          </ul>
        </section>
        {isAdmin && (
          <section class="card" aria-labelledby="manage-title">
            <h2 id="manage-title">Manage</h2>
            <form
              class="stack"
              onSubmit={(event) => {
                event.preventDefault();
                if (name.trim() && name.trim() !== merchant.name) void update({ name: name.trim() });
              }}
            >
              <label for="merchant-rename">Display name</label>
              <input id="merchant-rename" required value={name} onInput={(e) => setName(e.currentTarget.value)} />
              <button type="submit" disabled={!name.trim() || name.trim() === merchant.name}>
                Rename
              </button>
            </form>
            <div class="stack">
              <p class="muted">
                {suspended
                  ? 'Suspended: every key of this merchant is refused until it is reactivated.'
                  : 'Suspending refuses every key of this merchant at once; data is kept.'}
              </p>
              <button type="button" class={suspended ? 'primary' : 'danger'} onClick={() => setConfirming(true)}>
                {suspended ? 'Reactivate…' : 'Suspend…'}
              </button>
            </div>
            <div role="alert">
              <InlineError error={error} />
            </div>
          </section>
        )}
      </div>
      <LiabilityPanel client={client} scopeKey={merchant.merchant_id} title="Points liability" />
      <TypedConfirmDialog
        open={confirming}
        title={suspended ? `Reactivate ${merchant.slug}` : `Suspend ${merchant.slug}`}
        expected={merchant.slug}
        label="Type the merchant's slug to confirm:"
        action={suspended ? 'Reactivate' : 'Suspend'}
        danger={!suspended}
        onClose={() => setConfirming(false)}
        onConfirm={async () => {
          await update({ status: suspended ? 'active' : 'suspended' });
          setConfirming(false);
        }}
      >
        <p>{suspended ? 'Its keys will work again.' : 'All its keys will be refused until you reactivate it.'}</p>
      </TypedConfirmDialog>
    </section>
  );
}
