/**
 * The Holds section of the account page (SPEC §12): the uid's holds, newest first, and for an active hold Capture (the
 * whole hold or part of it; the rest is released) and Void. Each action asks for confirmation in a dialog, keeps one
 * idempotency key per hold and action until it succeeds (also across closing and reopening the dialog), shows the
 * envelope's message and code in the dialog on failure, and a "replayed" badge when the server answers a stored result.
 */
import { useEffect, useState } from 'preact/hooks';
import { type ApiClient, CODE, describeError, type Hold, type HoldResult, reportError, unwrap } from '../api/client';
import { confirmWrite } from '../components/ConfirmWrite';
import { Dialog } from '../components/Dialog';
import { InlineError } from '../components/ErrorRegion';
import { Pager } from '../components/Pager';
import { Time } from '../components/Time';
import { captureAmount, holdBadge, holdStatus } from '../lib/holds';
import { type Page, useNow, usePaged } from '../lib/hooks';
import { useIdempotencyKeys } from '../lib/idempotency';
import { assertPoints, formatPoints } from '../lib/points';
import { formatDuration } from '../lib/time';

type HoldsPage = ReturnType<typeof usePaged<Hold>>;
type Action = { kind: 'capture' | 'void'; hold: Hold };
type Described = ReturnType<typeof describeError>;

/** The uid's holds, paged with their own URL token (`holds_page_token`) so that they page independently of entries. */
export function useHolds(client: ApiClient, uid: string, scope: string): HoldsPage {
  return usePaged(
    (page_token): Promise<Page<Hold>> =>
      unwrap(client.GET('/api/v1/points/accounts/{uid}/holds', { params: { path: { uid }, query: { page_size: 20, page_token } } })),
    `${scope}|${uid}`,
    'holds_page_token',
  );
}

export function HoldsSection(props: { client: ApiClient; uid: string; holds: HoldsPage; onChanged: () => void }) {
  const now = useNow(5000);
  const [action, setAction] = useState<Action | null>(null);
  const [last, setLast] = useState<{ kind: Action['kind']; result: HoldResult } | null>(null);
  const { holds } = props;
  // An active hold stops counting at its expiry (the server reads it as expired at once): when one lapses on screen,
  // reload so that held and available follow.
  const lapsed = holds.items.filter((h) => h.status === 'active' && holdStatus(h, now) === 'expired').length;
  useEffect(() => {
    if (lapsed > 0) props.onChanged();
  }, [lapsed]);
  // The row's buttons go away with the hold's new state: after the dialog has returned focus to its opener, move it to
  // what happened (this effect runs after the dialog's).
  useEffect(() => {
    if (last) document.getElementById('hold-action-result')?.focus();
  }, [last]);
  return (
    <section class="card" aria-labelledby="holds-title">
      <div class="card-header">
        <h2 id="holds-title">Holds</h2>
        <span class="muted small">Points reserved at checkout, captured (spent) or voided later; newest first.</span>
      </div>
      {last && <HoldActionResult kind={last.kind} result={last.result} />}
      {holds.items.length === 0 && !holds.hasPrevious ? (
        <p class="muted">{holds.loading ? 'Loading holds…' : 'No holds.'}</p>
      ) : (
        <HoldsTable uid={props.uid} holds={holds} now={now} onAction={setAction} />
      )}
      <HoldActionDialog
        client={props.client}
        action={action}
        onClose={() => setAction(null)}
        onDone={(kind, result) => {
          setAction(null);
          setLast({ kind, result });
          props.onChanged();
        }}
      />
    </section>
  );
}

