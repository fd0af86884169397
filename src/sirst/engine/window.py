"""One device window: several training runs side by side on one GPU, against a deadline.

A *plan* (:class:`WindowPlan`, YAML) lists the runs: which sources of a data pack
(:mod:`sirst.data.pack`) each trains on, a synthesized pool, the model and the paper's protocol
options. :func:`train_window` trains them all in one process with the fast path of
:mod:`sirst.engine.fast` (each run's step one CUDA graph, replayed on the run's own CUDA stream,
round robin), evaluates each on a validation split carved from its training data (the permutation
of :func:`sirst.engine.train.build_datasets`, never the test split) every ``eval_every`` epochs with
:func:`sirst.evaluation.evaluate_dataset`, checkpoints often, and stops every run at an epoch boundary
early enough to save everything before the deadline.

Files in ``OUT`` (the window's folder)::

    plan.yaml           the resolved plan
    status.json         progress, rewritten every few seconds (what ``sirst window wait`` prints)
    RUN/last.pt         full checkpoint (the layout of sirst train's last.pt: ``sirst train --resume``
                        and ``sirst eval --weights`` accept it)
    RUN/state.pt        the same, compact (fp16 weights, 8-bit log Adagrad accumulators, ~14 MB for
                        DNANet-ResNet18): what travels to the next window
    RUN/best.pt         fp16 weights of the best validation IoU, in the bundled-weights layout
    RUN/metrics.jsonl   one line per evaluation, as sirst train writes
    RUN/config.yaml     the run as a TrainConfig

Resuming: a run continues from ``OUT/RUN/last.pt`` when it exists (same machine), else from
``RESUME/RUN-state.pt`` or ``RESUME/RUN/state.pt`` (a returned state), else starts fresh. The data
order and augmentation of an epoch are functions of (seed, epoch), so a resumed run sees the same
batches as an uninterrupted one.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import json
import math
import os
import queue
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from sirst.engine.fast import (
    FastStep,
    FastStepOptions,
    ImageBank,
    TrainSource,
    epoch_params,
    steps_per_epoch,
)

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
SYNTH = "synth"  # the reserved source name of a run's synthesized pool
_STATUS = "status.json"


# --------------------------------------------------------------------------------------------------
# The plan


@dataclass
class SynthPlan:
    """A pool of synthesized samples drawn once at the start of the window (``sirst.data.synth``)."""

    num: int = 2000
    seed: int = 1
    hard_p: float = 0.5  # fraction drawn with hard-negative clutter (make_hard_sample), half of them target-free
    size: int = 256


@dataclass
class RunPlan:
    """One training run of a window (defaults: the DNANet paper's protocol)."""

    name: str
    train: list[str]  # pack sources (labelled ones lose their validation carve) and/or "synth"
    val_extra: list[str] = field(default_factory=list)  # pack sources added whole to validation
    synth: SynthPlan | None = None
    model: str = "dnanet"
    backbone: str | None = None
    channel_size: str | None = None
    deep_supervision: bool | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    in_channels: int = 3
    epochs: int = 1500
    batch_size: int = 16
    crop_size: int = 256
    base_size: int = 256
    lr: float = 0.05
    weight_decay: float = 0.0
    val_fraction: float = 0.1
    eval_every: int = 5
    eval_batch_size: int = 8
    protocol: str = "exact"
    seed: int = 0
    amp: bool = True
    channels_last: bool = True
    cuda_graphs: bool = True
    share: int = 1  # steps per round of the round robin (a run needing more images gets more)
    max_train_images: int | None = None  # per labelled source, after the carve (tests)


@dataclass
class WindowPlan:
    """The runs of a window and how the window paces itself."""

    runs: list[RunPlan]
    checkpoint_every_s: float = 60.0
    reserve_s: float = 30.0  # a run starts no epoch that would end later than deadline - reserve
    abort_s: float = 10.0  # a run still inside an epoch this close to the deadline stops mid-epoch
    status_every_s: float = 5.0
    log_every_s: float = 30.0
    inflight_steps: int = 16  # steps a run may have queued on the GPU ahead of the host

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_RUN_FIELDS = {f.name for f in dataclasses.fields(RunPlan)}
_WINDOW_FIELDS = {f.name for f in dataclasses.fields(WindowPlan)} - {"runs"}


def plan_from_dict(data: dict[str, Any], where: str = "plan") -> WindowPlan:
    """Build and check a plan from its YAML mapping: ``runs`` (list), optional ``defaults`` merged
    into every run, and the window options. Errors name the key."""
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list) or not data["runs"]:
        raise ValueError(f"{where}: needs a non-empty list 'runs'")
    unknown = sorted(set(data) - _WINDOW_FIELDS - {"runs", "defaults"})
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}")
    defaults = data.get("defaults") or {}
    runs = []
    for k, entry in enumerate(data["runs"]):
        merged = {**defaults, **(entry or {})}
        bad = sorted(set(merged) - _RUN_FIELDS)
        if bad:
            raise ValueError(f"{where}: run {k + 1}: unknown keys {bad}")
        if "name" not in merged or "train" not in merged:
            raise ValueError(f"{where}: run {k + 1}: needs 'name' and 'train'")
        if merged.get("synth") is not None:
            synth = merged["synth"]
            known = {f.name for f in dataclasses.fields(SynthPlan)}
            bad = sorted(set(synth) - known) if isinstance(synth, dict) else ["synth"]
            if bad:
                raise ValueError(f"{where}: run {merged['name']}: synth: unknown keys {bad}")
            merged["synth"] = SynthPlan(**synth)
        runs.append(RunPlan(**merged))
    plan = WindowPlan(runs=runs, **{k: data[k] for k in _WINDOW_FIELDS if k in data})
    validate_plan(plan, where)
    return plan


