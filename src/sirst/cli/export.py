"""`sirst export`: a checkpoint to ONNX."""

from __future__ import annotations

import argparse
from pathlib import Path

from sirst.cli.options import int_at_least


def run(args: argparse.Namespace) -> int:
    from sirst.checkpoint import model_from_checkpoint, read_checkpoint
    from sirst.detect.export import export_onnx

    if Path(args.out).is_dir():
        raise ValueError(f"--out {args.out}: is a folder; give the .onnx file to write")
    ckpt = read_checkpoint(args.weights)
    model = model_from_checkpoint(ckpt, source=str(args.weights))
    in_channels = int(ckpt.get("model_kwargs", {}).get("in_channels", 3))
    path = export_onnx(model, args.out, in_channels=in_channels, dynamic=args.dynamic, opset=args.opset)
    print(f"wrote {path} ({'dynamic' if args.dynamic else 'static'} batch/height/width, opset {args.opset})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export a checkpoint to ONNX")
    p.add_argument("--weights", required=True, help="sirst checkpoint (.pt)")
    p.add_argument("--out", required=True, help="output .onnx file")
    p.add_argument("--dynamic", action=argparse.BooleanOptionalAction, default=True,
                   help="dynamic batch/height/width axes (default on)")
    p.add_argument("--opset", type=int_at_least(7), default=17, help="ONNX opset (default 17)")
    p.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true",
                   help="accepted for uniformity: export shows no progress bar")
    p.set_defaults(func=run)
