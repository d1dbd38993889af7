/** The app shell: skip link, top bar (caller, acting banner, sign out), navigation, error region and the routes. */
import { useEffect, useState } from 'preact/hooks';
import { platformClient, reportError, unwrap } from './api/client';
import { ConfirmWriteHost } from './components/ConfirmWrite';
import { ErrorRegion } from './components/ErrorRegion';
import { AccountPage } from './pages/Account';
import { AccountsPage } from './pages/Accounts';
import { AuditPage } from './pages/Audit';
import { KeysPage } from './pages/Keys';
import { MerchantDetailPage } from './pages/MerchantDetail';
import { MerchantScope } from './pages/MerchantScope';
import { MerchantsPage } from './pages/Merchants';
import { OverviewPage } from './pages/Overview';
import { RulesPage } from './pages/Rules';
import { SignInPage } from './pages/SignIn';
import { href, match, navigate, route } from './router';
import { acting, apiKey, clearErrors, lockSession, me } from './state';

function TopBar() {
  const caller = me.value;
  const merchant = acting.value;
  const isAdmin = caller?.api_key.scopes.includes('admin') ?? false;
  return (
    <header class={`topbar ${merchant ? 'topbar-acting' : ''}`}>
      <div class="topbar-row">
        <a class="brand" href={href(isAdmin ? '/overview' : '/')}>
          Points admin
        </a>
        {caller && (
          <nav aria-label="Main" class="mainnav">
            {isAdmin && (
              <>
                <NavLink path="/overview" label="Overview" />
                <NavLink path="/merchants" label="Merchants" />
                <NavLink path="/audit" label="Platform audit" />
              </>
            )}
          </nav>
        )}
        <div class="spacer" />
        {caller && (
          <div class="caller">
            <a href={href('/')} class="caller-key" title={caller.api_key.scopes.join(', ')}>
              {caller.api_key.name} <span class="mono muted">{caller.api_key.prefix}…</span>
            </a>
            <button
              type="button"
              onClick={() => {
                lockSession(null);
                navigate('/');
              }}
            >
              Sign out
            </button>
          </div>
        )}
      </div>
      {merchant && (
        <div class="acting-banner" role="region" aria-label="Acting as merchant">
          <span>
            Acting as <strong class="mono">{merchant.slug}</strong> ({merchant.name}){merchant.status !== 'active' ? ` · ${merchant.status}` : ''}
          </span>
          <nav aria-label="Merchant" class="subnav">
            <NavLink path={`/m/${merchant.merchant_id}`} label="Merchant" exact />
            <NavLink path={`/m/${merchant.merchant_id}/keys`} label="Keys" />
            <NavLink path={`/m/${merchant.merchant_id}/accounts`} label="Accounts" />
            <NavLink path={`/m/${merchant.merchant_id}/rules`} label="Rules" />
            <NavLink path={`/m/${merchant.merchant_id}/audit`} label="Audit" />
          </nav>
          {isAdmin && (
            <a class="stop-acting" href={href('/merchants')}>
              Stop acting
            </a>
          )}
        </div>
      )}
    </header>
  );
}

function NavLink(props: { path: string; label: string; exact?: boolean }) {
  const current = route.value.path;
  const active = props.exact ? current === props.path : current === props.path || current.startsWith(`${props.path}/`);
  return (
    <a href={href(props.path)} aria-current={active ? 'page' : undefined} class="navlink">
      {props.label}
    </a>
  );
}

function Routes() {
  const path = route.value.path;
  if (path === '/' || path === '') return <SignInPage />;
  if (!me.value) return <SignInPage />;
  if (path === '/overview') return <OverviewPage />;
  if (path === '/merchants') return <MerchantsPage />;
  if (path === '/audit') return <AuditPage merchantId={null} />;
  const scoped = match('/m/:id', path) ?? match('/m/:id/:section', path) ?? match('/m/:id/:section/:uid', path);
  if (scoped) {
    return (
      <MerchantScope merchantId={scoped.id}>
        {(merchant) => {
          const section = scoped.section;
          if (!section) return <MerchantDetailPage merchant={merchant} />;
          if (section === 'keys' && !scoped.uid) return <KeysPage merchant={merchant} />;
          if (section === 'accounts' && !scoped.uid) return <AccountsPage merchant={merchant} />;
          if (section === 'accounts' && scoped.uid) return <AccountPage merchant={merchant} uid={scoped.uid} />;
          if (section === 'rules' && !scoped.uid) return <RulesPage merchant={merchant} />;
          if (section === 'audit' && !scoped.uid) return <AuditPage merchantId={merchant.merchant_id} />;
          return <NotFound />;
        }}
      </MerchantScope>
    );
  }
  return <NotFound />;
}

function NotFound() {
  return (
    <section>
      <h1>Not found</h1>
      <p>
        There is no page at this address. <a href={href('/overview')}>Go to the overview</a>.
      </p>
    </section>
  );
}

/** Restores the caller from the key kept in sessionStorage (deep links, reloads). */
function useRestoreSession(): boolean {
  const [restoring, setRestoring] = useState(Boolean(apiKey.value && !me.value));
  useEffect(() => {
    if (!apiKey.value || me.value) {
      setRestoring(false);
      return;
    }
    setRestoring(true);
    unwrap(platformClient().GET('/api/v1/me'))
      .then((caller) => (me.value = caller))
      .catch((error) => reportError(error))
      .finally(() => setRestoring(false));
  }, [apiKey.value]);
  return restoring;
}

export function App() {
  const restoring = useRestoreSession();
  const path = route.value.path;
  useEffect(() => {
    clearErrors();
    // Leaving the merchant pages ends "acting as".
    if (!path.startsWith('/m/')) acting.value = null;
    // Move focus to the page heading after navigation so screen readers announce the new page.
    const heading = document.querySelector<HTMLElement>('main h1');
    if (heading) {
      heading.setAttribute('tabindex', '-1');
      heading.focus({ preventScroll: true });
    }
  }, [path]);
  return (
    <>
      <a class="skip-link" href="#main">
        Skip to content
      </a>
      <TopBar />
      <ErrorRegion />
      <main id="main" tabIndex={-1}>
        {restoring ? <p aria-busy="true">Restoring your session…</p> : <Routes />}
      </main>
      <ConfirmWriteHost />
    </>
  );
}
