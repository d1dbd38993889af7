/**
 * Rules: the current version of each code (or the one in effect "as of" a time, re-queried with ?at=), a code's versions
 * on a timeline, a side-by-side diff of two versions with the effect on a 100.00 purchase, a new-version form prefilled
 * from the current one (decimals stay strings), and the calculator.
 */
import { useEffect, useState } from 'preact/hooks';
import { type ApiClient, type Calculation, describeError, type Merchant, merchantClient, reportError, type RuleVersion, unwrap } from '../api/client';
import { confirmWrite } from '../components/ConfirmWrite';
import { InlineError } from '../components/ErrorRegion';
import { Pager } from '../components/Pager';
import { isDecimal } from '../lib/decimal';
import { useLoad, usePaged } from '../lib/hooks';
import { formatPoints } from '../lib/points';
import { diffRules, effectOnPurchase, ruleState, SAMPLE_PURCHASE } from '../lib/ruleDiff';
import { formatTime, isoToLocalInput, localInputToIso } from '../lib/time';
import { route, setQuery } from '../router';
import { notify } from '../state';
import { Time } from '../components/Time';

function StateBadge(props: { version: RuleVersion; now?: number }) {
  const state = ruleState(props.version, props.now);
  return <span class={`badge ${state === 'active' ? 'badge-ok' : state === 'scheduled' ? 'badge-info' : 'badge-neutral'}`}>{state}</span>;
}

export function RulesPage(props: { merchant: Merchant }) {
  const client = merchantClient(props.merchant.merchant_id);
  const query = route.value.query;
  const at = query.get('at') ?? '';
  const code = query.get('code') ?? '';
  const q = () => Object.fromEntries(query.entries());
  const asOf = at ? new Date(at).getTime() : undefined;
  const list = usePaged(async (page_token) => {
    const page = await unwrap(client.GET('/api/v1/rules', { params: { query: { page_size: 50, page_token } } }));
    if (!at) return page;
    // "As of": the version of each code in effect at that time.
    const items = await Promise.all(
      page.items.map((rule) =>
        unwrap(client.GET('/api/v1/rules/{code}', { params: { path: { code: rule.code }, query: { at } } })).catch(() => ({ ...rule, missing: true as const })),
      ),
    );
    return { ...page, items };
  }, `${props.merchant.merchant_id}|${at}`);
  return (
    <section>
      <h1>Rules</h1>
      <div class="toolbar">
        <label class="inline">
          As of (UTC){' '}
          <input
            type="datetime-local"
            value={isoToLocalInput(at)}
            onChange={(e) => setQuery({ ...q(), at: localInputToIso(e.currentTarget.value), page_token: undefined })}
          />
        </label>
        {at && (
          <button type="button" onClick={() => setQuery({ ...q(), at: undefined, page_token: undefined })}>
            Back to now
          </button>
        )}
      </div>
      <section class="card" aria-labelledby="rules-title">
        <h2 id="rules-title">{at ? `Rules in effect at $<Time iso={at} />` : 'Current rules'}</h2>
        <div class="table-wrap">
          <table class="data-table">
            <caption class="visually-hidden">Rules</caption>
            <thead>
              <tr>
                <th scope="col">Code</th>
                <th scope="col">Version</th>
                <th scope="col">State</th>
                <th scope="col">Conversion</th>
                <th scope="col">Min amount</th>
                <th scope="col">Max points</th>
                <th scope="col">TTL days</th>
                <th scope="col">Effective</th>
              </tr>
            </thead>
            <tbody>
              {list.items.map((rule) =>
                'missing' in rule ? (
                  <tr key={rule.code}>
                    <td>
                      <a href={`?${new URLSearchParams({ ...q(), code: rule.code })}`} class="mono">
                        {rule.code}
                      </a>
                    </td>
                    <td colSpan={7} class="muted">
                      No version in effect at that time.
                    </td>
                  </tr>
                ) : (
                  <tr key={rule.code} class={rule.code === code ? 'highlight' : undefined}>
                    <td>
                      <a href={`?${new URLSearchParams({ ...q(), code: rule.code, left: '', right: '' })}`} class="mono" aria-label={`Open rule ${rule.code}`}>
                        {rule.code}
                      </a>
                    </td>
                    <td>v{rule.version}</td>
                    <td>
                      <StateBadge version={rule} now={asOf} />
                    </td>
                    <td>
                      {rule.points_per_unit} pts per {rule.unit_amount} {rule.currency} ({rule.rounding})
                    </td>
                    <td>{rule.min_amount ?? '—'}</td>
                    <td>{rule.max_points ?? '—'}</td>
                    <td>{rule.points_ttl_days ?? '—'}</td>
                    <td>
                      <Time iso={rule.effective_from} /> → {rule.effective_to ? formatTime(rule.effective_to) : 'open'}
                    </td>
                  </tr>
                ),
              )}
              {list.items.length === 0 && !list.loading && (
                <tr>
                  <td colSpan={8} class="muted">
                    No rules yet. Create one below.
                  </td>
                </tr>
              )}
            </tbody>
          </table>
        </div>
        <Pager label="Rules" {...list} />
      </section>
      <div class="grid-2">
        {code ? <RuleVersions client={client} code={code} /> : <NewVersionForm client={client} code="" current={undefined} onSaved={() => list.reload()} />}
        <Calculator client={client} />
      </div>
    </section>
  );
}

