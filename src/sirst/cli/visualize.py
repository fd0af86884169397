"""`sirst visualize`: per-image figures (detections circled, 3D surfaces), size-subset Pd-Fa curves and
a sortable HTML index, for a network and/or classical methods on a dataset split."""

from __future__ import annotations

import argparse

from sirst.cli.options import non_negative_int, positive_int


def run(args: argparse.Namespace) -> int:
    from sirst.evaluation import build_methods, load_samples
    from sirst.viz import visualize

    from sirst.cli.options import check_device, ensure_output_dir

    if args.surfaces is not None and args.surfaces < 0:
        raise ValueError(f"--surfaces must be >= 0, got {args.surfaces}")
    if args.weights:
        check_device(args.device)
    ensure_output_dir(args.out)
    methods = build_methods(args.weights or [], args.methods, args.device)
    samples = load_samples(args.data, args.split, args.subset, args.max_images)
    title = f"{args.data} ({args.subset}, split {args.split}): {', '.join(m.name for m in methods)}"
    res = visualize(samples, methods, args.out, surfaces=args.surfaces, title=title, progress=not args.no_progress)
    for name, m in res.summary.items():
        print(f"{name}: IoU {100 * m['iou']:.2f}  nIoU {100 * m['niou']:.2f}  Pd {100 * m['pd']:.2f}  Fa {1e6 * m['fa']:.2f}e-6")
    print(f"wrote {res.index} ({len(res.records)} images), {res.curves_png}, {res.curves_csv}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "visualize",
        help="per-image figures with detections circled, 3D surfaces, size-subset Pd-Fa curves, HTML index",
        description="Run a network (--weights) and/or classical methods (--methods) on a split. Per image: input, "
        "ground truth and each method's binary output (classical: adaptive threshold, Eq. 13; networks: probability > 0.5) "
        "with detected targets, false alarms and misses circled (paper Fig. 7), and 3D surfaces of the responses "
        "around the targets (Fig. 8); Pd-Fa curves on the point / point+spot / all subsets (Fig. 9, PNG + CSV); "
        "OUT/index.html sorts all images by per-image IoU, misses or false alarms.",
    )
    p.add_argument("--weights", action="append", default=[], metavar="[LABEL=]PATH",
                   help="network checkpoint (repeatable; LABEL names its column, default the file stem)")
    p.add_argument("--methods", default=None, help="comma-separated classical methods, 'all', dnanet:WEIGHTS, or "
                   "preds:DIR (saved predictions DIR/<id>.png|.npy)")
    p.add_argument("--data", required=True, help="dataset root (images/, masks/, split files)")
    p.add_argument("--split", default="auto", help="split folder, e.g. 50_50 (default: auto)")
    p.add_argument("--subset", default="test", choices=("train", "test"), help="which list of the split (default: test)")
    p.add_argument("--max-images", type=positive_int, default=None, help="only the first N images of the list")
    p.add_argument("--surfaces", type=non_negative_int, default=None, help="3D surfaces for the first N images only (default: all; 0: none)")
    p.add_argument("--device", default="cpu", help="device of the networks (default cpu)")
    p.add_argument("--out", required=True, help="output folder (index.html, figures/, surfaces/, pdfa_subsets.*)")
    p.add_argument("--quiet", "--no-progress", dest="no_progress", action="store_true",
                   help="no progress bars (results, warnings and errors are still printed); --no-progress is the same")
    p.set_defaults(func=run)
