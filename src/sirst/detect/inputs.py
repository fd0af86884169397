"""Inputs of ``sirst detect``: image files, folders (recursive) and videos, listed, sized and read
frame by frame as :class:`InputItem` s."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sirst.data.io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, normalize_raw, read_image


@dataclass
class InputItem:
    """One image to process: an id and a loader (deferred so errors are reported per item)."""

    id: str
    source: str
    load: Callable[[], np.ndarray]


@dataclass(frozen=True)
class InputFile:
    """An image or video file to process, found directly or inside a folder."""

    path: Path
    kind: str  # "image" or "video"


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def list_inputs(
    inputs: Iterable[str | os.PathLike],
    on_error: Callable[[str], None],
    on_skip: Callable[[str], None] | None = None,
) -> list[InputFile]:
    """The image and video files of ``inputs`` (files, and folders searched recursively, sorted).

    A missing path or a folder without images or videos is passed to ``on_error``. Files in a folder
    that are neither (e.g. ``notes.txt``) are skipped and counted in one ``on_skip`` message per
    folder; hidden files (``.name``) are ignored.
    """
    found: list[InputFile] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            files, other = [], []
            for f in sorted(path.rglob("*")):
                if not f.is_file() or f.name.startswith("."):
                    continue
                if f.suffix.lower() in IMAGE_EXTENSIONS:
                    files.append(InputFile(f, "image"))
                elif _is_video(f):
                    files.append(InputFile(f, "video"))
                else:
                    other.append(f)
            if other and on_skip is not None:
                shown = ", ".join(f.name for f in other[:3]) + (", ..." if len(other) > 3 else "")
                on_skip(f"{path}: skipped {len(other)} file(s) that are neither images nor videos ({shown})")
            if not files:
                on_error(f"{path}: folder has no images ({', '.join(IMAGE_EXTENSIONS)}) "
                         f"or videos ({', '.join(VIDEO_EXTENSIONS)})")
            found.extend(files)
        elif path.is_file():
            found.append(InputFile(path, "video" if _is_video(path) else "image"))
        else:
            on_error(f"{path}: no such file or folder")
    return found


def count_frames(files: Iterable[InputFile]) -> int | None:
    """Images plus video frames as the containers declare them (``None`` when a video does not say)."""
    total = 0
    for f in files:
        if f.kind == "image":
            total += 1
            continue
        import cv2

        cap = cv2.VideoCapture(str(f.path))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        cap.release()
        if n <= 0:
            return None
        total += n
    return total


def job_work(files: Iterable[InputFile], divisor: int = 16) -> float:
    """The size of a job in 256x256-frame equivalents: padded pixels of every image and video frame
    over 65,536, from file headers (nothing is decoded); a file whose size cannot be read counts as
    one 256x256 frame. What ``sirst detect --precision auto`` weighs one-off costs against."""
    from PIL import Image

    def padded(h: int, w: int) -> int:
        return (h + (-h) % divisor) * (w + (-w) % divisor)

    pixels = 0.0
    for f in files:
        try:
            if f.kind == "video":
                import cv2

                cap = cv2.VideoCapture(str(f.path))
                n, w, h = (int(cap.get(p)) for p in (cv2.CAP_PROP_FRAME_COUNT, cv2.CAP_PROP_FRAME_WIDTH,
                                                      cv2.CAP_PROP_FRAME_HEIGHT))
                cap.release()
                pixels += max(n, 1) * padded(h, w) if h > 0 and w > 0 else 65536
            else:
                with Image.open(f.path) as im:
                    w, h = im.size
                pixels += padded(h, w)
        except Exception:  # unreadable here: run_detection reports it; count it as one small frame
            pixels += 65536
    return pixels / 65536


def _video_frames(path: Path, normalize: Callable[[np.ndarray, str], np.ndarray]) -> Iterator[InputItem]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"{path}: cannot open video")
    index = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            source = f"{path}#{index}"
            gray = normalize(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), source)
            yield InputItem(f"{path.stem}_f{index:06d}", source, lambda g=gray: g)
            index += 1
    finally:
        cap.release()
    if index == 0:
        raise ValueError(f"{path}: video has no readable frames")


def iter_inputs(
    inputs: Iterable[str | os.PathLike] | list[InputFile],
    on_error: Callable[[str], None],
    bit_depth: int | None = None,
    value_range: tuple[float, float] | None = None,
) -> Iterator[InputItem]:
    """Images, folders (sorted, recursive; images and videos) and videos as :class:`InputItem` s.

    Ids are file stems (``<video>_f000123`` for video frames), made unique with ``_2``, ``_3``...;
    ``source`` is the file's path (``<video>#<frame>`` for frames). A missing path, an empty folder
    or an unreadable video is passed to ``on_error`` and skipped. ``bit_depth`` / ``value_range``
    force the raw range of every image (:func:`sirst.data.io.read_image`).
    """
    used: set[str] = set()

    def unique(stem: str) -> str:
        name, n = stem, 1
        while name in used:
            n += 1
            name = f"{stem}_{n}"
        used.add(name)
        return name

    def normalize(frame: np.ndarray, source: str) -> np.ndarray:
        return normalize_raw(frame, 255.0, bit_depth=bit_depth, value_range=value_range, name=source)

    items = list(inputs)
    files = items if all(isinstance(x, InputFile) for x in items) else list_inputs(items, on_error)
    for f in files:  # type: ignore[union-attr]
        if f.kind == "video":
            try:
                for item in _video_frames(f.path, normalize):
                    item.id = unique(item.id)
                    yield item
            except ValueError as exc:
                on_error(str(exc))
        else:
            yield InputItem(unique(f.path.stem), str(f.path),
                            lambda p=f.path: read_image(p, bit_depth=bit_depth, value_range=value_range))
