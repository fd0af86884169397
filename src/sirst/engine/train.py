"""The training loop: ``train(TrainConfig) -> TrainResult``, single-process or DDP under torchrun.

Reproducibility and resume. Everything random in an epoch is a function of ``(seed, epoch)``: the
sampler is a ``DistributedSampler`` (also with one process) seeded with ``seed`` and told the epoch,
and the dataset's augmentation draws from per-sample generators derived from ``(seed, epoch, index)``
(``dataset.set_epoch(epoch)``). Nothing depends on RNG state carried across epochs, so resuming from
``last.pt`` gives the same weights as an uninterrupted run; the torch/numpy/python RNG states are
still saved and restored for any other consumer.

Files in ``RUN_DIR`` (written by rank 0 only):
    ``config.yaml``    the resolved :class:`TrainConfig`
    ``last.pt``        checkpoint after every epoch (atomic write, see :mod:`sirst.checkpoint`)
    ``best.pt``        checkpoint of the evaluation with the highest IoU (``best_epoch`` inside)
    ``metrics.jsonl``  one JSON line per evaluation: epoch, loss (mean training loss of the epoch),
                       iou, niou, pd, fa (fractions: Fa is false-alarm pixels / all pixels, the paper
                       prints it x1e6), seconds (evaluation wall time), split ("test" or "val"),
                       best_epoch; NaN (undefined ratio) is written as null
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler, Subset

from sirst.engine.config import TrainConfig
from sirst.engine.distributed import (
    DistInfo,
    all_gather_objects,
    all_reduce_,
    barrier,
    cleanup_distributed,
    init_distributed,
    sync_buffers_,
)
from sirst.engine.steps import TrainStep, get_train_step
from sirst.evaluation.dataset import evaluate_dataset
from sirst.models.base import unwrap

# Options that decide the data order, augmentation and model: a resume must not change them.
_RESUME_MUST_MATCH: tuple[str, ...] = ("data", "split", "seed", "batch_size", "crop_size", "base_size", "val_fraction",
                                       "max_train_images", "in_channels", "extra_data", "negatives",
                                       "negatives_per_epoch", "val_negatives", "val_negative_crops", "synth_per_epoch",
                                       "synth_hard_p", "init_weights", "negatives_hard_p", "bce_weight",
                                       "negatives_mined")
# (A key that a saved run's config predates passes the check once: it takes the new value, and
# continue_run.py logs the change in the run's overrides.jsonl.)
# The optimizer and scheduler states in last.pt belong to these: changing them on --resume would be
# ignored (load_state_dict restores the saved learning rates) or fail; they need a new run.
_RESUME_OPTIMIZER_MUST_MATCH: tuple[str, ...] = ("optimizer", "scheduler", "lr", "min_lr", "weight_decay")
#: Checkpoints tried by --resume, in order: a corrupt last.pt falls back to the copy kept from the
#: epoch before (``last.prev.pt``), then to ``best.pt``.
RESUME_CANDIDATES: tuple[str, ...] = ("last.pt", "last.prev.pt", "best.pt")
_NO_BAD_STEP = 2**62  # sentinel for "no non-finite loss yet" (reduced with MIN across ranks)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the message names the epoch and step."""


@dataclass
class TrainResult:
    """What a run did: per-epoch mean losses, evaluations, the best epoch and its IoU."""

    out_dir: Path
    history: list[dict[str, float]] = field(default_factory=list)  # {"epoch", "loss", ...} per epoch
    evaluations: list[dict[str, Any]] = field(default_factory=list)  # the metrics.jsonl lines
    best_epoch: int | None = None
    best_iou: float = -math.inf
    eval_split: str = "test"
    is_main: bool = True  # False on DDP ranks other than 0 (they write and print nothing)
    stopped_by_time: bool = False  # True when ``max_minutes`` ended the run before ``epochs``


# --------------------------------------------------------------------------------------------------
# Seeds and RNG state


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------------------------------
# Building blocks


