"""`sirst eval-method`, `sirst compare` and `sirst classical-detect`: the classical baselines, scored like the
networks or run on images, image sequences and videos."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset root (images/, masks/, split files)")
    p.add_argument("--split", default="auto", help="split folder, e.g. 50_50 (default: auto)")
    p.add_argument("--subset", default="test", choices=("train", "test"), help="which list of the split (default: test)")
    from sirst.cli.options import positive_int

    p.add_argument("--max-images", type=positive_int, default=None, help="only the first N images of the list")
    p.add_argument("--jobs", type=positive_int, default=1, help="processes for the classical methods (default 1)")
    p.add_argument("--quiet", "--no-progress", dest="no_progress", action="store_true",
                   help="no progress bars (results, warnings and errors are still printed); --no-progress is the same")


def run_eval_method(args: argparse.Namespace) -> int:
    from sirst.evaluation import evaluate_method, load_samples, parse_method, parse_methods, write_curve, write_results
    from sirst.evaluation.report import safe_name

    from sirst.cli.options import ensure_output_dir

    (name, *more) = parse_methods(args.method)
    if more or name.startswith("dnanet:"):
        raise ValueError(f"--method {args.method}: give one classical method or preds:DIR (networks: sirst compare "
                         "--methods dnanet:WEIGHTS, or sirst eval --data)")
    method = parse_method(name, threshold=args.threshold)
    if args.out:
        ensure_output_dir(args.out)
    samples = load_samples(args.data, args.split, args.subset, args.max_images)
    result = evaluate_method(method, samples, args.jobs if method.kind == "classical" else 1, not args.no_progress)
    row = result.table_row()
    print(
        f"{result.method} on {result.num_images} images (threshold {result.threshold}): "
        f"IoU {row['iou_x100']:.2f}  nIoU {row['niou_x100']:.2f}  Pd {row['pd_x100']:.2f}  "
        f"Fa {row['fa_x1e6']:.2f}e-6  {row['seconds_per_image']:.4f} s/image"
    )
    if args.out:
        out = Path(args.out)
        csv_path, png_path = write_curve(result, out)
        md, js = write_results([result], out, stem=f"{safe_name(result.method)}_metrics")
        print(f"wrote {js}, {md}, {csv_path}, {png_path}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from sirst.evaluation import evaluate_method, load_samples, markdown_table, parse_method, parse_methods, write_curve, write_results

    from sirst.cli.options import check_device, ensure_output_dir

    methods = parse_methods(args.methods)
    if any(m.startswith("dnanet:") for m in methods):
        check_device(args.device)
    if args.out:
        ensure_output_dir(args.out)
    samples = load_samples(args.data, args.split, args.subset, args.max_images)
    results = []
    start = time.perf_counter()
    for name in methods:
        method = parse_method(name, args.device)
        jobs = args.jobs if method.kind == "classical" else 1
        res = evaluate_method(method, samples, jobs, not args.no_progress)
        results.append(res)
        if args.out:
            write_curve(res, Path(args.out))
    print(f"{len(samples)} images of {args.data} ({args.subset}); networks and saved predictions at probability 0.5, "
          "classical methods at the adaptive threshold (Eq. 13)")
    print(markdown_table(results))
    print(f"total {time.perf_counter() - start:.1f} s")
    if args.out:
        from sirst.viz.figures import write_pdfa_subsets

        md, js = write_results(results, Path(args.out))
        csv_path, png_path = write_pdfa_subsets({r.method: r.curve for r in results}, Path(args.out))
        print(f"wrote {md}, {js} and the size-subset Pd-Fa curves {png_path}, {csv_path}")
    return 0


def run_classical_detect(args: argparse.Namespace) -> int:
    from sirst.classical.detect import detect_sequences

    res = detect_sequences(args.method, args.inputs, args.out, args.threshold, args.frames_per_tensor)
    print(f"{res.frames} frame(s), {res.targets} target(s): {res.csv_path}, masks in {res.masks_dir}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from sirst.classical import UNSUPPORTED, list_methods

    names = ", ".join(list_methods())
    p = subparsers.add_parser(
        "eval-method",
        help="score a classical baseline, or saved predictions, on a dataset split: IoU/nIoU/Pd/Fa",
        description=f"Run a classical baseline ({names}) on a split, binarise each response map "
        "with the adaptive threshold of the DNANet paper (Eq. 13) and report IoU/nIoU/Pd/Fa plus a Pd-Fa curve. "
        "--method preds:DIR scores saved predictions instead: DIR/<id>.png or .npy for each image of the split "
        "(sirst detect's masks/ or scores/, or another tool's), at probability 0.5 or --threshold. "
        + (f"Unsupported: {', '.join(UNSUPPORTED)}." if UNSUPPORTED else ""),
    )
    p.add_argument("--method", required=True, help=f"one of: {names}; or preds:DIR (saved predictions)")
    _common(p)
    p.add_argument("--threshold", default="adaptive", help="'adaptive' (Eq. 13, per image) or a number in [0, 1) on the response / its "
                   "maximum; saved predictions: a number in [0, 1) on the saved map ('adaptive': 0.5)")
    p.add_argument("--out", default=None, help="folder for metrics JSON/Markdown and the Pd-Fa curve (CSV + PNG)")
    p.set_defaults(func=run_eval_method)

    c = subparsers.add_parser(
        "compare",
        help="table of IoU/nIoU/Pd/Fa and seconds per image for several methods (paper Table II)",
        description="One row per method with the columns of the DNANet paper's Table II. Classical methods are "
        "thresholded adaptively (Eq. 13), networks at probability 0.5.",
    )
    c.add_argument("--methods", required=True, help=f"comma-separated: {names}, 'all', dnanet:WEIGHTS, or preds:DIR "
                   "(saved predictions DIR/<id>.png|.npy, at probability 0.5)")
    _common(c)
    c.add_argument("--device", default="cpu", help="device of the networks (default cpu)")
    c.add_argument("--out", default=None, help="folder for compare.md, compare.json and the Pd-Fa curves (per method, "
                   "and pdfa_subsets.png/.csv: all methods on the point / point+spot / all subsets)")
    c.set_defaults(func=run_compare)

    d = subparsers.add_parser(
        "classical-detect",
        help="detect targets with a classical method in images, image sequences (folders) or videos",
        description="Run a classical method on each input and write detections.csv and masks/. A video, or a "
        "folder of images read in name order, is one sequence: with --method mslstipt its frames are decomposed "
        "together (the multi-frame MSLSTIPT, groups of --frames-per-tensor consecutive frames); single images, "
        "and the other methods, are processed frame by frame. Each response map is binarised with the adaptive "
        "threshold (Eq. 13) or --threshold on the map divided by its maximum.",
    )
    d.add_argument("inputs", nargs="+", help="image files, folders of frames, or videos")
    d.add_argument("--method", default="mslstipt", help=f"one of: {names} (default mslstipt)")
    d.add_argument("--frames-per-tensor", type=int, default=6, help="mslstipt: consecutive frames per tensor (default 6)")
    d.add_argument("--threshold", default="adaptive", help="'adaptive' (Eq. 13) or a number in [0, 1)")
    d.add_argument("--out", default="detections", help="output folder (default: detections)")
    d.set_defaults(func=run_classical_detect)
