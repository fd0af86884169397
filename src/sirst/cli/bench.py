"""`sirst bench`: inference, training and metric speed against the reference baselines."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sirst.cli.options import non_negative_int, positive_float, positive_int


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}")
    return values


def _size(text: str) -> int:
    value = positive_int(text)
    if value % 16:
        raise argparse.ArgumentTypeError(f"must be a positive multiple of 16, got {value}")
    return value


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def run(args: argparse.Namespace) -> int:
    from sirst.bench.run import BenchConfig, format_report, run_bench
    from sirst.cli.options import check_device, check_output_file

    check_device(args.device)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        check_output_file(args.json, "--json")

    cfg = BenchConfig(
        device=args.device, size=args.size, batches=args.batch, model=args.model, weights=args.weights,
        threads=args.threads, warmup=args.warmup, repeats=args.repeats, variants=args.variants,
        compile=args.compile, train_batch=args.train_batch, train_repeats=args.train_repeats,
        skip_train=args.skip_train, eval_maps=args.eval_maps, eval_threads=args.eval_threads,
        fast_runs=args.fast_runs, fast_steps=args.fast_steps,
        skip_eval=args.skip_eval,
        peak_gflops=args.peak_gflops, peak_gflops_half=args.peak_gflops_half, progress=not args.quiet,
    )
    report = run_bench(cfg)
    print(format_report(report))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"written to {path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from sirst.bench.run import INFERENCE_VARIANTS

    p = subparsers.add_parser(
        "bench", help="measure inference, training and metric speed (vs the reference code)",
        description=(
            "Measure inference (ms/img, img/s), training throughput and metric evaluation speed, with "
            "warm-up and medians of interleaved repeats; print FLOPs per image and the fraction of the device's "
            "peak reached; compare with an eager re-implementation of the public DNANet code (same weights, "
            "detections checked) and with the public code's per-image metric loop."
        ),
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default cpu)")
    p.add_argument("--size", type=_size, default=256, help="square input size, multiple of 16 (default 256)")
    p.add_argument("--batch", type=_ints, default=(1, 8, 16), metavar="B1,B2",
                   help="inference batch sizes (default 1,8,16); the report also gives each variant at its fastest")
    p.add_argument("--model", default="dnanet", help="registered model (default dnanet; the reference baseline "
                                                     "exists for the paper's DNANet)")
    p.add_argument("--weights", default=None, help="checkpoint .pt (default: bundled weights, else random init)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch/ONNX Runtime CPU threads (default: torch's)")
    p.add_argument("--warmup", type=non_negative_int, default=1, help="untimed calls per variant before timing (default 1)")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed rounds; the median is reported (default 5)")
    p.add_argument("--variants", type=_names, default=None, metavar="V1,V2",
                   help=f"inference variants to time (default depends on the device): {', '.join(INFERENCE_VARIANTS)}")
    p.add_argument("--compile", action="store_true", help="also time torch.compile variants (slow to compile)")
    p.add_argument("--train-batch", type=positive_int, default=16, help="training batch (default 16, the paper's)")
    p.add_argument("--train-repeats", type=positive_int, default=3, help="timed training steps per variant (default 3)")
    p.add_argument("--skip-train", action="store_true", help="no training benchmark")
    p.add_argument("--fast-runs", type=int, default=None, metavar="N",
                   help="training fast-path runs timed side by side (sirst window; default 3 on CUDA, none on CPU)")
    p.add_argument("--fast-steps", type=int, default=20, help="timed steps per fast-path run (default 20)")
    p.add_argument("--eval-maps", type=positive_int, default=500, help="score maps for the metric benchmark (default 500)")
    p.add_argument("--eval-threads", type=positive_int, default=None,
                   help="torch threads of the metric benchmark (default: every core; the public loop it is "
                        "compared with cannot use more than one)")
    p.add_argument("--skip-eval", action="store_true", help="no metric benchmark")
    p.add_argument("--peak-gflops", type=positive_float, default=None, metavar="G",
                   help="the device's fp32 peak in GFLOP/s (default: estimated from its specifications)")
    p.add_argument("--peak-gflops-half", type=positive_float, default=None, metavar="G",
                   help="the device's bf16/fp16 peak in GFLOP/s (default: estimated)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write every figure to FILE as JSON")
    p.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true",
                   help="no progress bars (results, warnings and errors are still printed); --no-progress is the same")
    p.set_defaults(func=run)
