"""Small inline SVG charts for the report's HTML: stacked bars per month, horizontal bars, a heat map grid.
Text is escaped; sizes are fixed so the page prints the same on every machine.
"""

from __future__ import annotations

from decimal import Decimal
from html import escape
from typing import Mapping, Sequence

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac")


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" font-family="sans-serif" '
            f'font-size="11">' + "".join(body) + "</svg>")


def _money(value: Decimal) -> str:
    return f"{value:,.2f}"


def stacked_bars(series: Mapping[str, Mapping[str, Decimal]], title: str) -> str:
    """One bar per column (e.g. month), stacked by key (e.g. department); a legend of the keys on the right."""
    columns = list(series)
    keys = sorted({key for values in series.values() for key in values})
    width, height, left, top, bottom = 640, 260, 70, 20, 40
    plot_h = height - top - bottom
    peak = max((sum(values.values(), Decimal(0)) for values in series.values()), default=Decimal(0)) or Decimal(1)
    slot = (width - left - 180) / max(len(columns), 1)
    body = [f'<line x1="{left}" y1="{top + plot_h}" x2="{left + slot * len(columns):.1f}" y2="{top + plot_h}" '
            'stroke="#333"/>',
            f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{_money(peak)}</text>',
            f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end">0</text>']
    for c, column in enumerate(columns):
        x, y = left + c * slot + slot * 0.15, float(top + plot_h)
        for k, key in enumerate(keys):
            value = series[column].get(key, Decimal(0))
            h = float(value / peak) * plot_h
            if h > 0:
                y -= h
                body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
                            f'fill="{PALETTE[k % len(PALETTE)]}"><title>{escape(column)} {escape(key)}: '
                            f'{_money(value)}</title></rect>')
        body.append(f'<text x="{x + slot * 0.35:.1f}" y="{top + plot_h + 16}" text-anchor="middle">'
                    f'{escape(column)}</text>')
    for k, key in enumerate(keys[:12]):
        ly = top + k * 16
        body.append(f'<rect x="{width - 170}" y="{ly}" width="10" height="10" fill="{PALETTE[k % len(PALETTE)]}"/>'
                    f'<text x="{width - 155}" y="{ly + 9}">{escape(key[:24])}</text>')
    if len(keys) > 12:
        body.append(f'<text x="{width - 170}" y="{top + 12 * 16 + 9}">and {len(keys) - 12} more</text>')
    return _svg(width, height, body, title)


def horizontal_bars(values: Sequence[tuple[str, Decimal]], title: str) -> str:
    """One bar per (label, value), in the order given."""
    width, row_h, left = 640, 22, 220
    height = max(len(values), 1) * row_h + 10
    peak = max((v for _, v in values), default=Decimal(0)) or Decimal(1)
    body = []
    for i, (label, value) in enumerate(values):
        y = 5 + i * row_h
        w = float(value / peak) * (width - left - 90)
        body.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{escape(label[:36])}</text>'
                    f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{PALETTE[0]}"/>'
                    f'<text x="{left + w + 4:.1f}" y="{y + 14}">{_money(value)}</text>')
    return _svg(width, height, body, title)


def heat_map(cells: Mapping[tuple[str, str], Decimal], title: str) -> str:
    """A grid of rows x columns (e.g. model x checkpoint), each cell shaded by its value and labelled with it."""
    rows = sorted({r for r, _ in cells})[:20]
    columns = sorted({c for _, c in cells})[:8]
    left, top, cell_w, cell_h = 180, 40, 90, 24
    width, height = left + cell_w * max(len(columns), 1) + 10, top + cell_h * max(len(rows), 1) + 10
    peak = max(cells.values(), default=Decimal(0)) or Decimal(1)
    body = [f'<text x="{left + i * cell_w + cell_w / 2}" y="{top - 8}" text-anchor="middle">{escape(c[:14] or "(none)")}'
            '</text>' for i, c in enumerate(columns)]
    for j, r in enumerate(rows):
        y = top + j * cell_h
        body.append(f'<text x="{left - 6}" y="{y + 16}" text-anchor="end">{escape(r[:30])}</text>')
        for i, c in enumerate(columns):
            value = cells.get((r, c))
            if value is None:
                continue
            shade = int(235 - 170 * float(value / peak))
            body.append(f'<rect x="{left + i * cell_w}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" '
                        f'fill="rgb({shade},{shade + 10 if shade < 245 else 255},255)"/>'
                        f'<text x="{left + i * cell_w + cell_w / 2 - 1}" y="{y + 15}" text-anchor="middle">'
                        f'{_money(value)}</text>')
    return _svg(width, height, body, title)