function RuleVersions(props: { client: ApiClient; code: string }) {
  const query = route.value.query;
  const versions = useLoad(async () => {
    const all: RuleVersion[] = [];
    let page_token: string | undefined;
    for (let i = 0; i < 20; i++) {
      const page = await unwrap(
        props.client.GET('/api/v1/rules/{code}/versions', { params: { path: { code: props.code }, query: { page_size: 500, page_token } } }),
      );
      all.push(...page.items);
      if (!page.next_page_token) break;
      page_token = page.next_page_token;
    }
    return all.sort((a, b) => a.version - b.version);
  }, [props.code]);
  const list = versions.data ?? [];
  const latest = list[list.length - 1];
  const left = Number(query.get('left')) || (list.length > 1 ? list[list.length - 2].version : latest?.version);
  const right = Number(query.get('right')) || latest?.version;
  const leftVersion = list.find((v) => v.version === left);
  const rightVersion = list.find((v) => v.version === right);
  const set = (values: Record<string, string>) => setQuery({ ...Object.fromEntries(query.entries()), ...values });
  const current = list.filter((v) => ruleState(v) === 'active').pop() ?? latest;
  return (
    <div class="stack">
      <section class="card" aria-labelledby="versions-title">
        <h2 id="versions-title">
          Versions of <span class="mono">{props.code}</span>
        </h2>
        <ol class="timeline">
          {list.map((v) => (
            <li key={v.version} class={`timeline-item state-${ruleState(v)}`}>
              <span class="timeline-version">v{v.version}</span> <StateBadge version={v} />{' '}
              <span class="small">
                <Time iso={v.effective_from} /> → {v.effective_to ? formatTime(v.effective_to) : 'open'} · {v.points_per_unit} pts per{' '}
                {v.unit_amount} {v.currency}
              </span>
            </li>
          ))}
        </ol>
        {list.length > 0 && (
          <>
            <h3>Compare</h3>
            <div class="toolbar">
              <label class="inline">
                Left{' '}
                <select value={String(left)} onChange={(e) => set({ left: e.currentTarget.value })}>
                  {list.map((v) => (
                    <option key={v.version} value={String(v.version)}>
                      v{v.version}
                    </option>
                  ))}
                </select>
              </label>
              <label class="inline">
                Right{' '}
                <select value={String(right)} onChange={(e) => set({ right: e.currentTarget.value })}>
                  {list.map((v) => (
                    <option key={v.version} value={String(v.version)}>
                      v{v.version}
                    </option>
                  ))}
                </select>
              </label>
            </div>
            {leftVersion && rightVersion && <RuleDiffTable left={leftVersion} right={rightVersion} />}
          </>
        )}
      </section>
      <NewVersionForm client={props.client} code={props.code} current={current} onSaved={() => versions.reload()} />
    </div>
  );
}

export function RuleDiffTable(props: { left: RuleVersion; right: RuleVersion }) {
  const rows = diffRules(props.left, props.right);
  let effect: ReturnType<typeof effectOnPurchase> | null = null;
  try {
    effect = effectOnPurchase(props.left, props.right);
  } catch {
    effect = null;
  }
  return (
    <div class="table-wrap">
      <table class="data-table diff" data-testid="rule-diff">
        <caption>
          v{props.left.version} ↔ v{props.right.version}
        </caption>
        <thead>
          <tr>
            <th scope="col">Field</th>
            <th scope="col">v{props.left.version}</th>
            <th scope="col">v{props.right.version}</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((row) => (
            <tr key={row.field} class={row.changed ? 'changed' : undefined}>
              <th scope="row">
                {row.field}
                {row.changed && <span class="visually-hidden"> (changed)</span>}
              </th>
              <td>{row.left}</td>
              <td>{row.right}</td>
            </tr>
          ))}
          <tr class="effect">
            <th scope="row">Effect on a {SAMPLE_PURCHASE} purchase</th>
            <td data-testid="effect-left">{effect ? `${formatPoints(effect.left)} points` : '—'}</td>
            <td data-testid="effect-right">
              {effect ? `${formatPoints(effect.right)} points (${effect.difference >= 0 ? '+' : '−'}${formatPoints(Math.abs(effect.difference))})` : '—'}
            </td>
          </tr>
        </tbody>
      </table>
    </div>
  );
}

