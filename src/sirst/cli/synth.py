"""`sirst synth`: write a NUDT-SIRST-style synthetic dataset."""

from __future__ import annotations

import argparse

from sirst.cli.options import positive_int


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


def _size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 64 or value % 16:
        raise argparse.ArgumentTypeError(f"--size must be a multiple of 16 and >= 64, got {text}")
    return value


def run(args: argparse.Namespace) -> int:
    from sirst.cli.options import ensure_output_dir
    from sirst.data.synth import check_destination, synthesize

    check_destination(args.out, args.backgrounds, args.overwrite)  # before the folder is made
    ensure_output_dir(args.out)
    out = synthesize(
        args.out, args.num, seed=args.seed, size=args.size, backgrounds=args.backgrounds,
        scr=args.scr, targets=args.targets, workers=args.workers, progress=not args.quiet, hard_p=args.hard_p,
    )
    print(f"wrote {args.num} images to {out} (images/, masks/, 50_50/train.txt, 50_50/test.txt, targets.json)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("synth", help="synthesize a labelled dataset (NUDT-SIRST style)",
                              description="Synthesize infrared small-target images with exact masks.")
    p.add_argument("--out", required=True, help="output dataset folder")
    p.add_argument("--num", type=positive_int, required=True, help="number of images")
    p.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    p.add_argument("--size", type=_size, default=256, help="image side, a multiple of 16 (default 256)")
    p.add_argument("--backgrounds", default=None, help="folder of real images to composite targets onto")
    p.add_argument("--scr", type=_pair(float), default=(2.0, 12.0), help="SCR range MIN,MAX (default 2,12)")
    p.add_argument("--targets", type=_pair(int), default=(1, 3), help="targets per image MIN,MAX (default 1,3)")
    p.add_argument("--workers", type=positive_int, default=1, help="processes (default 1)")
    p.add_argument("--hard-p", type=float, default=0.0, metavar="P",
                   help="fraction of images with hard-negative clutter (HUD, text, edges, lamps, hot pixels, sensor "
                        "noise), half of them target-free (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace the images of a dataset already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar (results, warnings and errors are still printed)")
    p.set_defaults(func=run)
