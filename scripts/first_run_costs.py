"""The numbers behind ``sirst detect --precision auto``'s rule for a first run (sirst.detect.choose.plan_path).

In one process, with a private empty cache: start-up (import torch, load the weights), then for
each auto path its one-off cost on a machine where nothing is cached yet (build: BN folding, or ONNX
export + OpenVINO / ONNX Runtime load; the first call, which compiles; the check against fp32 on two
sample frames, :func:`sirst.detect.choose.verify_path`) and its per-frame time at 256x256, batch 1 (median of
``--repeats`` after the first call). From these: the job size (256x256 frames) from which a path's
one-off cost is repaid by what it saves per frame against the next cheaper path, which is what
:data:`sirst.detect.choose.VERIFY_MIN_WORK` and :data:`sirst.detect.choose.EXPORT_MIN_WORK` stand for.

    python scripts/first_run_costs.py --threads 1 --json docs/perf/first_run_costs.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default="general")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    t0 = time.perf_counter()
    import torch

    from sirst.bench import network_batch, synthetic_images
    from sirst.checkpoint import model_from_checkpoint
    from sirst.detect.backends import PathSpec, build_runner
    from sirst.detect.choose import auto_candidates, verify_path

    torch.set_num_threads(args.threads)
    model = model_from_checkpoint(args.weights, "cpu")
    report: dict = {"threads": args.threads, "weights": args.weights, "startup_s": time.perf_counter() - t0,
                    "paths": {}}
    x = network_batch(synthetic_images(1, 256, 3), 3)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        for spec in auto_candidates():
            row: dict = {}
            start = time.perf_counter()
            runner = build_runner(model, spec, args.threads, cache)
            row["build_s"] = time.perf_counter() - start
            with torch.inference_mode():
                start = time.perf_counter()
                runner(x)
                row["first_call_s"] = time.perf_counter() - start
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    runner(x)
                    times.append(time.perf_counter() - start)
            row["per_frame_s"] = statistics.median(times)
            if spec != PathSpec("torch", "fp32"):
                start = time.perf_counter()
                row["check"] = verify_path(model, spec, args.threads, cache)[0]
                row["check_s"] = time.perf_counter() - start
            report["paths"][str(spec)] = row
            print(spec, {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    paths = report["paths"]
    # One-off cost of a path: everything before its steady per-frame time, less one frame's worth.
    for name, row in paths.items():
        row["one_off_s"] = row["build_s"] + row["first_call_s"] - row["per_frame_s"] + row.get("check_s", 0.0)
    names = list(paths)  # fastest first (auto_candidates' order), torch fp32 last
    for faster, slower in zip(names, names[1:]):
        gain = paths[slower]["per_frame_s"] - paths[faster]["per_frame_s"]
        extra = paths[faster]["one_off_s"] - paths[slower]["one_off_s"]
        paths[faster][f"break_even_frames_vs_{slower}"] = extra / gain if gain > 0 else None
        print(f"{faster} repays its extra one-off {extra:.1f} s against {slower} after "
              f"{extra / gain if gain > 0 else float('inf'):.0f} frames ({gain:.3f} s saved per frame)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