def build_model(cfg: TrainConfig) -> tuple[nn.Module, dict[str, Any]]:
    """Create ``cfg.model`` with the configured keywords; returns the model and the keywords used."""
    from sirst.models import create_model

    kwargs = cfg.resolved_model_kwargs()
    try:
        model = create_model(cfg.model, **kwargs)
    except TypeError as exc:
        raise ValueError(f"--model {cfg.model}: does not accept the options {kwargs} ({exc})") from exc
    return model, kwargs


def set_epoch(ds: Dataset, epoch: int) -> None:
    """Tell every dataset inside ``ds`` (through ``Subset`` and ``ConcatDataset``) which epoch starts."""
    if isinstance(ds, Subset):
        set_epoch(ds.dataset, epoch)
    elif isinstance(ds, ConcatDataset):
        for part in ds.datasets:
            set_epoch(part, epoch)
    elif hasattr(ds, "set_epoch"):
        ds.set_epoch(epoch)


def _labelled_split(cfg: TrainConfig, root: str) -> tuple[Dataset, Dataset | None]:
    """One labelled dataset's training part and its validation carve (None without --val-fraction)."""
    from sirst.data import SirstDataset

    common = dict(split=cfg.split, base_size=cfg.base_size, in_channels=cfg.in_channels)
    train_full = SirstDataset(root, subset="train", mode="train", crop_size=cfg.crop_size, seed=cfg.seed, **common)
    n = len(train_full)
    train_idx = list(range(n))
    val: Dataset | None = None
    if cfg.val_fraction > 0:
        n_val = max(1, int(round(cfg.val_fraction * n)))
        if n_val >= n:
            raise ValueError(f"{root}: --val-fraction {cfg.val_fraction} leaves no training images out of {n}")
        perm = np.random.default_rng(cfg.seed).permutation(n)
        val_idx = sorted(int(i) for i in perm[:n_val])
        train_idx = sorted(int(i) for i in perm[n_val:])
        val = Subset(SirstDataset(root, subset="train", mode="eval", protocol=cfg.protocol, **common), val_idx)
    if cfg.max_train_images is not None:
        train_idx = train_idx[: cfg.max_train_images]
    train: Dataset = train_full if len(train_idx) == n else Subset(train_full, train_idx)
    return train, val


