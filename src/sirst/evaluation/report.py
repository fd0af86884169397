"""One writer for evaluation results: the printed summary, JSON, CSV curves and markdown tables."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MethodResult",
    "format_table",
    "json_clean",
    "markdown_table",
    "safe_name",
    "write_curve",
    "write_json",
    "write_results",
    "write_roc_csv",
]


@dataclass
class MethodResult:
    """Metrics of one method over a split.

    Attributes:
        method: display name (``tophat``, ``dnanet:weights.pt``...).
        threshold: ``"adaptive"`` or the fixed threshold used.
        metrics: :meth:`sirst.metrics.SirstMetrics.compute` (fractions).
        curve: ``thresholds``/``pd``/``fa`` (and pixel ROC) lists, see :class:`sirst.metrics.ROCMetric`.
        seconds_per_image: mean time of the method itself (no file IO), seconds.
        num_images: images evaluated.
    """

    method: str
    threshold: str
    metrics: dict[str, float]
    curve: dict[str, Any]
    seconds_per_image: float
    num_images: int
    extra: dict[str, Any] = field(default_factory=dict)

    def table_row(self) -> dict[str, float | str]:
        """The paper's Table II columns: IoU, nIoU, Pd (x100), Fa (x1e-6), plus seconds per image, and
        the same under the reference protocol (``*_ref_*``) when it was computed."""
        m = self.metrics
        row: dict[str, float | str] = {
            "method": self.method,
            "iou_x100": 100.0 * m["iou"],
            "niou_x100": 100.0 * m["niou"],
            "pd_x100": 100.0 * m["pd"],
            "fa_x1e6": 1e6 * m["fa"],
            "seconds_per_image": self.seconds_per_image,
        }
        if "cpu_seconds_per_image" in self.extra:
            row["cpu_seconds_per_image"] = self.extra["cpu_seconds_per_image"]
        ref = self.extra.get("reference")
        if ref:  # the same predictions under the public code's protocol
            row.update({"iou_ref_x100": 100.0 * ref["iou"], "niou_ref_x100": 100.0 * ref["niou"],
                        "pd_ref_x100": 100.0 * ref["pd"], "fa_ref_x1e6": 1e6 * ref["fa"]})
        return row


def json_clean(v: Any) -> Any:
    """``v`` with NaN/inf floats replaced by ``None`` (strict JSON), recursively."""
    if isinstance(v, float):
        return v if np.isfinite(v) else None
    if isinstance(v, dict):
        return {k: json_clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_clean(x) for x in v]
    return v


def write_json(path: str | os.PathLike, doc: dict[str, Any]) -> None:
    """``doc`` as indented strict JSON (NaN/inf as ``null``) at ``path``."""
    Path(path).write_text(json.dumps(json_clean(doc), indent=2) + "\n")


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "n/a"
    return f"{v:.4g}" if abs(v) < 1e-3 and v != 0 else f"{v:.4f}"


def format_table(r: dict[str, float]) -> str:
    """A readable summary of :meth:`sirst.metrics.SirstMetrics.compute` output."""
    rows = [
        ("IoU", _fmt(r["iou"])),
        ("nIoU", _fmt(r["niou"])),
        ("Pd", f"{_fmt(r['pd'])}  ({int(r['num_matched'])}/{int(r['num_targets'])} targets)"),
        ("Fa (per pixel)", f"{_fmt(r['fa'])}  ({r['fa'] * 1e6:.3f} x 1e-6)" if not math.isnan(r["fa"]) else "n/a"),
        ("false-alarm targets", str(int(r["false_alarm_targets"]))),
        ("precision", _fmt(r["precision"])),
        ("recall", _fmt(r["recall"])),
        ("F1", _fmt(r["f1"])),
    ]
    for name in ("point", "spot", "extended"):
        rows.append((f"Pd {name}", f"{_fmt(r[f'pd_{name}'])}  (n={int(r[f'num_targets_{name}'])})"))
    rows.append(("images", str(int(r["num_images"]))))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def write_roc_csv(path: str | os.PathLike, curves: dict[str, Any]) -> None:
    """The ROC and Pd-Fa curves of :meth:`sirst.metrics.ROCMetric.compute`, one row per threshold:
    ``threshold, tpr, fpr, precision, pd, fa`` (full precision)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        cols = ["threshold", "tpr", "fpr", "precision", "pd", "fa"]
        w.writerow(cols)
        for row in zip(*(curves[k if k != "threshold" else "thresholds"] for k in cols)):
            w.writerow([repr(float(x)) for x in row])


def safe_name(method: str) -> str:
    """A file-name-safe version of a method label (``dnanet:/a/b.pt`` -> ``dnanet_b``)."""
    if ":" in method:
        kind, rest = method.split(":", 1)
        method = f"{kind}_{Path(rest).stem}"
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in method)


def write_curve(result: MethodResult, out_dir: Path) -> tuple[Path, Path]:
    """Write ``<method>_pdfa.csv`` (threshold, pd, fa, tpr, fpr) and ``<method>_pdfa.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = safe_name(result.method)
    c = result.curve
    csv_path = out_dir / f"{stem}_pdfa.csv"
    rows = ["threshold,pd,fa,tpr,fpr"]
    rows += [f"{t:.4f},{pd:.6f},{fa:.9g},{tpr:.6f},{fpr:.9g}" for t, pd, fa, tpr, fpr in zip(c["thresholds"], c["pd"], c["fa"], c["tpr"], c["fpr"])]
    csv_path.write_text("\n".join(rows) + "\n")
    fig, ax = plt.subplots(figsize=(4.5, 3.5), dpi=120)
    ax.plot(np.asarray(c["fa"]) * 1e6, c["pd"], marker=".")
    ax.set_xlabel("Fa (x1e-6)")
    ax.set_ylabel("Pd")
    ax.set_title(f"Pd-Fa: {result.method}")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    png_path = out_dir / f"{stem}_pdfa.png"
    fig.savefig(png_path)
    plt.close(fig)
    return csv_path, png_path


def markdown_table(results: Sequence[MethodResult]) -> str:
    """Markdown table with the paper's Table II columns plus seconds per image."""
    lines = [
        "| Method | IoU (x1e-2) | nIoU (x1e-2) | Pd (x1e-2) | Fa (x1e-6) | s / image |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        row = r.table_row()
        lines.append(
            f"| {row['method']} | {row['iou_x100']:.2f} | {row['niou_x100']:.2f} | {row['pd_x100']:.2f} "
            f"| {row['fa_x1e6']:.2f} | {row['seconds_per_image']:.4f} |"
        )
    return "\n".join(lines)


def write_results(results: Sequence[MethodResult], out_dir: Path, stem: str = "compare") -> tuple[Path, Path]:
    """Write ``<stem>.md`` (table) and ``<stem>.json`` (rows + full metrics + curves)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / f"{stem}.md"
    md.write_text(markdown_table(results) + "\n")
    js = out_dir / f"{stem}.json"
    js.write_text(json.dumps({"rows": [r.table_row() for r in results], "results": [asdict(r) for r in results]}, indent=2))
    return md, js
