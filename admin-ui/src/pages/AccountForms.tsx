/**
 * Earn, spend, adjust, reverse and hold forms. Each form generates its idempotency key once and reuses it on every retry
 * until the request succeeds (a failed request is not recorded by the server, so a corrected retry may reuse it); a
 * success starts a new operation with a new key. A replayed answer shows a "replayed" badge.
 */
import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { type ApiClient, describeError, type HoldResult, type MutationResult, reportError, unwrap } from '../api/client';
import { confirmWrite } from '../components/ConfirmWrite';
import { InlineError } from '../components/ErrorRegion';
import { Time } from '../components/Time';
import { isDecimal } from '../lib/decimal';
import { useIdempotencyKey } from '../lib/idempotency';
import { assertPoints, formatDelta, formatPoints, parsePointsInput } from '../lib/points';

type Described = ReturnType<typeof describeError>;

/** A form's write: confirmation when acting, one idempotency key until success, the result checked and kept. */
function useMutation<R extends MutationResult | HoldResult>(prefix: string, onDone: (result: R) => void) {
  const idempotency = useIdempotencyKey(prefix);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Described | null>(null);
  const [result, setResult] = useState<R | null>(null);
  const submit = async (summary: string, send: (idempotencyKey: string) => Promise<R>) => {
    if (!(await confirmWrite(summary))) return;
    setBusy(true);
    setError(null);
    try {
      const outcome = await send(idempotency.key);
      assertPoints('balance' in outcome ? outcome.balance : outcome.account.balance, 'balance');
      setResult(outcome);
      idempotency.renew();
      onDone(outcome);
    } catch (cause) {
      // Keep the key: a retry of the same request must not apply it twice. The error is shown (with its code) in the
      // app's live region; inline errors are for local validation only.
      reportError(cause);
    } finally {
      setBusy(false);
    }
  };
  return { idempotencyKey: idempotency.key, busy, error, result, submit, setError };
}

function Outcome(props: { result: MutationResult | null; error: Described | null; idempotencyKey: string; idPrefix: string }) {
  const r = props.result;
  return (
    <OutcomeFrame error={props.error} idempotencyKey={props.idempotencyKey} idPrefix={props.idPrefix}>
      {r && (
        <p class="result" data-testid={`${props.idPrefix}-result`}>
          {r.replayed && <span class="badge badge-warn">replayed</span>} Entry <code>{r.entry.entry_id}</code> ({r.entry.kind}{' '}
          {formatDelta(r.entry.delta)}); balance now <strong>{formatPoints(r.balance)}</strong>
          {r.replayed ? REPLAYED : '.'}
        </p>
      )}
    </OutcomeFrame>
  );
}

const REPLAYED = ' — this request had already been applied; nothing changed.';

/** The idempotency key in use, the local validation error and the result of a form. */
function OutcomeFrame(props: { error: Described | null; idempotencyKey: string; idPrefix: string; children: ComponentChildren }) {
  return (
    <div class="form-outcome">
      <p class="muted small">
        Idempotency key <code data-testid={`${props.idPrefix}-idempotency-key`}>{props.idempotencyKey}</code> (reused if you retry)
      </p>
      <div role="alert">
        <InlineError error={props.error} />
      </div>
      {props.children}
    </div>
  );
}

