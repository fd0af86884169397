"""`sirst synth`: write a NUDT-SIRST-style synthetic dataset."""

from __future__ import annotations

import argparse


def _pair(kind: type):
    def parse(text: str):
        parts = text.split(",")
        if len(parts) != 2:
            raise argparse.ArgumentTypeError(f"expected MIN,MAX, got {text!r}")
        try:
            return kind(parts[0]), kind(parts[1])
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"expected MIN,MAX numbers, got {text!r}") from exc

    return parse


def run(args: argparse.Namespace) -> int:
    from sirst.data.synth import synthesize

    out = synthesize(
        args.out, args.num, seed=args.seed, size=args.size, backgrounds=args.backgrounds,
        scr=args.scr, targets=args.targets, workers=args.workers,
    )
    print(f"wrote {args.num} images to {out} (images/, masks/, 50_50/train.txt, 50_50/test.txt, targets.json)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("synth", help="synthesize a labelled dataset (NUDT-SIRST style)",
                              description="Synthesize infrared small-target images with exact masks.")
    p.add_argument("--out", required=True, help="output dataset folder")
    p.add_argument("--num", type=int, required=True, help="number of images")
    p.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    p.add_argument("--size", type=int, default=256, help="image side, a multiple of 16 (default 256)")
    p.add_argument("--backgrounds", default=None, help="folder of real images to composite targets onto")
    p.add_argument("--scr", type=_pair(float), default=(2.0, 12.0), help="SCR range MIN,MAX (default 2,12)")
    p.add_argument("--targets", type=_pair(int), default=(1, 3), help="targets per image MIN,MAX (default 1,3)")
    p.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    p.set_defaults(func=run)
