"""Compact packs of training data for machines that receive only a few tens of MB.

A device window (``docs/device_window.md``) gets the repository plus at most 64 MiB in all, so the
datasets travel as one pack: a zip archive (stored, not deflated) holding ``manifest.json`` and, per
image, a losslessly compressed single-channel 8-bit file (WebP lossless where OpenCV can write it,
else PNG; NUAA-SIRST + NUDT-SIRST train splits: about 15 MB instead of 58 MB of raw pixels) and a
PNG mask. Images are the one channel :func:`sirst.data.read_image` reads, rounded to 8 bits.

Sources of a pack:

* **labelled**: one split (``train`` of ``50_50`` by default) of a dataset in the standard layout,
  in the split file's order (so a validation carve seeded as in :func:`sirst.engine.train.build_datasets`
  selects the same images);
* **negatives**: crops of target-free frames (masks empty), centred on the strongest small bright
  structures of each frame (white top-hat peaks), the places a detector is most tempted by.
"""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

PACK_FORMAT = "sirst-pack-v1"
KINDS = ("labelled", "negatives")


@dataclass
class PackedSource:
    """One source of a pack, decoded: uint8 images ``(H, W)`` and bool masks of the same sizes."""

    name: str
    kind: str
    root: str  # the folder packed, as it was given (provenance; ``TrainConfig.data`` of runs on it)
    split: str  # labelled: split folder and subset ("50_50/train"); negatives: the ids file or "all"
    ids: list[str]
    images: list[np.ndarray]
    masks: list[np.ndarray]
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the crop boxes of negatives

    def __len__(self) -> int:
        return len(self.images)


def _to_uint8(gray: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(gray * 255.0), 0, 255).astype(np.uint8)


def _encoder() -> tuple[str, list[int]]:
    """WebP lossless when this OpenCV writes it losslessly (it saves ~20 % over PNG), else PNG."""
    probe = (np.arange(64 * 64, dtype=np.uint32) * 2654435761 % 251).astype(np.uint8).reshape(64, 64)
    try:
        ok, buf = cv2.imencode(".webp", probe, [cv2.IMWRITE_WEBP_QUALITY, 101])
        if ok and np.array_equal(_decode(buf.tobytes(), ".webp"), probe):
            return ".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]
    except cv2.error:
        pass
    return ".png", [cv2.IMWRITE_PNG_COMPRESSION, 9]


