// Charts drawn as SVG: horizontal bars (one value per label) and stacked columns (series per category). Every
// shape carries its exact value in data-value and a <title>, so a reader (and the browser test) can check it.

import { short } from "./numbers.js";

const PALETTE = ["#3266cc", "#e07b39", "#3b9c6d", "#b84a8c", "#8a6fd1", "#c9a227", "#4aa3b8", "#a63d40"];
export const colour = (i) => PALETTE[i % PALETTE.length];

/** bars: [{label, value (exact text or number), onClick?}] in the order given, or [{label, segments: [{name, value}]}]
 * for bars split into parts (legend from the first bar's segment names). */
export function BarChart({ name, bars, unit = "", width = 760 }) {
  if (!bars.length) return <p className="muted">No data in this range.</p>;
  const row = 24;
  const labelWidth = 260;
  const valueWidth = 90;
  const parts = (bar) => bar.segments || [{ name: "", value: bar.value }];
  const total = (bar) => parts(bar).reduce((t, p) => t + Number(p.value), 0);
  const top = Math.max(...bars.map(total), 0) || 1;
  const span = width - labelWidth - valueWidth;
  const legend = bars[0].segments ? bars[0].segments.map((p) => p.name) : [];
  return (
    <div>
      <svg className="chart" data-chart={name} width={width} height={bars.length * row + 4} role="img"
           aria-label={name}>
        {bars.map((bar, i) => {
          let x = labelWidth;
          return (
            <g key={bar.label} transform={`translate(0, ${i * row + 2})`} onClick={bar.onClick}
               style={{ cursor: bar.onClick ? "pointer" : "default" }}>
              <text x={labelWidth - 6} y={row / 2 + 4} textAnchor="end">{bar.label}</text>
              {parts(bar).map((part, pi) => {
                const length = Math.max((Number(part.value) / top) * span, Number(part.value) > 0 ? 1 : 0);
                const rect = (
                  <rect key={part.name || "value"} x={x} y={3} width={length} height={row - 6} fill={colour(pi)}
                        data-label={bar.label} data-series={part.name || undefined} data-value={String(part.value)}>
                    <title>{`${bar.label}${part.name ? ", " + part.name : ""}: ${part.value}${unit}`}</title>
                  </rect>
                );
                x += length;
                return rect;
              })}
              <text x={x + 4} y={row / 2 + 4}>{short(total(bar)) + unit}</text>
            </g>
          );
        })}
      </svg>
      {legend.length > 1 && (
        <div className="controls">
          {legend.map((n, i) => <span key={n}><span style={{ color: colour(i) }}>■</span> {n}</span>)}
        </div>
      )}
    </div>
  );
}

/** categories: x labels in order; series: [{name, values: {category: exact value}}], stacked bottom-up. */
export function StackedColumns({ name, categories, series, unit = "", height = 260 }) {
  if (!categories.length || !series.length) return <p className="muted">No data in this range.</p>;
  const left = 70;
  const bottom = 40;
  const column = Math.max(24, Math.min(70, 640 / categories.length));
  const width = left + categories.length * column + 20;
  const totals = categories.map((c) => series.reduce((t, s) => t + Number(s.values[c] || 0), 0));
  const top = Math.max(...totals, 0) || 1;
  const scale = (height - bottom - 24) / top; // room above the tallest column for its total
  const ticks = [0, 0.5, 1].map((f) => top * f);
  return (
    <div>
      <svg className="chart" data-chart={name} width={width} height={height} role="img" aria-label={name}>
        {ticks.map((t) => (
          <g key={t}>
            <line x1={left - 4} x2={width} y1={height - bottom - t * scale} y2={height - bottom - t * scale}
                  stroke="#e4e7ec" />
            <text x={left - 8} y={height - bottom - t * scale + 4} textAnchor="end">{short(t, 0) + unit}</text>
          </g>
        ))}
        {categories.map((category, ci) => {
          let base = height - bottom;
          return (
            <g key={category} transform={`translate(${left + ci * column}, 0)`}>
              {series.map((s, si) => {
                const value = s.values[category];
                if (value === undefined) return null;
                const h = Number(value) * scale;
                base -= h;
                return (
                  <rect key={s.name} x={4} y={base} width={column - 8} height={Math.max(h, 0)} fill={colour(si)}
                        data-series={s.name} data-category={category} data-value={String(value)}>
                    <title>{`${s.name}, ${category}: ${value}${unit}`}</title>
                  </rect>
                );
              })}
              <text x={column / 2} y={height - bottom + 14} textAnchor="middle">{category}</text>
              <text x={column / 2} y={height - bottom - totals[ci] * scale - 4} textAnchor="middle">
                {short(totals[ci], 0)}
              </text>
            </g>
          );
        })}
      </svg>
      <div className="controls">
        {series.map((s, si) => (
          <span key={s.name}><span style={{ color: colour(si) }}>■</span> {s.name}</span>
        ))}
      </div>
    </div>
  );
}
