"""Throughput of the CUDA training fast path (:mod:`sirst.engine.fast`): one run, then several at once.

Each run is what a device window trains (:mod:`sirst.engine.window`): its own copy of the network,
Adagrad, a batch augmented on the device from a bank of uint8 images, the step captured as one CUDA
graph (CUDA) and replayed on the run's own stream. Timed: ``steps`` rounds in which every run takes
one step, after the capture; images per second summed over the runs.
"""

from __future__ import annotations

import contextlib
import copy
import time
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from sirst.bench import Peak


def _bank_images(n: int, size: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    from sirst.data.synth import SynthConfig, make_sample

    pairs = [make_sample(np.random.default_rng([seed, i]), SynthConfig(size=size))[:2] for i in range(n)]
    return [np.asarray(p[0], np.uint8) for p in pairs], [np.asarray(p[1], bool) for p in pairs]


def _time_rounds(steps: list[Any], streams: list[Any], params: torch.Tensor, rounds: int,
                 device: torch.device) -> float:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    sync()
    start = time.perf_counter()
    for s in range(rounds):
        for step, stream in zip(steps, streams):
            ctx = torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()
            with ctx:
                step.step(params[s % len(params)])
    sync()
    return time.perf_counter() - start


def bench_fast_training(
    model: nn.Module,
    device: torch.device,
    runs: int,
    batch: int,
    size: int,
    steps: int,
    flops_per_image: int,
    peak: Peak,
    amp: bool = True,
    images: int = 32,
    seed: int = 0,
) -> dict[str, Any]:
    """Images per second of ``runs`` fast-path runs of ``model`` (copies) at batch ``batch`` and
    ``size`` x ``size`` crops, one run alone and all together, with GFLOP/s and the fraction of
    ``peak`` (bf16 with ``amp``)."""
    from sirst.engine.fast import FastStep, FastStepOptions, ImageBank, TrainSource, epoch_params

    imgs, masks = _bank_images(images, size, seed)
    bank = ImageBank(imgs, masks, device)
    sources = [TrainSource(0, np.array([im.shape for im in imgs], np.int64), np.arange(len(imgs)))]
    per_epoch = len(imgs) // batch
    epochs = -(-max(steps, 2) // per_epoch)
    params = torch.from_numpy(np.concatenate([epoch_params(sources, seed, e, batch, size, size)
                                              for e in range(epochs)])).to(device)
    options = FastStepOptions(crop_size=size, amp=amp, channels_last=True)
    fast_steps, streams, checks = [], [], []
    start = time.perf_counter()
    for _ in range(runs):
        net = copy.deepcopy(model).to(device).train().requires_grad_(True)
        net.to(memory_format=torch.channels_last)
        step = FastStep(net, torch.optim.Adagrad(net.parameters(), lr=0.05), bank, batch, options, device)
        checks.append(step.capture(params[:2]))
        fast_steps.append(step)
        streams.append(torch.cuda.Stream(device) if device.type == "cuda" else None)
    capture_s = time.perf_counter() - start
    for stream in streams:
        if stream is not None:
            stream.wait_stream(torch.cuda.current_stream(device))
    _time_rounds(fast_steps, streams, params, 1, device)  # first replays (lazy initialisation)
    one = _time_rounds(fast_steps[:1], streams[:1], params, steps, device)
    together = _time_rounds(fast_steps, streams, params, steps, device)
    rows = []
    for n, seconds in ((1, one), (runs, together))[: 1 if runs == 1 else 2]:
        img_s = n * steps * batch / seconds
        gflops = img_s * flops_per_image / 1e9
        rows.append({"runs": n, "img_per_s": img_s, "img_per_s_per_run": img_s / n, "seconds": seconds,
                     "gflops": gflops, "pct_peak": 100.0 * gflops / peak.gflops if peak.gflops else None})
    return {
        "batch": batch, "size": size, "steps": steps, "precision": "bf16" if amp else "fp32",
        "graphs": all(c.get("graph") for c in checks), "graph_checks": checks, "capture_s": capture_s,
        "peak_gflops": peak.gflops, "peak_source": peak.source, "rows": rows,
    }
