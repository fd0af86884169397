"""Collect the detector's candidate targets (gate off) with their image and logit patches, labelled
true (matched to a ground-truth target) or false, for training and choosing a candidate verifier.

Sets (the `general` recipe's own split, so the verifier never sees what the detector's validation or
test saw): ``train`` = NUAA-SIRST and NUDT-SIRST train splits less their 10 % validation carves, the
negatives_train.txt frames whole, synthesized targets composited into crops of those frames, and
synthesized hard-clutter samples; ``val`` = the two carves, the negatives_val.txt frames whole and
composites into crops of them. Test splits and negatives_check.txt are never read.

Usage: python scripts/mine_candidates.py --weights general --set train --out runs/verifier/train.npz
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "src" / "sirst" / "recipes" / "general"
SEED = 20261203


def _rescaled(name: str, image: np.ndarray, mask: np.ndarray, scale: float) -> tuple[str, np.ndarray, np.ndarray]:
    """``(name@scale, image, mask)`` resized by ``scale``; a mask pixel stays a target where any of it was one."""
    if scale == 1:
        return name, image, mask
    import cv2

    size = (max(8, round(image.shape[1] * scale)), max(8, round(image.shape[0] * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return (f"{name}@{scale:g}", cv2.resize(image, size, interpolation=interp),
            cv2.resize(mask.astype(np.float32), size, interpolation=interp) > 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="general")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--set", choices=("train", "val"), required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--composites-per-frame", type=int, default=4)
    parser.add_argument("--synth", type=int, default=400, help="hard-clutter synthesized samples (train set)")
    parser.add_argument("--frame-scales", default="1", help="scales to run the whole frames at, e.g. 1,0.75,0.5 "
                        "(other sensors' resolutions; 1 = native)")
    parser.add_argument("--labelled-scales", default="1",
                        help="scales to run the labelled datasets' images at, e.g. 1,0.5,1.5 (masks follow: any "
                             "covered pixel stays a target pixel)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parts", default="labelled,frames,composites,synth")
    args = parser.parse_args()

    import torch
    from tqdm import tqdm

    from sirst.data.dataset import find_file, read_ids
    from sirst.data.io import read_image
    from sirst.data.mixture import _scaled_crop
    from sirst.data.synth import SynthConfig, make_hard_sample, make_sample
    from sirst.detect.build import load_detector
    from sirst.engine.config import TrainConfig
    from sirst.engine.train import _labelled_split
    from sirst.verify import candidate_records

    torch.set_num_threads(args.threads)
    # Every candidate of the network: no gate, and none of the verifier the weights may already carry.
    det = load_detector(args.weights, precision="bf16", backend="openvino", threads=args.threads, min_peak=0.0,
                        verify=False, work=100.0)
    data = Path(args.data)
    parts = set(args.parts.split(","))
    records: list[dict] = []
    truth: dict[str, int] = {}  # ground-truth targets per source
    images: dict[str, int] = {}  # images per source

    def run(tag: str, items):
        from sirst.targets import label_components

        start = time.perf_counter()
        n0 = len(records)
        for name, image, mask in tqdm(items, desc=tag):
            images[tag] = images.get(tag, 0) + 1
            truth[tag] = truth.get(tag, 0) + (label_components(mask)[1] if mask is not None else 0)
            (logits,) = det.predict_logits([image])
            for r in candidate_records(image, logits, mask):
                r.update(source=tag, image_id=name)
                records.append(r)
        new = records[n0:]
        print(f"{tag}: {sum(r['label'] for r in new)} true, {sum(1 - r['label'] for r in new)} false candidates, "
              f"{time.perf_counter() - start:.0f} s", flush=True)

    if "labelled" in parts:
        for ds in ("NUAA-SIRST", "NUDT-SIRST"):
            root = data / ds
            train, val = _labelled_split(TrainConfig(data=str(root), out="-", val_fraction=0.1, seed=0), str(root))
            if args.set == "train":
                base, idx = train.dataset, list(train.indices)
            else:
                base, idx = val.dataset, list(val.indices)
            for scale in (float(v) for v in args.labelled_scales.split(",")):
                run(ds, (_rescaled(base.pairs[i][0], *base.load(i), scale) for i in idx))
    ids = read_ids(RECIPE / f"negatives_{args.set}.txt")
    neg = data / "SIRST-v2-negatives" / "images"
    frames = [(i, read_image(find_file(neg, i))) for i in ids]
    if "frames" in parts:
        import cv2

        for scale in (float(v) for v in args.frame_scales.split(",")):
            size = lambda f: (max(8, round(f.shape[1] * scale)), max(8, round(f.shape[0] * scale)))  # noqa: E731
            run("negative-frames", ((i if scale == 1 else f"{i}@{scale:g}",
                                     f if scale == 1 else cv2.resize(f, size(f), interpolation=cv2.INTER_AREA), None)
                                    for i, f in frames))
    if "composites" in parts:
        def composites():
            for n, (i, frame) in enumerate(frames):
                for c in range(args.composites_per_frame):
                    rng = np.random.default_rng([SEED, n, c, args.set == "val"])
                    crop = np.clip(_scaled_crop(frame, rng, 256, (0.7, 1.4)), 0, 1)
                    image8, mask, _ = make_sample(rng, SynthConfig(size=256), background=crop)
                    yield f"{i}#c{c}", image8.astype(np.float32) / 255.0, mask
        run("composites", composites())
    if "synth" in parts and args.set == "train":
        def synth():
            for k in range(args.synth):
                image8, mask, _ = make_hard_sample(np.random.default_rng([SEED, 7, k]), SynthConfig(size=256))
                yield f"synth{k}", image8.astype(np.float32) / 255.0, mask
        run("synth", synth())
    keys = [k for k in records[0] if k not in ("patch",)] if records else []
    out = {k: np.array([r[k] for r in records]) for k in keys}
    out["sources"] = np.array(sorted(images))
    out["source_images"] = np.array([images[k] for k in sorted(images)])
    out["source_targets"] = np.array([truth[k] for k in sorted(images)])
    out["patch"] = np.stack([r["patch"] for r in records]) if records else np.zeros((0,))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out}: {len(records)} candidates")


if __name__ == "__main__":
    main()
