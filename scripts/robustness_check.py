"""Robustness check of a detector on scenes no training step saw (MODEL_CARD.md's robustness table).

Two measurements, both through ``sirst.detect.Detector`` with its defaults (what `sirst detect` runs):

1. **False-alarm frames**: the real target-free frames of ``src/sirst/recipes/general/negatives_check.txt``
   (SIRST-v2 urban/roadside frames, 1280x1024, whole frames at native resolution). Reported: frames with
   at least one detection per 100 frames, false-alarm components per frame and Fa (false pixels / pixels).
   These frames are held out of training and of checkpoint selection, and separated from the training
   and validation frames by gap frames (the frames are a driving sequence; neighbours are near-duplicates).
2. **Targets in unseen real clutter**: fixed native-scale 256x256 crops of the same held-out frames with
   targets composited by the synthesizer (``sirst.data.synth.make_sample``, seeded): IoU, nIoU, Pd, Fa
   with the exact protocol, and the share of the crops' target-free twins (the same crops without
   targets) that raise an alarm.

Usage: python scripts/robustness_check.py --weights nuaa [nudt general RUN/best.pt ...] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHECK_IDS = ROOT / "src" / "sirst" / "recipes" / "general" / "negatives_check.txt"
CROPS_PER_FRAME = 4
SEED = 2026


def check(weights: str, negatives: Path, device: str = "cpu", progress: bool = True, verify: bool = True,
          min_peak: float | None = None, frame_scale: float = 1.0, frames_only: bool = False) -> dict:
    """Run both measurements for ``weights``; returns a flat dict of results."""
    from tqdm import tqdm

    from sirst.checkpoint import model_from_checkpoint
    from sirst.data.dataset import find_file, read_ids
    from sirst.data.io import read_image
    from sirst.data.mixture import _scaled_crop
    from sirst.data.synth import SynthConfig, make_sample
    from sirst.detect import Detector
    from sirst.metrics import SirstMetrics
    from sirst.targets import extract_targets

    import cv2

    detector = Detector(model_from_checkpoint(weights, device), device=device, verify=verify, min_peak=min_peak)
    ids = read_ids(CHECK_IDS)
    start = time.perf_counter()
    alarmed, components, fa_pixels, pixels = 0, 0, 0, 0
    crops: list[np.ndarray] = []
    for i in tqdm(ids, desc=f"{weights}: frames", disable=not progress):
        path = find_file(negatives / "images", i)
        if path is None:
            raise FileNotFoundError(f"{negatives / 'images'}: no frame {i!r} (listed in {CHECK_IDS})")
        frame = read_image(path)
        if frame_scale != 1.0:  # another sensor's resolution of the same scenes
            size = (round(frame.shape[1] * frame_scale), round(frame.shape[0] * frame_scale))
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        (score,) = detector.predict_scores([frame])
        binary = score > detector.threshold
        found = extract_targets(binary, score)
        alarmed += int(len(found) > 0)
        components += len(found)
        fa_pixels += int(binary.sum())
        pixels += binary.size
        rng = np.random.default_rng([SEED, len(crops)])
        crops += [_scaled_crop(frame, rng, 256, (1.0, 1.0)) for _ in range(CROPS_PER_FRAME)]
    frame_seconds = time.perf_counter() - start
    summary = {"weights": str(weights), "min_peak_logit": detector.min_peak,
               "verifier": detector.verifier.threshold if detector.verifier is not None else None,
               "frame_scale": frame_scale, "negative_frames": len(ids), "fa_frames_per_100": 100.0 * alarmed / len(ids),
               "fa_components_per_frame": components / len(ids), "negative_fa": fa_pixels / pixels}
    if frames_only:
        return {**summary, "seconds": frame_seconds}

    metrics = SirstMetrics(threshold=detector.threshold)
    twins_alarmed = 0
    images, masks = [], []
    for k, crop in enumerate(crops):
        image8, mask, _ = make_sample(np.random.default_rng([SEED, 1, k]), SynthConfig(size=256),
                                      background=np.clip(crop, 0, 1))
        images.append(image8.astype(np.float32) / 255.0)
        masks.append(mask)
    scores = []
    for k in tqdm(range(0, len(images), 8), desc=f"{weights}: crops", disable=not progress):
        scores += detector.predict_scores(images[k : k + 8])
        twins = detector.predict_scores([np.round(np.clip(c, 0, 1) * 255) / 255.0 for c in crops[k : k + 8]])
        twins_alarmed += sum(int((t > detector.threshold).any()) for t in twins)
    metrics.update(scores, masks)
    m = metrics.compute()
    return {
        **summary,
        "clutter_crops": len(images),
        "clutter_iou": float(m["iou"]),
        "clutter_niou": float(m["niou"]),
        "clutter_pd": float(m["pd"]),
        "clutter_fa": float(m["fa"]),
        "clutter_twins_fa_per_100": 100.0 * twins_alarmed / len(crops),
        "seconds": time.perf_counter() - start,
        "frame_seconds": frame_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", nargs="+", default=["nuaa"])
    parser.add_argument("--negatives", default=str(ROOT.parent / "shared" / "data" / "SIRST-v2-negatives"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-verifier", action="store_true", help="run without the weights' candidate verifier")
    parser.add_argument("--min-peak", type=float, default=None, help="confidence gate (default: the weights' own)")
    parser.add_argument("--frame-scale", type=float, default=1.0,
                        help="resize the frames by this factor first (another sensor's resolution)")
    parser.add_argument("--frames-only", action="store_true", help="only the false-alarm frames, no composited crops")
    parser.add_argument("--json", default=None, help="write the results here (a list, one dict per weights)")
    args = parser.parse_args()
    results = []
    for w in args.weights:
        r = check(w, Path(args.negatives), args.device, verify=not args.no_verifier, min_peak=args.min_peak,
                  frame_scale=args.frame_scale, frames_only=args.frames_only)
        results.append(r)
        if args.json:  # after every model, so a long run that is cut off keeps what it measured
            Path(args.json).write_text(json.dumps(results, indent=1))
        line = (f"{w}: false-alarm frames {r['fa_frames_per_100']:.1f} per 100 ({r['negative_frames']} frames, "
                f"{r['fa_components_per_frame']:.2f} components/frame, Fa {r['negative_fa'] * 1e6:.2f}e-6)")
        if "clutter_crops" in r:
            line += (f"; targets in unseen clutter ({r['clutter_crops']} crops): IoU {r['clutter_iou'] * 100:.2f} "
                     f"Pd {r['clutter_pd'] * 100:.2f} Fa {r['clutter_fa'] * 1e6:.2f}e-6, target-free twins alarmed "
                     f"{r['clutter_twins_fa_per_100']:.1f} per 100")
        print(f"{line} ({r['seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
