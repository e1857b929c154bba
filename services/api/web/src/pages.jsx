// One page per role: what a Financial Director, a Pipeline TD and an Admin open first. Each reads the API with the
// user's token; what a role may not read the API refuses, and the page shows that refusal as it came.

import { useState } from "react";
import { download, getAll, query } from "./api.js";
import { BarChart, StackedColumns } from "./charts.jsx";
import { DrillDown } from "./drill.jsx";
import { Loaded, useLoad } from "./loading.jsx";
import { addDecimal, short } from "./numbers.js";
import { currentMonth, monthRange, recent } from "./time.js";

/** {rows, meta} of a list endpoint (all of its rows, or maxPages pages of 100), re-read when the url changes. */
const useRows = (url, maxPages) => useLoad(() => getAll(url, maxPages), url);

function RangePicker({ days, setDays }) {
  return (
    <label>Range{" "}
      <select data-control="days" value={days} onChange={(e) => setDays(Number(e.target.value))}>
        {[1, 7, 30, 92].map((d) => <option key={d} value={d}>last {d} day{d > 1 ? "s" : ""}</option>)}
      </select>
    </label>
  );
}

// -- Financial Director ---------------------------------------------------------------------------------------

function CostsByMonth({ month }) {
  const span = monthRange(month, 11);
  const state = useRows(`/v1/costs?${query({ granularity: "month", group_by: "department", ...span })}`);
  return (
    <section data-section="costs-by-month">
      <h2>Cost by department and month (12 months to {month})</h2>
      <Loaded state={state}>{({ rows }) => {
        const months = [...new Set(rows.map((r) => r.bucket.slice(0, 7)))].sort();
        const series = new Map();
        for (const row of rows) {
          const name = row.department_id ?? "(none)";
          const values = series.get(name) || {};
          const m = row.bucket.slice(0, 7);
          values[m] = addDecimal(values[m] || "0", row.total_cost);
          series.set(name, values);
        }
        const list = [...series.entries()].sort().map(([name, values]) => ({ name, values }));
        const unpriced = [...new Set(rows.flatMap((r) => r.unpriced || []))];
        return (
          <div>
            <StackedColumns name="costs-by-department-month" categories={months} series={list} />
            <table data-table="costs-by-department-month">
              <thead><tr><th>department</th>{months.map((m) => <th key={m} className="num">{m}</th>)}</tr></thead>
              <tbody>
                {list.map((s) => (
                  <tr key={s.name}><td>{s.name}</td>
                    {months.map((m) => <td key={m} className="num" data-department={s.name} data-month={m}
                                           data-value={s.values[m] || "0"}>{s.values[m] || ""}</td>)}</tr>
                ))}
              </tbody>
            </table>
            {unpriced.length > 0 && <p className="error">Usage without a price (not in these totals): {unpriced.join(", ")}</p>}
          </div>
        );
      }}</Loaded>
    </section>
  );
}

function Report({ month }) {
  const span = monthRange(month);
  const path = `/v1/exports/costs?${query({ granularity: "day", ...span, format: "csv" })}`;
  const [status, setStatus] = useState(null);
  const save = () => {
    setStatus({ text: "downloading…" });
    download(path).then(({ name, bytes }) => setStatus({ text: `saved ${name} (${bytes} bytes)`, done: true }),
      (error) => setStatus({ text: error.message, error: true }));
  };
  return (
    <section data-section="report">
      <h2>Report for {month}</h2>
      <p>Daily costs of the month per department, project, user, model and checkpoint, with the price catalogue
        version, as CSV (<code>{path}</code>).</p>
      <button data-action="download-report" data-month={month} onClick={save}>Download the month's costs (CSV)</button>{" "}
      {status && <span data-status={status.done ? "done" : status.error ? "error" : "busy"}
                       className={status.error ? "error" : "muted"}>{status.text}</span>}
    </section>
  );
}

export function FinancePage() {
  const [month, setMonth] = useState(currentMonth());
  return (
    <div>
      <div className="controls">
        <label>Month <input type="month" data-control="month" value={month}
                            onChange={(e) => e.target.value && setMonth(e.target.value)} /></label>
      </div>
      <CostsByMonth month={month} />
      <Report key={month} month={month} />
      <DrillDown path="/v1/costs" measure="total_cost" span={monthRange(month)} granularity="month" />
    </div>
  );
}

