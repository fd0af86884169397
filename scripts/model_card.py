"""Evaluate the bundled weights and write MODEL_CARD.md (re-run it to check the numbers).

Every number comes from `sirst eval --data ROOT --weights W --protocol P` (this script calls the same
function), on:
  - a held-out synthesized test set (`sirst synth --num 200 --seed 12345`, never used in training),
  - NUAA-SIRST and NUDT-SIRST 50_50 test splits when ../shared/data holds them (real data the model
    never saw: it was trained on synthesized images only).

Usage: python scripts/model_card.py [--weights src/sirst/weights/dnanet_synth.pt] [--shared ../shared/data]
"""

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

from sirst.checkpoint import model_from_checkpoint, read_checkpoint
from sirst.data import SirstDataset
from sirst.data.synth import synthesize
from sirst.engine import evaluate

ROOT = Path(__file__).resolve().parents[1]


def fmt(v: float, scale: float = 100.0, digits: int = 2) -> str:
    return "n/a" if v != v else f"{v * scale:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", default=str(ROOT / "src" / "sirst" / "weights" / "dnanet_synth.pt"))
    parser.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(ROOT / "MODEL_CARD.md"))
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    ckpt = read_checkpoint(args.weights)
    model = model_from_checkpoint(ckpt)
    n_params = sum(p.numel() for p in model.parameters())
    cfg = ckpt.get("config") or {}
    with tempfile.TemporaryDirectory() as tmp:
        heldout = synthesize(Path(tmp) / "heldout", 200, seed=12345, size=256, progress=False)
        sets = [("synthesized held-out (200 images, seed 12345), test half", heldout,
                 "sirst synth --out heldout --num 200 --seed 12345")]
        for name in ("NUAA-SIRST", "NUDT-SIRST"):
            if (Path(args.shared) / name).is_dir():
                sets.append((f"{name} 50_50 test", Path(args.shared) / name, None))
        rows = []
        for label, root, _ in sets:
            for protocol in ("exact", "reference"):
                ds = SirstDataset(root, split="auto", subset="test", mode="eval", protocol=protocol,
                                  in_channels=int(ckpt["model_kwargs"].get("in_channels", 3)))
                t0 = time.perf_counter()
                r = evaluate(model, ds, protocol=protocol, progress=False)
                rows.append((label, protocol, r, time.perf_counter() - t0))
                print(label, protocol, {k: round(r[k], 5) for k in ("iou", "niou", "pd", "fa")})
    lines = [
        "# Model card: bundled DNANet (`src/sirst/weights/dnanet_synth.pt`)",
        "",
        "The default weights of `sirst detect`. A small DNANet trained **on CPU, on synthesized data only**, so that",
        "the toolkit works out of the box; it is not the paper's model and not trained on real infrared images.",
        "Stronger weights trained on the real datasets with the paper's full protocol are future work (issue 8).",
        "",
        "| | |",
        "|---|---|",
        f"| model | `{ckpt['model_name']}` {ckpt['model_kwargs']}, {n_params:,} parameters, stored in fp16 |",
        f"| training data | `sirst synth --out data_synth/train600 --num 800 --seed 7` (50_50 split: 400 train / 400 test) |",
        f"| protocol | Soft-IoU with deep supervision averaged, Adagrad lr {cfg.get('lr', 0.05)} constant, batch "
        f"{cfg.get('batch_size', '?')}, crops {cfg.get('crop_size', '?')}x{cfg.get('crop_size', '?')}, paper augmentation, seed {cfg.get('seed', 0)} |",
        f"| epochs | {ckpt.get('epoch')} trained; weights of epoch {ckpt.get('best_epoch')} (best IoU on the first 100 "
        "images of the synthesized test split; the tables below use other data) |",
        f"| hardware | 2-core CPU ({platform.processor() or platform.machine()}), shared with other work |",
        "| command | `sirst train --data data_synth/train600 --out runs/bundled --channel-size two --backbone resnet10 "
        "--crop-size 128 --batch-size 16 --epochs 14 --eval-every 2 --max-test-images 100 --seed 0`, then "
        "`python scripts/bundle_weights.py runs/bundled/best.pt` |",
        "",
        "## Results",
        "",
        "IoU, nIoU, Pd in %, Fa x 1e-6. Reproduce any row with "
        "`sirst eval --data ROOT --protocol P` (bundled weights by default); this table is written by "
        "`python scripts/model_card.py`.",
        "",
        "| test set | protocol | IoU | nIoU | Pd | Fa (x1e-6) | Pd point / spot / extended | images | eval s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, protocol, r, secs in rows:
        by_size = " / ".join(fmt(r[f"pd_{k}"]) for k in ("point", "spot", "extended"))
        lines.append(f"| {label} | {protocol} | {fmt(r['iou'])} | {fmt(r['niou'])} | {fmt(r['pd'])} | "
                     f"{fmt(r['fa'], 1e6, 3)} | {by_size} | {int(r['num_images'])} | {secs:.0f} |")
    lines += [
        "",
        "For reference, the paper's DNANet-ResNet18 trained on each real dataset reaches (IoU / Pd / Fa x1e-6)",
        "NUAA-SIRST 77.47 / 98.48 / 2.353 and NUDT-SIRST 87.09 / 98.73 / 4.223 with the reference protocol.",
        "The real-data rows above measure transfer from synthetic training only and are not comparable to those.",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