def validate_plan(plan: WindowPlan, where: str = "plan") -> None:
    """Raise ``ValueError`` naming the run and the bad value."""
    names = [r.name for r in plan.runs]
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: run names must be unique, got {names}")
    for r in plan.runs:
        checks = [
            (bool(r.name) and all(c.isalnum() or c in "_-" for c in r.name),
             f"name must be letters, digits, '_' or '-', got {r.name!r}"),
            (isinstance(r.train, list) and bool(r.train), "train must list at least one source"),
            (SYNTH not in r.train or r.synth is not None, f"trains on '{SYNTH}' but has no synth settings"),
            (r.synth is None or SYNTH in r.train, f"has synth settings but '{SYNTH}' is not in train"),
            (r.epochs >= 1, f"epochs must be >= 1, got {r.epochs}"),
            (r.batch_size >= 1, f"batch_size must be >= 1, got {r.batch_size}"),
            (r.crop_size >= 16 and r.crop_size % 16 == 0,
             f"crop_size must be a positive multiple of 16, got {r.crop_size}"),
            (r.lr > 0, f"lr must be > 0, got {r.lr}"),
            (0.0 < r.val_fraction < 1.0, f"val_fraction must be in (0, 1): checkpoints are chosen on a carve "
                                         f"of the training data, never on test; got {r.val_fraction}"),
            (r.eval_every >= 1, f"eval_every must be >= 1, got {r.eval_every}"),
            (r.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {r.eval_batch_size}"),
            (r.protocol in ("exact", "reference"), f"protocol must be exact or reference, got {r.protocol!r}"),
            (r.share >= 1, f"share must be >= 1, got {r.share}"),
            (r.synth is None or r.synth.num >= 1, "synth.num must be >= 1"),
            (r.synth is None or 0.0 <= r.synth.hard_p <= 1.0, "synth.hard_p must be in [0, 1]"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"{where}: run {r.name!r}: {message}")
    if plan.checkpoint_every_s <= 0 or plan.reserve_s < 0 or plan.abort_s < 0 or plan.inflight_steps < 1:
        raise ValueError(f"{where}: checkpoint_every_s must be > 0, reserve_s and abort_s >= 0, inflight_steps >= 1")


def load_plan(spec: str | os.PathLike) -> WindowPlan:
    """A plan from a YAML file, or a bundled one by name (``paper`` = ``sirst/recipes/window_paper.yaml``)."""
    import yaml

    path = Path(spec)
    if not path.is_file():
        bundled = RECIPES / f"window_{spec}.yaml"
        if not bundled.is_file():
            names = sorted(p.stem[len("window_"):] for p in RECIPES.glob("window_*.yaml"))
            raise FileNotFoundError(f"{spec}: no such plan file, and no bundled plan of that name ({', '.join(names)})")
        path = bundled
    return plan_from_dict(yaml.safe_load(path.read_text()), str(path))


# --------------------------------------------------------------------------------------------------
# Data of a run


def carve_validation(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """``(train, val)`` positions of a labelled split of ``n`` images: the carve of
    :func:`sirst.engine.train.build_datasets` (``round(fraction * n)`` images, at least one, taken
    from a permutation by ``numpy.random.default_rng(seed)``), both sorted."""
    n_val = max(1, int(round(fraction * n)))
    if n_val >= n:
        raise ValueError(f"val_fraction {fraction} leaves no training images out of {n}")
    perm = np.random.default_rng(seed).permutation(n)
    return sorted(int(i) for i in perm[n_val:]), sorted(int(i) for i in perm[:n_val])


class PackedEvalSet(Dataset):
    """Validation items from uint8 images in memory, exactly as :class:`sirst.data.SirstDataset`
    gives them in ``mode="eval"``: ``{"image": (C, H, W), "mask": (1, H, W), "id", "size"}``."""

    def __init__(self, items: list[tuple[str, np.ndarray, np.ndarray]], in_channels: int = 3,
                 protocol: str = "exact", base_size: int = 256) -> None:
        self.items, self.in_channels, self.protocol, self.base_size = items, in_channels, protocol, base_size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from sirst.data.dataset import eval_item

        sample_id, image, mask = self.items[index]
        return eval_item(image.astype(np.float32) / 255.0, mask, sample_id, self.in_channels, self.protocol,
                         self.base_size)


def _synth_one(args: tuple[int, int, float, int]) -> tuple[np.ndarray, np.ndarray]:
    from sirst.data import synth

    seed, index, hard_p, size = args
    rng = np.random.default_rng([seed, index])
    config = synth.SynthConfig(size=size)
    hard = getattr(synth, "make_hard_sample", None)
    if hard is not None and rng.random() < hard_p:
        image, mask, _ = hard(rng, config, negative_p=0.5)
    else:
        image, mask, _ = synth.make_sample(rng, config)
    return np.asarray(image, np.uint8), np.asarray(mask, bool)


def synth_pool(plan: SynthPlan, workers: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``plan.num`` synthesized (image uint8, mask bool) pairs, sample ``i`` from
    ``default_rng([plan.seed, i])``; ``workers`` > 1 draws them in forked processes (call before CUDA
    is initialised)."""
    jobs = [(plan.seed, i, plan.hard_p, plan.size) for i in range(plan.num)]
    if workers > 1:
        import multiprocessing as mp

        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        with mp.get_context(method).Pool(workers) as pool:
            pairs = pool.map(_synth_one, jobs, chunksize=16)
    else:
        pairs = [_synth_one(j) for j in jobs]
    return [p[0] for p in pairs], [p[1] for p in pairs]


@dataclass
class RunData:
    """What a run trains and validates on, on the host."""

    images: list[np.ndarray]  # every image of every training source (labelled ones with their val images)
    masks: list[np.ndarray]
    sources: list[TrainSource]
    val_items: list[tuple[str, np.ndarray, np.ndarray]]
    counts: dict[str, dict[str, int]]  # per source: train / val images
    data_root: str  # the first labelled source's folder (TrainConfig.data)
    split: str


def build_run_data(run: RunPlan, pack: dict[str, Any], synth: tuple[list, list] | None) -> RunData:
    """Assemble a run's training sources and validation items from decoded pack sources."""
    images: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    sources: list[TrainSource] = []
    val_items: list[tuple[str, np.ndarray, np.ndarray]] = []
    counts: dict[str, dict[str, int]] = {}
    data_root, split = "", "50_50"
    for k, name in enumerate(run.train):
        if name == SYNTH:
            assert synth is not None
            ids = [f"synth-{i}" for i in range(len(synth[0]))]
            src_images, src_masks, kind = synth[0], synth[1], "synth"
        else:
            src = pack[name]
            ids, src_images, src_masks, kind = src.ids, src.images, src.masks, src.kind
        n = len(src_images)
        if kind == "labelled":
            train_idx, val_idx = carve_validation(n, run.val_fraction, run.seed)
            if run.max_train_images is not None:
                train_idx = train_idx[: run.max_train_images]
            val_items += [(f"{name}/{ids[i]}", src_images[i], src_masks[i]) for i in val_idx]
            if not data_root:
                data_root, split = pack[name].root, pack[name].split.split("/")[0]
        else:
            train_idx, val_idx = list(range(n)), []
        sources.append(TrainSource(offset=len(images), sizes=np.array([im.shape for im in src_images], np.int64),
                                   indices=np.array(train_idx, np.int64), stream=k))
        images += list(src_images)
        masks += list(src_masks)
        counts[name] = {"train": len(train_idx), "val": len(val_idx)}
    for name in run.val_extra:
        src = pack[name]
        val_items += [(f"{name}/{i}", im, m) for i, im, m in zip(src.ids, src.images, src.masks)]
        counts[name] = {"train": 0, "val": len(src.images)}
    if not val_items:
        raise ValueError(f"run {run.name!r}: no validation images (train on a labelled source or give val_extra)")
    return RunData(images, masks, sources, val_items, counts, data_root, split)


# --------------------------------------------------------------------------------------------------
# Small device helpers (the same code runs on a CPU, where there are no streams or events)


class _HostEvent:
    """Stands in for a CUDA event on the CPU: work is done when the call returns."""

    def __init__(self) -> None:
        self.time = time.perf_counter()

    def query(self) -> bool:
        return True

    def synchronize(self) -> None:
        pass

    def seconds_since(self, other: _HostEvent) -> float:
        return self.time - other.time


class _CudaEvent:
    def __init__(self, stream: torch.cuda.Stream) -> None:
        self.event = torch.cuda.Event(enable_timing=True)
        self.event.record(stream)

    def query(self) -> bool:
        return self.event.query()

    def synchronize(self) -> None:
        self.event.synchronize()

    def seconds_since(self, other: _CudaEvent) -> float:
        return other.event.elapsed_time(self.event) / 1000.0


def _map_tensors(fn: Callable[[torch.Tensor], Any], obj: Any) -> Any:
    """``obj`` with ``fn`` applied to every tensor inside its dicts, lists and tuples."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(fn, v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_map_tensors(fn, v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_map_tensors(fn, v) for v in obj)
    return obj


def _cpu_clone(obj: Any) -> Any:
    """Deep copy with every tensor copied to the CPU (a snapshot the writer thread can save while
    training goes on)."""
    return _map_tensors(lambda t: t.detach().to("cpu", copy=True), obj)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def _json_float(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


# --------------------------------------------------------------------------------------------------
# One run inside the window


class _Frozen:
    """Stands in for a model or an optimizer whose state was copied earlier, so that
    :func:`sirst.engine.train._checkpoint` lays out a checkpoint from asynchronous copies."""

    def __init__(self, state: dict[str, Any]) -> None:
        self._state = state

    def state_dict(self) -> dict[str, Any]:
        return self._state


def _host_copy(t: torch.Tensor) -> torch.Tensor:
    if t.is_cuda:
        buf = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        buf.copy_(t.detach(), non_blocking=True)
        return buf
    return t.detach().clone()


def _async_copy(obj: Any) -> Any:
    """Copy every tensor of ``obj`` to host memory without waiting: CUDA tensors into pinned buffers
    with non-blocking copies on the current stream (valid once an event recorded after it has
    completed), CPU tensors cloned."""
    return _map_tensors(_host_copy, obj)


class _Run:
    """A run's model, optimizer, fast step, schedule state and bookkeeping."""

    def __init__(self, plan: RunPlan, data: RunData, out: Path, device: torch.device,
                 log: Callable[[str], None]) -> None:
        from sirst.engine.config import TrainConfig
        from sirst.engine.steps import make_optimizer
        from sirst.engine.train import build_model, make_scheduler, seed_everything

        self.plan, self.data, self.dir, self.device, self.log = plan, data, out / plan.name, device, log
        self.cfg = TrainConfig(
            data=data.data_root or plan.train[0], out=str(self.dir), split=data.split, model=plan.model,
            backbone=plan.backbone, channel_size=plan.channel_size, in_channels=plan.in_channels,
            deep_supervision=plan.deep_supervision, epochs=plan.epochs, batch_size=plan.batch_size,
            eval_batch_size=plan.eval_batch_size, crop_size=plan.crop_size, base_size=plan.base_size, lr=plan.lr,
            weight_decay=plan.weight_decay, optimizer="adagrad", scheduler="constant", amp=plan.amp,
            channels_last=plan.channels_last, device=device.type, eval_every=plan.eval_every, seed=plan.seed,
            val_fraction=plan.val_fraction, max_train_images=plan.max_train_images, protocol=plan.protocol,
            progress=False, model_kwargs=dict(plan.model_kwargs),
        )
        seed_everything(plan.seed)  # the model's initialisation is the standard loop's for this seed
        model, self.model_kwargs = build_model(self.cfg)
        model.to(device)
        if plan.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model.train()
        self.optimizer = make_optimizer(model.parameters(), self.cfg)
        self.scheduler = make_scheduler(self.optimizer, self.cfg)
        self.steps_per_epoch = steps_per_epoch(data.sources, plan.batch_size)
        if self.steps_per_epoch == 0:
            raise ValueError(f"run {plan.name!r}: fewer training images than one batch of {plan.batch_size}")
        self.epoch = 0
        self.best_epoch: int | None = None
        self.best_iou = -math.inf
        self.last_metrics: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []
        self.resumed_from: str | None = None
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.state = "training"
        self.error: str | None = None
        self.step: FastStep | None = None
        self.eval_model: torch.nn.Module | None = None
        self.step_in_epoch = 0
        self.epoch_params: torch.Tensor | None = None
        self.epoch_start: Any = None
        self.inflight: collections.deque = collections.deque()
        self.pending: collections.deque = collections.deque()
        self.losses: dict[int, float] = {}
        self.epoch_seconds: float | None = None
        self.img_per_s: float | None = None
        self.last_loss: float | None = None
        self.images = 0
        self.eval_busy = False  # a snapshot of this run is being evaluated
        self.eval_wanted = False  # an evaluation is due and waits for the previous one to finish
        self.eval_failures = 0
        self.last_eval_seconds = 0.0
        self.last_eval_epoch = 0  # the epoch of the latest evaluation handed to the evaluator
        self.last_ckpt_epoch = 0
        self.last_ckpt_time = time.time()
        self.ckpt_evals = 0  # evaluations the last checkpoint knew of
        self.partial_steps = 0  # steps of an epoch cut short at the deadline (in the weights, not in `epoch`)
        self.steps_before = 0
        self.eval_set = PackedEvalSet(data.val_items, plan.in_channels, plan.protocol, plan.base_size)

    # -- setup ---------------------------------------------------------------------------------

    def resume(self, resume_dir: Path | None) -> None:
        """Load ``RUN/last.pt`` of the window's folder, else a returned state from ``resume_dir``."""
        from sirst.checkpoint import expand_training_state, read_checkpoint

        candidates = [self.dir / "last.pt"]
        if resume_dir is not None:
            candidates += [resume_dir / f"{self.plan.name}-state.pt", resume_dir / self.plan.name / "state.pt",
                           resume_dir / self.plan.name / "last.pt"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            return
        ckpt = expand_training_state(read_checkpoint(path, map_location="cpu"))
        if ckpt["model_name"] != self.cfg.model or ckpt["model_kwargs"] != self.model_kwargs:
            raise ValueError(f"{path}: holds {ckpt['model_name']!r} {ckpt['model_kwargs']}, run {self.plan.name!r} "
                             f"trains {self.cfg.model!r} {self.model_kwargs}")
        saved = ckpt.get("config") or {}
        if saved.get("optimizer", "adagrad") != "adagrad" or len(ckpt["optimizer"]) != 1:
            raise ValueError(f"{path}: was trained with {saved.get('optimizer')!r}; the fast path trains with adagrad")
        for key in ("seed", "batch_size", "crop_size", "base_size", "val_fraction", "max_train_images", "in_channels"):
            if key in saved and saved[key] != getattr(self.cfg, key):
                raise ValueError(f"{path}: was trained with {key}={saved[key]!r}, the plan now says "
                                 f"{getattr(self.cfg, key)!r}; resuming would change the run")
        window = ckpt.get("window") or {}
        if window.get("train") not in (None, self.plan.train):
            raise ValueError(f"{path}: was trained on {window['train']}, the plan now says {self.plan.train}")
        self.model.load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(ckpt["optimizer"][0])
        self.scheduler.load_state_dict(ckpt["scheduler"][0])
        self.epoch = self.last_eval_epoch = self.last_ckpt_epoch = int(ckpt["epoch"])
        self.best_epoch = ckpt.get("best_epoch")
        self.best_iou = float(ckpt.get("best_iou", -math.inf))
        self.last_metrics = ckpt.get("metrics")
        self.history = [h for h in window.get("history", []) if h["epoch"] <= self.epoch]
        self.ckpt_evals = len(self.history)
        self.steps_before = int(window.get("partial_steps", 0))  # a cut-short epoch's steps, for Adagrad's count
        self.resumed_from = str(path)
        if self.epoch >= self.plan.epochs:
            self.state = "finished"

    def build_step(self) -> None:
        bank = ImageBank(self.data.images, self.data.masks, self.device)
        options = FastStepOptions(crop_size=self.plan.crop_size, in_channels=self.plan.in_channels, lr=self.plan.lr,
                                  weight_decay=self.plan.weight_decay, amp=self.plan.amp,
                                  channels_last=self.plan.channels_last, cuda_graphs=self.plan.cuda_graphs)
        self.step = FastStep(self.model, self.optimizer, bank, self.plan.batch_size, options, self.device)
        self.step.steps = self.epoch * self.steps_per_epoch + self.steps_before
        # Evaluation reads a copy of the weights, so training goes on while it runs.
        self.eval_model = copy.deepcopy(self.model).eval().requires_grad_(False)

    def capture(self) -> dict[str, Any]:
        assert self.step is not None
        params = self._epoch_params(self.epoch)
        first = torch.from_numpy(params[:2] if len(params) >= 2 else np.concatenate([params, params])).to(self.device)
        check = self.step.capture(first)
        if self.stream is not None:
            self.stream.wait_stream(torch.cuda.current_stream(self.device))
        return check

    def _epoch_params(self, epoch: int) -> np.ndarray:
        p = self.plan
        return epoch_params(self.data.sources, p.seed, epoch, p.batch_size, p.base_size, p.crop_size)

    def _ctx(self) -> contextlib.AbstractContextManager:
        return torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()

    def _event(self) -> Any:
        return _CudaEvent(self.stream) if self.stream is not None else _HostEvent()

    # -- training ------------------------------------------------------------------------------

    def begin_epoch(self) -> None:
        params = torch.from_numpy(self._epoch_params(self.epoch))
        with self._ctx():
            if self.device.type == "cuda":
                # From pinned memory the copy is asynchronous (pageable memory would wait for the stream).
                params = params.pin_memory().to(self.device, non_blocking=True)
            self.epoch_params = params
            self.epoch_start = self._event()

    def launch_step(self, inflight: int) -> None:
        assert self.step is not None and self.epoch_params is not None
        with self._ctx():
            self.step.step(self.epoch_params[self.step_in_epoch])
            self.inflight.append(self._event())
        while len(self.inflight) > inflight:
            self.inflight.popleft().synchronize()  # pace the host; the queue stays full
        self.step_in_epoch += 1

    def end_epoch(self) -> None:
        """Queue the epoch's loss statistics for an asynchronous read; the epoch counts as done."""
        assert self.step is not None
        with self._ctx():
            stats = _async_copy(self.step.take_stats())
            event = self._event()
        self.epoch += 1
        self.step_in_epoch = 0
        self.epoch_params = None
        with warnings.catch_warnings():  # the fast step updates the weights without optimizer.step()
            warnings.simplefilter("ignore", UserWarning)
            self.scheduler.step()  # constant: only its epoch count, which checkpoints carry
        self.pending.append((self.epoch, stats, self.epoch_start, event))

    def abort_epoch(self) -> None:
        """Stop inside an epoch (the deadline is near): its steps stay in the weights, the epoch does
        not count, and a resume repeats it from its start."""
        assert self.step is not None
        with self._ctx():
            self.step.take_stats()  # a partial epoch's losses are not reported
        self.partial_steps, self.step_in_epoch, self.epoch_params = self.step_in_epoch, 0, None
        self.state = "stopped"
        self.log(f"{self.plan.name}: stopped {self.partial_steps} of {self.steps_per_epoch} steps into epoch "
                 f"{self.epoch + 1} at the deadline; the checkpoint keeps them, a resume repeats that epoch")

    def poll(self, block: bool = False) -> None:
        """Read the statistics of finished epochs (all queued ones when ``block``)."""
        while self.pending and (block or self.pending[0][3].query()):
            epoch, host, start, event = self.pending.popleft()
            event.synchronize()
            loss_sum, bad = float(host[0]), float(host[1])
            self.last_loss = loss_sum / self.steps_per_epoch
            self.losses[epoch] = self.last_loss
            self.losses.pop(epoch - 1000, None)
            self.epoch_seconds = max(event.seconds_since(start), 1e-9)
            self.img_per_s = self.steps_per_epoch * self.plan.batch_size / self.epoch_seconds
            self.images += self.steps_per_epoch * self.plan.batch_size
            if bad > 0 and self.state != "failed":
                self.state = "failed"
                self.error = (f"non-finite training loss in epoch {epoch}; the last checkpoint is from epoch "
                              f"{self.last_ckpt_epoch}")
                self.log(f"{self.plan.name}: {self.error}")

    def drain(self) -> None:
        if self.stream is not None:
            self.stream.synchronize()
        self.inflight.clear()
        self.poll(block=True)

    # -- evaluation and checkpoints ------------------------------------------------------------

    def snapshot_for_eval(self) -> Any:
        """Copy the current weights and BatchNorm statistics into the evaluation copy, on the run's
        stream (after the queued steps); returns the event that marks the copy done."""
        assert self.eval_model is not None
        with self._ctx(), torch.no_grad():
            for dst, src in zip(self.eval_model.state_dict().values(), self.model.state_dict().values()):
                dst.copy_(src, non_blocking=True)
            return self._event()

    def record_eval(self, epoch: int, m: dict[str, Any]) -> dict[str, Any]:
        """Log an evaluation of epoch ``epoch``; returns its metrics line plus ``improved``."""
        self.poll()
        self.last_metrics = m
        iou = m["iou"] if math.isfinite(m["iou"]) else -math.inf
        improved = self.best_epoch is None or iou > self.best_iou
        if improved:
            self.best_epoch, self.best_iou = epoch, iou
        self.last_eval_seconds = float(m["seconds"])
        line = {"epoch": epoch, "loss": self.losses.get(epoch), "iou": m["iou"], "niou": m["niou"], "pd": m["pd"],
                "fa": m["fa"], "seconds": m["seconds"], "split": "val", "best_epoch": self.best_epoch,
                "img_per_s": self.img_per_s}
        line = {k: _json_float(v) for k, v in line.items()}
        self.history.append(line)
        with open(self.dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
        return {**line, "improved": improved}

    def best_weights(self, epoch: int) -> dict[str, Any]:
        """The evaluated copy's weights (those of ``epoch``) in the bundled-weights layout, on the host."""
        from sirst.checkpoint import half_weights

        assert self.eval_model is not None
        return half_weights({"model_name": self.cfg.model, "model_kwargs": self.model_kwargs, "epoch": epoch,
                             "best_epoch": self.best_epoch, "metrics": self.last_metrics, "config": self.cfg.to_dict(),
                             "state_dict": _cpu_clone(self.eval_model.state_dict())})

    def checkpoint_copy(self) -> tuple[Any, dict[str, Any]]:
        """The run's checkpoint (the layout of sirst train's ``last.pt``) copied to host memory
        asynchronously; valid once the returned event has completed."""
        from sirst.engine.train import _checkpoint

        assert self.step is not None
        for p in self.step.params:
            self.optimizer.state[p]["step"] = torch.tensor(float(self.step.steps))
        with self._ctx():
            weights = _async_copy(self.model.state_dict())
            opt = _async_copy(self.optimizer.state_dict())
            event = self._event()
        frozen_opt: Any = _Frozen(opt)
        ckpt = _checkpoint(self.cfg, _Frozen(weights), self.model_kwargs, self.epoch, [frozen_opt],
                           [self.scheduler], self.last_metrics, self.best_epoch, self.best_iou, "val")
        ckpt["window"] = {"run": self.plan.name, "train": self.plan.train, "val_extra": self.plan.val_extra,
                          "counts": self.data.counts, "history": list(self.history),
                          "plan": dataclasses.asdict(self.plan), "partial_steps": self.partial_steps}
        return event, ckpt


def _write_checkpoint(run_dir: Path, event: Any, ckpt: dict[str, Any]) -> str | None:
    """Save ``last.pt`` and the compact ``state.pt`` once the copies are done; refuses non-finite
    weights (returns why) so that the last good checkpoint stays."""
    from sirst.checkpoint import compact_training_state, save_checkpoint

    event.synchronize()
    for name, t in ckpt["state_dict"].items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return f"not saved: non-finite values in {name}"
    save_checkpoint(ckpt, run_dir / "last.pt")
    save_checkpoint(compact_training_state(ckpt), run_dir / "state.pt")
    return None


def _write_best(run_dir: Path, weights: dict[str, Any]) -> str | None:
    from sirst.checkpoint import save_checkpoint

    save_checkpoint(weights, run_dir / "best.pt")
    return None


class _Evaluator:
    """Evaluates weight snapshots in a background thread (its own CUDA stream), so the launch loop
    never waits for a validation pass."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.jobs: queue.Queue = queue.Queue()
        self.results: queue.Queue = queue.Queue()
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.busy = 0
        self.thread = threading.Thread(target=self._work, name="sirst-window-eval", daemon=True)
        self.thread.start()

    def submit(self, run: _Run, epoch: int, ready: Any) -> None:
        run.eval_busy, run.eval_wanted, run.last_eval_epoch = True, False, epoch
        self.busy += 1
        self.jobs.put((run, epoch, ready))

    def _work(self) -> None:
        from sirst.evaluation.dataset import evaluate_dataset

        while True:
            job = self.jobs.get()
            if job is None:
                return
            run, epoch, ready = job
            try:
                ready.synchronize()
                ctx = torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()
                with ctx:
                    m = evaluate_dataset(run.eval_model, run.eval_set, device=self.device,
                                         batch_size=run.plan.eval_batch_size, amp=False,
                                         channels_last=run.plan.channels_last, protocol=run.plan.protocol,
                                         progress=False)
                self.results.put((run, epoch, m, None))
            except BaseException as exc:  # reported by the main thread, which trains on
                self.results.put((run, epoch, None, exc))

    def take(self, timeout: float = 0.0) -> list[tuple[_Run, int, dict[str, Any] | None, BaseException | None]]:
        """Finished evaluations ``(run, epoch, metrics, error)``, waiting up to ``timeout`` seconds for
        the first one when none has finished yet."""
        out = []
        while self.busy:
            wait = timeout if not out and timeout > 0 else None
            try:
                item = self.results.get(block=wait is not None, timeout=wait)
            except queue.Empty:
                break
            self.busy -= 1
            item[0].eval_busy = False
            out.append(item)
        return out

    def close(self) -> None:
        # An evaluation left behind at the deadline is not waited for (the thread is a daemon).
        self.jobs.put(None)
        self.thread.join(timeout=0.5)


# --------------------------------------------------------------------------------------------------
# The window


def read_status(out: str | os.PathLike) -> dict[str, Any]:
    """The window's ``status.json`` ({} before it is first written)."""
    path = Path(out) / _STATUS
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


@dataclass
class _Window:
    """What the loop shares: the runs, the background evaluator and checkpoint writer, the log."""

    plan: WindowPlan
    runs: list[_Run]
    evaluator: _Evaluator
    writer: ThreadPoolExecutor
    emit: Callable[[str], None]
    futures: list[tuple[str, Future]] = field(default_factory=list)

    def submit_eval(self, run: _Run) -> None:
        self.evaluator.submit(run, run.epoch, run.snapshot_for_eval())

    def checkpoint(self, run: _Run) -> None:
        if run.state == "failed":
            return
        event, ckpt = run.checkpoint_copy()
        self.futures.append((run.plan.name, self.writer.submit(_write_checkpoint, run.dir, event, ckpt)))
        run.last_ckpt_epoch, run.last_ckpt_time, run.ckpt_evals = run.epoch, time.time(), len(run.history)

    def handle_evals(self, timeout: float = 0.0) -> None:
        for run, epoch, m, error in self.evaluator.take(timeout):
            if run.state == "failed":
                continue
            if m is None:  # training goes on; the next due epoch is evaluated again
                self.emit(f"{run.plan.name}: evaluating epoch {epoch} failed: {type(error).__name__}: {error}")
                run.eval_failures += 1
                continue
            line = run.record_eval(epoch, m)
            if line["improved"]:
                self.futures.append((run.plan.name, self.writer.submit(_write_best, run.dir, run.best_weights(epoch))))
            self.emit(f"{run.plan.name} epoch {epoch}/{run.plan.epochs}: loss {line['loss']} val IoU {line['iou']} "
                      f"Pd {line['pd']} Fa {line['fa']} ({line['seconds']:.1f} s){' best' if line['improved'] else ''}")
            if run.state in ("finished", "stopped") and epoch == run.epoch and not run.partial_steps:
                self.checkpoint(run)  # its final state, with the final evaluation in it

    def check_writes(self, wait: bool = False) -> None:
        kept = []
        for name, f in self.futures:
            if not (wait or f.done()):
                kept.append((name, f))
                continue
            problem = f.result()  # re-raises a failed write
            if problem:
                self.emit(f"{name}: checkpoint {problem}")
        self.futures = kept


def train_window(
    plan: WindowPlan,
    pack_path: str | os.PathLike,
    out: str | os.PathLike,
    deadline: float,
    device: str | torch.device = "cuda",
    resume_dir: str | os.PathLike | None = None,
    stop: threading.Event | None = None,
    workers: int | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train every run of ``plan`` until each has its epochs or ``deadline`` (a ``time.time()``) nears.

    Args:
        plan: the runs.
        pack_path: a data pack holding every source the runs name.
        out: the window's folder (see the module docstring for what is written).
        device: ``"cuda"`` (the fast path with CUDA graphs) or ``"cpu"`` (the same code, eager).
        resume_dir: where returned ``RUN-state.pt`` files of an earlier window are.
        stop: when set (e.g. by SIGTERM), every run stops at its next epoch boundary and saves.
        workers: CPU processes for decoding and synthesis (default: every core).

    Returns the final status (also in ``OUT/status.json``); ``status["state"]`` is ``"done"`` or
    ``"failed"``.
    """
    from sirst.data.pack import read_manifest, read_pack

    t0 = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    stop = stop or threading.Event()
    workers = workers or os.cpu_count() or 1
    say = log or (lambda msg: print(msg, flush=True))

    def emit(msg: str) -> None:
        say(f"[{time.time() - t0:7.1f}s] {msg}")

    import yaml

    (out / "plan.yaml").write_text(yaml.safe_dump(plan.to_dict(), sort_keys=False))
    status: dict[str, Any] = {"state": "starting", "pid": os.getpid(), "device": str(device), "started": t0,
                              "deadline": deadline, "pack": str(pack_path), "runs": {}, "error": None}
    _write_json(out / _STATUS, status)
    runs: list[_Run] = []
    window: _Window | None = None
    try:
        manifest = read_manifest(pack_path)
        available = {s["name"] for s in manifest["sources"]}
        needed = sorted({n for r in plan.runs for n in [*r.train, *r.val_extra] if n != SYNTH})
        missing = [n for n in needed if n not in available]
        if missing:
            raise ValueError(f"{pack_path}: the plan needs sources {missing}; the pack holds {sorted(available)}")
        pack = read_pack(pack_path, needed, workers=workers)
        emit(f"pack {pack_path}: " + ", ".join(f"{n} {len(s)}" for n, s in pack.items()))
        pools: dict[tuple, tuple[list, list]] = {}
        for r in plan.runs:  # before CUDA starts, so the synthesis may fork
            if r.synth is not None:
                key = dataclasses.astuple(r.synth)
                if key not in pools:
                    start = time.time()
                    pools[key] = synth_pool(r.synth, workers if workers > 1 and r.synth.num >= 64 else 0)
                    emit(f"synthesized {r.synth.num} samples (seed {r.synth.seed}) in {time.time() - start:.1f} s")
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes: autotune once, then capture
        for r in plan.runs:
            data = build_run_data(r, pack, pools.get(dataclasses.astuple(r.synth)) if r.synth else None)
            run = _Run(r, data, out, device, emit)
            run.dir.mkdir(parents=True, exist_ok=True)
            run.resume(Path(resume_dir) if resume_dir else None)
            run.cfg.save_yaml(run.dir / "config.yaml")
            # The evaluations up to the resumed epoch (none for a fresh run): a log left by a window
            # that died after its last checkpoint loses the lines the resumed run will write again.
            (run.dir / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in run.history))
            run.build_step()
            runs.append(run)
            origin = f"resumed from {run.resumed_from} at epoch {run.epoch}" if run.resumed_from else "from scratch"
            emit(f"{r.name}: {data.counts}, {run.steps_per_epoch} steps of {r.batch_size} per epoch, {origin}")
        del pack, pools
        status["state"] = "capturing"
        _write_json(out / _STATUS, status)
        for run in runs:
            if run.state == "training":
                start = time.time()
                check = run.capture()
                emit(f"{run.plan.name}: {'CUDA graph captured' if check.get('graph') else 'eager steps'} "
                     f"({time.time() - start:.1f} s) {check}")
        window = _Window(plan, runs, _Evaluator(device), ThreadPoolExecutor(max_workers=1), emit)
        status["state"] = "training"
        _loop(window, deadline, stop, status, out)
        status["state"] = "finishing"
        _write_json(out / _STATUS, _status(status, runs, t0))
        _finish(window, deadline, min(3.0, plan.reserve_s / 4))
        status["state"] = "done"
    except BaseException as exc:  # record why, save what is healthy, then re-raise
        status["state"] = "failed"
        status["error"] = f"{type(exc).__name__}: {exc}"
        emit("failed:\n" + traceback.format_exc())
        if window is not None:
            with contextlib.suppress(BaseException):
                _finish(window, deadline, min(3.0, plan.reserve_s / 4))
        if not isinstance(exc, Exception):
            raise
    finally:
        if window is not None:
            window.evaluator.close()
            window.writer.shutdown(wait=True)
        final = _status(status, runs, t0)
        _write_json(out / _STATUS, final)
    emit(f"window {final['state']}: " + "; ".join(
        f"{n} epoch {s['epoch']}/{s['epochs']} best IoU {s['best_iou']} (epoch {s['best_epoch']})"
        for n, s in final["runs"].items()))
    return final


def _status(status: dict[str, Any], runs: list[_Run], t0: float) -> dict[str, Any]:
    now = time.time()
    status = dict(status)
    status["updated"] = now
    status["elapsed_s"] = now - t0
    status["left_s"] = status["deadline"] - now
    status["img_per_s"] = sum(r.img_per_s or 0.0 for r in runs if r.state == "training")
    status["runs"] = {r.plan.name: {
        "state": r.state, "epoch": r.epoch, "epochs": r.plan.epochs, "img_per_s": r.img_per_s, "loss": r.last_loss,
        "best_iou": _json_float(r.best_iou), "best_epoch": r.best_epoch, "last_eval_epoch": r.last_eval_epoch,
        "checkpoint_epoch": r.last_ckpt_epoch, "partial_steps": r.partial_steps, "images": r.images,
        "graph": bool(r.step and r.step.graph is not None),
        "resumed_from": r.resumed_from, "error": r.error, "eval_failures": r.eval_failures,
        "last_eval": {k: _json_float(v) for k, v in (r.last_metrics or {}).items()
                      if k in ("iou", "niou", "pd", "fa", "seconds")},
    } for r in runs}
    return status


def _loop(w: _Window, deadline: float, stop: threading.Event, status: dict[str, Any], out: Path) -> None:
    t0 = status["started"]
    last_status = last_log = 0.0
    while True:
        launched = 0
        late = time.time() > deadline - w.plan.abort_s
        for run in w.runs:
            if run.state != "training":
                continue
            if late and run.step_in_epoch > 0:
                run.abort_epoch()
                continue
            for _ in range(run.plan.share):
                if run.step_in_epoch == 0:
                    if run.epoch >= run.plan.epochs:
                        run.state = "finished"
                        break
                    needed = (run.epoch_seconds or 0.0) * 1.25 + w.plan.reserve_s
                    if stop.is_set() or time.time() + needed > deadline:
                        run.state = "stopped"
                        break
                    run.begin_epoch()
                run.launch_step(w.plan.inflight_steps)
                launched += 1
                if run.step_in_epoch == run.steps_per_epoch:
                    run.end_epoch()
                    if run.epoch % run.plan.eval_every == 0 or run.epoch == run.plan.epochs:
                        run.eval_wanted = True
                    if run.eval_wanted and not run.eval_busy:
                        w.submit_eval(run)
                    if time.time() - run.last_ckpt_time >= w.plan.checkpoint_every_s or run.epoch == run.plan.epochs:
                        w.checkpoint(run)
                    break
        for run in w.runs:
            run.poll()
        w.handle_evals()
        w.check_writes()
        now = time.time()
        if now - last_status >= w.plan.status_every_s:
            _write_json(out / _STATUS, _status(status, w.runs, t0))
            last_status = now
        if now - last_log >= w.plan.log_every_s:
            w.emit(_progress_line(w.runs, deadline))
            last_log = now
        if not any(r.state == "training" for r in w.runs):
            return
        if launched == 0:
            time.sleep(0.005)


def _finish(w: _Window, deadline: float, margin: float = 3.0) -> None:
    """Evaluate the last epoch of every run that trained (when it was not, and time allows), then
    checkpoint it. Evaluations still running ``margin`` seconds before the deadline are left behind:
    the checkpoints come first."""
    def wait_evals() -> None:
        while w.evaluator.busy and time.time() < deadline - margin:
            w.handle_evals(timeout=max(0.05, deadline - margin - time.time()))

    for run in w.runs:
        run.drain()
    wait_evals()
    for run in w.runs:
        # Not after a cut-short epoch: its weights are not those of any whole epoch.
        due = run.state != "failed" and run.step is not None and run.epoch > run.last_eval_epoch
        fits = time.time() + 1.5 * run.last_eval_seconds + margin < deadline
        if due and fits and not run.partial_steps and not run.eval_busy:
            w.submit_eval(run)
    wait_evals()
    for run in w.runs:
        if run.state != "failed" and run.step is not None and (
                run.epoch > run.last_ckpt_epoch or len(run.history) != run.ckpt_evals or run.partial_steps
                or not (run.dir / "state.pt").is_file()):
            w.checkpoint(run)
    w.check_writes(wait=True)


def _progress_line(runs: list[_Run], deadline: float) -> str:
    rate = sum(r.img_per_s or 0 for r in runs if r.state == "training")
    parts = [f"left {deadline - time.time():.0f}s, {rate:.0f} img/s"]
    for r in runs:
        best = f"{r.best_iou:.4f}@{r.best_epoch}" if r.best_epoch is not None else "-"
        rate = f"{r.img_per_s:.0f} img/s" if r.img_per_s else "- img/s"
        loss = f"{r.last_loss:.4f}" if r.last_loss is not None else "-"
        parts.append(f"{r.plan.name} {r.state} ep {r.epoch}/{r.plan.epochs} {rate} loss {loss} best {best}")
    return " | ".join(parts)