// -- Pipeline TD ----------------------------------------------------------------------------------------------

function ModelPerformance({ span }) {
  const state = useRows(`/v1/models/performance?${query(span)}`);
  return (
    <section data-section="models">
      <h2>Model × checkpoint: runs and failures</h2>
      <Loaded state={state}>{({ rows }) => {
        const label = (r) => `${r.base_model} ${r.model_version} · ${r.checkpoint_id || "(no checkpoint)"}`;
        const ranked = [...rows].sort((a, b) => b.runs - a.runs);
        return (
          <div>
            <BarChart name="runs-by-checkpoint" bars={ranked.map((r) => ({ label: label(r),
              segments: [{ name: "succeeded", value: r.runs - r.failures }, { name: "failed", value: r.failures }] }))} />
            <h2>Inference p95 (ms)</h2>
            <BarChart name="inference-p95" unit=" ms" bars={ranked.filter((r) => r.inference_ms_p95 != null)
              .map((r) => ({ label: label(r), value: r.inference_ms_p95 }))} />
            <table data-table="models">
              <thead><tr><th>model</th><th>version</th><th>checkpoint</th><th className="num">runs</th>
                <th className="num">failures</th><th className="num">failure rate</th><th className="num">inference p50 / p95 / p99 ms</th>
                <th className="num">load ms</th><th className="num">requests</th><th className="num">latency p95 ms</th></tr></thead>
              <tbody>
                {ranked.map((r) => (
                  <tr key={`${r.tenant_id}|${label(r)}`}><td>{r.base_model}</td><td>{r.model_version}</td><td>{r.checkpoint_id}</td>
                    <td className="num" data-runs={label(r)}>{r.runs}</td><td className="num" data-failures={label(r)}>{r.failures}</td>
                    <td className="num">{r.failure_rate == null ? "" : `${short(r.failure_rate * 100, 1)} %`}</td>
                    <td className="num">{[r.inference_ms_p50, r.inference_ms_p95, r.inference_ms_p99].map((v) => short(v, 0)).join(" / ")}</td>
                    <td className="num">{short(r.load_ms_avg, 0)}</td><td className="num">{r.requests}</td>
                    <td className="num">{short(r.latency_ms_p95, 0)}</td></tr>
                ))}
              </tbody>
            </table>
          </div>
        );
      }}</Loaded>
    </section>
  );
}

function Failures({ span }) {
  const state = useRows(`/v1/errors/top?${query(span)}`, 1);
  return (
    <section data-section="failures">
      <h2>Failures by error type (failed runs and failed LLM requests)</h2>
      <Loaded state={state}>{({ rows }) => (
        <BarChart name="errors-by-type" bars={rows.slice(0, 20).map((r) => ({
          label: `${r.source === "task" ? "run" : "request"}: ${r.error_type}`, value: r.count }))} />
      )}</Loaded>
    </section>
  );
}

/** A page over the last days (7 unless chosen): its sections for the span, then the drill-down of credits. */
function RecentPage({ children }) {
  const [days, setDays] = useState(7);
  const span = recent(days);
  return (
    <div>
      <div className="controls"><RangePicker days={days} setDays={setDays} /></div>
      {children(span)}
      <DrillDown path="/v1/usage" measure="credits" span={span} granularity="day" />
    </div>
  );
}

export function PipelinePage() {
  return <RecentPage>{(span) => <><ModelPerformance span={span} /><Failures span={span} /></>}</RecentPage>;
}

// -- Admin ----------------------------------------------------------------------------------------------------

