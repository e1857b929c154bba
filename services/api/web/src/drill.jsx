// Drill-down: department -> project -> user -> the user's tasks -> one task's attempts and raw events, following
// only the links the API's answers carry (links.next, links.tasks, links.task; services/api/drill.py).

import { useEffect, useState } from "react";
import { get, getAll, query } from "./api.js";
import { BarChart } from "./charts.jsx";
import { Loaded, useLoad } from "./loading.jsx";
import { addDecimal } from "./numbers.js";

const LEVEL_NAMES = { department_id: "department", project_id: "project", user_id: "user" };

function Groups({ url, measure, open }) {
  return <Loaded state={useLoad(() => getAll(url), url)}>{(answer) => <GroupList {...answer} measure={measure}
                                                                                 open={open} />}</Loaded>;
}

function GroupList({ rows, meta, measure, open }) {
  const column = (meta.group_by || []).at(-1);
  const groups = new Map();
  for (const row of rows) {  // one row per bucket: summed per key over the range
    const label = row[column] ?? "(none)";
    const key = `${row.tenant_id}|${label}`;
    const group = groups.get(key) || { label, total: "0", links: row.links || {} };
    group.total = addDecimal(group.total, row[measure]);
    groups.set(key, group);
  }
  const list = [...groups.values()].sort((a, b) => Number(b.total) - Number(a.total));
  const level = LEVEL_NAMES[column] || column;
  const follow = (group) => {
    if (group.links.next) open({ title: group.label, url: group.links.next, kind: "groups" });
    else if (group.links.tasks) open({ title: `${group.label}'s tasks`, url: group.links.tasks, kind: "tasks" });
  };
  const last = list.some((g) => g.links.next || g.links.tasks)
    ? null : <p className="muted">The API gives no link below this level for your role.</p>;
  return (
    <div>
      <BarChart name={`drill-${level}`} bars={list.map((g) => ({ label: g.label, value: g.total,
        onClick: () => follow(g) }))} />
      <table data-table={`drill-${level}`}>
        <thead><tr><th>{level}</th><th className="num">{measure}</th></tr></thead>
        <tbody>
          {list.map((g) => (
            <tr key={g.label}>
              <td>{g.links.next || g.links.tasks
                ? <button className="link" data-drill={g.label} onClick={() => follow(g)}>{g.label}</button>
                : g.label}</td>
              <td className="num" data-value={g.total}>{g.total}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {last}
    </div>
  );
}

function Tasks({ url, open }) {
  return <Loaded state={useLoad(() => getAll(url), url)}>{({ rows }) => <TaskList rows={rows} open={open} />}</Loaded>;
}

function TaskList({ rows, open }) {
  return (
    <div>
      <BarChart name="drill-tasks" unit=" ms" bars={rows.slice(0, 40).map((t) => ({
        label: `${t.task_id} #${t.attempt}`, value: t.total_ms ?? 0,
        onClick: () => open({ title: t.task_id, url: t.links.task, kind: "task" }) }))} />
      <table data-table="drill-tasks">
        <thead><tr><th>task</th><th>attempt</th><th>status</th><th>model</th><th>checkpoint</th>
          <th>finished</th><th className="num">total ms</th></tr></thead>
        <tbody>
          {rows.map((t) => (
            <tr key={`${t.task_id}#${t.attempt}`}>
              <td><button className="link" data-drill={t.task_id}
                          onClick={() => open({ title: t.task_id, url: t.links.task, kind: "task" })}>{t.task_id}</button></td>
              <td>{t.attempt}</td><td>{t.status}</td><td>{t.base_model} {t.model_version}</td><td>{t.checkpoint_id}</td>
              <td>{t.finished_at}</td><td className="num">{t.total_ms ?? ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Task({ url }) {
  return <Loaded state={useLoad(() => get(url), url)}>{({ data }) => <TaskDetail {...data} />}</Loaded>;
}

function TaskDetail({ attempts, events, events_note: note }) {
  return (
    <div>
      <h2>Attempts</h2>
      <table data-table="attempts">
        <thead><tr><th>attempt</th><th>status</th><th>error</th><th>node</th><th className="num">queue ms</th>
          <th className="num">load ms</th><th className="num">inference ms</th><th className="num">total ms</th></tr></thead>
        <tbody>
          {attempts.map((a) => (
            <tr key={a.attempt}><td>{a.attempt}</td><td>{a.status}</td><td>{a.error_type}</td><td>{a.host_name}</td>
              <td className="num">{a.queue_ms ?? ""}</td><td className="num">{a.checkpoint_load_ms ?? ""}</td>
              <td className="num">{a.inference_ms ?? ""}</td><td className="num">{a.total_ms ?? ""}</td></tr>
          ))}
        </tbody>
      </table>
      <h2>Raw events from the lake</h2>
      {note && <p className="muted">{note}</p>}
      <table data-table="events">
        <thead><tr><th>time</th><th>event</th><th>raw record</th></tr></thead>
        <tbody>
          {(events || []).map((e, i) => (
            <tr key={e.event_id || i}><td>{e.ts}</td><td data-event={e.event_name}>{e.event_name}</td>
              <td><pre>{JSON.stringify(e, null, 1)}</pre></td></tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** path: /v1/usage or /v1/costs; measure: the column summed per row (credits, total_cost). */
export function DrillDown({ path, measure, span, granularity }) {
  const start = { title: "departments", kind: "groups",
    url: `${path}?${query({ group_by: "department", granularity, from: span.from, to: span.to })}` };
  const [trail, setTrail] = useState([start]);
  useEffect(() => setTrail([start]), [path, span.from, span.to]);
  const level = trail[trail.length - 1];
  const open = (next) => setTrail([...trail, next]);
  return (
    <section data-section="drill">
      <h2>Drill-down: {measure} from {span.from} to {span.to}</h2>
      <div className="crumbs">
        {trail.map((step, i) => (i === trail.length - 1
          ? <strong key={i}>{step.title}</strong>
          : <span key={i}><button className="link" onClick={() => setTrail(trail.slice(0, i + 1))}>{step.title}</button> ›</span>))}
      </div>
      {level.kind === "groups" && <Groups key={level.url} url={level.url} measure={measure} open={open} />}
      {level.kind === "tasks" && <Tasks key={level.url} url={level.url} open={open} />}
      {level.kind === "task" && <Task key={level.url} url={level.url} />}
    </section>
  );
}
