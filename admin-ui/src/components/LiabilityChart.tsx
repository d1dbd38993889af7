/**
 * The liability chart: movements per bucket as grouped signed bars (issued up; redeemed and expired down; adjusted and
 * reversed as their net) and the outstanding balance as a line on its own axis. Colours come from CSS variables so the
 * chart follows light/dark mode. A "view as table" toggle shows the same figures as a table.
 */
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { chartSeries, type LiabilityRow } from '../lib/liability';
import { formatPoints } from '../lib/points';

/** Points are whole numbers: axis ticks step by integers only. */
const INTEGER_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7, 2e7, 5e7, 1e8, 1e9, 1e10, 1e11, 1e12];

const BAR_SERIES = [
  { key: 'issued', label: 'Issued', color: '--series-issued' },
  { key: 'redeemed', label: 'Redeemed', color: '--series-redeemed' },
  { key: 'expired', label: 'Expired', color: '--series-expired' },
  { key: 'adjusted', label: 'Adjusted (net)', color: '--series-adjusted' },
  { key: 'reversed', label: 'Reversed (net)', color: '--series-reversed' },
] as const;

function cssVar(element: Element, name: string, fallback: string): string {
  const value = getComputedStyle(element).getPropertyValue(name).trim();
  return value || fallback;
}

export function LiabilityChart(props: { rows: LiabilityRow[]; bucket: string }) {
  const container = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const element = container.current;
    if (!element || props.rows.length === 0) return;
    const series = chartSeries(props.rows);
    const colors = BAR_SERIES.map((s) => cssVar(element, s.color, '#888'));
    const text = cssVar(element, '--text-muted', '#666');
    const grid = cssVar(element, '--border', '#ddd');
    const line = cssVar(element, '--series-outstanding', '#000');
    const data: uPlot.AlignedData = [series.x, series.issued, series.redeemed, series.expired, series.adjusted, series.reversed, series.outstanding];
    const drawBars = (u: uPlot) => {
      const ctx = u.ctx;
      const xs = u.data[0] as number[];
      const count = xs.length;
      if (count === 0) return;
      const slot = u.bbox.width / Math.max(count, 1);
      const barWidth = Math.max(1, Math.min(18 * devicePixelRatio, (slot * 0.8) / BAR_SERIES.length));
      const zero = u.valToPos(0, 'pts', true);
      ctx.save();
      BAR_SERIES.forEach((_, s) => {
        if (!u.series[s + 1].show) return;
        ctx.fillStyle = colors[s];
        const values = u.data[s + 1] as (number | null)[];
        for (let i = 0; i < count; i++) {
          const value = values[i];
          if (!value) continue;
          const center = u.valToPos(xs[i], 'x', true);
          const left = center + (s - BAR_SERIES.length / 2) * barWidth;
          const top = u.valToPos(value, 'pts', true);
          ctx.fillRect(left, Math.min(top, zero), barWidth, Math.abs(zero - top));
        }
      });
      ctx.restore();
    };
    const width = Math.max(320, element.clientWidth || 800);
    const halfBucket = props.bucket === 'month' ? 15 * 86400 : props.bucket === 'week' ? 3.5 * 86400 : 43200;
    const options: uPlot.Options = {
      width,
      height: 300,
      scales: {
        x: { time: true, range: (_u, min, max) => [min - halfBucket, max + halfBucket] },
        pts: {
          range: (u) => {
            let low = 0;
            let high = 1;
            for (let s = 1; s <= BAR_SERIES.length; s++) {
              for (const v of u.data[s] as number[]) {
                if (v < low) low = v;
                if (v > high) high = v;
              }
            }
            return [low * 1.1, high * 1.1];
          },
        },
        out: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] },
      },
      axes: [
        { stroke: text, grid: { stroke: grid }, ticks: { stroke: grid } },
        { scale: 'pts', stroke: text, grid: { stroke: grid }, ticks: { stroke: grid }, label: 'Movement (points)', size: 70, incrs: INTEGER_STEPS },
        { scale: 'out', side: 1, stroke: text, grid: { show: false }, label: 'Outstanding', size: 80, incrs: INTEGER_STEPS },
      ],
      series: [
        { label: 'Bucket start' },
        ...BAR_SERIES.map((s, i) => ({
          label: s.label,
          scale: 'pts',
          stroke: colors[i],
          fill: colors[i],
          width: 0,
          paths: () => null,
          points: { show: false },
          value: (_u: uPlot, v: number | null) => (v === null ? '—' : formatPoints(v)),
        })),
        {
          label: 'Outstanding',
          scale: 'out',
          stroke: line,
          width: 2,
          points: { show: true, size: 5, fill: line },
          value: (_u: uPlot, v: number | null) => (v === null ? '—' : formatPoints(v)),
        },
      ],
      hooks: { drawSeries: [(u, seriesIdx) => (seriesIdx === 1 ? drawBars(u) : undefined)] },
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
    };
    let plot: uPlot | undefined;
    try {
      plot = new uPlot(options, data, element);
    } catch {
      // No canvas (e.g. a test DOM): the table view still works.
      return;
    }
    const observer = typeof ResizeObserver === 'function' ? new ResizeObserver(() => plot?.setSize({ width: Math.max(320, element.clientWidth), height: 300 })) : null;
    observer?.observe(element);
    return () => {
      observer?.disconnect();
      plot?.destroy();
    };
  }, [props.rows, props.bucket]);
  return <div ref={container} class="chart" aria-hidden="true" />;
}

export function LiabilityTable(props: { rows: LiabilityRow[]; opening: number; closing: number; caption: string }) {
  const cols = ['issued', 'redeemed', 'expired', 'adjusted_in', 'adjusted_out', 'reversed_in', 'reversed_out', 'net', 'outstanding'] as const;
  return (
    <div class="table-wrap">
      <table class="data-table numeric liability-table">
        <caption>{props.caption}</caption>
        <thead>
          <tr>
            <th scope="col">Bucket start</th>
            {cols.map((c) => (
              <th scope="col" key={c}>
                {c.replace('_', ' ')}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          <tr class="opening">
            <th scope="row">Opening</th>
            <td colSpan={cols.length - 1} />
            <td data-col="outstanding">{formatPoints(props.opening)}</td>
          </tr>
          {props.rows.map((row, index) => (
            <tr key={row.start ?? index} data-start={row.start ?? undefined}>
              <th scope="row">{(row.start ?? '').slice(0, 10)}</th>
              {cols.map((c) => (
                <td key={c} data-col={c} class={c === 'outstanding' && !row.consistent ? 'mismatch' : undefined}>
                  {formatPoints(row[c])}
                  {c === 'outstanding' && !row.consistent && <span class="visually-hidden"> (does not match running total {row.running})</span>}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
        <tfoot>
          <tr>
            <th scope="row">Closing</th>
            <td colSpan={cols.length - 1} />
            <td data-col="closing">{formatPoints(props.closing)}</td>
          </tr>
        </tfoot>
      </table>
    </div>
  );
}
