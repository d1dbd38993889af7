/** A merchant's API keys: list with status and live grace countdown; create, rotate (grace presets), revoke. */
import { useState } from 'preact/hooks';
import { type ApiKey, describeError, type Merchant, merchantClient, reportError, type Scope, unwrap } from '../api/client';
import { confirmWrite } from '../components/ConfirmWrite';
import { Dialog } from '../components/Dialog';
import { InlineError } from '../components/ErrorRegion';
import { Pager } from '../components/Pager';
import { ShowOnceDialog } from '../components/ShowOnceDialog';
import { TypedConfirmDialog } from '../components/TypedConfirmDialog';
import { useNow, usePaged } from '../lib/hooks';
import { keyStatus, SCOPE_MEANINGS } from '../lib/keyStatus';
import { ago, formatCountdown, formatTime } from '../lib/time';
import { notify } from '../state';
import { Time } from '../components/Time';

const MERCHANT_SCOPES = Object.keys(SCOPE_MEANINGS) as Scope[];
const EXPIRY_PRESETS = [
  { label: 'Never', days: 0 },
  { label: '30 days', days: 30 },
  { label: '90 days', days: 90 },
  { label: '1 year', days: 365 },
];
const GRACE_PRESETS = [
  { label: 'None (stops at once)', seconds: 0 },
  { label: '1 hour', seconds: 3600 },
  { label: '24 hours', seconds: 86400 },
  { label: '7 days', seconds: 604800 },
];
const rotatedThisSession = new Set<string>();

function StatusCell(props: { apiKey: ApiKey; all: ApiKey[]; now: number }) {
  const status = keyStatus(props.apiKey, props.all, props.now, rotatedThisSession);
  switch (status.kind) {
    case 'revoked':
      return <span class="badge badge-bad">revoked</span>;
    case 'expired':
      return <span class="badge badge-neutral">expired <Time iso={status.at} /></span>;
    case 'grace':
      return (
        <span class="badge badge-warn">
          in grace until <Time iso={status.until} /> · <span class="countdown">{formatCountdown(new Date(status.until).getTime() - props.now)}</span>
        </span>
      );
    case 'expires-soon':
      return <span class="badge badge-warn">expires soon (<Time iso={status.at} />)</span>;
    default:
      return <span class="badge badge-ok">active</span>;
  }
}