export function EarnForm(props: { client: ApiClient; uid: string; onDone: (r: MutationResult) => void }) {
  const m = useMutation<MutationResult>('earn', props.onDone);
  const [mode, setMode] = useState<'points' | 'amount'>('points');
  const [points, setPoints] = useState('');
  const [amount, setAmount] = useState('');
  const [currency, setCurrency] = useState('EUR');
  const [ruleCode, setRuleCode] = useState('default');
  const [reference, setReference] = useState('');
  const [description, setDescription] = useState('');
  const [preview, setPreview] = useState<string | null>(null);
  useEffect(() => {
    if (mode !== 'amount' || !isDecimal(amount) || !/^[A-Z]{3}$/.test(currency)) {
      setPreview(null);
      return;
    }
    let cancelled = false;
    const timer = setTimeout(() => {
      unwrap(props.client.POST('/api/v1/points/calculate', { body: { amount: amount.trim(), currency, rule_code: ruleCode || undefined } }))
        .then((c) => !cancelled && setPreview(`${formatPoints(c.points)} points (rule ${c.rule_code}@${c.rule_version}${c.capped ? ', capped' : ''})`))
        .catch((cause) => !cancelled && setPreview(`No preview: ${describeError(cause).message}`));
    }, 300);
    return () => {
      cancelled = true;
      clearTimeout(timer);
    };
  }, [mode, amount, currency, ruleCode]);
  return (
    <form
      class="stack"
      aria-label="Earn points"
      onSubmit={(event) => {
        event.preventDefault();
        const common = { uid: props.uid, reference: reference.trim() || undefined, description: description.trim() || undefined };
        if (mode === 'points') {
          const value = parsePointsInput(points);
          if (value === null) return m.setError({ code: 0, message: 'Points must be a whole number greater than 0.' });
          void m.submit(`Earn ${formatPoints(value)} points for ${props.uid}`, (idempotency_key) =>
            unwrap(props.client.POST('/api/v1/points/earn', { body: { ...common, points: value, idempotency_key } })),
          );
        } else {
          if (!isDecimal(amount)) return m.setError({ code: 0, message: 'The amount must be a decimal like 12.50.' });
          void m.submit(`Earn points for ${amount} ${currency} (${ruleCode || 'default'}) for ${props.uid}`, (idempotency_key) =>
            unwrap(
              props.client.POST('/api/v1/points/earn', {
                body: { ...common, amount: amount.trim(), currency, rule_code: ruleCode || undefined, idempotency_key },
              }),
            ),
          );
        }
      }}
    >
      <fieldset>
        <legend>Earn by</legend>
        <label class="checkbox inline-option">
          <input type="radio" name="earn-mode" checked={mode === 'points'} onChange={() => setMode('points')} /> Fixed points
        </label>
        <label class="checkbox inline-option">
          <input type="radio" name="earn-mode" checked={mode === 'amount'} onChange={() => setMode('amount')} /> Money amount
        </label>
      </fieldset>
      {mode === 'points' ? (
        <>
          <label for="earn-points">Points</label>
          <input id="earn-points" inputMode="numeric" required value={points} onInput={(e) => setPoints(e.currentTarget.value)} />
        </>
      ) : (
        <>
          <label for="earn-amount">Amount</label>
          <input id="earn-amount" inputMode="decimal" required value={amount} onInput={(e) => setAmount(e.currentTarget.value)} />
          <label for="earn-currency">Currency</label>
          <input id="earn-currency" required maxLength={3} value={currency} onInput={(e) => setCurrency(e.currentTarget.value.toUpperCase())} />
          <label for="earn-rule">Rule code</label>
          <input id="earn-rule" value={ruleCode} onInput={(e) => setRuleCode(e.currentTarget.value)} />
          <p class="preview" aria-live="polite" data-testid="earn-preview">
            {preview ? `Preview: ${preview}` : 'Enter an amount to preview the points.'}
          </p>
        </>
      )}
      <label for="earn-reference">Reference (optional)</label>
      <input id="earn-reference" value={reference} onInput={(e) => setReference(e.currentTarget.value)} />
      <label for="earn-description">Description (optional)</label>
      <input id="earn-description" value={description} onInput={(e) => setDescription(e.currentTarget.value)} />
      <button type="submit" class="primary" disabled={m.busy}>
        Earn
      </button>
      <Outcome result={m.result} error={m.error} idempotencyKey={m.idempotencyKey} idPrefix="earn" />
    </form>
  );
}

export function SpendForm(props: { client: ApiClient; uid: string; onDone: (r: MutationResult) => void }) {
  const m = useMutation<MutationResult>('spend', props.onDone);
  const [points, setPoints] = useState('');
  const [reference, setReference] = useState('');
  return (
    <form
      class="stack"
      aria-label="Spend points"
      onSubmit={(event) => {
        event.preventDefault();
        const value = parsePointsInput(points);
        if (value === null) return m.setError({ code: 0, message: 'Points must be a whole number greater than 0.' });
        void m.submit(`Spend ${formatPoints(value)} points of ${props.uid}`, (idempotency_key) =>
          unwrap(props.client.POST('/api/v1/points/spend', { body: { uid: props.uid, points: value, idempotency_key, reference: reference.trim() || undefined } })),
        );
      }}
    >
      <label for="spend-points">Points</label>
      <input id="spend-points" inputMode="numeric" required value={points} onInput={(e) => setPoints(e.currentTarget.value)} />
      <label for="spend-reference">Reference (optional)</label>
      <input id="spend-reference" value={reference} onInput={(e) => setReference(e.currentTarget.value)} />
      <button type="submit" class="primary" disabled={m.busy}>
        Spend
      </button>
      <Outcome result={m.result} error={m.error} idempotencyKey={m.idempotencyKey} idPrefix="spend" />
    </form>
  );
}

export function AdjustForm(props: { client: ApiClient; uid: string; onDone: (r: MutationResult) => void }) {
  const m = useMutation<MutationResult>('adjust', props.onDone);
  const [delta, setDelta] = useState('');
  const [reason, setReason] = useState('');
  return (
    <form
      class="stack"
      aria-label="Adjust points"
      onSubmit={(event) => {
        event.preventDefault();
        const value = parsePointsInput(delta, { allowNegative: true });
        if (value === null) return m.setError({ code: 0, message: 'The delta must be a non-zero whole number (negative debits).' });
        if (!reason.trim()) return m.setError({ code: 0, message: 'A reason is required.' });
        void m.submit(`Adjust ${props.uid} by ${formatDelta(value)} (${reason.trim()})`, (idempotency_key) =>
          unwrap(props.client.POST('/api/v1/points/adjust', { body: { uid: props.uid, delta: value, reason: reason.trim(), idempotency_key } })),
        );
      }}
    >
      <label for="adjust-delta">Delta (negative to debit)</label>
      <input id="adjust-delta" inputMode="numeric" required value={delta} onInput={(e) => setDelta(e.currentTarget.value)} />
      <label for="adjust-reason">Reason</label>
      <input id="adjust-reason" required value={reason} onInput={(e) => setReason(e.currentTarget.value)} />
      <button type="submit" class="primary" disabled={m.busy}>
        Adjust
      </button>
      <Outcome result={m.result} error={m.error} idempotencyKey={m.idempotencyKey} idPrefix="adjust" />
    </form>
  );
}

