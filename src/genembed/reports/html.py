"""Self-contained HTML pages: inline CSS, figures embedded as base64 PNG, no external requests."""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import Iterable

import polars as pl

from genembed.data.io import atomic_path

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}
th{background:#f3f3f3;cursor:pointer}td:first-child,th:first-child{text-align:left}
img{max-width:100%;height:auto}.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.5em 1em}.good{background:#e8f5e9;border-left:4px solid #2e7d32;padding:.5em 1em}
.muted{color:#666;font-size:.9em}.scroll{overflow-x:auto}.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:1em}"""
_SORT_JS = r"""document.querySelectorAll('table.sortable th').forEach(th=>th.addEventListener('click',()=>{
const i=th.cellIndex;const tb=th.closest('table').tBodies[0];const rows=[...tb.rows];const asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';
const num=s=>{const m=s.trim().match(/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?(?=\s|$)/);return m?parseFloat(m[0]):NaN};
rows.sort((a,b)=>{const x=a.cells[i].innerText,y=b.cells[i].innerText;const nx=num(x),ny=num(y);
const c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);return asc?c:-c});rows.forEach(r=>tb.appendChild(r));}));"""


def save_figure(fig, path: str | os.PathLike) -> str:
    """Save a matplotlib figure as PNG (atomically) and return an <img> tag embedding it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    data = buf.getvalue()
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    alt = html.escape(Path(path).stem.replace("_", " "))
    return f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def grid(*images: str) -> str:
    """Figures side by side where the page is wide enough."""
    return f"<div class='grid'>{''.join(images)}</div>"


def table(df: pl.DataFrame, digits: int = 3) -> str:
    """A sortable HTML table (click a header to sort)."""
    def cell(v) -> str:
        if isinstance(v, float):
            return f"{v:.{digits}g}" if abs(v) < 1e-3 and v != 0 else f"{v:.{digits}f}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in df.iter_rows())
    return f'<div class="scroll"><table class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def page(title: str, sections: Iterable[tuple[str, str]], path: str | os.PathLike) -> None:
    """Write a page of (heading, html) sections atomically."""
    body = "".join(f"<h2>{html.escape(h)}</h2>\n{content}\n" for h, content in sections)
    text = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>\n{body}<script>{_SORT_JS}</script></body></html>\n")
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def esc(text: object) -> str:
    """HTML-escaped text."""
    return html.escape(str(text))
