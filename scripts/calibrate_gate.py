"""Choose a detector's per-target confidence gate (peak logit) on its validation data.

A network trained with Soft-IoU fires with saturated probabilities on clutter as on targets, but
the peak *logit* of a target is usually far higher than that of a false alarm. This script runs the
weights on the validation data of the `general` recipe (the 10 % carves of the NUAA-SIRST and
NUDT-SIRST train splits, seed 0, and the whole negatives_val.txt frames, all never trained on, and
never the test splits or negatives_check.txt), tabulates for each gate ``t`` the targets found (Pd),
the false targets on the carves and on the target-free frames, and picks the largest ``t`` that
gives up at most ``--max-pd-drop`` of the carves' Pd.

Usage: python scripts/calibrate_gate.py --weights runs/general/best.pt [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VAL_IDS = ROOT / "src" / "sirst" / "recipes" / "general" / "negatives_val.txt"
GATES = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 12.0, 14.0, 16.0, 20.0)


def peaks(weights: str, data: Path, device: str = "cpu") -> dict:
    """Peak logits of the matched targets, the false targets and the target-free frames' targets."""
    from tqdm import tqdm

    from sirst.checkpoint import model_from_checkpoint
    from sirst.data.dataset import find_file, read_ids
    from sirst.data.io import read_image
    from sirst.engine.config import TrainConfig
    from sirst.engine.train import _labelled_split
    from sirst.detect import Detector
    from sirst.metrics import match_targets
    from sirst.targets import extract_targets

    # Gate and verifier off: the table is of the raw network, whatever the weights may already carry.
    detector = Detector(model_from_checkpoint(weights, device), device=device, min_peak=0.0, verify=False)
    out: dict = {"targets": 0, "matched": [], "false": [], "frames": []}
    for name in ("NUAA-SIRST", "NUDT-SIRST"):
        root = data / name
        _, val = _labelled_split(TrainConfig(data=str(root), out="-", val_fraction=0.1, seed=0), str(root))
        for idx in tqdm(val.indices, desc=f"{name} val carve"):
            image, mask = val.dataset.load(idx)
            (logits,) = detector.predict_logits([image])
            found = extract_targets(logits > 0, logits)
            truth = extract_targets(mask)
            pairs = match_targets(np.array([t.centroid for t in truth]), np.array([f.centroid for f in found]))
            hit = {int(j) for j in pairs[:, 1]}
            out["targets"] += len(truth)
            for j, f in enumerate(found):
                (out["matched"] if j in hit else out["false"]).append(f.peak)
    for i in tqdm(read_ids(VAL_IDS), desc="target-free frames"):
        (logits,) = detector.predict_logits([read_image(find_file(data / "SIRST-v2-negatives" / "images", i))])
        out["frames"].append([f.peak for f in extract_targets(logits > 0, logits)])
    return out


def table(p: dict) -> list[dict]:
    """One row per gate: Pd and false targets on the carves, alarmed target-free frames."""
    matched, false = np.array(p["matched"]), np.array(p["false"])
    rows = []
    for t in GATES:
        rows.append({
            "gate": t,
            "pd": float((matched > t).sum() / max(p["targets"], 1)),
            "false_on_carves": int((false > t).sum()),
            "frames_alarmed": sum(int(any(v > t for v in f)) for f in p["frames"]),
            "false_on_frames": sum(sum(int(v > t) for v in f) for f in p["frames"]),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--max-pd-drop", type=float, default=0.02, help="Pd (fraction) the gate may give up")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    p = peaks(args.weights, Path(args.data))
    rows = table(p)
    floor = rows[0]["pd"] - args.max_pd_drop
    chosen = max((r for r in rows if r["pd"] >= floor - 1e-12), key=lambda r: r["gate"])
    print(f"{'gate':>5} {'Pd':>6} {'false/carves':>12} {'frames alarmed':>14} {'false/frames':>12}")
    for r in rows:
        mark = "  <- chosen" if r is chosen else ""
        print(f"{r['gate']:5.1f} {r['pd'] * 100:6.2f} {r['false_on_carves']:12d} "
              f"{r['frames_alarmed']:8d}/{len(p['frames']):<5d} {r['false_on_frames']:12d}{mark}")
    if args.json:
        Path(args.json).write_text(json.dumps({"weights": args.weights, "max_pd_drop": args.max_pd_drop,
                                               "chosen": chosen["gate"], "rows": rows, "peaks": p}, indent=1))


if __name__ == "__main__":
    main()
