"""The report's files: CSV and Parquet for machines (the same report gives the same CSV bytes: sorted rows, exact
amounts at 12 decimals, no timestamp), an HTML page for people with inline SVG charts, printed to PDF by headless
Chromium, and the manifest of a run (files, sha256, catalogue versions, project totals for the next run's corrections).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import subprocess
import tempfile
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from services.reports import charts
from services.reports.chargeback import COST_ITEMS, QUANTITIES, Report, exact

ROW_COLUMNS = ["month", "tenant_id", "department_id", "project_id", "model", "model_version", "checkpoint_id",
               "user_id", *QUANTITIES, *COST_ITEMS, "charge", "currency", "unpriced"]
SUMMARY_COLUMNS = ["month", "level", "tenant_id", "department_id", "project_id", *COST_ITEMS, "charge", "currency"]
CORRECTION_COLUMNS = ["month", "tenant_id", "department_id", "project_id", "total_cost_before", "total_cost_now",
                      "difference"]
RUN_COLUMNS = ["month", "tenant_id", "department_id", "project_id", "status", "attempts", "cost", "currency", "unpriced"]
VM_COLUMNS = ["month", "vm_type", "active_hours", "idle_hours", "active_cost", "idle_cost", "currency", "unpriced"]
MANIFEST_VERSION = 1
HOUR = Decimal(3600)


def _csv(header: list[str], rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180: CRLF ends a record, so a name holding \r or \n is quoted
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


SECONDS = Decimal("0.000001")  # gpu_seconds / cpu_seconds: Decimal(38, 6)


def _text(name: str, value: Any) -> str:
    """One text per value: amounts at the tables' 12 decimals, seconds at 6, the charge at 2."""
    if name in COST_ITEMS:
        return exact(value)
    if name in ("gpu_seconds", "cpu_seconds"):
        return str(Decimal(value).quantize(SECONDS))
    return str(value)


def row_records(report: Report) -> list[list[Any]]:
    month = f"{report.month:%Y-%m}"
    return [[month, r.tenant_id, r.department_id, r.project_id, r.model, r.model_version, r.checkpoint_id, r.user_id,
             *(getattr(r, q) for q in QUANTITIES), *(getattr(r, item) for item in COST_ITEMS), charge,
             report.currency, ";".join(r.unpriced)] for r, charge in zip(report.rows, report.row_charges)]


def rows_csv(report: Report) -> bytes:
    return _csv(ROW_COLUMNS, [[_text(name, v) for name, v in zip(ROW_COLUMNS, record)] for record in row_records(report)])


def summary_csv(report: Report) -> bytes:
    """Project, department and grand totals, each a sum of the level below; charges add up to the cent."""
    month = f"{report.month:%Y-%m}"
    lines = []
    departments = {d.key: d for d in report.departments}
    for key, department in departments.items():
        lines.append([month, "department", *key, "", *(exact(department.items[i]) for i in COST_ITEMS),
                      department.charge, report.currency])
        for project in report.projects:
            if project.key[:2] == key:
                lines.append([month, "project", *project.key, *(exact(project.items[i]) for i in COST_ITEMS),
                              project.charge, report.currency])
    lines.append([month, "total", "", "", "", *(exact(report.grand.items[i]) for i in COST_ITEMS),
                  report.grand.charge, report.currency])
    return _csv(SUMMARY_COLUMNS, lines)


def corrections_csv(report: Report) -> bytes:
    month = f"{report.month:%Y-%m}"
    return _csv(CORRECTION_COLUMNS, [
        [month, *c.project, "" if c.before is None else exact(c.before), exact(c.now), exact(c.delta)]
        for c in report.corrections or ()])


def runs_csv(report: Report) -> bytes:
    """Task attempts per project and status (failed runs apart): not part of the charge."""
    month = f"{report.month:%Y-%m}"
    return _csv(RUN_COLUMNS, [[month, r.tenant_id, r.department_id, r.project_id, r.status, r.attempts, exact(r.cost),
                               report.currency, ";".join(r.unpriced)] for r in report.runs])


def vm_time_csv(report: Report) -> bytes:
    """VM hours per VM type, active and idle: not part of the charge."""
    month = f"{report.month:%Y-%m}"
    return _csv(VM_COLUMNS, [[month, v.vm_type, exact(v.active_seconds / HOUR), exact(v.idle_seconds / HOUR),
                              exact(v.active_cost), exact(v.idle_cost), report.currency, ";".join(v.unpriced)]
                             for v in report.vms])


