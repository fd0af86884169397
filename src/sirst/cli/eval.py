"""`sirst eval`: score saved prediction maps against ground-truth masks (:mod:`sirst.evaluation.saved`),
or a network on a dataset split (:func:`sirst.evaluation.evaluate_checkpoint`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sirst.cli.options import float_range, positive_int


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from sirst.cli.options import check_device, check_output_file
    from sirst.evaluation import evaluate_checkpoint, evaluate_dirs
    from sirst.evaluation.report import format_table, write_json, write_roc_csv
    from sirst.weights import DEFAULT_WEIGHTS

    # Output files are checked before the (possibly long) evaluation, not when writing them.
    for flag, out in (("--json", args.json), ("--roc-csv", args.roc_csv)):
        if out is not None:
            check_output_file(out, flag)
    if args.data is not None:
        if args.pred is not None or args.masks is not None:
            raise ValueError("give either --data (evaluate a network) or --pred and --masks (saved maps), not both")
        if args.roc_csv is not None:
            raise ValueError("--roc-csv needs saved score maps (--pred/--masks); write them with "
                             "`sirst detect --save-scores png`")
        check_device(args.device)
        if args.threshold != 0.5:
            raise ValueError("--threshold applies to saved score maps; networks are scored at probability 0.5")
        result = evaluate_checkpoint(args.data, args.weights, args.split, args.subset, args.device, args.protocol,
                                     progress=not args.quiet, min_peak=args.min_peak, verify=not args.no_verifier)
        print(f"protocol: {args.protocol}, data: {args.data} ({args.subset} split), "
              f"weights: {args.weights or f'bundled {DEFAULT_WEIGHTS}'}")
        gate = result["min_peak_logit"]
        print(f"targets kept: {'peak logit > %g' % gate if gate > 0 else 'all (no gate)'}, "
              f"{'verifier threshold %g' % result['verifier_threshold'] if 'verifier_threshold' in result else 'no verifier'}")
        print(format_table(result))
        if args.json:
            write_json(args.json, {"protocol": args.protocol, "data": str(args.data), "split": args.split,
                                   "subset": args.subset, "weights": str(args.weights or f"bundled {DEFAULT_WEIGHTS}"),
                                   **{k: float(v) for k, v in result.items()}})
        return 0
    if args.min_peak is not None or args.no_verifier:
        raise ValueError("--min-peak and --no-verifier apply to a network (--data); saved maps are scored as they are")
    if args.pred is None or args.masks is None:
        raise ValueError("give --pred and --masks (saved maps), or --data [--weights] to evaluate a network")
    roc = np.linspace(0.0, 1.0, args.roc_steps + 1) if args.roc_csv else None
    result, curves = evaluate_dirs(
        args.pred,
        args.masks,
        threshold=args.threshold,
        protocol=args.protocol,
        roc_thresholds=roc,
        workers=args.workers,
        batch_size=args.batch_size,
        progress=not args.quiet,
    )
    print(f"protocol: {args.protocol}, threshold: {args.threshold}")
    print(format_table(result))
    if args.json:
        doc = {
            "protocol": args.protocol,
            "threshold": args.threshold,
            "pred_dir": str(args.pred),
            "masks_dir": str(args.masks),
            **{k: float(v) for k, v in result.items()},
        }
        for k in ("num_images", "num_targets", "num_pixels"):
            doc[k] = int(result[k])
        if curves is not None:
            doc["curves"] = curves
        write_json(args.json, doc)
    if args.roc_csv and curves is not None:
        write_roc_csv(args.roc_csv, curves)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="score saved predictions against masks (IoU, nIoU, Pd, Fa, ROC)",
        description=(
            "Evaluate prediction maps (PNG 8/16-bit scaled to [0,1], or .npy scores) against masks of "
            "the same names (masks may be named <id>_pixels0.png). Pd/Fa: targets are 8-connected "
            "components matched by centroid distance < 3 px; Fa is false-alarm pixels per image pixel."
        ),
    )
    p.add_argument("--pred", type=Path, default=None, help="folder of predictions <id>.png or <id>.npy")
    p.add_argument("--masks", type=Path, default=None, help="folder of masks <id>.png (or <id>_pixels0.png, .npy)")
    p.add_argument("--data", type=Path, default=None,
                   help="instead of --pred/--masks: evaluate a network on this dataset (standard layout)")
    p.add_argument("--weights", default=None, help="with --data: checkpoint, or a bundled name: general (default), nuaa, nudt")
    p.add_argument("--split", default="auto", help="with --data: split folder (default auto: 50_50 if present)")
    p.add_argument("--subset", choices=["train", "test"], default="test", help="with --data: subset (default test)")
    p.add_argument("--device", default="cpu", help="with --data: cpu or cuda (default cpu)")
    p.add_argument("--min-peak", type=float_range(0.0), default=None, metavar="LOGIT",
                   help="with --data: confidence gate (default: the weights' own, 4 for general; 0: none)")
    p.add_argument("--no-verifier", action="store_true",
                   help="with --data: leave out the weights' candidate verifier (general has one)")
    p.add_argument("--threshold", type=float_range(), default=0.5, help="score > threshold is a target pixel (default 0.5)")
    p.add_argument(
        "--protocol",
        choices=["exact", "reference"],
        default="exact",
        help="exact: native sizes, one-to-one matching (default); reference: reproduce the public "
        "DNANet code (resize to 256x256, greedy matching, its false-alarm area quirk)",
    )
    p.add_argument("--json", type=Path, default=None, help="write the metrics to this JSON file")
    p.add_argument("--roc-csv", type=Path, default=None, help="write ROC and Pd-Fa curves to this CSV file")
    p.add_argument(
        "--roc-steps",
        type=positive_int,
        default=20,
        help="curve thresholds: 0, 1/K, ..., 1 (scores expected in [0, 1]; default K=20)",
    )
    p.add_argument("--workers", type=positive_int, default=4, help="file-reading threads (default 4)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per metric update (default 32)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (results, warnings and errors are still printed)")
    p.set_defaults(func=run)
