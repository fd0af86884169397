"""`sirst detect`: find targets in images, folders or videos."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sirst.cli.options import float_range, int_at_least, non_negative_float, non_negative_int, positive_int, probability


def _tile(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 'auto' or an integer >= 0, got {value}")
    return value


def _note(message: str) -> None:
    print(f"sirst detect: {message}", file=sys.stderr)


def build_detector(args: argparse.Namespace):
    """The Detector for the CLI options: :func:`sirst.detect.load_detector`, weighed against the job's
    size (:func:`sirst.detect.job_work` of the inputs; unreadable ones are reported later)."""
    from sirst.detect import job_work, list_inputs, load_detector

    work = job_work(list_inputs(_inputs(args), on_error=lambda message: None))
    return load_detector(
        args.weights, device=args.device, precision=args.precision, backend=args.backend, threads=args.threads,
        batch_size=args.batch_size, compile=args.compile, calibration=args.calibration, remeasure=args.remeasure,
        work=work, threshold=args.threshold, tile=args.tile, overlap=args.overlap, max_pixels=args.max_pixels,
        min_peak=args.min_peak, verify=not args.no_verifier, progress=None if args.quiet else _note)


def _inputs(args: argparse.Namespace) -> list[str]:
    """The inputs to detect on: the paths given, and the bundled samples with ``--samples``."""
    return list(args.inputs) + ([str(Path(__file__).resolve().parents[1] / "samples")] if args.samples else [])


def check_args(args: argparse.Namespace) -> None:
    """Option checks that involve several options, the machine or the file system (before any work)."""
    from sirst.cli.options import check_device, ensure_output_dir

    if args.input_range is not None and args.bit_depth is not None:
        raise ValueError("give --input-range or --bit-depth, not both")
    if args.input_range is not None and not args.input_range[1] > args.input_range[0]:
        raise ValueError(f"--input-range {args.input_range[0]:g} {args.input_range[1]:g}: MIN must be below MAX")
    if args.tile and args.overlap >= args.tile:
        raise ValueError(f"--overlap {args.overlap} must be smaller than --tile {args.tile}")
    from sirst.detect.build import check_options

    check_options(args.weights, args.device, args.backend, args.precision)
    for root in args.calibration or ():
        if not Path(root).is_dir():
            raise ValueError(f"--calibration {root}: no such dataset folder")
    check_device(args.device)
    ensure_output_dir(args.out)


def run(args: argparse.Namespace) -> int:
    from sirst.detect import run_detection, write_summary

    inputs = _inputs(args)
    if not inputs:
        raise ValueError("give images, folders or videos to detect on (or --samples for the bundled ones)")
    check_args(args)
    detector = build_detector(args)
    info = {**getattr(detector, "description", {}), "min_peak_logit": detector.min_peak,
            "verifier_threshold": detector.verifier.threshold if detector.verifier is not None else None}
    if not args.quiet and info:
        _note(f"inference: {info.get('path')}, batch {info.get('batch_size')}, {info.get('threads', '?')} thread(s) "
              f"({info.get('how', 'given')})")
    summary = run_detection(inputs, args.out, detector, write_overlays=not args.no_overlays, progress=not args.quiet,
                            save_scores=args.save_scores, bit_depth=args.bit_depth,
                            value_range=tuple(args.input_range) if args.input_range else None)
    out = Path(args.out)
    write_summary(summary, str(args.weights or "general"), info)
    print(f"{summary.images} image(s) done, {summary.failed} failed, {summary.targets} target(s)")
    print(f"inference:  {info.get('path', '?')}, batch {info.get('batch_size', '?')}, "
          f"{info.get('threads', '?')} thread(s); {summary.seconds['total']:.1f} s")
    print(f"detections: {summary.csv_path}")
    print(f"masks:      {out / 'masks'}")
    if not args.no_overlays:
        print(f"overlays:   {out / 'overlays'}")
    print(f"summary:    {out / 'summary.json'}")
    if args.save_scores:
        print(f"scores:     {out / 'scores'} (sirst eval --pred {out / 'scores'} --masks MASKS)")
    if summary.errors:
        print(f"{summary.failed} input(s) failed, listed in {out / 'errors.txt'}")
    # Failed inputs are a failed run for scripts, even when the other outputs are usable.
    return 1 if summary.errors else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "detect", help="detect targets in images, folders or videos",
        description="Detect small targets; writes detections.csv, masks/ and overlays/ (and scores/ with "
                    "--save-scores). CSV columns: image, target, x, y, area, bbox_x0, bbox_y0, bbox_x1, bbox_y1, "
                    "peak_score, source. x is the column and y the row, in pixels from the centre of the top-left "
                    "pixel; the box is [bbox_x0, bbox_x1) x [bbox_y0, bbox_y1): start inclusive, end exclusive. "
                    "16-bit images are read in their real range (10/12/14-bit data by bit depth, raw sensor counts "
                    "by robust percentiles); --bit-depth or --input-range force it. Exit code 0: every input done; "
                    "1: some inputs failed (listed in errors.txt, the rest done); 2: bad options, nothing done.")
    p.add_argument("inputs", nargs="*", help="image files, folders (recursive: images and videos) or video files")
    p.add_argument("--samples", action="store_true", help="also run on the bundled sample images")
    p.add_argument("--weights", default=None, help="checkpoint .pt (or .onnx with --backend onnxruntime), or a "
                                                   "bundled DNANet: general (default: both datasets + hard negatives), nuaa, nudt")
    p.add_argument("--out", default="detections", help="output folder, new or existing (default: detections)")
    p.add_argument("--threshold", type=probability, default=0.5, help="probability threshold in (0, 1) (default 0.5)")
    p.add_argument("--min-peak", type=non_negative_float, default=None, metavar="LOGIT",
                   help="confidence gate: keep a target only when its peak logit exceeds LOGIT (default: the "
                        "weights' own gate, 4 for general, none for nuaa/nudt; 0 keeps every target the "
                        "network finds, with --no-verifier)")
    p.add_argument("--no-verifier", action="store_true",
                   help="skip the second stage that rejects candidates looking like clutter (bundled with "
                        "general; nuaa/nudt have none)")
    p.add_argument("--bit-depth", type=int_at_least(1, 16), default=None, metavar="N",
                   help="the data's bit depth, e.g. 12: values are divided by 2^N-1 (default: automatic)")
    p.add_argument("--input-range", type=float_range(), nargs=2, default=None, metavar=("MIN", "MAX"),
                   help="raw values mapped to black and white (default: automatic)")
    p.add_argument("--tile", type=_tile, default=None, metavar="auto|N",
                   help="auto (default): frames up to --max-pixels run whole, larger ones in tiles that fit it; "
                        "N: tile frames with a side over N pixels; 0: never tile")
    p.add_argument("--overlap", type=non_negative_int, default=64, help="tile overlap in pixels (default 64)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="most images per forward pass (default: the fastest measured on this machine, else 1; "
                        "8 on a GPU)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads for inference (default: every core this process may use)")
    p.add_argument("--max-pixels", type=int_at_least(16 * 16), default=2**18, metavar="P",
                   help="most input pixels per forward pass; bounds memory (default 262144: under 1.5 GB peak "
                        "on a CPU for any frame size; larger values tile less)")
    p.add_argument("--save-scores", choices=("png", "npy"), default=None,
                   help="also write probability maps to scores/ (16-bit PNG or float32 .npy) for sirst eval --pred")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    p.add_argument("--backend", choices=("auto", "torch", "onnxruntime", "openvino"), default="auto",
                   help="auto (default): the fastest installed one on this machine; onnxruntime and openvino "
                        "need pip install 'sirst[export]' / 'sirst[openvino]'")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "int8", "fp16"), default="auto",
                   help="auto (default): a path that passed the accuracy gate and gives fp32's targets on this "
                        "machine's check images: the fastest measured here (measured once and cached, for jobs of "
                        "3,000+ 256x256 frames or with --remeasure), else by a rule for this CPU class that pays an "
                        "export only for jobs of 32+ frames (see docs/performance.md); "
                        "fp32; bf16 (AMX/AVX512-BF16 CPUs, GPUs); int8 (CPU, ONNX Runtime QDQ; quantized once per "
                        "weights and cached); fp16 (GPU)")
    p.add_argument("--calibration", nargs="+", default=None, metavar="DATASET",
                   help="int8: calibrate on 16 training images of these datasets (standard layout, train split; "
                        "default: ranges shipped for the bundled weights, else the sample and synthesized images)")
    p.add_argument("--remeasure", action="store_true",
                   help="measure the inference paths again instead of using the cached choice")
    p.add_argument("--no-overlays", action="store_true", help="do not write overlays/ (saves a little time)")
    p.add_argument("--compile", action="store_true", help="torch backend: torch.compile (slow first call per size)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (results, warnings and errors are still printed)")
    p.set_defaults(func=run)