def rows_parquet(report: Report) -> bytes:
    money = pa.decimal128(38, 12)
    types = {"requests": pa.uint64(), "tokens_in": pa.uint64(), "tokens_out": pa.uint64(),
             "gpu_seconds": pa.decimal128(38, 6), "cpu_seconds": pa.decimal128(38, 6),
             "load_transfer_bytes": pa.uint64(), **{item: money for item in COST_ITEMS},
             "charge": pa.decimal128(38, 2)}
    records = row_records(report)
    columns = {}
    for i, name in enumerate(ROW_COLUMNS):
        values = [record[i] for record in records]
        if name == "unpriced":
            columns[name] = pa.array([v.split(";") if v else [] for v in values], pa.list_(pa.string()))
        else:
            columns[name] = pa.array(values, types.get(name, pa.string()))
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink, compression="zstd")
    return sink.getvalue()


def _table(header: list[str], rows: list[list[str]], numeric_from: int) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f'<td class="{"num" if i >= numeric_from else ""}">{escape(str(v))}</td>' for i, v in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _m(value: Decimal) -> str:
    return f"{value:,.2f}"


def html(report: Report, generated_at: str) -> str:
    """A page for people: status, totals per department and project, the charts, corrections, unpriced items,
    catalogue versions, and the rows per model / checkpoint / user."""
    month, cur = f"{report.month:%B %Y}", escape(report.currency or "(no catalogue)")
    parts = [f"<h1>Chargeback report {escape(month)}</h1>",
             f'<p class="meta">Generated {escape(generated_at)}. Amounts in {cur}. Charges are rounded to the '
             "cent top down, so every total is the sum of the lines below it; cost items are exact amounts rounded "
             "for display.</p>"]
    if report.provisional:
        parts.append('<div class="provisional"><strong>Provisional.</strong> These figures may still change:<ul>' +
                     "".join(f"<li>{escape(r)}</li>" for r in report.provisional_reasons) + "</ul></div>")
    else:
        parts.append('<p class="final">Final: the month is closed and every usage row is priced.</p>')
    if report.empty:
        parts.append(f"<p class=\"empty\">No priced usage in {escape(month)}: the cost tables hold no row for this "
                     "month.</p>")
    parts.append(f"<h2>Total: {_m(report.grand.charge)} {cur}</h2>")
    if report.history:
        parts.append("<h2>Cost by department over the months</h2>" +
                     charts.stacked_bars(report.history, "cost by department per month"))
    if report.departments:
        parts.append("<h2>Departments and projects</h2>" + _table(
            ["tenant", "department", "project", "tokens", "GPU", "CPU", "load / transfer", "charge"],
            [line for d in report.departments for line in
             [[*d.key, "(all)", *(_m(d.items[i]) for i in COST_ITEMS[:4]), _m(d.charge)]] +
             [[*p.key, *(_m(p.items[i]) for i in COST_ITEMS[:4]), _m(p.charge)] for p in report.projects
              if p.key[:2] == d.key]], 3))
        top = sorted(report.projects, key=lambda p: (-p.charge, p.key))[:10]
        parts.append("<h2>Top projects</h2>" + charts.horizontal_bars(
            [("/".join(p.key[1:]), p.charge) for p in top], "top projects by charge"))
        cells: dict[tuple[str, str], Decimal] = {}
        for row in report.rows:
            key = (f"{row.model} {row.model_version}".strip(), row.checkpoint_id or "(base)")
            cells[key] = cells.get(key, Decimal(0)) + row.total_cost
        parts.append("<h2>Model x checkpoint</h2>" + charts.heat_map(cells, "cost per model and checkpoint"))
    if report.corrections is not None:
        parts.append(f"<h2>Late corrections since the run of {escape(report.previous_generated_at or '?')}</h2>")
        parts.append(_table(["tenant", "department", "project", "before", "now", "difference"],
                            [[*c.project, "new" if c.before is None else _m(c.before), _m(c.now), _m(c.delta)]
                             for c in report.corrections], 3) if report.corrections else "<p>No change.</p>")
    if report.unpriced:
        parts.append("<h2>Usage without a price</h2><p>Charged 0 until a catalogue version prices it.</p>" + _table(
            ["kind:item", "projects"], [[item, ", ".join("/".join(p) for p in projects)]
                                        for item, projects in report.unpriced.items()], 9))
    parts.append("<h2>Price catalogue versions used</h2>" + (_table(
        ["version", "days priced with it"], [[str(v), str(d)] for v, d in report.catalogue_versions.items()], 1)
        if report.catalogue_versions else "<p>None: no priced day in this month.</p>"))
    parts.append("<h2>Task runs and VM time (apart from the charge)</h2><p>From the task facts and node activity, "
                 "priced when read: the same work is charged above as tokens, GPU and CPU, so these amounts are not "
                 "added to the total. Storage is not in this report yet.</p>")
    failed = [r for r in report.runs if r.status != "finished"]
    parts.append(_table(["tenant", "department", "project", "status", "attempts", "cost"],
                        [[r.tenant_id, r.department_id, r.project_id, r.status, str(r.attempts), _m(r.cost)]
                         for r in report.runs], 4) if report.runs else "<p>No task attempt ended in this month.</p>")
    if failed:
        parts.append(f"<p>Attempts that did not finish: {sum(r.attempts for r in failed)}, costing "
                     f"{_m(sum((r.cost for r in failed), Decimal(0)))} {cur}.</p>")
    parts.append(_table(["VM type", "active hours", "idle hours", "active cost", "idle cost", "unpriced"],
                        [[v.vm_type or "(unknown)", f"{v.active_seconds / HOUR:,.1f}", f"{v.idle_seconds / HOUR:,.1f}",
                          _m(v.active_cost), _m(v.idle_cost), ", ".join(v.unpriced)] for v in report.vms], 1)
                 if report.vms else "<p>No VM time observed in this month.</p>")
    if report.rows:
        parts.append("<h2>By model, checkpoint and user</h2>" + _table(
            ["department", "project", "model", "checkpoint", "user", "tokens", "GPU", "CPU", "load", "charge"],
            [[r.department_id, r.project_id, f"{r.model} {r.model_version}".strip(), r.checkpoint_id, r.user_id,
              *(_m(getattr(r, i)) for i in COST_ITEMS[:4]), _m(c)] for r, c in zip(report.rows, report.row_charges)],
            5))
    style = ("body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0;"
             "font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px}td.num{text-align:right}"
             ".provisional{background:#fff3cd;border:1px solid #e0c060;padding:8px}.meta{color:#555}"
             "svg{display:block;margin:8px 0}")
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Chargeback {escape(month)}"
            f"</title><style>{style}</style></head><body>" + "\n".join(parts) + "</body></html>\n")


