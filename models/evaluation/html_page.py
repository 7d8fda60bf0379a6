"""What the two HTML reports share: a page that fits a 1280 px window, tables that
scroll in their own box when they must, plots no wider than the page, and numbers and
names written as a reader reads them (899 users, not 899.0000; NDCG@10, not ndcg@10).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

PAGE_PX = 1200  # the content's width: a 1280 px window, less margins and a scrollbar
DPI = 100
FIG_MAX_IN = PAGE_PX / DPI  # a figure wider than this would be scaled down or cut

CSS = (f"body{{font-family:sans-serif;max-width:{PAGE_PX}px;margin:1.5em auto;"
       "padding:0 16px;box-sizing:border-box}"
       ".table{max-width:100%;overflow-x:auto;margin:0.5em 0 1em}"
       "table{border-collapse:collapse}"
       "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
       "th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}"
       "img{max-width:100%;height:auto;display:block;margin:1em 0}"
       "p.note{color:#444;max-width:60em}")


def png(fig: Any, alt: str) -> str:
    """The figure as an embedded PNG of its own size (figsize x DPI), never wider than
    the page."""
    width, _ = fig.get_size_inches()
    if width > FIG_MAX_IN + 1e-9:
        raise ValueError(f"a {width:.1f} in figure is wider than the page ({FIG_MAX_IN} in)")
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode()
    return (f'<img src="data:image/png;base64,{data}" width="{round(width * DPI)}" '
            f'alt="{html.escape(alt)}">')


def number(value: Any) -> str:
    """A count as a count (1,250), a rate or ratio to four significant digits."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if value != value:  # NaN
        return "-"
    if float(value).is_integer() and abs(value) >= 1:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def label(name: str, labels: Mapping[str, str]) -> str:
    """A column's or a model's name for a reader: from `labels`, else the name with
    spaces for underscores."""
    if name in labels:
        return labels[name]
    stem, at, k = name.partition("@")
    if at and stem in labels:
        return f"{labels[stem]}@{k}"
    return name.replace("_", " ")


def table(frame: pd.DataFrame, formats: Mapping[str, Any] | None = None,
          index: bool = True) -> str:
    """A table in a box that scrolls sideways if the table is wider than the page;
    cells formatted by `formats` (column -> function), else by `number`."""
    formats = formats or {}
    shown = frame.copy()
    for column in shown.columns:
        shown[column] = shown[column].map(formats.get(column, number))
    return f'<div class="table">{shown.to_html(index=index, border=0)}</div>'


def page(title: str, parts: Iterable[str]) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' "
            f"content='width=device-width'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")
