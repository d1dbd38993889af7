/** Loads the merchant of /admin/m/{id}/… and sets "acting as" for the pages under it. */
import type { ComponentChildren } from 'preact';
import { useEffect } from 'preact/hooks';
import { type Merchant, platformClient, unwrap } from '../api/client';
import { useLoad } from '../lib/hooks';
import { acting, me } from '../state';

export function MerchantScope(props: { merchantId: string; children: (merchant: Merchant) => ComponentChildren }) {
  const isAdmin = me.value?.api_key.scopes.includes('admin') ?? false;
  const loaded = useLoad(async () => {
    // A merchant key cannot read /merchants/{id}; /me names its own merchant.
    if (!isAdmin && me.value?.merchant?.merchant_id === props.merchantId) return me.value.merchant;
    return unwrap(platformClient().GET('/api/v1/merchants/{merchant_id}', { params: { path: { merchant_id: props.merchantId } } }));
  }, [props.merchantId]);
  const merchant = loaded.data;
  useEffect(() => {
    if (merchant && isAdmin) acting.value = merchant;
  }, [merchant, isAdmin]);
  if (loaded.loading && !merchant) return <p aria-busy="true">Loading the merchant…</p>;
  if (!merchant) return <h1>Merchant not available</h1>;
  return <>{props.children(merchant)}</>;
}