class PdfError(RuntimeError):
    pass


def print_pdf(html_text: str, chromium: str | None = None) -> bytes:
    """The page printed by headless Chromium (Debian's `chromium`)."""
    binary = chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    if not binary:
        raise PdfError("no chromium on PATH: install it (`apt-get install chromium`, or `make system-deps`), or "
                       "give --no-pdf")
    with tempfile.TemporaryDirectory(prefix="report-pdf-") as tmp:
        page, pdf = Path(tmp) / "report.html", Path(tmp) / "report.pdf"
        page.write_text(html_text)
        result = subprocess.run(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
             f"--user-data-dir={tmp}/profile", f"--print-to-pdf={pdf}", page.as_uri()],
            capture_output=True, text=True, timeout=120)
        if result.returncode != 0 or not pdf.exists():
            raise PdfError(f"chromium exited {result.returncode}: {result.stderr.strip()[-500:]}")
        return pdf.read_bytes()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest(report: Report, files: dict[str, bytes], generated_at: str) -> dict[str, Any]:
    return {
        "manifest_version": MANIFEST_VERSION,
        "month": f"{report.month:%Y-%m}",
        "generated_at": generated_at,
        "provisional": report.provisional,
        "provisional_reasons": list(report.provisional_reasons),
        "currency": report.currency,
        "total_charge": str(report.grand.charge),
        "total_cost": exact(report.grand.items["total_cost"]),
        "catalogue_versions": {str(v): d for v, d in report.catalogue_versions.items()},
        "unpriced": sorted(report.unpriced),
        "files": {name: {"sha256": sha256(data), "bytes": len(data)} for name, data in sorted(files.items())},
        "project_totals": [[*p.key, exact(p.items["total_cost"])] for p in report.projects],
        "previous_generated_at": report.previous_generated_at,
    }


def manifest_bytes(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def previous_totals(data: dict[str, Any]) -> dict[tuple[str, str, str], Decimal]:
    """The project totals a manifest recorded; ValueError naming the problem when it holds none readable."""
    try:
        return {(str(t), str(d), str(p)): Decimal(str(total)) for t, d, p, total in data["project_totals"]}
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise ValueError(f"no readable project_totals ({exc!r})") from None
