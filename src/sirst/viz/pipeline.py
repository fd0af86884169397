"""``visualize``: run methods on a split and write per-image figures, Pd-Fa curves and the HTML index.

Files in ``out_dir``:
    ``index.html``          sortable table of all images (per-image IoU, misses, false alarms per method)
    ``figures/<id>.png``    input, ground truth, each method's prediction with circles (Fig. 7)
    ``surfaces/<id>.png``   3D surfaces of the input and each method's score around the targets (Fig. 8)
    ``pdfa_subsets.png/.csv``  Pd-Fa curves on the point / point+spot / all subsets (Fig. 9)
    ``per_image.csv``       the index table as CSV
    ``summary.json``        overall metrics (``SirstMetrics``) and curves of each method
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sirst.evaluation.methods import Method
from sirst.evaluation.report import json_clean
from sirst.viz.html import ImageRecord, write_index


@dataclass
class VisualizeResult:
    """What :func:`visualize` wrote: the index page, the records and the overall metrics per method."""

    index: Path
    records: list[ImageRecord]
    summary: dict[str, dict[str, float]]
    curves_csv: Path
    curves_png: Path


def file_stem(image_id: str) -> str:
    """A file-name-safe form of an image id."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", image_id) or "image"


def visualize(
    samples: Sequence[Any],
    methods: Sequence[Method],
    out_dir: str | os.PathLike,
    surfaces: int | None = None,
    title: str = "sirst visualize",
    progress: bool = True,
) -> VisualizeResult:
    """Run ``methods`` on ``samples`` and write the figures, curves and index (see the module docstring).

    Args:
        samples: :class:`sirst.evaluation.Sample` items (``id``, ``image``, ``mask`` paths).
        methods: from :func:`sirst.evaluation.build_methods`.
        out_dir: output folder (created).
        surfaces: draw 3D surfaces for the first this many images (``None``: all, ``0``: none).
        title: heading of the index page.
    """
    from tqdm import tqdm

    from sirst.data.dataset import load_pair
    from sirst.metrics import ROCMetric, SirstMetrics, match_image
    from sirst.viz.figures import draw_comparison, draw_surfaces, write_pdfa_subsets

    if not samples:
        raise ValueError(f"{out_dir}: no images to visualise")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {m.name: SirstMetrics(threshold=0.5) for m in methods}
    # As in `sirst compare`: each method's own curve thresholds.
    rocs = {m.name: ROCMetric(m.curve_thresholds) for m in methods}
    records: list[ImageRecord] = []
    used: set[str] = set()
    for k, sample in enumerate(tqdm(samples, desc="visualize", unit="img", disable=not progress)):
        image, mask = load_pair(Path(sample.image), Path(sample.mask))
        outputs = {m.name: m(m.read(sample)) for m in methods}  # the image again, or a saved map
        for name, o in outputs.items():
            if o.pred.shape != mask.shape:
                raise ValueError(f"{sample.mask}: mask size {mask.shape} differs from the output of {name} {o.pred.shape}")
        matches = {}
        for name, o in outputs.items():
            matches[name] = match_image(o.pred, mask)
            metrics[name].update([o.pred.astype(np.float32)], [mask])
            rocs[name].update([o.score], [mask])
        stem = file_stem(sample.id)
        while stem in used:  # ids that differ only in unsafe characters
            stem += "_"
        used.add(stem)
        fig_rel = f"figures/{stem}.png"
        draw_comparison(image, mask, {n: o.pred for n, o in outputs.items()}, matches, out / fig_rel, title=sample.id)
        surf_rel = None
        if surfaces is None or k < surfaces:
            surf_rel = f"surfaces/{stem}.png"
            draw_surfaces(image, mask, {n: o.score for n, o in outputs.items()}, out / surf_rel, title=sample.id)
        first = next(iter(matches.values()))
        records.append(
            ImageRecord(
                id=sample.id,
                figure=fig_rel,
                surface=surf_rel,
                num_targets=len(first.gt),
                methods={
                    n: {
                        "iou": m.iou,
                        "detected": int(len(m.pairs)),
                        "missed": int(len(m.missed)),
                        "false_alarms": int(len(m.false_alarms)),
                        "false_alarm_pixels": m.false_alarm_pixels,
                    }
                    for n, m in matches.items()
                },
            )
        )
    summary = {n: met.compute() for n, met in metrics.items()}
    curves = {n: r.compute() for n, r in rocs.items()}
    curves_csv, curves_png = write_pdfa_subsets(curves, out)
    _write_per_image_csv(out / "per_image.csv", records, list(summary))
    (out / "summary.json").write_text(json.dumps(json_clean({"metrics": summary, "curves": curves}), indent=1))
    index = write_index(out / "index.html", records, summary, title, curves_png=curves_png.name)
    return VisualizeResult(index, records, summary, curves_csv, curves_png)


def _write_per_image_csv(path: Path, records: Sequence[ImageRecord], methods: list[str]) -> None:
    keys = ("iou", "detected", "missed", "false_alarms", "false_alarm_pixels")
    with open(path, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["image", "method", "num_targets", *keys, "figure", "surface"])
        for r in records:
            for m in methods:
                v = r.methods[m]
                wr.writerow([r.id, m, r.num_targets, *(v[k] for k in keys), r.figure, r.surface or ""])
