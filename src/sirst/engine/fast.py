"""The CUDA training fast path: data on the GPU, augmentation on the GPU, the whole step in one graph.

The standard loop (:mod:`sirst.engine.train`) decodes, augments and collates every sample on the
CPU and launches DNANet's ~2,000 forward and backward kernels one by one; on an H100 it reached
131 img/s, launch bound. Here instead:

* :class:`ImageBank` keeps a training set on the device as uint8 pixels of one channel, images of
  any sizes packed end to end (NUAA-SIRST's range from 135 to 456 px a side).
* The paper's augmentation (:func:`sirst.data.transforms.train_augment`) runs on the device for a
  whole batch at once (:func:`augment_batch`). The random draws stay on the host, made by
  :func:`draw_augment` from the *same* per-sample generator ``default_rng([seed, epoch, index])``
  and in the same order as ``train_augment``, so a sample gets the same flip, scale, crop and blur
  as in the standard loop; only the arithmetic moves (bilinear image / nearest mask, zero padding,
  crop and Gaussian blur all agree with OpenCV to ~2e-7, the nearest-neighbour mask to the pixel
  except where a source position falls exactly half-way, which OpenCV's fixed-point arithmetic
  rounds either way).
* :class:`FastStep` runs augmentation, normalisation (as :func:`sirst.data.io.to_network_input`),
  forward under bf16 autocast in channels_last, the Soft-IoU loss with the deep-supervision heads
  averaged (:class:`sirst.losses.DeepSupervisionLoss`), backward and Adagrad
  (:func:`adagrad_step_`, equal to ``torch.optim.Adagrad`` with ``lr_decay=0``,
  ``initial_accumulator_value=0``, ``eps=1e-10``) and captures all of it in one CUDA graph: a step
  is one host-to-device parameter copy and one graph replay, with no host synchronisation.
  Several runs (datasets, seeds, variants) replay their graphs on their own CUDA streams in one
  process (:mod:`sirst.engine.window`).

On a CPU the same code runs eagerly, step by step, which is how it is tested here.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from sirst.losses import DeepSupervisionLoss, SoftIoULoss

# Columns of a batch's augmentation parameters (float32, one row per sample): the image's index in
# the bank, horizontal flip (0/1), the size after the long-side rescale, the crop's top-left corner
# in the rescaled and zero-padded image, and the blur's sigma (0: no blur).
AUG_INDEX, AUG_FLIP, AUG_HEIGHT, AUG_WIDTH, AUG_Y, AUG_X, AUG_SIGMA = range(7)
AUG_COLUMNS = 7
_BLUR_RADIUS = 4  # sigma < 1 gives OpenCV kernels of at most 9 taps for float images
_MIN_SIGMA = 0.05  # train_augment skips blurs below this (the kernel is a delta)


# --------------------------------------------------------------------------------------------------
# Host side: the random draws of the paper's augmentation


def draw_augment(
    rng: np.random.Generator, height: int, width: int, base_size: int = 256, crop_size: int = 256,
    blur_p: float = 0.5,
) -> tuple[float, int, int, int, int, float]:
    """The random choices :func:`sirst.data.transforms.train_augment` makes for an image of
    ``height`` x ``width``, drawn from ``rng`` in the same order (so the same generator gives the
    same augmentation).

    Returns ``(flip, resized_height, resized_width, y, x, sigma)``: flip 1.0 or 0.0, the size after
    the long side is rescaled to a random integer in [0.5, 2] x ``base_size`` (aspect kept), the
    crop's corner in the zero-padded rescaled image, and the blur sigma (0.0 for no blur).
    """
    flip = 1.0 if rng.random() < 0.5 else 0.0
    long_side = int(rng.integers(int(base_size * 0.5), int(base_size * 2.0) + 1))
    if height > width:
        oh, ow = long_side, max(1, int(width * long_side / height + 0.5))
    else:
        ow, oh = long_side, max(1, int(height * long_side / width + 0.5))
    ph, pw = max(oh, crop_size), max(ow, crop_size)
    y = int(rng.integers(0, ph - crop_size + 1))
    x = int(rng.integers(0, pw - crop_size + 1))
    sigma = 0.0
    if rng.random() < blur_p:
        sigma = float(rng.random())
        if sigma <= _MIN_SIGMA:
            sigma = 0.0
    return flip, oh, ow, y, x, sigma


@dataclass(frozen=True)
class TrainSource:
    """One source of a run's training images inside an :class:`ImageBank`.

    ``offset``: bank index of the source's first image; ``sizes``: ``(n, 2)`` (H, W) of every image
    of the source; ``indices``: the positions (in the source's own list) that are trained on;
    ``stream``: appended to the generator seed so sources sharing a seed draw different numbers
    (0 appends nothing, which gives exactly the standard loop's generator).
    """

    offset: int
    sizes: np.ndarray
    indices: np.ndarray
    stream: int = 0


def steps_per_epoch(sources: Sequence[TrainSource], batch_size: int) -> int:
    """Full batches in one epoch (the last partial batch is dropped, as the standard loop does)."""
    return sum(len(s.indices) for s in sources) // batch_size


def epoch_params(
    sources: Sequence[TrainSource], seed: int, epoch: int, batch_size: int, base_size: int = 256,
    crop_size: int = 256, blur_p: float = 0.5,
) -> np.ndarray:
    """Augmentation parameters of every step of ``epoch``: float32 ``(steps, batch_size, 7)``.

    The sample order is the standard loop's: ``torch.randperm`` of the training positions with a
    generator seeded ``seed + epoch`` (``DistributedSampler``), consecutive batches, the partial last
    one dropped. Sample ``i`` of a source is augmented with ``default_rng([seed, epoch, i])`` (plus
    the source's ``stream`` when non-zero), the generator :class:`sirst.data.SirstDataset` uses.
    """
    entries = [(k, int(i)) for k, s in enumerate(sources) for i in s.indices]
    steps = len(entries) // batch_size
    if steps == 0:
        raise ValueError(f"{len(entries)} training images are fewer than one batch of {batch_size}")
    order = torch.randperm(len(entries), generator=torch.Generator().manual_seed(seed + epoch)).tolist()
    out = np.empty((steps * batch_size, AUG_COLUMNS), np.float32)
    for row, position in enumerate(order[: steps * batch_size]):
        k, i = entries[position]
        source = sources[k]
        key = [seed, epoch, i] + ([source.stream] if source.stream else [])
        h, w = (int(v) for v in source.sizes[i])
        out[row, AUG_INDEX] = source.offset + i
        out[row, AUG_FLIP:] = draw_augment(np.random.default_rng(key), h, w, base_size, crop_size, blur_p)
    return out.reshape(steps, batch_size, AUG_COLUMNS)


# --------------------------------------------------------------------------------------------------
# Device side: the image bank and the batched augmentation


class ImageBank:
    """Single-channel uint8 images of any sizes (and their masks) in flat device tensors.

    Args:
        images: uint8 ``(H_i, W_i)`` arrays.
        masks: bool/uint8 ``(H_i, W_i)`` arrays of the same sizes, or None (all empty: negatives).
        device: where the pixels live.

    Attributes: ``pixels``/``labels`` uint8 ``(P,)``, ``offset``/``height``/``width`` int64 ``(N,)``
    on the device, ``sizes`` int64 ``(N, 2)`` on the host.
    """

    def __init__(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray] | None,
                 device: str | torch.device = "cpu") -> None:
        if not images:
            raise ValueError("ImageBank needs at least one image")
        device = torch.device(device)
        sizes = np.array([im.shape for im in images], dtype=np.int64)
        if sizes.ndim != 2 or sizes.shape[1] != 2:
            raise ValueError("ImageBank: images must be single-channel (H, W) arrays")
        if masks is not None:
            if len(masks) != len(images) or any(m.shape != im.shape for m, im in zip(masks, images)):
                raise ValueError("ImageBank: every mask must have its image's size")
        for im in images:
            if im.dtype != np.uint8:
                raise ValueError(f"ImageBank: images must be uint8, got {im.dtype}")
        counts = sizes[:, 0] * sizes[:, 1]
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        pixels = np.concatenate([im.ravel() for im in images])
        if masks is None:
            labels = np.zeros_like(pixels)
        else:
            labels = np.concatenate([np.asarray(m).astype(np.uint8).ravel() != 0 for m in masks]).astype(np.uint8)
        self.sizes = sizes
        self.device = device
        self.pixels = torch.from_numpy(pixels).to(device)
        self.labels = torch.from_numpy(labels).to(device)
        self.offset = torch.from_numpy(offsets.astype(np.int64)).to(device)
        self.height = torch.from_numpy(sizes[:, 0].copy()).to(device)
        self.width = torch.from_numpy(sizes[:, 1].copy()).to(device)

    def __len__(self) -> int:
        return len(self.sizes)

    @property
    def nbytes(self) -> int:
        return int(self.pixels.numel() + self.labels.numel())


def _linear_coords(dst: torch.Tensor, src_size: torch.Tensor, dst_size: torch.Tensor):
    """OpenCV INTER_LINEAR sampling along one axis: half-pixel centres, border clamped.

    ``dst`` (B, C) int64 positions in the rescaled image, sizes (B, 1). Returns the two source
    indices (int64) and the weight of the second (float32), all (B, C).
    """
    scale = src_size.double() / dst_size.double()
    f = (dst.double() + 0.5) * scale - 0.5
    f = torch.minimum(f.clamp(min=0.0), (src_size - 1).double())
    i0 = f.floor()
    w1 = (f - i0).float()
    i0 = i0.long()
    i1 = torch.minimum(i0 + 1, src_size - 1)
    return i0, i1, w1


def augment_batch(bank: ImageBank, params: torch.Tensor, crop_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's augmentation of a batch, on the bank's device.

    Args:
        bank: the images.
        params: float32 ``(B, 7)`` rows from :func:`epoch_params` (index, flip, rescaled H and W,
            crop corner y and x, blur sigma), on the bank's device.
        crop_size: side of the output crops.

    Returns:
        ``gray`` float32 ``(B, 1, crop, crop)`` in [0, 1] and ``mask`` float32 ``(B, 1, crop, crop)``
        in {0, 1}: flipped, rescaled (image bilinear, mask nearest, both sampled at pixel centres),
        zero padded at the bottom/right, cropped and (image only) blurred, as ``train_augment``.
    """
    b = params.shape[0]
    idx = params[:, AUG_INDEX].long()
    flip = params[:, AUG_FLIP] > 0.5
    oh = params[:, AUG_HEIGHT].long()[:, None]
    ow = params[:, AUG_WIDTH].long()[:, None]
    h = bank.height[idx][:, None]
    w = bank.width[idx][:, None]
    base = bank.offset[idx][:, None, None]
    grid = torch.arange(crop_size, device=params.device)
    ry = params[:, AUG_Y].long()[:, None] + grid  # (B, C) rows of the padded rescaled image
    rx = params[:, AUG_X].long()[:, None] + grid
    inside = (ry < oh)[:, :, None] & (rx < ow)[:, None, :]  # the rest is the zero padding

    # Image: bilinear at pixel centres. A flip before rescaling equals mirroring the source column.
    y0, y1, wy = _linear_coords(ry, h, oh)
    fx = (rx.double() + 0.5) * (w.double() / ow.double()) - 0.5
    fx = torch.minimum(fx.clamp(min=0.0), (w - 1).double())
    fx = torch.where(flip[:, None], (w - 1).double() - fx, fx)
    x0 = fx.floor()
    wx = (fx - x0).float()
    x0 = x0.long()
    x1 = torch.minimum(x0 + 1, w - 1)
    rows0 = base + (y0 * w)[:, :, None]
    rows1 = base + (y1 * w)[:, :, None]
    px = bank.pixels

    def at(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return px[rows + cols[:, None, :]].float()

    wx3, wy3 = wx[:, None, :], wy[:, :, None]
    top = at(rows0, x0) * (1 - wx3) + at(rows0, x1) * wx3
    bottom = at(rows1, x0) * (1 - wx3) + at(rows1, x1) * wx3
    gray = (top * (1 - wy3) + bottom * wy3) / 255.0
    gray = torch.where(inside, gray, torch.zeros((), device=gray.device))

    # Mask: nearest neighbour, source index floor((2r + 1) * src / (2 * dst)) in exact integers.
    sy = torch.minimum(((2 * ry + 1) * h) // (2 * oh), h - 1)
    sx = torch.minimum(((2 * rx + 1) * w) // (2 * ow), w - 1)
    sx = torch.where(flip[:, None], w - 1 - sx, sx)
    mask = bank.labels[base + (sy * w)[:, :, None] + sx[:, None, :]].float()
    mask = torch.where(inside, mask, torch.zeros((), device=mask.device))

    gray = gaussian_blur_batch(gray[:, None], params[:, AUG_SIGMA])
    return gray, mask[:, None].reshape(b, 1, crop_size, crop_size)


def blur_kernels(sigma: torch.Tensor) -> torch.Tensor:
    """OpenCV's Gaussian kernels for float images, one per sample, as 9 taps: ``(B,)`` -> ``(B, 9)``.

    Size ``round(8 sigma + 1) | 1`` (at most 9 for sigma < 1), normalised to sum 1; sigma 0 gives
    the identity (a delta).
    """
    sigma = sigma.float()
    taps = torch.arange(-_BLUR_RADIUS, _BLUR_RADIUS + 1, device=sigma.device, dtype=torch.float32)
    size = torch.round(sigma * 8 + 1).long() | 1
    radius = ((size - 1) // 2).clamp(max=_BLUR_RADIUS)
    safe = torch.where(sigma > 0, sigma, torch.ones_like(sigma))
    g = torch.exp(-0.5 * (taps[None] / safe[:, None]) ** 2)
    g = torch.where(taps[None].abs() <= radius[:, None].float(), g, torch.zeros_like(g))
    g = g / g.sum(dim=1, keepdim=True)
    delta = (taps == 0).float()[None].expand_as(g)
    return torch.where((sigma > 0)[:, None], g, delta)


def gaussian_blur_batch(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of each image with its own sigma, OpenCV's reflect-101 border.

    ``x`` ``(B, 1, H, W)`` float32, ``sigma`` ``(B,)`` (0: unchanged) -> ``(B, 1, H, W)``. Written as
    nine shifted, weighted sums per direction (plain float32 arithmetic, so the same on every device;
    a cuDNN convolution would round through TF32 on a GPU).
    """
    _, _, hgt, wid = x.shape
    k = blur_kernels(sigma)[:, None, None, :]  # (B, 1, 1, 9)
    taps = 2 * _BLUR_RADIUS + 1
    padded = F.pad(x, (_BLUR_RADIUS, _BLUR_RADIUS, 0, 0), mode="reflect")
    rows = sum(padded[..., i : i + wid] * k[..., i : i + 1] for i in range(taps))
    padded = F.pad(rows, (0, 0, _BLUR_RADIUS, _BLUR_RADIUS), mode="reflect")
    return sum(padded[..., i : i + hgt, :] * k[..., i : i + 1] for i in range(taps))


def norm_stats(in_channels: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std ``(1, C, 1, 1)`` of :func:`sirst.data.io.to_network_input`."""
    from sirst.data.io import _norm_stats

    mean, std = _norm_stats(in_channels)
    return mean.view(1, -1, 1, 1).to(device), std.view(1, -1, 1, 1).to(device)


def normalise(gray: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` in [0, 1] -> the network input ``(B, C, H, W)``, as ``to_network_input``."""
    return (gray - mean) / std


# --------------------------------------------------------------------------------------------------
# Adagrad without host synchronisation


def adagrad_step_(
    params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], sums: Sequence[torch.Tensor],
    lr: float, eps: float = 1e-10, weight_decay: float = 0.0,
) -> None:
    """One Adagrad update in place, with ``torch._foreach`` kernels and no host synchronisation.

    Equals ``torch.optim.Adagrad(lr=lr, lr_decay=0, weight_decay=weight_decay,
    initial_accumulator_value=0, eps=eps).step()``: ``sum += g * g``,
    ``p -= lr * g / (sqrt(sum) + eps)`` with ``g = grad + weight_decay * p``.
    """
    with torch.no_grad():
        grads = list(grads)
        if weight_decay:
            grads = torch._foreach_add(grads, list(params), alpha=weight_decay)
        torch._foreach_addcmul_(list(sums), grads, grads, value=1.0)
        std = torch._foreach_sqrt(list(sums))
        torch._foreach_add_(std, eps)
        torch._foreach_addcdiv_(list(params), grads, std, value=-lr)


# --------------------------------------------------------------------------------------------------
# The step


@dataclass(frozen=True)
class FastStepOptions:
    """How a :class:`FastStep` trains (the paper's protocol by default)."""

    crop_size: int = 256
    in_channels: int = 3
    lr: float = 0.05
    weight_decay: float = 0.0
    eps: float = 1e-10
    amp: bool = True  # bf16 autocast (CUDA or CPU); the loss stays float32
    channels_last: bool = True
    cuda_graphs: bool = True  # capture the step on CUDA; ignored on the CPU
    warmup_steps: int = 3  # eager steps before capture (cuDNN autotuning, allocator), then undone
    graph_tolerance: float = 2e-2  # graphed and eager loss of the first two steps must agree this well


class FastStep:
    """One run's training step on an :class:`ImageBank`: augmentation to Adagrad in one go.

    Args:
        model: the network on ``device`` in train mode (channels_last when ``options.channels_last``).
        optimizer: a ``torch.optim.Adagrad`` over ``model``'s parameters with ``lr_decay=0``; its
            ``sum`` tensors are the accumulators updated here, so its ``state_dict()`` stays the
            checkpointable state (set ``state[p]["step"]`` from :attr:`steps` before saving).
        bank: the training images, on ``device``.
        batch_size: images per step.

    Call :meth:`capture` once (CUDA: records the CUDA graph; CPU: nothing), then :meth:`step` per
    batch. The mean loss and the number of non-finite losses accumulate on the device
    (:meth:`take_stats`), never read per step.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, bank: ImageBank, batch_size: int,
                 options: FastStepOptions, device: str | torch.device) -> None:
        self.device = torch.device(device)
        self.model, self.optimizer, self.bank, self.options = model, optimizer, bank, options
        self.batch_size = int(batch_size)
        group = optimizer.param_groups[0]
        if not isinstance(optimizer, torch.optim.Adagrad) or len(optimizer.param_groups) != 1 or group["lr_decay"]:
            raise ValueError("FastStep needs one torch.optim.Adagrad parameter group with lr_decay=0")
        self.params = [p for p in group["params"] if p.requires_grad]
        self.sums = [optimizer.state[p]["sum"] for p in self.params]
        self.static_params = torch.zeros(self.batch_size, AUG_COLUMNS, device=self.device)
        self.loss_sum = torch.zeros((), device=self.device)
        self.bad_steps = torch.zeros((), device=self.device)
        self.criterion = DeepSupervisionLoss(SoftIoULoss(smooth=1.0))
        self.mean, self.std = norm_stats(options.in_channels, self.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.graph_check: dict[str, Any] = {}
        self.steps = 0  # optimizer steps taken (Adagrad's "step" state)

    # -- the body ------------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.options.amp:
            return contextlib.nullcontext()
        # No weight-cast cache: cached casts would outlive one replay of a captured graph.
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, cache_enabled=False)

    def make_batch(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmented, normalised network input ``(B, C, crop, crop)`` and masks ``(B, 1, crop, crop)``."""
        gray, mask = augment_batch(self.bank, params, self.options.crop_size)
        image = normalise(gray, self.mean, self.std)
        if self.options.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        return image, mask

    def train_on(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Forward, loss, backward and Adagrad on a ready batch; returns the detached loss.

        Gradients must be None (eager) or the graph's own tensors (during capture).
        """
        with self._autocast():
            outputs = self.model(image)
        loss = self.criterion(outputs, mask)  # float32, outside autocast, as SegmentationStep
        loss.backward()
        live = [(p, p.grad, s) for p, s in zip(self.params, self.sums) if p.grad is not None]
        adagrad_step_([p for p, _, _ in live], [g for _, g, _ in live], [s for _, _, s in live],
                      self.options.lr, self.options.eps, self.options.weight_decay)
        loss = loss.detach()
        self.loss_sum.add_(loss)
        self.bad_steps.add_((~torch.isfinite(loss)).float())
        return loss

    def _body(self) -> torch.Tensor:
        image, mask = self.make_batch(self.static_params)
        return self.train_on(image, mask)

    def _clear_grads(self) -> None:
        for p in self.params:
            p.grad = None

    # -- public --------------------------------------------------------------------------------

    def step(self, params: torch.Tensor) -> None:
        """One training step on the batch described by ``params`` (``(B, 7)`` on the device)."""
        self.static_params.copy_(params, non_blocking=True)
        if self.graph is not None:
            self.graph.replay()
        else:
            self._clear_grads()
            self._body()
        self.steps += 1

    def step_on_batch(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """An eager step on a given batch (tests compare it with :class:`SegmentationStep`)."""
        self._clear_grads()
        loss = self.train_on(image, mask)
        self.steps += 1
        return loss

    def take_stats(self) -> torch.Tensor:
        """``[sum of losses, non-finite steps]`` since the last call, as a new device tensor
        (copy it to the host when convenient); the accumulators restart from zero."""
        stats = torch.stack([self.loss_sum, self.bad_steps])
        self.loss_sum.zero_()
        self.bad_steps.zero_()
        return stats

    def _snapshot(self) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        return ({k: v.detach().clone() for k, v in self.model.state_dict().items()},
                [s.detach().clone() for s in self.sums])

    def _restore(self, snapshot: tuple[dict[str, torch.Tensor], list[torch.Tensor]]) -> None:
        weights, sums = snapshot
        with torch.no_grad():
            for k, v in self.model.state_dict().items():
                v.copy_(weights[k])
            for s, saved in zip(self.sums, sums):
                s.copy_(saved)
        self.loss_sum.zero_()
        self.bad_steps.zero_()

    def capture(self, first: torch.Tensor) -> dict[str, Any]:
        """Record the step as a CUDA graph (CUDA with ``options.cuda_graphs`` only; else a no-op).

        ``first``: ``(2, B, 7)`` parameters of two batches. Runs ``warmup_steps`` eager steps on a
        side stream (the first two give reference losses), restores the weights, BatchNorm
        statistics and accumulators, captures, replays the same two batches and compares the
        losses; on a mismatch the graph is dropped and the run stays eager. The model's state
        afterwards is the state before the call. Returns ``{"graph": bool, "eager": [..],
        "graphed": [..]}`` (also kept in :attr:`graph_check`).
        """
        if self.device.type != "cuda" or not self.options.cuda_graphs:
            self.graph_check = {"graph": False, "reason": "not CUDA" if self.device.type != "cuda" else "disabled"}
            return self.graph_check
        snapshot = self._snapshot()
        current = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(current)
        eager: list[torch.Tensor] = []
        with torch.cuda.stream(side):
            for k in range(max(2, self.options.warmup_steps)):
                self.static_params.copy_(first[k % 2])
                self._clear_grads()
                eager.append(self._body().clone())
        current.wait_stream(side)
        eager_values = [float(v) for v in eager[:2]]
        self._restore(snapshot)
        self._clear_grads()
        graphed: list[float] = []
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_loss = self._body()
            self._restore(snapshot)
            for k in range(2):
                self.static_params.copy_(first[k])
                graph.replay()
                graphed.append(float(static_loss))
        except RuntimeError as exc:  # an operation that cannot be captured: train eagerly instead
            torch.cuda.synchronize(self.device)
            self.graph_check = {"graph": False, "eager": eager_values, "error": f"{type(exc).__name__}: {exc}"}
            self._restore(snapshot)
            self._clear_grads()
            return self.graph_check
        self._restore(snapshot)
        ok = all(math.isfinite(a) and abs(a - b) <= self.options.graph_tolerance * max(1.0, abs(a))
                 for a, b in zip(eager_values, graphed))
        self.graph = graph if ok else None
        if not ok:
            self._clear_grads()
        self.graph_check = {"graph": ok, "eager": eager_values, "graphed": graphed}
        return self.graph_check