export function ReverseForm(props: { client: ApiClient; uid: string; entryId: string; onEntryId: (id: string) => void; onDone: (r: MutationResult) => void }) {
  const m = useMutation<MutationResult>('reverse', props.onDone);
  const [reason, setReason] = useState('');
  return (
    <form
      class="stack"
      aria-label="Reverse an entry"
      onSubmit={(event) => {
        event.preventDefault();
        const entryId = props.entryId.trim();
        if (!entryId) return m.setError({ code: 0, message: 'Give the id of the entry to reverse.' });
        void m.submit(`Reverse entry ${entryId} of ${props.uid}`, (idempotency_key) =>
          unwrap(
            props.client.POST('/api/v1/points/entries/{entry_id}/reverse', {
              params: { path: { entry_id: entryId } },
              body: { idempotency_key, reason: reason.trim() || undefined },
            }),
          ),
        );
      }}
    >
      <label for="reverse-entry">Entry id</label>
      <input id="reverse-entry" class="mono" required value={props.entryId} onInput={(e) => props.onEntryId(e.currentTarget.value)} />
      <label for="reverse-reason">Reason (optional)</label>
      <input id="reverse-reason" value={reason} onInput={(e) => setReason(e.currentTarget.value)} />
      <button type="submit" class="primary" disabled={m.busy}>
        Reverse
      </button>
      <Outcome result={m.result} error={m.error} idempotencyKey={m.idempotencyKey} idPrefix="reverse" />
    </form>
  );
}

/** Expiry choices of a new hold; the first sends nothing (the server's default, 15 minutes). */
const HOLD_EXPIRY_PRESETS = [
  { label: '15 minutes (default)', minutes: 0 },
  { label: '1 hour', minutes: 60 },
  { label: '24 hours', minutes: 1440 },
  { label: '7 days', minutes: 10080 },
];

export function HoldForm(props: { client: ApiClient; uid: string; onDone: (r: HoldResult) => void }) {
  const m = useMutation<HoldResult>('hold', props.onDone);
  const [points, setPoints] = useState('');
  const [expiryMinutes, setExpiryMinutes] = useState(0);
  const [reference, setReference] = useState('');
  const [description, setDescription] = useState('');
  const r = m.result;
  return (
    <form
      class="stack"
      aria-label="Hold points"
      onSubmit={(event) => {
        event.preventDefault();
        const value = parsePointsInput(points);
        if (value === null) return m.setError({ code: 0, message: 'Points must be a whole number greater than 0.' });
        const expires_at = expiryMinutes ? new Date(Date.now() + expiryMinutes * 60_000).toISOString() : undefined;
        void m.submit(`Hold ${formatPoints(value)} points of ${props.uid}`, (idempotency_key) =>
          unwrap(
            props.client.POST('/api/v1/points/holds', {
              body: {
                uid: props.uid,
                points: value,
                idempotency_key,
                expires_at,
                reference: reference.trim() || undefined,
                description: description.trim() || undefined,
              },
            }),
          ),
        );
      }}
    >
      <p class="muted small">A hold reserves points (available goes down, the balance does not) until it is captured, voided or expires.</p>
      <label for="hold-points">Points</label>
      <input id="hold-points" inputMode="numeric" required value={points} onInput={(e) => setPoints(e.currentTarget.value)} />
      <fieldset>
        <legend>Expires after</legend>
        {HOLD_EXPIRY_PRESETS.map((preset) => (
          <label class="checkbox inline-option" key={preset.minutes}>
            <input type="radio" name="hold-expiry" checked={expiryMinutes === preset.minutes} onChange={() => setExpiryMinutes(preset.minutes)} />
            {preset.label}
          </label>
        ))}
      </fieldset>
      <label for="hold-reference">Reference (optional)</label>
      <input id="hold-reference" value={reference} onInput={(e) => setReference(e.currentTarget.value)} />
      <label for="hold-description">Description (optional)</label>
      <input id="hold-description" value={description} onInput={(e) => setDescription(e.currentTarget.value)} />
      <button type="submit" class="primary" disabled={m.busy}>
        Hold
      </button>
      <OutcomeFrame error={m.error} idempotencyKey={m.idempotencyKey} idPrefix="hold">
        {r && (
          <p class="result" data-testid="hold-result">
            {r.replayed && <span class="badge badge-warn">replayed</span>} Hold <code>{r.hold.hold_id}</code> of{' '}
            {formatPoints(r.hold.points)} points until <Time iso={r.hold.expires_at} />; available now{' '}
            <strong>{formatPoints(r.account.available)}</strong>
            {r.replayed ? REPLAYED : '.'}
          </p>
        )}
      </OutcomeFrame>
    </form>
  );
}
