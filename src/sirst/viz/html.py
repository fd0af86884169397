"""A static, self-contained HTML index of the per-image figures, sortable by column (small inline JS)."""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sirst.viz.figures import DETECTED_RGB, FALSE_ALARM_RGB, MISS_RGB, _hex

#: Per-method columns of the index: key in :attr:`ImageRecord.methods` values, header, format.
METHOD_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("iou", "IoU", "{:.3f}"),
    ("missed", "misses", "{:d}"),
    ("false_alarms", "FA", "{:d}"),
    ("false_alarm_pixels", "FA px", "{:d}"),
)


@dataclass
class ImageRecord:
    """One row of the index.

    Attributes:
        id: image id.
        figure: path of the comparison figure, relative to the page.
        surface: path of the 3D figure relative to the page, or ``None``.
        num_targets: ground-truth targets.
        methods: method name -> ``{"iou", "detected", "missed", "false_alarms", "false_alarm_pixels"}``.
    """

    id: str
    figure: str
    surface: str | None
    num_targets: int
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)


_CSS = """
body{font-family:system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:20px;margin:0 0 6px}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}
td.l,th.l{text-align:left}
#images th[data-type]{cursor:pointer;background:#eef;user-select:none}
#images th[data-type]:hover{background:#dde}
th.asc::after{content:" \\25B2"} th.desc::after{content:" \\25BC"}
tr.bad td.flag{background:#fdd}
img.thumb{height:84px;display:block}
.key span{display:inline-block;width:11px;height:11px;border-radius:50%;border:3px solid;margin:0 4px 0 12px;vertical-align:middle}
.summary{margin:8px 0 12px}
"""

# Click a header: sort the body rows by that column's data-v (numbers; empty/NaN last), again to reverse.
_JS = """
(function(){
  var table=document.getElementById('images'), body=table.tBodies[0];
  var heads=table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads,function(th,col){
    if(!th.dataset.type)return;
    th.addEventListener('click',function(){
      var desc=!th.classList.contains('desc');
      Array.prototype.forEach.call(heads,function(h){h.classList.remove('asc','desc');});
      th.classList.add(desc?'desc':'asc');
      var rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){
        var x=a.cells[col].dataset.v, y=b.cells[col].dataset.v;
        if(th.dataset.type==='str'){return desc?y.localeCompare(x):x.localeCompare(y);}
        x=parseFloat(x); y=parseFloat(y);
        if(isNaN(x)&&isNaN(y))return 0; if(isNaN(x))return 1; if(isNaN(y))return -1;
        return desc?y-x:x-y;
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
})();
"""


def _num(v: float | int) -> str:
    return "" if isinstance(v, float) and math.isnan(v) else repr(v)


def _fmt(v: Any, fmt: str) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "n/a"
    return fmt.format(v)


def write_index(
    path: str | os.PathLike,
    records: Sequence[ImageRecord],
    summary: Mapping[str, Mapping[str, float]],
    title: str,
    curves_png: str | None = None,
) -> Path:
    """Write the HTML index: summary table, Pd-Fa figure, one sortable row per image.

    Args:
        path: the ``.html`` file.
        records: one per image, in dataset order.
        summary: method name -> overall metrics (``iou``, ``niou``, ``pd``, ``fa`` fractions).
        title: page heading (e.g. the dataset and split).
        curves_png: relative path of the size-subset Pd-Fa figure, if any.
    """
    methods = list(summary)
    e = html.escape
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f'<p class="key">{len(records)} images. Circles:<span style="border-color:{_hex(DETECTED_RGB)}"></span>detected'
        f'<span style="border-color:{_hex(FALSE_ALARM_RGB)}"></span>false alarm'
        f'<span style="border-color:{_hex(MISS_RGB)}"></span>missed. '
        "Click a column header to sort (again to reverse); rows with a miss or a false alarm are shaded.</p>",
        '<table class="summary"><thead><tr><th class="l">method</th><th>IoU</th><th>nIoU</th><th>Pd</th>'
        "<th>Fa (x1e-6)</th></tr></thead><tbody>",
    ]
    for m in methods:
        s = summary[m]
        out.append(
            f'<tr><td class="l">{e(m)}</td><td>{_fmt(100 * s["iou"], "{:.2f}")}</td><td>{_fmt(100 * s["niou"], "{:.2f}")}</td>'
            f'<td>{_fmt(100 * s["pd"], "{:.2f}")}</td><td>{_fmt(1e6 * s["fa"], "{:.2f}")}</td></tr>'
        )
    out.append("</tbody></table>")
    if curves_png:
        q = quote(curves_png)
        out.append(f'<p><a href="{q}"><img src="{q}" alt="Pd-Fa curves on size subsets" style="max-width:100%;height:260px"></a></p>')
    heads = ['<th data-type="num">#</th>', '<th class="l" data-type="str">image</th>', '<th data-type="num">targets</th>',
             '<th class="l">figure</th>']
    for m in methods:
        heads += [f'<th data-type="num">{e(m)}<br>{label}</th>' for _, label, _ in METHOD_COLUMNS]
    out.append('<table id="images"><thead><tr>' + "".join(heads) + "</tr></thead><tbody>")
    for i, r in enumerate(records):
        bad = any(r.methods[m]["missed"] or r.methods[m]["false_alarms"] for m in methods)
        fig = quote(r.figure)
        links = f'<a href="{fig}"><img class="thumb" src="{fig}" loading="lazy" alt="{e(r.id)}"></a>'
        if r.surface:
            links += f'<a href="{quote(r.surface)}">3D</a>'
        cells = [
            f'<td data-v="{i}">{i + 1}</td>',
            f'<td class="l" data-v="{e(r.id)}">{e(r.id)}</td>',
            f'<td data-v="{r.num_targets}">{r.num_targets}</td>',
            f'<td class="l">{links}</td>',
        ]
        for m in methods:
            v = r.methods[m]
            for key, _, fmt in METHOD_COLUMNS:
                flag = ' class="flag"' if key in ("missed", "false_alarms") and v[key] else ""
                cells.append(f'<td{flag} data-v="{_num(v[key])}">{_fmt(v[key], fmt)}</td>')
        cls = ' class="bad"' if bad else ""
        out.append(f'<tr data-id="{e(r.id)}"{cls}>' + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    out.append(f"<script>{_JS}</script></body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path