export function KeysPage(props: { merchant: Merchant }) {
  const client = merchantClient(props.merchant.merchant_id);
  const now = useNow(1000);
  const page = usePaged(
    (page_token) => unwrap(client.GET('/api/v1/api-keys', { params: { query: { page_size: 50, page_token } } })),
    props.merchant.merchant_id,
  );
  const [shown, setShown] = useState<{ plaintext: string; context: string } | null>(null);
  const [creating, setCreating] = useState(false);
  const [rotating, setRotating] = useState<ApiKey | null>(null);
  const [revoking, setRevoking] = useState<ApiKey | null>(null);
  return (
    <section>
      <h1>API keys</h1>
      <div class="toolbar">
        <button type="button" class="primary" onClick={() => setCreating(true)}>
          Create key…
        </button>
      </div>
      <div class="table-wrap">
        <table class="data-table">
          <caption class="visually-hidden">API keys of {props.merchant.slug}</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Key</th>
              <th scope="col">Scopes</th>
              <th scope="col">Created</th>
              <th scope="col">Last used</th>
              <th scope="col">Expires</th>
              <th scope="col">Status</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {page.items.map((k) => (
              <tr key={k.key_id} data-key-id={k.key_id}>
                <td>{k.name}</td>
                <td class="mono">
                  {k.prefix}…{k.last4}
                </td>
                <td>
                  {k.scopes.map((s) => (
                    <span class="chip" key={s} title={SCOPE_MEANINGS[s] ?? s}>
                      {s}
                    </span>
                  ))}
                </td>
                <td><Time iso={k.created_at} /></td>
                <td>{k.last_used_at ? ago(k.last_used_at, now) : 'never'}</td>
                <td>{k.expires_at ? formatTime(k.expires_at) : 'never'}</td>
                <td>
                  <StatusCell apiKey={k} all={page.items} now={now} />
                </td>
                <td class="actions">
                  {k.status !== 'revoked' && (
                    <>
                      <button type="button" onClick={() => setRotating(k)} aria-label={`Rotate ${k.name} (${k.prefix}…${k.last4})`}>
                        Rotate
                      </button>
                      <button type="button" class="danger" onClick={() => setRevoking(k)} aria-label={`Revoke ${k.name} (${k.prefix}…${k.last4})`}>
                        Revoke
                      </button>
                    </>
                  )}
                </td>
              </tr>
            ))}
            {page.items.length === 0 && !page.loading && (
              <tr>
                <td colSpan={8} class="muted">
                  No keys.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      <Pager label="Keys" {...page} />
      <CreateKeyDialog
        open={creating}
        merchant={props.merchant}
        onClose={() => setCreating(false)}
        onCreated={(created) => {
          setCreating(false);
          setShown({ plaintext: created.key ?? '', context: `Key "${created.name}" was created.` });
          page.reload();
        }}
      />
      <RotateKeyDialog
        apiKey={rotating}
        merchant={props.merchant}
        onClose={() => setRotating(null)}
        onRotated={(fresh, previous) => {
          setRotating(null);
          rotatedThisSession.add(previous.key_id);
          setShown({
            plaintext: fresh.key ?? '',
            context: previous.expires_at
              ? `The old key keeps working until $<Time iso={previous.expires_at} />.`
              : 'The old key stopped working.',
          });
          page.reload();
        }}
      />
      <TypedConfirmDialog
        open={revoking !== null}
        title={`Revoke ${revoking?.name ?? ''}`}
        expected={revoking?.prefix ?? ''}
        label="Type the key's prefix to confirm:"
        action="Revoke"
        danger
        onClose={() => setRevoking(null)}
        onConfirm={async () => {
          const target = revoking;
          if (!target) return;
          if (!(await confirmWrite(`Revoke key ${target.prefix}…${target.last4}`))) return;
          try {
            await unwrap(client.DELETE('/api/v1/api-keys/{key_id}', { params: { path: { key_id: target.key_id } } }));
            notify(`Key ${target.prefix}…${target.last4} revoked.`);
            setRevoking(null);
            page.reload();
          } catch (cause) {
            reportError(cause);
          }
        }}
      >
        <p>The key stops working immediately on every instance. This cannot be undone.</p>
      </TypedConfirmDialog>
      <ShowOnceDialog plaintext={shown?.plaintext ?? null} context={shown?.context} onClose={() => setShown(null)} />
    </section>
  );
}

function CreateKeyDialog(props: { open: boolean; merchant: Merchant; onClose: () => void; onCreated: (key: ApiKey) => void }) {
  const [name, setName] = useState('');
  const [scopes, setScopes] = useState<Scope[]>(['points:read', 'points:write']);
  const [expiryDays, setExpiryDays] = useState(0);
  const [error, setError] = useState<ReturnType<typeof describeError> | null>(null);
  const [busy, setBusy] = useState(false);
  return (
    <Dialog open={props.open} title="Create an API key" onClose={props.onClose}>
      <form
        class="stack"
        onSubmit={async (event) => {
          event.preventDefault();
          if (scopes.length === 0) {
            setError({ code: 0, message: 'Pick at least one scope.' });
            return;
          }
          if (!(await confirmWrite(`Create key "${name}" with ${scopes.join(', ')}`))) return;
          setBusy(true);
          setError(null);
          try {
            const expires_at = expiryDays ? new Date(Date.now() + expiryDays * 86400000).toISOString() : undefined;
            const created = await unwrap(
              merchantClient(props.merchant.merchant_id).POST('/api/v1/api-keys', { body: { name: name.trim(), scopes, expires_at } }),
            );
            setName('');
            props.onCreated(created);
          } catch (cause) {
            setError(describeError(cause));
          } finally {
            setBusy(false);
          }
        }}
      >
        <label for="key-name">Name</label>
        <input id="key-name" required maxLength={100} value={name} onInput={(e) => setName(e.currentTarget.value)} />
        <fieldset>
          <legend>Scopes</legend>
          {MERCHANT_SCOPES.map((scope) => (
            <label class="checkbox scope-option" key={scope}>
              <input
                type="checkbox"
                checked={scopes.includes(scope)}
                onChange={(e) => setScopes(e.currentTarget.checked ? [...scopes, scope] : scopes.filter((s) => s !== scope))}
              />
              <span>
                <span class="mono">{scope}</span> <span class="muted">— {SCOPE_MEANINGS[scope]}</span>
              </span>
            </label>
          ))}
        </fieldset>
        <fieldset>
          <legend>Expires</legend>
          {EXPIRY_PRESETS.map((preset) => (
            <label class="checkbox inline-option" key={preset.label}>
              <input type="radio" name="expiry" checked={expiryDays === preset.days} onChange={() => setExpiryDays(preset.days)} />
              {preset.label}
            </label>
          ))}
        </fieldset>
        <div role="alert">
          <InlineError error={error} />
        </div>
        <div class="dialog-actions">
          <button type="button" onClick={props.onClose}>
            Cancel
          </button>
          <button type="submit" class="primary" disabled={busy}>
            Create key
          </button>
        </div>
      </form>
    </Dialog>
  );
}

function RotateKeyDialog(props: {
  apiKey: ApiKey | null;
  merchant: Merchant;
  onClose: () => void;
  onRotated: (fresh: ApiKey, previous: ApiKey) => void;
}) {
  const [grace, setGrace] = useState(3600);
  const [error, setError] = useState<ReturnType<typeof describeError> | null>(null);
  const [busy, setBusy] = useState(false);
  const target = props.apiKey;
  return (
    <Dialog open={target !== null} title={`Rotate ${target?.name ?? ''}`} onClose={props.onClose}>
      <form
        class="stack"
        onSubmit={async (event) => {
          event.preventDefault();
          if (!target) return;
          if (!(await confirmWrite(`Rotate key ${target.prefix}…${target.last4}`))) return;
          setBusy(true);
          setError(null);
          try {
            const rotated = await unwrap(
              merchantClient(props.merchant.merchant_id).POST('/api/v1/api-keys/{key_id}/rotate', {
                params: { path: { key_id: target.key_id } },
                body: { grace_seconds: grace },
              }),
            );
            props.onRotated(rotated.api_key, rotated.previous);
          } catch (cause) {
            setError(describeError(cause));
          } finally {
            setBusy(false);
          }
        }}
      >
        <p>
          A new key with the same scopes is issued. The old key <span class="mono">{target?.prefix}…{target?.last4}</span> keeps
          working for the grace period, then expires.
        </p>
        <fieldset>
          <legend>Grace period</legend>
          {GRACE_PRESETS.map((preset) => (
            <label class="checkbox inline-option" key={preset.seconds}>
              <input type="radio" name="grace" checked={grace === preset.seconds} onChange={() => setGrace(preset.seconds)} />
              {preset.label}
            </label>
          ))}
        </fieldset>
        <div role="alert">
          <InlineError error={error} />
        </div>
        <div class="dialog-actions">
          <button type="button" onClick={props.onClose}>
            Cancel
          </button>
          <button type="submit" class="primary" disabled={busy}>
            Rotate key
          </button>
        </div>
      </form>
    </Dialog>
  );
}
