/** Sign in with an API key (checked with GET /me); when signed in, shows the key's name, prefix and scopes. */
import { useState } from 'preact/hooks';
import createClient from 'openapi-fetch';
import type { paths } from '../api/schema';
import { describeError, unwrap } from '../api/client';
import { InlineError } from '../components/ErrorRegion';
import { href, navigate } from '../router';
import { lockReason, me, signIn } from '../state';

const KEY_SHAPE = /^lp_(live|test)_[A-Za-z0-9]{36}$/;

export function SignInPage() {
  const [key, setKey] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ReturnType<typeof describeError> | null>(null);
  const caller = me.value;
  if (caller) {
    const isAdmin = caller.api_key.scopes.includes('admin');
    return (
      <section class="narrow">
        <h1>Signed in</h1>
        <dl class="facts">
          <dt>Key name</dt>
          <dd>{caller.api_key.name}</dd>
          <dt>Prefix</dt>
          <dd class="mono">
            {caller.api_key.prefix}…{caller.api_key.last4}
          </dd>
          <dt>Scopes</dt>
          <dd>
            {caller.api_key.scopes.map((s) => (
              <span class="chip" key={s}>
                {s}
              </span>
            ))}
          </dd>
          {caller.merchant && (
            <>
              <dt>Merchant</dt>
              <dd>
                {caller.merchant.name} (<span class="mono">{caller.merchant.slug}</span>)
              </dd>
            </>
          )}
        </dl>
        <p>
          {isAdmin ? (
            <a class="button primary" href={href('/overview')}>
              Go to the overview
            </a>
          ) : caller.merchant ? (
            <a class="button primary" href={href(`/m/${caller.merchant.merchant_id}`)}>
              Open merchant {caller.merchant.slug}
            </a>
          ) : null}
        </p>
      </section>
    );
  }
  return (
    <section class="narrow">
      <h1>Sign in</h1>
      {lockReason.value && (
        <p class="callout" role="status">
          {lockReason.value}
        </p>
      )}
      <form
        class="stack"
        onSubmit={async (event) => {
          event.preventDefault();
          const candidate = key.trim();
          if (!KEY_SHAPE.test(candidate)) {
            setError({ code: 0, message: 'That does not look like an API key (lp_live_… or lp_test_…, 44 characters).' });
            return;
          }
          setBusy(true);
          setError(null);
          try {
            const client = createClient<paths>({ baseUrl: window.location.origin, headers: { 'x-api-key': candidate } });
            const caller = await unwrap(client.GET('/api/v1/me'));
            signIn(candidate, caller);
            setKey('');
            if (caller.api_key.scopes.includes('admin')) navigate('/overview');
            else if (caller.merchant) navigate(`/m/${caller.merchant.merchant_id}`);
          } catch (cause) {
            setError(describeError(cause));
          } finally {
            setBusy(false);
          }
        }}
      >
        <label for="api-key">API key</label>
        <input
          id="api-key"
          name="api-key"
          type="password"
          class="mono"
          autoComplete="off"
          spellcheck={false}
          required
          value={key}
          onInput={(e) => setKey(e.currentTarget.value)}
          aria-describedby="api-key-help"
        />
        <p id="api-key-help" class="muted">
          The key is kept in this tab's session storage only and forgotten on sign out or after 30 idle minutes.
        </p>
        <div role="alert" aria-live="assertive">
          <InlineError error={error} />
        </div>
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Checking…' : 'Sign in'}
        </button>
      </form>
    </section>
  );
}
