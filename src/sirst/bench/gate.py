"""Accuracy gate of the fast inference paths: IoU, Pd and Fa on a test split against fp32.

A path passes when, on the same images with the same weights (exact protocol: native size padded
to a multiple of 16, whole frames, logit > 0), its IoU and Pd are within 0.5 points of torch fp32
and its Fa within 10 % of fp32's Fa.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn


@dataclass(frozen=True)
class GateLimits:
    """How far a fast path may move from fp32: IoU and Pd in percentage points, Fa relative."""

    iou_points: float = 0.5
    pd_points: float = 0.5
    fa_relative: float = 0.10


def passes(fp32: dict[str, float], other: dict[str, float], limits: GateLimits = GateLimits()) -> dict[str, Any]:
    """Deltas of ``other`` against ``fp32`` (metric dicts with ``iou``, ``pd``, ``fa`` as fractions)
    and whether each is within ``limits``. Fa of 0 against 0 passes; any Fa against 0 does not."""
    d_iou = 100.0 * (other["iou"] - fp32["iou"])
    d_pd = 100.0 * (other["pd"] - fp32["pd"])
    fa_rel = (other["fa"] - fp32["fa"]) / fp32["fa"] if fp32["fa"] > 0 else (0.0 if other["fa"] == 0 else float("inf"))
    ok = {"iou": abs(d_iou) <= limits.iou_points, "pd": abs(d_pd) <= limits.pd_points,
          "fa": abs(fa_rel) <= limits.fa_relative}
    return {"d_iou_points": d_iou, "d_pd_points": d_pd, "fa_relative": fa_rel, "ok": ok, "pass": all(ok.values())}


def gate_split(
    model: nn.Module,
    root: str | os.PathLike,
    runners: dict[str, Callable[[torch.Tensor], torch.Tensor]],
    limit: int | None = None,
    indices: Sequence[int] | None = None,
    progress: bool = True,
    limits: GateLimits = GateLimits(),
) -> dict[str, Any]:
    """Metrics of every runner (name -> callable, ``"fp32"`` among them) on the test split at ``root``.

    Images run one at a time, whole, padded to a multiple of the model's ``size_divisor`` (the
    exact protocol of ``sirst eval``). ``indices`` or ``limit`` pick a subset. Returns
    ``{"images": n, "paths": {name: {"metrics": {...}, "gate": {...}, "seconds": s}}}``.
    """
    from tqdm import tqdm

    from sirst.data.dataset import SirstDataset
    from sirst.data.io import to_network_input
    from sirst.metrics import SirstMetrics
    from sirst.detect.optimize import in_channels_of

    if "fp32" not in runners:
        raise ValueError("the gate compares with fp32: runners must include 'fp32'")
    ds = SirstDataset(root, subset="test", mode="eval", check_sizes=False)
    picks = list(indices) if indices is not None else list(range(len(ds)))[: limit or None]
    divisor = int(getattr(model, "size_divisor", 16))
    in_ch = in_channels_of(model)
    metrics = {name: SirstMetrics(0.0, "exact") for name in runners}
    seconds = dict.fromkeys(runners, 0.0)
    for i in tqdm(picks, desc=f"gate {Path(root).name}", unit="img", disable=not progress, dynamic_ncols=True):
        gray, mask = ds.load(i)
        h, w = gray.shape
        x = to_network_input(np.pad(gray, ((0, -h % divisor), (0, -w % divisor))), in_ch)[None]
        for name, fn in runners.items():
            start = time.perf_counter()
            with torch.inference_mode():
                out = fn(x)
            seconds[name] += time.perf_counter() - start
            out = out[-1] if isinstance(out, (list, tuple)) else out
            metrics[name].update([out.float().numpy()[0, 0, :h, :w]], [mask])
    results = {name: m.compute() for name, m in metrics.items()}
    keep = ("iou", "niou", "pd", "fa")
    paths = {name: {"metrics": {k: float(r[k]) for k in keep}, "seconds": seconds[name],
                    "gate": passes(results["fp32"], r, limits) if name != "fp32" else None}
             for name, r in results.items()}
    return {"dataset": str(root), "images": len(picks), "limits": asdict(limits), "paths": paths}


def format_gate(result: dict[str, Any], title: str) -> str:
    """One table: path, IoU %, Pd %, Fa x1e-6, deltas, pass."""
    lines = [f"{title} ({result['images']} images, exact protocol)",
             f"{'path':<20} {'IoU %':>7} {'Pd %':>7} {'Fa 1e-6':>8} {'dIoU':>6} {'dPd':>6} {'dFa %':>7}  gate"]
    for name, r in result["paths"].items():
        m, g = r["metrics"], r["gate"]
        tail = "-" if g is None else ("pass" if g["pass"] else "FAIL " + ",".join(k for k, v in g["ok"].items() if not v))
        d = ("", "", "") if g is None else (f"{g['d_iou_points']:+.2f}", f"{g['d_pd_points']:+.2f}",
                                            f"{100 * g['fa_relative']:+.1f}")
        lines.append(f"{name:<20} {100 * m['iou']:>7.2f} {100 * m['pd']:>7.2f} {1e6 * m['fa']:>8.2f} "
                     f"{d[0]:>6} {d[1]:>6} {d[2]:>7}  {tail}")
    return "\n".join(lines)
