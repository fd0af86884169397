"""`sirst export`: a checkpoint to ONNX."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from sirst.checkpoint import model_from_checkpoint, read_checkpoint
    from sirst.export import export_onnx

    ckpt = read_checkpoint(args.weights)
    model = model_from_checkpoint(ckpt)
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
    p.add_argument("--opset", type=int, default=17)
    p.set_defaults(func=run)
