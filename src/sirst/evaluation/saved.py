"""Saved predictions as a method: score maps on disk (PNG or ``.npy``) paired with their masks by id.

Predictions are PNG (8- or 16-bit, scaled to [0, 1]) or ``.npy`` score maps named like the masks:
mask ``<id>.png`` (or ``<id>_pixels0.png``, the NUAA-SIRST naming) pairs with prediction
``<id>.png`` or ``<id>.npy``. Every mask needs exactly one prediction and every prediction a mask;
anything else is an error naming the file, nothing is skipped.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MAP_SUFFIXES", "EvalPair", "evaluate_dirs", "pair_files", "read_map"]

MAP_SUFFIXES: tuple[str, ...] = (".png", ".npy")


@dataclass(frozen=True)
class EvalPair:
    """One image to evaluate: its id, prediction file and mask file."""

    id: str
    pred: Path
    mask: Path


def _list_maps(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: {what} directory does not exist")
    files = sorted(p for p in folder.iterdir() if p.is_file())
    for p in files:
        if p.suffix.lower() not in MAP_SUFFIXES:
            raise ValueError(f"{p}: unsupported file type in the {what} directory (expected .png or .npy)")
    if not files:
        raise ValueError(f"{folder}: no .png or .npy {what} files found")
    return files


def _index(files: list[Path], strip_suffix: str | None) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in files:
        key = p.stem
        if strip_suffix and key.endswith(strip_suffix):
            key = key[: -len(strip_suffix)]
        if key in out:
            raise ValueError(f"{p}: id {key!r} is also used by {out[key]}")
        out[key] = p
    return out


def pair_files(pred_dir: str | os.PathLike, mask_dir: str | os.PathLike) -> list[EvalPair]:
    """Pair every mask with its prediction by id; raise on missing, extra or ambiguous files."""
    from sirst.data.dataset import MASK_ID_SUFFIX

    pred_dir, mask_dir = Path(pred_dir), Path(mask_dir)
    masks = _index(_list_maps(mask_dir, "mask"), MASK_ID_SUFFIX)
    preds = _index(_list_maps(pred_dir, "prediction"), None)
    missing = sorted(set(masks) - set(preds))
    if missing:
        more = f" (and {len(missing) - 1} more masks without prediction)" if len(missing) > 1 else ""
        raise FileNotFoundError(
            f"{pred_dir / (missing[0] + '.png')}: no prediction (.png or .npy) for mask {masks[missing[0]]}{more}"
        )
    extra = sorted(set(preds) - set(masks))
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise ValueError(f"{preds[extra[0]]}: prediction has no mask in {mask_dir}{more}")
    return [EvalPair(id=k, pred=preds[k], mask=masks[k]) for k in sorted(masks)]


def read_map(path: str | os.PathLike, as_mask: bool = False) -> np.ndarray:
    """Read a score map (``(H, W)`` float32, PNG scaled to [0, 1]) or a binary mask (``(H, W)`` bool).

    PNGs go through :func:`sirst.data.io.read_image` / :func:`~sirst.data.io.read_mask` (8/16-bit,
    colour to luminance; masks must be binary).

    Raises:
        ValueError: the file cannot be decoded or is not a 2-D map; the message starts with the path.
    """
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            a = np.load(path, allow_pickle=False)
            if a.ndim == 3 and a.shape[0] == 1:
                a = a[0]
            if a.dtype.kind not in "fiub":
                raise ValueError(f"dtype {a.dtype} is not numeric")
            a = a > 0 if as_mask else a.astype(np.float32, copy=False)
        else:
            from sirst.data.io import read_image, read_mask

            # Score maps are stored full scale (a 16-bit PNG holds score * 65535), never stretched.
            a = read_mask(path) if as_mask else read_image(path, full_scale=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except ValueError as exc:
        if str(exc).startswith(str(path)):  # already names the file and the problem
            raise
        raise ValueError(f"{path}: cannot read {'mask' if as_mask else 'score map'} ({exc})") from None
    except Exception as exc:  # decoding errors come in many types (OSError, zlib, ...)
        raise ValueError(f"{path}: cannot read {'mask' if as_mask else 'score map'} ({exc})") from None
    if a.ndim != 2:
        raise ValueError(f"{path}: expected a single-channel 2-D map, got shape {a.shape}")
    return a


def _read_pair(pair: EvalPair) -> tuple[np.ndarray, np.ndarray]:
    score = read_map(pair.pred)
    mask = read_map(pair.mask, as_mask=True)
    if score.shape != mask.shape:
        raise ValueError(
            f"{pair.pred}: size {score.shape[0]}x{score.shape[1]} does not match mask {pair.mask} "
            f"({mask.shape[0]}x{mask.shape[1]})"
        )
    return score, mask


def _batched(it: Iterator[Any], n: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for x in it:
        batch.append(x)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def _prefetch(pool: Any, fn: Any, items: list[Any], depth: int) -> Iterator[Any]:
    """``map(fn, items)`` in order on a thread pool, with at most ``depth`` results in flight
    (``Executor.map`` would read the whole folder into memory ahead of the metrics)."""
    pending: deque[Any] = deque()
    it = iter(items)
    for x in itertools.islice(it, depth):
        pending.append(pool.submit(fn, x))
    while pending:
        fut = pending.popleft()
        nxt = next(it, None)
        if nxt is not None:
            pending.append(pool.submit(fn, nxt))
        yield fut.result()


def evaluate_dirs(
    pred_dir: str | os.PathLike,
    mask_dir: str | os.PathLike,
    threshold: float = 0.5,
    protocol: str = "exact",
    roc_thresholds: Any | None = None,
    workers: int = 4,
    batch_size: int = 32,
    progress: bool = True,
) -> tuple[dict[str, float], dict[str, Any] | None]:
    """Evaluate a folder of predictions against a folder of masks.

    Returns:
        ``(metrics, curves)``: :meth:`sirst.metrics.SirstMetrics.compute` and ``curves()`` (``None``
        without ``roc_thresholds``).
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    from sirst.metrics import SirstMetrics

    pairs = pair_files(pred_dir, mask_dir)
    metrics = SirstMetrics(threshold=threshold, protocol=protocol, roc_thresholds=roc_thresholds)  # type: ignore[arg-type]
    # PNG decoding releases the GIL, so threads overlap reading with the (numpy) metric work.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        loaded = _prefetch(pool, _read_pair, pairs, depth=2 * max(1, batch_size))
        with tqdm(total=len(pairs), desc="eval", unit="img", disable=not progress) as bar:
            for batch in _batched(loaded, max(1, batch_size)):
                metrics.update([s for s, _ in batch], [m for _, m in batch])
                bar.update(len(batch))
    return metrics.compute(), metrics.curves()
