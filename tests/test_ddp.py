"""DDP: `torchrun --nproc-per-node 2 -m sirst train` on CPU (gloo), and sharded evaluation.

The metrics a DDP run records (each rank evaluates its shard, counts gathered and merged) must equal
a single-process evaluation of the saved ``last.pt`` on the same split.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import Subset

import sirst
from test_engine import make_tiny_dataset, tiny_config


def _same(a: float, b: float, tol: float = 1e-9) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol


class _BrightPixels(nn.Module):
    """Logits = first input channel - 1 (bright blobs become imperfect detections) plus a fixed
    false alarm in the top-left corner (targets are drawn at least 6 px from the border)."""

    size_divisor = 16

    def forward(self, x):
        logits = x[:, :1] - 1.0
        logits[:, :, :2, :2] = 100.0
        return logits


def test_sharded_states_merge_to_full_evaluation(tmp_path):
    from sirst.evaluation.dataset import evaluate_dataset as evaluate, evaluate_state, merge_metric_states
    from sirst.engine.train import build_datasets

    data = make_tiny_dataset(tmp_path / "data", num=13, num_test=5)
    _, eval_set, _ = build_datasets(tiny_config(data, tmp_path / "run"))
    model = _BrightPixels()
    full = evaluate(model, eval_set, progress=False)
    assert full["num_images"] == 5 and 0 < full["iou"] < 1 and full["pd"] > 0 and full["fa"] > 0
    states = [evaluate_state(model, Subset(eval_set, list(range(r, 5, 2))), progress=False) for r in (0, 1)]
    merged = merge_metric_states(states)
    for k, v in merged.items():
        assert _same(v, full[k]), k
    # Batching several images per forward gives the same numbers.
    batched = evaluate(model, eval_set, batch_size=3, progress=False)
    assert all(_same(batched[k], full[k]) for k in merged)


def test_torchrun_two_processes_match_single_process_eval(tmp_path):
    from sirst.checkpoint import model_from_checkpoint, read_checkpoint
    from sirst.evaluation import evaluate_dataset as evaluate
    from sirst.engine.train import build_datasets

    data = make_tiny_dataset(tmp_path / "data", num=13, num_test=5)
    out = tmp_path / "run"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(sirst.__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "sirst", "train", "--data", str(data), "--out", str(out),
        "--backbone", "resnet10", "--channel-size", "one", "--epochs", "2", "--batch-size", "2",
        "--crop-size", "32", "--base-size", "64", "--device", "cpu", "--quiet", "--log-every", "1",
        # A tiny lr keeps the net near its random init, which (for this seed) predicts many pixels, so
        # the comparison below is not between all-zero metrics; BatchNorm statistics still change.
        "--lr", "1e-6", "--seed", "4",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2], "rank 0 alone writes one line per evaluation"
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 2
    recorded = ckpt["metrics"]
    assert recorded["num_images"] == 5

    assert recorded["iou"] > 0 and recorded["fa"] > 0, f"trivial metrics {recorded}: pick another --seed above"

    cfg = tiny_config(data, out, epochs=2, batch_size=2, seed=4)
    _, eval_set, _ = build_datasets(cfg)
    single = evaluate(model_from_checkpoint(ckpt), eval_set, progress=False)
    for k in ("iou", "niou", "pd", "fa", "num_images", "num_targets", "num_pixels"):
        assert _same(recorded[k], single[k]), (k, recorded[k], single[k])
    for k in ("iou", "niou", "pd", "fa"):
        v = lines[-1][k]
        assert _same(float("nan") if v is None else v, single[k]), k
    assert torch.isfinite(torch.tensor([lines[-1]["loss"]])).all()