def _encode(array: np.ndarray, ext: str, params: list[int]) -> bytes:
    ok, buf = cv2.imencode(ext, array, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {array.shape} image as {ext}")
    return buf.tobytes()


def _decode(data: bytes, ext: str) -> np.ndarray:
    """One grayscale uint8 image; Pillow when this OpenCV build cannot read the format."""
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        from PIL import Image

        array = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
    if array.ndim == 3:  # some decoders return WebP as colour; the channels are equal
        array = array[..., 0]
    return np.ascontiguousarray(array, dtype=np.uint8)


# --------------------------------------------------------------------------------------------------
# Reading the inputs


def load_labelled(root: str | os.PathLike, split: str = "50_50", subset: str = "train") -> PackedSource:
    """A labelled split as uint8 images and bool masks, in the split file's order."""
    from sirst.data.dataset import SirstDataset

    ds = SirstDataset(root, split=split, subset=subset, mode="eval", check_sizes=False)
    images, masks = [], []
    for i in range(len(ds)):
        image, mask = ds.load(i)
        images.append(_to_uint8(image))
        masks.append(mask)
    return PackedSource(name="", kind="labelled", root=str(root), split=f"{ds.split.name}/{subset}", ids=ds.ids,
                        images=images, masks=masks)


def _frame_ids(root: Path, ids_file: str | None) -> tuple[list[str], str]:
    from sirst.data.dataset import read_ids

    if ids_file:
        path = Path(ids_file)
        if not path.is_absolute() and not path.is_file():
            path = root / ids_file
        if not path.is_file():
            raise FileNotFoundError(f"{ids_file}: ids file of the negatives in {root} not found")
        return read_ids(path), str(ids_file)
    if (root / "all.txt").is_file():
        return read_ids(root / "all.txt"), "all.txt"
    images = root / "images"
    if not images.is_dir():
        raise FileNotFoundError(f"{root}: no images/ folder of target-free frames")
    from sirst.data.io import IMAGE_EXTENSIONS

    return sorted(p.stem for p in images.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS), "images/"


def peak_crops(frame: np.ndarray, count: int, size: int) -> list[tuple[int, int]]:
    """Top-left corners of ``count`` ``size`` x ``size`` crops of ``frame`` (H, W) uint8, centred on
    the strongest white top-hat responses (small bright structures), at least ``size / 2`` apart."""
    h, w = frame.shape
    if h < size or w < size:
        raise ValueError(f"a {w}x{h} frame is smaller than the {size}x{size} crops asked for")
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
    response = cv2.morphologyEx(frame, cv2.MORPH_TOPHAT, kernel).astype(np.float32)
    response = cv2.GaussianBlur(response, (0, 0), 1.5)
    half = size // 2
    corners: list[tuple[int, int]] = []
    for _ in range(count):
        cy, cx = np.unravel_index(int(np.argmax(response)), response.shape)
        y = int(np.clip(cy - half, 0, h - size))
        x = int(np.clip(cx - half, 0, w - size))
        corners.append((y, x))
        response[max(0, cy - half) : cy + half, max(0, cx - half) : cx + half] = -1.0
    return corners


def load_negatives(spec: str, crops_per_frame: int = 2, crop_size: int = 256) -> PackedSource:
    """Crops of target-free frames: ``spec`` is ``ROOT`` or ``ROOT:IDS`` (an ids file, relative to
    ROOT or absolute; default ``ROOT/all.txt``, else every image in ``ROOT/images``)."""
    from sirst.data.dataset import find_file
    from sirst.data.io import read_image

    root_text, _, ids_file = str(spec).partition(":")
    root = Path(root_text)
    ids, split = _frame_ids(root, ids_file or None)
    images, names, boxes = [], [], []
    for frame_id in ids:
        path = find_file(root / "images", frame_id)
        if path is None:
            raise FileNotFoundError(f"{root / 'images'}: no image for id {frame_id!r}")
        frame = _to_uint8(read_image(path))
        for k, (y, x) in enumerate(peak_crops(frame, crops_per_frame, crop_size)):
            images.append(np.ascontiguousarray(frame[y : y + crop_size, x : x + crop_size]))
            names.append(f"{frame_id}#{k}")
            boxes.append([frame_id, y, x, crop_size])
    masks = [np.zeros(im.shape, bool) for im in images]
    return PackedSource(name="", kind="negatives", root=root_text, split=split, ids=names, images=images,
                        masks=masks, extra={"crops": boxes})


# --------------------------------------------------------------------------------------------------
# Writing and reading packs


def write_pack(path: str | os.PathLike, sources: dict[str, PackedSource], verify: bool = True) -> dict[str, Any]:
    """Write ``sources`` (name -> source) to the pack file ``path`` atomically; returns the manifest
    with per-source byte counts. ``verify`` decodes every image back and checks it is identical."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ext, params = _encoder()
    manifest: dict[str, Any] = {"format": PACK_FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                "image_format": ext.lstrip("."), "sources": []}
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, src in sources.items():
            if not name or not all(c.isalnum() or c in "_-" for c in name):
                raise ValueError(f"pack source names are letters, digits, '_' and '-', got {name!r}")
            if src.kind not in KINDS:
                raise ValueError(f"{name}: kind must be one of {KINDS}, got {src.kind!r}")
            nbytes = 0
            for i, (image, mask) in enumerate(zip(src.images, src.masks)):
                data = _encode(image, ext, params)
                if verify and not np.array_equal(_decode(data, ext), image):
                    raise ValueError(f"{name}/{src.ids[i]}: the {ext} encoding is not lossless here")
                zf.writestr(f"{name}/{i:05d}{ext}", data)
                nbytes += len(data)
                if src.kind == "labelled":
                    mdata = _encode(np.asarray(mask, np.uint8) * 255, ".png", [cv2.IMWRITE_PNG_COMPRESSION, 9])
                    zf.writestr(f"{name}/{i:05d}.mask.png", mdata)
                    nbytes += len(mdata)
            manifest["sources"].append({
                "name": name, "kind": src.kind, "root": src.root, "split": src.split, "ids": src.ids,
                "sizes": [list(im.shape) for im in src.images], "bytes": nbytes, **src.extra,
            })
        zf.writestr("manifest.json", json.dumps(manifest, indent=1))
    os.replace(tmp, path)
    manifest["file_bytes"] = path.stat().st_size
    return manifest


def pack_sources(
    path: str | os.PathLike,
    datasets: Sequence[tuple[str, str]] = (),
    negatives: Sequence[tuple[str, str]] = (),
    split: str = "50_50",
    subset: str = "train",
    crops_per_frame: int = 1,
    crop_size: int = 256,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Load labelled datasets (``(NAME, ROOT)``: :func:`load_labelled`) and crops of target-free frames
    (``(NAME, ROOT[:IDS])``: :func:`load_negatives`) and write them to the pack file ``path``
    (:func:`write_pack`); ``log`` tells each source as it is loaded. Returns the manifest.

    Raises ``ValueError`` when there is nothing to pack or two sources share a name.
    """
    if not datasets and not negatives:
        raise ValueError("nothing to pack: give --dataset NAME=ROOT and/or --negatives NAME=ROOT[:IDS]")
    names = [name for name, _ in [*datasets, *negatives]]
    if len(set(names)) != len(names):
        raise ValueError(f"source names must be unique, got {sorted({n for n in names if names.count(n) > 1})} twice")
    sources: dict[str, PackedSource] = {}
    for name, root in datasets:
        sources[name] = load_labelled(root, split, subset)
        log(f"{name}: {len(sources[name])} images of {root} ({sources[name].split})")
    for name, spec in negatives:
        sources[name] = load_negatives(spec, crops_per_frame, crop_size)
        log(f"{name}: {len(sources[name])} crops of {crop_size}x{crop_size} from {spec}")
    return write_pack(path, sources)


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a pack (names, kinds, ids and sizes of its sources) without decoding images."""
    from sirst.data.io import existing_file

    path = existing_file(path, "pack file")
    try:
        with zipfile.ZipFile(path) as zf:
            manifest = json.loads(zf.read("manifest.json"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a sirst pack ({exc})") from exc
    if manifest.get("format") != PACK_FORMAT:
        raise ValueError(f"{path}: not a sirst pack (format {manifest.get('format')!r}, expected {PACK_FORMAT!r})")
    return manifest


def read_pack(path: str | os.PathLike, names: list[str] | None = None, workers: int = 8) -> dict[str, PackedSource]:
    """Decode the sources ``names`` (default: all) of a pack, images in ``workers`` threads."""
    manifest = read_manifest(path)
    ext = "." + manifest["image_format"]
    available = {s["name"]: s for s in manifest["sources"]}
    wanted = list(available) if names is None else names
    missing = [n for n in wanted if n not in available]
    if missing:
        raise ValueError(f"{path}: the pack has no source {missing}; it holds {sorted(available)}")
    out: dict[str, PackedSource] = {}
    with zipfile.ZipFile(path) as zf, ThreadPoolExecutor(max(1, workers)) as pool:
        for name in wanted:
            meta = available[name]
            n = len(meta["ids"])
            blobs = [zf.read(f"{name}/{i:05d}{ext}") for i in range(n)]
            images = list(pool.map(lambda b: _decode(b, ext), blobs))
            if meta["kind"] == "labelled":
                mblobs = [zf.read(f"{name}/{i:05d}.mask.png") for i in range(n)]
                masks = [m > 0 for m in pool.map(lambda b: _decode(b, ".png"), mblobs)]
            else:
                masks = [np.zeros(im.shape, bool) for im in images]
            for i, (im, size) in enumerate(zip(images, meta["sizes"])):
                if list(im.shape) != list(size):
                    raise ValueError(f"{path}: {name}/{meta['ids'][i]} decodes to {im.shape}, manifest says {size}")
            own = ("name", "kind", "root", "split", "ids", "sizes", "bytes")
            extra = {k: v for k, v in meta.items() if k not in own}
            out[name] = PackedSource(name=name, kind=meta["kind"], root=meta["root"], split=meta["split"],
                                     ids=list(meta["ids"]), images=images, masks=masks, extra=extra)
    return out