function Vms({ span }) {
  const state = useRows(`/v1/vms?${query(span)}`);
  return (
    <section data-section="vms">
      <h2>VMs: busy hours</h2>
      <Loaded state={state}>{({ rows }) => (
        <div>
          <BarChart name="vm-busy-hours" unit=" h" bars={rows.map((r) => ({ label: `${r.host_name} (${r.vm_type})`,
            value: r.busy_seconds / 3600 }))} />
          <table data-table="vms">
            <thead><tr><th>host</th><th>VM type</th><th className="num">runs</th><th className="num">busy h</th>
              <th className="num">GPU %</th><th className="num">CPU %</th><th className="num">VM cost</th>
              <th className="num">idle h</th><th className="num">idle cost</th></tr></thead>
            <tbody>
              {rows.map((r) => (
                <tr key={r.node_id}><td>{r.host_name}</td><td>{r.vm_type}</td><td className="num">{r.runs}</td>
                  <td className="num">{short(r.busy_seconds / 3600)}</td><td className="num">{short(r.gpu_util_avg, 1)}</td>
                  <td className="num">{short(r.cpu_util_avg, 1)}</td><td className="num">{r.vm_cost}</td>
                  <td className="num">{r.idle_seconds == null ? "shared" : short(r.idle_seconds / 3600)}</td>
                  <td className="num">{r.idle_cost ?? ""}</td></tr>
              ))}
            </tbody>
          </table>
        </div>
      )}</Loaded>
    </section>
  );
}

function Health({ span }) {
  const state = useRows(`/v1/pipeline/health?${query(span)}`);
  return (
    <section data-section="health">
      <h2>Pipeline health per topic</h2>
      <Loaded state={state}>{({ rows, meta }) => (
        <div>
          <BarChart name="pipeline-health" bars={rows.map((r) => ({ label: r.topic,
            segments: [{ name: "valid", value: r.valid }, { name: "DLQ", value: r.dlq }] }))} />
          <table data-table="health">
            <thead><tr><th>topic</th><th className="num">consumed</th><th className="num">valid</th><th className="num">DLQ</th>
              <th className="num">duplicates</th><th className="num">late</th></tr></thead>
            <tbody>
              {rows.map((r) => (
                <tr key={r.topic}><td>{r.topic}</td><td className="num">{r.consumed}</td><td className="num">{r.valid}</td>
                  <td className="num">{r.dlq}</td><td className="num">{r.duplicates}</td><td className="num">{r.late}</td></tr>
              ))}
            </tbody>
          </table>
          {meta.freshness && <p className="muted">Freshness: <code>{JSON.stringify(meta.freshness)}</code></p>}
        </div>
      )}</Loaded>
    </section>
  );
}

const ACCESS_PAGES = 5; // the newest 500 records: the audit log of a busy week is far longer than a page can show
const ACCESS_ROWS = 30;

function Access({ span }) {
  const state = useRows(`/v1/access?${query(span)}`, ACCESS_PAGES);
  return (
    <section data-section="access">
      <h2>Who accessed what</h2>
      <Loaded state={state}>{({ rows }) => {
        const decisions = [...new Set(rows.map((r) => r.decision || "(none)"))].sort();
        const perUser = new Map();
        for (const r of rows) {
          const counts = perUser.get(r.user_id) || {};
          const d = r.decision || "(none)";
          counts[d] = (counts[d] || 0) + 1;
          perUser.set(r.user_id, counts);
        }
        const bars = [...perUser.entries()].map(([user, counts]) => ({ label: user,
          segments: decisions.map((d) => ({ name: d, value: counts[d] || 0 })) }))
          .sort((a, b) => b.segments.reduce((t, s) => t + s.value, 0) - a.segments.reduce((t, s) => t + s.value, 0));
        return (
          <div>
            <p className="muted">The newest {rows.length} records of the range, per user and decision (top 25 users).</p>
            <BarChart name="access-by-user" bars={bars.slice(0, 25)} />
            <table data-table="access">
              <thead><tr><th>time</th><th>user</th><th>action</th><th>resource</th><th>decision</th><th>event</th></tr></thead>
              <tbody>
                {rows.slice(0, ACCESS_ROWS).map((r, i) => (
                  <tr key={i}><td>{r.ts}</td><td>{r.user_id}</td><td>{r.action}</td><td>{r.resource}</td>
                    <td>{r.decision}</td><td>{r.event_name}</td></tr>
                ))}
              </tbody>
            </table>
            {rows.length > ACCESS_ROWS && <p className="muted">The table lists the newest {ACCESS_ROWS}.</p>}
          </div>
        );
      }}</Loaded>
    </section>
  );
}

export function AdminPage() {
  return <RecentPage>{(span) => <><Vms span={span} /><Health span={span} /><Access span={span} /></>}</RecentPage>;
}
