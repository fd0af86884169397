"""`sirst detect`: find targets in images, folders or videos."""

from __future__ import annotations

import argparse
from pathlib import Path


def build_detector(args: argparse.Namespace):
    """The Detector for the CLI options (bundled weights, a checkpoint, or an ONNX file)."""
    from sirst.inference import Detector
    from sirst.weights import resolve_weights

    if args.backend == "onnxruntime":
        from sirst.export import OnnxRunner

        if not args.weights or not str(args.weights).endswith(".onnx"):
            raise ValueError("--backend onnxruntime needs --weights FILE.onnx (make one with `sirst export`)")
        model = OnnxRunner(args.weights)
    else:
        from sirst.checkpoint import model_from_checkpoint

        model = model_from_checkpoint(resolve_weights(args.weights), args.device)  # a path or a bundled name
    return Detector(model, device=args.device if args.backend == "torch" else "cpu", threshold=args.threshold,
                    tile=args.tile, overlap=args.overlap, batch_size=args.batch_size, precision=args.precision,
                    compile=args.compile)


def run(args: argparse.Namespace) -> int:
    from sirst.inference import run_detection

    inputs = list(args.inputs)
    if args.samples:
        inputs.append(str(Path(__file__).resolve().parents[1] / "samples"))
    if not inputs:
        raise ValueError("give images, folders or videos to detect on (or --samples for the bundled ones)")
    detector = build_detector(args)
    summary = run_detection(inputs, args.out, detector, progress=not args.quiet)
    out = Path(args.out)
    print(f"{summary.images} image(s), {summary.targets} target(s)")
    print(f"detections: {summary.csv_path}")
    print(f"masks:      {out / 'masks'}")
    print(f"overlays:   {out / 'overlays'}")
    if summary.errors:
        print(f"{len(summary.errors)} input(s) failed, listed in {out / 'errors.txt'}")
    # Partial success still produces usable outputs; only a run where nothing worked fails.
    return 0 if summary.images else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("detect", help="detect targets in images, folders or videos",
                              description="Detect small targets; writes detections.csv, masks/ and overlays/.")
    p.add_argument("inputs", nargs="*", help="image files, folders (recursive) or video files")
    p.add_argument("--samples", action="store_true", help="also run on the bundled sample images")
    p.add_argument("--weights", default=None, help="checkpoint .pt or .onnx, or a bundled DNANet: nuaa (default, real infrared), nudt")
    p.add_argument("--out", default="detections", help="output folder (default: detections)")
    p.add_argument("--threshold", type=float, default=0.5, help="probability threshold (default 0.5)")
    p.add_argument("--tile", type=int, default=512, help="tile images larger than this (0: never; default 512)")
    p.add_argument("--overlap", type=int, default=64, help="tile overlap in pixels (default 64)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="torch backend: autocast precision (default fp32; bf16/fp16 are faster on CPUs with "
                        "AMX/AVX512-BF16 and on GPUs, scores move by ~1e-2)")
    p.add_argument("--compile", action="store_true", help="torch backend: torch.compile (slow first call per size)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
