"""`sirst eval`: score saved prediction maps against ground-truth masks.

Predictions are PNG (8- or 16-bit, scaled to [0, 1]) or ``.npy`` score maps named like the masks:
mask ``<id>.png`` (or ``<id>_pixels0.png``, the NUAA-SIRST naming) pairs with prediction
``<id>.png`` or ``<id>.npy``. Every mask needs exactly one prediction and every prediction a mask;
anything else is an error naming the file, nothing is skipped.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sirst.cli.options import float_range, positive_int

if TYPE_CHECKING:
    import numpy as np

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
    import numpy as np

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


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "n/a"
    return f"{v:.4g}" if abs(v) < 1e-3 and v != 0 else f"{v:.4f}"


def format_table(r: dict[str, float]) -> str:
    """A readable summary of :meth:`SirstMetrics.compute` output."""
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


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, list):
        return [_json_safe(x) for x in v]
    return v


def evaluate_network(args: argparse.Namespace) -> dict[str, float]:
    """``--data ROOT [--weights W]``: run a network over a dataset split and score it."""
    from sirst.checkpoint import model_from_checkpoint, read_checkpoint
    from sirst.data import SirstDataset
    from sirst.engine import evaluate
    from sirst.weights import resolve_weights

    if args.threshold != 0.5:
        raise ValueError("--threshold applies to saved score maps; networks are scored at probability 0.5")
    path = resolve_weights(args.weights)
    ckpt = read_checkpoint(path)
    model = model_from_checkpoint(ckpt, args.device, source=str(path))
    in_channels = int(ckpt.get("model_kwargs", {}).get("in_channels", 3))
    dataset = SirstDataset(args.data, split=args.split, subset=args.subset, mode="eval", protocol=args.protocol,
                           in_channels=in_channels)
    return evaluate(model, dataset, device=args.device, protocol=args.protocol, progress=not args.quiet)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from sirst.cli.options import check_device, check_output_file
    from sirst.weights import DEFAULT_WEIGHTS

    # Output files are checked before the (possibly long) evaluation, not when writing them.
    for flag, out in (("--json", args.json), ("--roc-csv", args.roc_csv)):
        if out is not None:
            check_output_file(out, flag)
    if args.data is not None:
        if args.pred is not None or args.masks is not None:
            raise ValueError("give either --data (evaluate a network) or --pred and --masks (saved maps), not both")
        if args.roc_csv is not None:
            raise ValueError("--roc-csv needs saved score maps (--pred/--masks); write them with "
                             "`sirst detect --save-scores png`")
        check_device(args.device)
        result = evaluate_network(args)
        print(f"protocol: {args.protocol}, data: {args.data} ({args.subset} split), "
              f"weights: {args.weights or f'bundled {DEFAULT_WEIGHTS}'}")
        print(format_table(result))
        if args.json:
            doc = {"protocol": args.protocol, "data": str(args.data), "split": args.split, "subset": args.subset,
                   "weights": str(args.weights or f"bundled {DEFAULT_WEIGHTS}"), **{k: _json_safe(float(v)) for k, v in result.items()}}
            Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        return 0
    if args.pred is None or args.masks is None:
        raise ValueError("give --pred and --masks (saved maps), or --data [--weights] to evaluate a network")
    roc = np.linspace(0.0, 1.0, args.roc_steps + 1) if args.roc_csv else None
    result, curves = evaluate_dirs(
        args.pred,
        args.masks,
        threshold=args.threshold,
        protocol=args.protocol,
        roc_thresholds=roc,
        workers=args.workers,
        batch_size=args.batch_size,
        progress=not args.quiet,
    )
    print(f"protocol: {args.protocol}, threshold: {args.threshold}")
    print(format_table(result))
    if args.json:
        doc = {
            "protocol": args.protocol,
            "threshold": args.threshold,
            "pred_dir": str(args.pred),
            "masks_dir": str(args.masks),
            **{k: _json_safe(float(v)) for k, v in result.items()},
        }
        for k in ("num_images", "num_targets", "num_pixels"):
            doc[k] = int(result[k])
        if curves is not None:
            doc["curves"] = {k: _json_safe(v) for k, v in curves.items()}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    if args.roc_csv and curves is not None:
        with open(args.roc_csv, "w", newline="") as f:
            w = csv.writer(f)
            cols = ["threshold", "tpr", "fpr", "precision", "pd", "fa"]
            w.writerow(cols)
            for row in zip(curves["thresholds"], curves["tpr"], curves["fpr"], curves["precision"], curves["pd"], curves["fa"]):
                w.writerow([repr(float(x)) for x in row])
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="score saved predictions against masks (IoU, nIoU, Pd, Fa, ROC)",
        description=(
            "Evaluate prediction maps (PNG 8/16-bit scaled to [0,1], or .npy scores) against masks of "
            "the same names (masks may be named <id>_pixels0.png). Pd/Fa: targets are 8-connected "
            "components matched by centroid distance < 3 px; Fa is false-alarm pixels per image pixel."
        ),
    )
    p.add_argument("--pred", type=Path, default=None, help="folder of predictions <id>.png or <id>.npy")
    p.add_argument("--masks", type=Path, default=None, help="folder of masks <id>.png (or <id>_pixels0.png, .npy)")
    p.add_argument("--data", type=Path, default=None,
                   help="instead of --pred/--masks: evaluate a network on this dataset (standard layout)")
    p.add_argument("--weights", default=None, help="with --data: checkpoint, or a bundled name: general (default), nuaa, nudt")
    p.add_argument("--split", default="auto", help="with --data: split folder (default auto: 50_50 if present)")
    p.add_argument("--subset", choices=["train", "test"], default="test", help="with --data: subset (default test)")
    p.add_argument("--device", default="cpu", help="with --data: cpu or cuda (default cpu)")
    p.add_argument("--threshold", type=float_range(), default=0.5, help="score > threshold is a target pixel (default 0.5)")
    p.add_argument(
        "--protocol",
        choices=["exact", "reference"],
        default="exact",
        help="exact: native sizes, one-to-one matching (default); reference: reproduce the public "
        "DNANet code (resize to 256x256, greedy matching, its false-alarm area quirk)",
    )
    p.add_argument("--json", type=Path, default=None, help="write the metrics to this JSON file")
    p.add_argument("--roc-csv", type=Path, default=None, help="write ROC and Pd-Fa curves to this CSV file")
    p.add_argument(
        "--roc-steps",
        type=positive_int,
        default=20,
        help="curve thresholds: 0, 1/K, ..., 1 (scores expected in [0, 1]; default K=20)",
    )
    p.add_argument("--workers", type=positive_int, default=4, help="file-reading threads (default 4)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per metric update (default 32)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (results, warnings and errors are still printed)")
    p.set_defaults(func=run)