function HoldsTable(props: { uid: string; holds: HoldsPage; now: number; onAction: (action: Action) => void }) {
  return (
    <>
      <div class="table-wrap">
        <table class="data-table holds">
          <caption class="visually-hidden">Holds of {props.uid}</caption>
          <thead>
            <tr>
              <th scope="col">Hold</th>
              <th scope="col">Status</th>
              <th scope="col" class="num">
                Points
              </th>
              <th scope="col" class="num">
                Captured
              </th>
              <th scope="col">Expires</th>
              <th scope="col">Reference</th>
              <th scope="col">Created</th>
              <th scope="col">Closed</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {props.holds.items.map((h) => (
              <HoldRow key={h.hold_id} hold={h} now={props.now} onAction={props.onAction} />
            ))}
            {props.holds.items.length === 0 && !props.holds.loading && (
              <tr>
                <td colSpan={9} class="muted">
                  No holds.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      <Pager label="Holds" {...props.holds} />
    </>
  );
}

function HoldRow(props: { hold: Hold; now: number; onAction: (action: Action) => void }) {
  const h = props.hold;
  const status = holdStatus(h, props.now);
  const label = `hold ${h.hold_id}${h.reference ? ` (${h.reference})` : ''}`;
  return (
    <tr data-hold-id={h.hold_id} data-status={status}>
      <td>
        <details>
          <summary>
            <span class="mono">#{h.hold_id}</span>
          </summary>
          <dl class="facts small">
            <dt>Idempotency key</dt>
            <dd class="mono">{h.idempotency_key}</dd>
            {h.description && (
              <>
                <dt>Description</dt>
                <dd>{h.description}</dd>
              </>
            )}
            <dt>Metadata</dt>
            <dd>
              <pre>{JSON.stringify(h.metadata ?? {}, null, 2)}</pre>
            </dd>
          </dl>
        </details>
      </td>
      <td>
        <span class={`badge ${holdBadge(status)}`} data-testid="hold-status">
          {status}
        </span>
      </td>
      <td class="num">{formatPoints(h.points)}</td>
      <td class="num">
        {formatPoints(h.captured_points)}
        {h.capture_entry_id && (
          <div class="small nowrap">
            entry <a href={`#entry-${h.capture_entry_id}`}>{h.capture_entry_id}</a>
          </div>
        )}
        {h.capture_entry_id && h.captured_points < h.points && (
          <div class="small nowrap muted">{formatPoints(h.points - h.captured_points)} released</div>
        )}
      </td>
      <td>
        <Time iso={h.expires_at} />
        {status === 'active' && h.expires_at && <div class="small muted">in {formatDuration(Date.parse(h.expires_at) - props.now)}</div>}
      </td>
      <td>{h.reference ?? '—'}</td>
      <td>
        <Time iso={h.created_at} />
      </td>
      <td>
        <Time iso={h.closed_at} />
      </td>
      <td class="actions">
        {status === 'active' && (
          <>
            <button type="button" aria-label={`Capture ${label}`} onClick={() => props.onAction({ kind: 'capture', hold: h })}>
              Capture…
            </button>
            <button type="button" class="danger" aria-label={`Void ${label}`} onClick={() => props.onAction({ kind: 'void', hold: h })}>
              Void…
            </button>
          </>
        )}
      </td>
    </tr>
  );
}

function HoldActionResult(props: { kind: Action['kind']; result: HoldResult }) {
  const { hold, account, entry, replayed } = props.result;
  const what =
    props.kind === 'void'
      ? `Hold #${hold.hold_id} voided: ${formatPoints(hold.points)} points released`
      : `Hold #${hold.hold_id} captured: ${formatPoints(hold.captured_points)} points spent` +
        (entry ? ` (entry ${entry.entry_id})` : '') +
        (hold.captured_points < hold.points ? `, ${formatPoints(hold.points - hold.captured_points)} released` : '');
  return (
    <p class="result" id="hold-action-result" data-testid="hold-action-result" role="status" tabIndex={-1}>
      {replayed && <span class="badge badge-warn">replayed</span>} {what}; balance <strong>{formatPoints(account.balance)}</strong>, available{' '}
      <strong>{formatPoints(account.available)}</strong>
      {replayed ? ' — this request had already been applied; nothing changed.' : '.'}
    </p>
  );
}

/** The capture or void confirmation of one hold. */
function HoldActionDialog(props: {
  client: ApiClient;
  action: Action | null;
  onClose: () => void;
  onDone: (kind: Action['kind'], result: HoldResult) => void;
}) {
  const keys = useIdempotencyKeys('hold-action');
  const current = props.action;
  const title = current ? `${current.kind === 'capture' ? 'Capture' : 'Void'} hold #${current.hold.hold_id}` : 'Hold';
  return (
    <Dialog open={current !== null} title={title} onClose={props.onClose}>
      {current && (
        <HoldActionForm
          key={`${current.kind}|${current.hold.hold_id}`}
          client={props.client}
          action={current}
          idempotencyKey={keys.keyFor(`${current.kind}|${current.hold.hold_id}`)}
          onCancel={props.onClose}
          onDone={(result) => {
            keys.renew(`${current.kind}|${current.hold.hold_id}`);
            props.onDone(current.kind, result);
          }}
        />
      )}
    </Dialog>
  );
}

function HoldActionForm(props: {
  client: ApiClient;
  action: Action;
  idempotencyKey: string;
  onCancel: () => void;
  onDone: (result: HoldResult) => void;
}) {
  const { kind, hold } = props.action;
  const [whole, setWhole] = useState(true);
  const [points, setPoints] = useState('');
  const [error, setError] = useState<Described | null>(null);
  const [busy, setBusy] = useState(false);
  const send = (amount: number | undefined): Promise<HoldResult> => {
    const path = { hold_id: hold.hold_id };
    const idempotency_key = props.idempotencyKey;
    return kind === 'capture'
      ? unwrap(props.client.POST('/api/v1/points/holds/{hold_id}/capture', { params: { path }, body: { idempotency_key, points: amount } }))
      : unwrap(props.client.POST('/api/v1/points/holds/{hold_id}/void', { params: { path }, body: { idempotency_key } }));
  };
  return (
    <form
      class="stack"
      onSubmit={async (event) => {
        event.preventDefault();
        let amount: number | undefined;
        if (kind === 'capture' && !whole) {
          const parsed = captureAmount(points, hold.points);
          if ('error' in parsed) return setError({ code: 0, message: parsed.error });
          amount = parsed.points;
        }
        const summary =
          kind === 'void'
            ? `Void hold #${hold.hold_id} of ${hold.uid} (${formatPoints(hold.points)} points)`
            : `Capture ${formatPoints(amount ?? hold.points)} of the ${formatPoints(hold.points)} points held by hold #${hold.hold_id} of ${hold.uid}`;
        if (!(await confirmWrite(summary))) return;
        setBusy(true);
        setError(null);
        try {
          const result = await send(amount);
          assertPoints(result.account.available, 'available');
          props.onDone(result);
        } catch (cause) {
          // Keep the key for a retry. A rejected key goes back to sign in; other errors show here, in the dialog.
          const described = describeError(cause);
          if (described.code === CODE.UNAUTHENTICATED) reportError(cause);
          else setError(described);
        } finally {
          setBusy(false);
        }
      }}
    >
      <p>
        <strong>{formatPoints(hold.points)}</strong> points held for <span class="mono">{hold.uid}</span>
        {hold.reference && <> (reference {hold.reference})</>}, until <Time iso={hold.expires_at} />.
      </p>
      {kind === 'capture' ? (
        <>
          <fieldset>
            <legend>Capture</legend>
            <label class="checkbox">
              <input type="radio" name="capture-amount" checked={whole} onChange={() => setWhole(true)} /> The whole hold (
              {formatPoints(hold.points)} points)
            </label>
            <label class="checkbox">
              <input type="radio" name="capture-amount" checked={!whole} onChange={() => setWhole(false)} /> Part of it (the rest is
              released)
            </label>
          </fieldset>
          {!whole && (
            <>
              <label for="capture-points">Points to capture</label>
              <input
                id="capture-points"
                inputMode="numeric"
                required
                value={points}
                onInput={(e) => {
                  setPoints(e.currentTarget.value);
                  setError(null);
                }}
              />
            </>
          )}
          <p class="muted small">The capture writes one spend entry carrying the hold's id and closes the hold.</p>
        </>
      ) : (
        <p>The held points become available again and the hold can no longer be captured.</p>
      )}
      <p class="muted small">
        Idempotency key <code data-testid="hold-action-idempotency-key">{props.idempotencyKey}</code> (reused if you retry)
      </p>
      <div role="alert">
        <InlineError error={error} />
      </div>
      <div class="dialog-actions">
        <button type="button" onClick={props.onCancel}>
          Cancel
        </button>
        <button type="submit" class={kind === 'void' ? 'danger' : 'primary'} disabled={busy}>
          {kind === 'capture' ? 'Capture' : 'Void hold'}
        </button>
      </div>
    </form>
  );
}
