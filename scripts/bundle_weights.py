"""Turn a training checkpoint into the bundled default weights (fp16, model + provenance only).

Usage: python scripts/bundle_weights.py RUN_DIR/best.pt (--name nuaa | --out FILE.pt) [--min-peak-logit T]
``--name N`` writes the bundled file ``src/sirst/weights/dnanet_N.pt``. ``--min-peak-logit T`` stores
the per-target confidence gate chosen on the weights' validation data (scripts/calibrate_gate.py);
detection and evaluation apply it. Without it the checkpoint's own gate, if any, is kept. ``--verifier V.pt``
adds the second-stage candidate verifier of scripts/train_verifier.py (with its threshold).
"""

import argparse
from pathlib import Path

import torch

from sirst.checkpoint import half_weights, read_checkpoint, save_checkpoint

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "src" / "sirst" / "weights"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--name", help="bundle as src/sirst/weights/dnanet_NAME.pt")
    where.add_argument("--out", help="write to this file")
    parser.add_argument("--min-peak-logit", type=float, default=None,
                        help="per-target confidence gate to bundle (a logit; 0: none)")
    parser.add_argument("--max-spike", type=float, default=None,
                        help="with a verifier: drop candidates whose brightest pixel stands alone above this "
                             "(sirst.verify.lone_pixel_spike; hot pixels ~1, targets <= 0.64)")
    parser.add_argument("--verifier", default=None,
                        help="candidate verifier to bundle (scripts/train_verifier.py's output; 'none' drops one)")
    args = parser.parse_args()
    if args.name:
        args.out = str(WEIGHTS_DIR / f"dnanet_{args.name}.pt")
    ckpt = read_checkpoint(args.checkpoint)
    if args.min_peak_logit is not None:
        ckpt["min_peak_logit"] = args.min_peak_logit
    if args.verifier == "none":
        ckpt.pop("verifier", None)
    elif args.verifier:
        v = torch.load(args.verifier, map_location="cpu", weights_only=True)
        ckpt["verifier"] = {k: v.get(k) for k in ("state_dict", "width", "threshold", "sure_logit")}
    if args.max_spike is not None:
        if not ckpt.get("verifier"):
            parser.error("--max-spike needs a verifier (--verifier V.pt, or a checkpoint that has one)")
        ckpt["verifier"] = {**ckpt["verifier"], "max_spike": args.max_spike}
    bundle = half_weights(ckpt)
    save_checkpoint(bundle, args.out)
    size = Path(args.out).stat().st_size / 1e6
    print(f"wrote {args.out} ({size:.2f} MB, epoch {bundle['epoch']}, model {bundle['model_name']} "
          f"{bundle['model_kwargs']}, gate {bundle.get('min_peak_logit', 0.0)}, verifier threshold "
          f"{bundle['verifier']['threshold'] if bundle.get('verifier') else None}, sure logit "
          f"{bundle['verifier'].get('sure_logit') if bundle.get('verifier') else None}, max spike "
          f"{bundle['verifier'].get('max_spike') if bundle.get('verifier') else None})")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