function NewVersionForm(props: { client: ApiClient; code: string; current: RuleVersion | undefined; onSaved: () => void }) {
  const seed = props.current;
  const [code, setCode] = useState(props.code || 'default');
  const [currency, setCurrency] = useState(seed?.currency ?? 'EUR');
  const [unitAmount, setUnitAmount] = useState(seed?.unit_amount ?? '1.00');
  const [pointsPerUnit, setPointsPerUnit] = useState(String(seed?.points_per_unit ?? 1));
  const [rounding, setRounding] = useState<'floor' | 'round' | 'ceil'>((seed?.rounding as 'floor') ?? 'floor');
  const [minAmount, setMinAmount] = useState(seed?.min_amount ?? '');
  const [maxPoints, setMaxPoints] = useState(seed?.max_points != null ? String(seed.max_points) : '');
  const [ttlDays, setTtlDays] = useState(seed?.points_ttl_days != null ? String(seed.points_ttl_days) : '');
  const [effectiveFrom, setEffectiveFrom] = useState('');
  const [error, setError] = useState<ReturnType<typeof describeError> | null>(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    if (!seed) return;
    setCode(seed.code);
    setCurrency(seed.currency);
    setUnitAmount(seed.unit_amount);
    setPointsPerUnit(String(seed.points_per_unit));
    setRounding(seed.rounding as 'floor');
    setMinAmount(seed.min_amount ?? '');
    setMaxPoints(seed.max_points != null ? String(seed.max_points) : '');
    setTtlDays(seed.points_ttl_days != null ? String(seed.points_ttl_days) : '');
  }, [seed?.code, seed?.version]);
  const intOrNull = (text: string) => (text.trim() === '' ? null : /^\d+$/.test(text.trim()) && Number.isSafeInteger(Number(text)) ? Number(text) : NaN);
  return (
    <section class="card" aria-labelledby="new-version-title">
      <h2 id="new-version-title">{seed ? `New version of ${seed.code} (from v${seed.version})` : 'New rule'}</h2>
      <form
        class="stack"
        onSubmit={async (event) => {
          event.preventDefault();
          const ppu = intOrNull(pointsPerUnit);
          const max = intOrNull(maxPoints);
          const ttl = intOrNull(ttlDays);
          if (!/^[a-z0-9_-]{1,40}$/.test(code)) return setError({ code: 0, message: 'The code must match [a-z0-9_-]{1,40}.' });
          if (!isDecimal(unitAmount)) return setError({ code: 0, message: 'The unit amount must be a decimal like 1.00.' });
          if (minAmount.trim() && !isDecimal(minAmount)) return setError({ code: 0, message: 'The minimum amount must be a decimal.' });
          if (ppu === null || Number.isNaN(ppu) || Number.isNaN(max) || Number.isNaN(ttl)) {
            return setError({ code: 0, message: 'Points per unit, max points and TTL days must be whole numbers.' });
          }
          if (!(await confirmWrite(`Create a new version of rule ${code}`))) return;
          setBusy(true);
          setError(null);
          try {
            const saved = await unwrap(
              props.client.PUT('/api/v1/rules/{code}', {
                params: { path: { code } },
                body: {
                  currency,
                  unit_amount: unitAmount.trim(),
                  points_per_unit: ppu,
                  rounding,
                  min_amount: minAmount.trim() || null,
                  max_points: max,
                  points_ttl_days: ttl,
                  effective_from: localInputToIso(effectiveFrom) ?? null,
                },
              }),
            );
            notify(`Rule ${saved.code} v${saved.version} created.`);
            props.onSaved();
          } catch (cause) {
            reportError(cause);
          } finally {
            setBusy(false);
          }
        }}
      >
        {!seed && (
          <>
            <label for="rule-code">Code</label>
            <input id="rule-code" class="mono" required value={code} onInput={(e) => setCode(e.currentTarget.value)} />
          </>
        )}
        <div class="form-grid">
          <label for="rule-currency">Currency</label>
          <input id="rule-currency" required maxLength={3} value={currency} onInput={(e) => setCurrency(e.currentTarget.value.toUpperCase())} />
          <label for="rule-unit">Unit amount</label>
          <input id="rule-unit" inputMode="decimal" required value={unitAmount} onInput={(e) => setUnitAmount(e.currentTarget.value)} />
          <label for="rule-ppu">Points per unit</label>
          <input id="rule-ppu" inputMode="numeric" required value={pointsPerUnit} onInput={(e) => setPointsPerUnit(e.currentTarget.value)} />
          <label for="rule-rounding">Rounding</label>
          <select id="rule-rounding" value={rounding} onChange={(e) => setRounding(e.currentTarget.value as 'floor')}>
            <option value="floor">floor</option>
            <option value="round">round (half away from zero)</option>
            <option value="ceil">ceil</option>
          </select>
          <label for="rule-min">Min amount (optional)</label>
          <input id="rule-min" inputMode="decimal" value={minAmount} onInput={(e) => setMinAmount(e.currentTarget.value)} />
          <label for="rule-max">Max points (optional)</label>
          <input id="rule-max" inputMode="numeric" value={maxPoints} onInput={(e) => setMaxPoints(e.currentTarget.value)} />
          <label for="rule-ttl">Points TTL days (optional)</label>
          <input id="rule-ttl" inputMode="numeric" value={ttlDays} onInput={(e) => setTtlDays(e.currentTarget.value)} />
          <label for="rule-from">Effective from (UTC, default now)</label>
          <input id="rule-from" type="datetime-local" value={effectiveFrom} onInput={(e) => setEffectiveFrom(e.currentTarget.value)} />
        </div>
        <div role="alert">
          <InlineError error={error} />
        </div>
        <button type="submit" class="primary" disabled={busy}>
          {seed ? 'Create new version' : 'Create rule'}
        </button>
      </form>
    </section>
  );
}

