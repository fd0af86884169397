"""Validate a dataset folder: every problem found, counts, sizes and target statistics."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sirst.data.dataset import MASK_SUFFIXES, find_file, load_pair, read_ids, resolve_split
from sirst.targets import extract_targets

AREA_BINS = (1, 2, 5, 10, 20, 50, 82, 200, 500, 10**9)


@dataclass
class CheckReport:
    """What :func:`check_dataset` found."""

    root: Path
    split: str
    counts: dict[str, int] = field(default_factory=dict)
    sizes: Counter = field(default_factory=Counter)
    targets_per_image: Counter = field(default_factory=Counter)
    areas: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def format(self) -> str:
        lines = [f"dataset {self.root} (split {self.split})"]
        lines += [f"  {k}: {v} ids" for k, v in self.counts.items()]
        lines.append("  sizes (HxW: images): " + ", ".join(f"{h}x{w}: {n}" for (h, w), n in self.sizes.most_common(8))
                     + (" ..." if len(self.sizes) > 8 else ""))
        lines.append("  targets per image: " + ", ".join(f"{k}: {v}" for k, v in sorted(self.targets_per_image.items())))
        if self.areas:
            hist, _ = np.histogram(self.areas, bins=AREA_BINS)
            labels = [f"{a}-{b - 1}" if b < 10**9 else f">={a}" for a, b in zip(AREA_BINS[:-1], AREA_BINS[1:])]
            lines.append(f"  targets: {len(self.areas)}, area px median {int(np.median(self.areas))}")
            lines.append("  area histogram: " + ", ".join(f"{lab}: {n}" for lab, n in zip(labels, hist)))
        lines.append(f"  problems: {len(self.problems)}")
        lines += [f"    - {p}" for p in self.problems]
        return "\n".join(lines)


def check_dataset(root: str | os.PathLike, split: str = "auto", progress: bool = True) -> CheckReport:
    """Check every id of the train and test split files; collect all problems instead of stopping."""
    root = Path(root)
    files = resolve_split(root, split)
    report = CheckReport(root=root, split=files.name)
    seen: dict[str, str] = {}
    todo = []
    for subset, path in (("train", files.train), ("test", files.test)):
        try:
            ids = read_ids(path)
        except ValueError as exc:
            report.problems.append(str(exc))
            ids = list(dict.fromkeys(path.read_text().split()))
        report.counts[subset] = len(ids)
        for i in ids:
            if i in seen:
                report.problems.append(f"{path}: id {i!r} is also in the {seen[i]} split")
            seen[i] = subset
            img = find_file(root / "images", i)
            mask = find_file(root / "masks", i, MASK_SUFFIXES)
            if img is None:
                report.problems.append(f"{path}: id {i!r} has no image in {root / 'images'}")
            elif mask is None:
                report.problems.append(f"{img}: image has no mask in {root / 'masks'}")
            else:
                todo.append((img, mask))
    for img, mask in tqdm(todo, desc="check", unit="img", disable=not progress):
        try:
            image, m = load_pair(img, mask)
        except (ValueError, FileNotFoundError) as exc:
            report.problems.append(str(exc))
            continue
        report.sizes[image.shape] += 1
        targets = extract_targets(m)
        report.targets_per_image[len(targets)] += 1
        report.areas.extend(t.area for t in targets)
    return report
