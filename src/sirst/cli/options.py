"""Checks shared by the commands: option types that state their allowed range, devices, output paths.

Everything here raises before any work starts, with one line that names the option or the path:
argparse types raise ``argparse.ArgumentTypeError`` (exit code 2 through the parser), the other
checks ``ValueError`` (exit code 2 through :func:`sirst.cli.main`).
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def int_at_least(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum`` (and <= ``maximum`` when given)."""
    allowed = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer {allowed}, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be an integer {allowed}, got {value}")
        return value

    parse.__name__ = f"integer {allowed}"
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def float_range(low: float | None = None, high: float | None = None, low_open: bool = False,
                high_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite float in the given (closed unless ``*_open``) interval."""
    left = "-inf" if low is None else f"{low:g}"
    right = "inf" if high is None else f"{high:g}"
    interval = f"{'(' if low_open or low is None else '['}{left}, {right}{')' if high_open or high is None else ']'}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number in {interval}, got {text!r}") from None
        ok = math.isfinite(value)
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value < high if high_open else value <= high
        if not ok:
            raise argparse.ArgumentTypeError(f"must be a finite number in {interval}, got {text}")
        return value

    parse.__name__ = f"number in {interval}"
    return parse


positive_float = float_range(0.0, None, low_open=True)
non_negative_float = float_range(0.0, None)
probability = float_range(0.0, 1.0, low_open=True, high_open=True)


def check_device(device: str, flag: str = "--device") -> None:
    """Raise ``ValueError`` for a device string torch does not know, or CUDA that is not there."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"{flag} {device}: not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{flag} {device}: CUDA is not available on this machine (no GPU, or a CPU-only "
                             "torch build); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{flag} {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type not in ("cpu", "mps", "xpu"):
        raise ValueError(f"{flag} {device}: unsupported device type {dev.type!r}; use cpu or cuda")


def _probe_writable(folder: Path, flag: str) -> None:
    try:
        fd, probe = tempfile.mkstemp(prefix=".sirst-write-test-", dir=folder)
    except OSError as exc:
        raise ValueError(f"{flag} {folder}: the folder is not writable ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


def ensure_output_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Create the output folder ``path`` (and parents) and check that files can be written in it.

    Raises ``ValueError`` when ``path`` is an existing file, cannot be created or is not writable.
    Existing files inside the folder are left alone.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path}: exists and is a file, not a folder; give a folder (new or existing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{flag} {path}: cannot create the folder ({exc.strerror or exc})") from None
    _probe_writable(path, flag)
    return path


def check_output_file(path: str | os.PathLike, flag: str) -> Path:
    """Check, before any work, that the file ``path`` can be written: not a folder, its folder exists
    and is writable. Raises ``ValueError`` naming the option."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path}: is a folder; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"{flag} {path}: the folder {parent} does not exist")
    _probe_writable(parent, flag)
    return path