function Calculator(props: { client: ApiClient }) {
  const [amount, setAmount] = useState('100.00');
  const [currency, setCurrency] = useState('EUR');
  const [ruleCode, setRuleCode] = useState('default');
  const [at, setAt] = useState('');
  const [result, setResult] = useState<Calculation | null>(null);
  const [error, setError] = useState<ReturnType<typeof describeError> | null>(null);
  return (
    <section class="card" aria-labelledby="calculator-title">
      <h2 id="calculator-title">Calculator</h2>
      <form
        class="stack"
        onSubmit={async (event) => {
          event.preventDefault();
          if (!isDecimal(amount)) return setError({ code: 0, message: 'The amount must be a decimal like 12.50.' });
          setError(null);
          setResult(null);
          try {
            setResult(
              await unwrap(
                props.client.POST('/api/v1/points/calculate', {
                  body: { amount: amount.trim(), currency, rule_code: ruleCode || undefined, at: localInputToIso(at) ?? null },
                }),
              ),
            );
          } catch (cause) {
            reportError(cause);
          }
        }}
      >
        <div class="form-grid">
          <label for="calc-amount">Amount</label>
          <input id="calc-amount" inputMode="decimal" required value={amount} onInput={(e) => setAmount(e.currentTarget.value)} />
          <label for="calc-currency">Currency</label>
          <input id="calc-currency" required maxLength={3} value={currency} onInput={(e) => setCurrency(e.currentTarget.value.toUpperCase())} />
          <label for="calc-rule">Rule code</label>
          <input id="calc-rule" value={ruleCode} onInput={(e) => setRuleCode(e.currentTarget.value)} />
          <label for="calc-at">As of (UTC, optional)</label>
          <input id="calc-at" type="datetime-local" value={at} onInput={(e) => setAt(e.currentTarget.value)} />
        </div>
        <button type="submit" class="primary">
          Calculate
        </button>
        <div role="alert">
          <InlineError error={error} />
        </div>
        {result && (
          <p class="result" data-testid="calc-result" role="status">
            <strong>{formatPoints(result.points)} points</strong> with rule{' '}
            <span class="mono">
              {result.rule_code}@{result.rule_version}
            </span>{' '}
            (raw {result.raw_points}, {result.rounding}
            {result.capped ? ', capped' : ''})
          </p>
        )}
      </form>
    </section>
  );
}