def build_datasets(cfg: TrainConfig) -> tuple[Dataset, Dataset, str]:
    """The training set (``mode="train"``), the evaluation set (``mode="eval"``) and its name.

    With ``cfg.val_fraction > 0`` a validation split is carved out of the training ids of every
    labelled dataset (``cfg.data`` and ``cfg.extra_data``; a permutation seeded by ``cfg.seed``) and
    used for evaluation and checkpoint selection instead of the test split; fixed crops of
    ``cfg.val_negatives`` join it (their false alarms enlarge the union, so they lower the IoU that
    selects the checkpoint). Without a carve the evaluation set is ``cfg.data``'s test split.
    ``cfg.negatives`` and ``cfg.synth_per_epoch`` add hard negatives and synthesized samples to the
    training set (:mod:`sirst.data.mixture`). ``max_train_images`` / ``max_test_images`` keep the
    first N (per labelled dataset / of the evaluation set).
    """
    from sirst.data.mixture import NegativeFrames, SynthStream, read_mined_spots

    train_parts: list[Dataset] = []
    val_parts: list[Dataset] = []
    for root in [cfg.data, *cfg.extra_data]:
        train, val = _labelled_split(cfg, root)
        train_parts.append(train)
        if val is not None:
            val_parts.append(val)
    if cfg.negatives_per_epoch:
        per_source = -(-cfg.negatives_per_epoch // len(cfg.negatives))
        mined = read_mined_spots(cfg.negatives_mined)
        for spec in cfg.negatives:
            train_parts.append(NegativeFrames(spec, per_source, crop_size=cfg.crop_size, in_channels=cfg.in_channels,
                                              seed=cfg.seed, hard_p=cfg.negatives_hard_p, mined=mined))
    if cfg.synth_per_epoch:
        train_parts.append(SynthStream(cfg.synth_per_epoch, crop_size=cfg.crop_size, hard_p=cfg.synth_hard_p,
                                       backgrounds=cfg.negatives[0] if cfg.negatives else None,
                                       in_channels=cfg.in_channels, seed=cfg.seed))
    if cfg.val_fraction > 0:
        eval_split = "val"
        if cfg.val_negative_crops:
            per_source = -(-cfg.val_negative_crops // len(cfg.val_negatives))
            for spec in cfg.val_negatives:
                val_parts.append(NegativeFrames(spec, per_source, crop_size=cfg.crop_size, mode="eval",
                                                in_channels=cfg.in_channels, seed=cfg.seed))
        eval_set: Dataset = val_parts[0] if len(val_parts) == 1 else ConcatDataset(val_parts)
    else:
        from sirst.data import SirstDataset

        eval_split = "test"
        eval_set = SirstDataset(cfg.data, split=cfg.split, subset="test", mode="eval", protocol=cfg.protocol,
                                base_size=cfg.base_size, in_channels=cfg.in_channels)
    if cfg.max_test_images is not None and cfg.max_test_images < len(eval_set):
        eval_set = Subset(eval_set, list(range(cfg.max_test_images)))
    if len(eval_set) == 0:
        raise ValueError(f"{cfg.data}: the {eval_split} split has no images to evaluate on")
    train_set: Dataset = train_parts[0] if len(train_parts) == 1 else ConcatDataset(train_parts)
    return train_set, eval_set, eval_split


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch LR schedule: ``constant`` (the paper) or ``cosine`` from ``lr`` down to ``min_lr``."""
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs, eta_min=cfg.min_lr)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=_constant_factor)


def _constant_factor(epoch: int) -> float:
    return 1.0


def _to_device(batch: dict[str, Any], device: torch.device, channels_last: bool) -> dict[str, Any]:
    out = dict(batch)
    image = batch["image"].to(device, non_blocking=True)
    out["image"] = image.contiguous(memory_format=torch.channels_last) if channels_last else image
    out["mask"] = batch["mask"].to(device, non_blocking=True)
    return out


def _json_float(v: float) -> float | None:
    return None if not math.isfinite(v) else v


# --------------------------------------------------------------------------------------------------
# Checkpoints


def _checkpoint(
    cfg: TrainConfig,
    model: nn.Module,
    model_kwargs: dict[str, Any],
    epoch: int,
    optimizers: list[torch.optim.Optimizer],
    schedulers: list[Any],
    metrics: dict[str, Any] | None,
    best_epoch: int | None,
    best_iou: float,
    eval_split: str,
) -> dict[str, Any]:
    return {
        "model_name": cfg.model,
        "model_kwargs": model_kwargs,
        "state_dict": {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()},
        "epoch": epoch,
        # Lists: a model's own train step may use several optimizers (e.g. a GAN).
        "optimizer": [o.state_dict() for o in optimizers],
        "scheduler": [s.state_dict() for s in schedulers],
        "rng": get_rng_state(),
        "config": cfg.to_dict(),
        "metrics": metrics,
        "best_epoch": best_epoch,
        "best_iou": best_iou,
        "eval_split": eval_split,
    }


def _trim_metrics_log(path: Path, last_epoch: int) -> list[dict[str, Any]]:
    """Keep the lines of epochs a resumed run has completed (a run killed after logging an epoch but
    before saving it would otherwise log that epoch twice)."""
    if not path.is_file():
        return []
    kept = []
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            if rec["epoch"] <= last_epoch:
                kept.append(rec)
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return kept


# --------------------------------------------------------------------------------------------------
# The loop


def _run_epoch(
    cfg: TrainConfig,
    epoch: int,
    model: nn.Module,
    step: TrainStep,
    optimizers: list[torch.optim.Optimizer],
    loader: DataLoader,
    device: torch.device,
    info: DistInfo,
) -> dict[str, float]:
    """One pass over ``loader``; returns the mean of every loss term over the epoch (all ranks)."""
    from tqdm import tqdm

    model.train()
    sums: dict[str, torch.Tensor] = {}
    counter = torch.zeros((), dtype=torch.long, device=device)
    bad_step = torch.full((), _NO_BAD_STEP, dtype=torch.long, device=device)
    num_steps = len(loader)
    images_seen = 0
    start = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (cfg.progress and info.is_main), leave=False)
    for i, batch in enumerate(bar):
        batch = _to_device(batch, device, cfg.channels_last)
        losses = step.step(model, batch, optimizers)
        if "loss" not in losses:
            raise KeyError(f"{type(step).__name__}.step must return a dict with the key 'loss', got {sorted(losses)}")
        # Everything stays on the device: no host sync per step.
        for k, v in losses.items():
            sums[k] = sums[k] + v.detach().float() if k in sums else v.detach().float().clone()
        finite = torch.stack([v.detach().float() for v in losses.values()]).isfinite().all()
        bad_step = torch.where(finite, bad_step, torch.minimum(bad_step, counter))
        counter += 1
        images_seen += int(batch["image"].shape[0])
        log_now = (i + 1) % cfg.log_every == 0 or i + 1 == num_steps
        # A host sync costs nothing on the CPU: check every step there, every log_every steps elsewhere.
        if log_now or device.type == "cpu":
            first_bad = int(all_reduce_(bad_step.clone(), info, "min").item())
            if first_bad != _NO_BAD_STEP:
                good = last_good_checkpoint(Path(cfg.out))
                raise NonFiniteLossError(
                    f"{cfg.out}: non-finite training loss at epoch {epoch + 1}, step {first_bad + 1} "
                    f"(of {num_steps}); stopped. Start again with a lower --lr or without --amp; "
                    + (f"the last good checkpoint is {good}" if good else "no checkpoint had been written yet")
                )
        if log_now:
            if info.is_main and cfg.progress:
                elapsed = max(time.perf_counter() - start, 1e-9)
                bar.set_postfix(
                    loss=f"{losses['loss'].item():.4f}",
                    mean=f"{(sums['loss'] / (i + 1)).item():.4f}",
                    img_s=f"{images_seen * info.world_size / elapsed:.3g}",
                )
    bar.close()
    if num_steps == 0:
        raise ValueError(f"{cfg.data}: no training batches (fewer images per process than --batch-size {cfg.batch_size})")
    keys = sorted(sums)
    totals = all_reduce_(torch.stack([sums[k] for k in keys] + [counter.float()]), info, "sum").cpu()
    out = {k: float(totals[j] / totals[-1]) for j, k in enumerate(keys)}
    out["seconds"] = time.perf_counter() - start
    out["img_per_s"] = images_seen * info.world_size / out["seconds"]
    return out


def last_good_checkpoint(out: Path) -> Path | None:
    """The newest checkpoint file of a run folder that exists (``last.pt``, ``last.prev.pt``, ``best.pt``)."""
    for name in RESUME_CANDIDATES:
        if (out / name).is_file() and (out / name).stat().st_size > 0:
            return out / name
    return None


def _read_resume_checkpoint(out: Path, device: torch.device) -> tuple[dict[str, Any], Path]:
    """The checkpoint to resume from: ``last.pt``, or, when it cannot be read, the newest readable of
    ``last.prev.pt`` and ``best.pt``, with a warning. Raises the error of ``last.pt`` if none is readable."""
    import warnings

    from sirst.checkpoint import read_checkpoint

    try:
        return read_checkpoint(out / "last.pt", map_location=device), out / "last.pt"
    except (ValueError, FileNotFoundError) as exc:
        first_error = exc
    found: list[tuple[int, Path, dict[str, Any]]] = []
    for name in RESUME_CANDIDATES[1:]:
        try:
            ckpt = read_checkpoint(out / name, map_location=device)
        except (ValueError, FileNotFoundError):
            continue
        found.append((int(ckpt.get("epoch", 0)), out / name, ckpt))
    if not found:
        raise first_error
    epoch, path, ckpt = max(found, key=lambda f: f[0])
    warnings.warn(f"{out / 'last.pt'}: cannot be read ({str(first_error).split(': ', 1)[-1]}); resuming from {path} "
                  f"(epoch {epoch}) instead", RuntimeWarning, stacklevel=2)
    return ckpt, path


def _keep_previous(last: Path) -> None:
    """Keep the current ``last.pt`` as ``last.prev.pt`` (a hard link: no copy) before it is replaced."""
    import os

    if not last.is_file():
        return
    prev, tmp = last.with_name("last.prev.pt"), last.with_name(".last.prev.pt.tmp")
    try:
        tmp.unlink(missing_ok=True)
        os.link(last, tmp)
        os.replace(tmp, prev)
    except OSError:  # no hard links on this file system: the fallback is best.pt alone
        tmp.unlink(missing_ok=True)


def _remove_stale_temporaries(out: Path) -> None:
    """Delete temporaries of writes that a killed run left behind (``.last.pt.XXXX.tmp``, ...)."""
    for tmp in out.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def train(cfg: TrainConfig, overrides: dict[str, Any] | None = None) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.data`` as configured; see the module docstring for the files written.

    Runs under DDP when started by torchrun (``WORLD_SIZE > 1``). Raises ``ValueError`` /
    ``FileNotFoundError`` for bad input, :class:`NonFiniteLossError` if the loss diverges.
    ``overrides`` (``{option: [saved value, new value]}``, from ``sirst train --resume`` with explicit
    options) is appended to ``RUN_DIR/overrides.jsonl`` once the resume checks have passed.
    """
    cfg.validate()
    out = Path(cfg.out)
    if not cfg.resume and (out / "last.pt").exists():
        raise ValueError(f"{out / 'last.pt'}: the run directory already holds a run; pass --resume or another --out")
    info, device = init_distributed(cfg.device)
    try:
        return _train(cfg, info, device, overrides or {})
    finally:
        cleanup_distributed()


def _train(cfg: TrainConfig, info: DistInfo, device: torch.device, overrides: dict[str, Any]) -> TrainResult:
    from sirst.checkpoint import load_state_dict_checked, save_checkpoint

    out = Path(cfg.out)
    seed_everything(cfg.seed)
    train_set, eval_set, eval_split = build_datasets(cfg)
    model, model_kwargs = build_model(cfg)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    step = get_train_step(model, cfg)
    optimizers = step.configure_optimizers(model, cfg)
    schedulers = [make_scheduler(o, cfg) for o in optimizers]
    result = TrainResult(out_dir=out, eval_split=eval_split, is_main=info.is_main)
    start_epoch = 0
    resumed_metrics: dict[str, Any] | None = None
    if cfg.init_weights is not None and not cfg.resume:
        _load_init_weights(cfg, model, model_kwargs)
    last_is_good = False  # whether out/last.pt may be kept as last.prev.pt before it is replaced
    if cfg.resume:
        ckpt, ckpt_path = _read_resume_checkpoint(out, device)
        last_is_good = ckpt_path.name == "last.pt"
        if ckpt["model_name"] != cfg.model or ckpt["model_kwargs"] != model_kwargs:
            raise ValueError(
                f"{ckpt_path}: holds model {ckpt['model_name']!r} {ckpt['model_kwargs']}, "
                f"but this run asks for {cfg.model!r} {model_kwargs}"
            )
        saved = ckpt.get("config") or {}
        for key in _RESUME_MUST_MATCH:
            if key in saved and saved[key] != getattr(cfg, key):
                raise ValueError(
                    f"{ckpt_path}: was trained with {key}={saved[key]!r}, this run has {key}={getattr(cfg, key)!r}; "
                    "resuming with a different value would not reproduce the uninterrupted run"
                )
        for key in _RESUME_OPTIMIZER_MUST_MATCH:
            if key in saved and saved[key] != getattr(cfg, key):
                raise ValueError(
                    f"{ckpt_path}: was trained with {key}={saved[key]!r}, this run has {key}={getattr(cfg, key)!r}; "
                    "the saved optimizer state belongs to the first; start a new run (another --out) to change it"
                )
        if cfg.scheduler == "cosine" and saved.get("epochs", cfg.epochs) != cfg.epochs:
            raise ValueError(f"{ckpt_path}: the cosine schedule was laid out for {saved['epochs']} epochs; "
                             f"--epochs {cfg.epochs} cannot change it on --resume (the constant schedule can)")
        load_state_dict_checked(unwrap(model), ckpt["state_dict"], str(ckpt_path))
        if len(ckpt["optimizer"]) != len(optimizers):
            raise ValueError(f"{ckpt_path}: has {len(ckpt['optimizer'])} optimizer states, the run uses {len(optimizers)}")
        try:
            for o, s in zip(optimizers, ckpt["optimizer"]):
                o.load_state_dict(s)
            for sch, s in zip(schedulers, ckpt["scheduler"]):
                sch.load_state_dict(s)
        except (KeyError, ValueError, RuntimeError) as exc:
            raise ValueError(f"{ckpt_path}: its optimizer state does not fit --optimizer {cfg.optimizer} "
                             f"({exc.__class__.__name__}: {exc}); start a new run to change the optimizer") from None
        start_epoch = int(ckpt["epoch"])
        resumed_metrics = ckpt.get("metrics")
        result.best_epoch = ckpt.get("best_epoch")
        result.best_iou = float(ckpt.get("best_iou", -math.inf))
        set_rng_state(ckpt["rng"])
        if info.is_main:
            result.evaluations = _trim_metrics_log(out / "metrics.jsonl", start_epoch)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(out)
        cfg.save_yaml(out / "config.yaml")
        if cfg.resume and overrides:
            with open(out / "overrides.jsonl", "a") as f:  # what --resume changed, and from which epoch
                f.write(json.dumps({"epoch": start_epoch, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                    "changed": overrides}, default=str) + "\n")
            # Printed even without progress output: it changes what the run does.
            shown = ", ".join(f"{k}={new!r} (was {old!r})" for k, (old, new) in overrides.items())
            print(f"sirst train: resuming {out} at epoch {start_epoch} with {shown}", file=sys.stderr, flush=True)
        if not cfg.resume:
            # A fresh run starts a fresh log (a crashed earlier attempt may have left lines behind).
            (out / "metrics.jsonl").unlink(missing_ok=True)

    train_model: nn.Module = model
    if info.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.compile:
        # Compiles the forward and backward; checkpoints and evaluation keep using ``model`` itself.
        train_model = torch.compile(train_model)
    sampler = DistributedSampler(
        train_set, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.seed, drop_last=False
    )
    from sirst.data import pad_collate

    last_metrics: dict[str, Any] | None = resumed_metrics
    run_start = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        set_epoch(train_set, epoch)
        loader = DataLoader(
            train_set,
            batch_size=cfg.batch_size,
            sampler=sampler,
            num_workers=cfg.workers,
            collate_fn=pad_collate,
            drop_last=len(sampler) >= cfg.batch_size,  # as the paper's code, but never drop everything
            pin_memory=device.type == "cuda",
            generator=torch.Generator().manual_seed(cfg.seed + epoch),
        )
        epoch_stats = _run_epoch(cfg, epoch, train_model, step, optimizers, loader, device, info)
        for sch in schedulers:
            sch.step()
        result.history.append({"epoch": epoch + 1, **epoch_stats})
        done = epoch + 1
        sync_buffers_(model, info)
        out_of_time = _out_of_time(run_start, cfg, info, device)
        evaluate_now = record_this_epoch(done, cfg) or out_of_time
        is_best = False
        if evaluate_now:
            # The evaluation harness's batched network path (sirst.evaluation.dataset), sharded over
            # the ranks; every rank gets the merged counts of all of them.
            m = evaluate_dataset(
                model, eval_set, device=device, batch_size=cfg.eval_batch_size, workers=cfg.workers, amp=cfg.amp,
                channels_last=cfg.channels_last, protocol=cfg.protocol, progress=cfg.progress and info.is_main,
                desc=f"eval {eval_split} {done}", shard=(info.rank, info.world_size),
                gather=lambda state: all_gather_objects(state, info),
            )
            record = {
                "epoch": done,
                "loss": epoch_stats["loss"],
                "iou": m["iou"],
                "niou": m["niou"],
                "pd": m["pd"],
                "fa": m["fa"],
                "seconds": m["seconds"],
                "split": eval_split,
                "metrics": m,
            }
            last_metrics = m
            iou = m["iou"] if math.isfinite(m["iou"]) else -math.inf
            if result.best_epoch is None or iou > result.best_iou:
                result.best_epoch, result.best_iou, is_best = done, iou, True
            result.evaluations.append(record)
            if info.is_main:
                line = {k: (_json_float(v) if isinstance(v, float) else v) for k, v in record.items() if k != "metrics"}
                line["best_epoch"] = result.best_epoch
                with open(out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(line) + "\n")
        if info.is_main:
            ckpt = _checkpoint(
                cfg, model, model_kwargs, done, optimizers, schedulers, last_metrics,
                result.best_epoch, result.best_iou, eval_split,
            )
            if is_best:
                save_checkpoint(ckpt, out / "best.pt")
            if last_is_good:
                _keep_previous(out / "last.pt")
            save_checkpoint(ckpt, out / "last.pt")
            last_is_good = True
        if info.is_main and cfg.progress:
            print(
                f"epoch {done}/{cfg.epochs}: loss {epoch_stats['loss']:.4f}, {epoch_stats['img_per_s']:.3g} img/s"
                + (f", {eval_split} IoU {last_metrics['iou']:.4f} nIoU {last_metrics['niou']:.4f} "
                   f"Pd {last_metrics['pd']:.4f} Fa {last_metrics['fa']:.3e}" if evaluate_now else "")
                + (f" (best, epoch {result.best_epoch})" if is_best else ""),
                flush=True,
            )
        barrier(info)
        if out_of_time and done < cfg.epochs:
            result.stopped_by_time = True
            if info.is_main and cfg.progress:
                print(f"stopping after epoch {done}: --max-minutes {cfg.max_minutes:g} reached; "
                      f"--resume continues from {out / 'last.pt'}", flush=True)
            break
    return result


def _load_init_weights(cfg: TrainConfig, model: nn.Module, model_kwargs: dict[str, Any]) -> None:
    """Start from ``cfg.init_weights`` (bundled name or checkpoint path) instead of the random init."""
    from sirst.checkpoint import read_checkpoint

    ckpt = read_checkpoint(cfg.init_weights)
    if ckpt["model_name"] != cfg.model or ckpt.get("model_kwargs", {}) != model_kwargs:
        raise ValueError(f"{cfg.init_weights}: --init-weights hold model {ckpt['model_name']!r} "
                         f"{ckpt.get('model_kwargs')}, but this run trains {cfg.model!r} {model_kwargs}")
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    unwrap(model).load_state_dict(state)


def _out_of_time(run_start: float, cfg: TrainConfig, info: DistInfo, device: torch.device) -> bool:
    """Whether ``cfg.max_minutes`` has passed on any rank (reduced, so all ranks stop together)."""
    if cfg.max_minutes is None:
        return False
    late = torch.tensor(float(time.perf_counter() - run_start > 60.0 * cfg.max_minutes), device=device)
    return bool(all_reduce_(late, info, "max").item())


def record_this_epoch(done: int, cfg: TrainConfig) -> bool:
    """Whether epoch ``done`` (1-based) is evaluated: every ``eval_every`` epochs and the last one."""
    return done % cfg.eval_every == 0 or done == cfg.epochs
