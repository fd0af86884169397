"""Accuracy gate of the fast inference paths on the full test splits (docs/performance.md).

For each (weights, dataset) pair: torch fp32 and every fast path on the same test images, with the
same in-memory weights (loaded once at start, so a weights file replaced meanwhile does not mix in);
IoU, Pd, Fa (exact protocol) and the gate: IoU and Pd within 0.5 points, Fa within 10 % of fp32.

    python scripts/precision_gate.py --data ../shared/data --json runs/precision_gate.json \
        --paths openvino-bf16,openvino-int8 --threads 1

``--write-ranges`` first computes the INT8 activation ranges of each weights on 16 training images
(8 of NUAA-SIRST's train split, 8 of NUDT-SIRST's) and writes them to ``src/sirst/calibration/``,
where :func:`sirst.detect.backends.int8_onnx` finds them for those weights.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from sirst.bench.gate import format_gate, gate_split
from sirst.checkpoint import model_from_checkpoint
from sirst.detect.backends import (
    PathSpec,
    QuantConfig,
    build_runner,
    bundled_ranges_dir,
    dataset_calibration_images,
    int8_onnx,
    weights_digest,
)

PAIRS = ("general:NUAA-SIRST", "general:NUDT-SIRST", "nuaa:NUAA-SIRST", "nudt:NUDT-SIRST")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="folder holding NUAA-SIRST/ and NUDT-SIRST/")
    p.add_argument("--pairs", default=",".join(PAIRS), help="weights:dataset pairs (default: %(default)s)")
    p.add_argument("--paths", default="openvino-bf16,openvino-int8,torch-bf16,onnxruntime-int8",
                   help="fast paths to gate against torch-fp32 (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="inference threads (default: torch's)")
    p.add_argument("--limit", type=int, default=None, help="first N test images only")
    p.add_argument("--write-ranges", action="store_true", help="write INT8 ranges from training images first")
    p.add_argument("--json", required=True, help="results file (rewritten after every pair)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = Path(args.data)
    pairs = [tuple(x.split(":")) for x in args.pairs.split(",")]
    specs = [PathSpec.parse(s) for s in args.paths.split(",") if s]
    models = {w: model_from_checkpoint(w, "cpu").float().eval() for w in dict.fromkeys(w for w, _ in pairs)}
    cache = Path(tempfile.mkdtemp(prefix="sirst-gate-"))
    # INT8 ranges from training images of both datasets (as `sirst detect --calibration` does).
    images = dataset_calibration_images([data / "NUAA-SIRST", data / "NUDT-SIRST"], QuantConfig().calibration_images) \
        if args.write_ranges or any(s.precision == "int8" for s in specs) else None
    if args.write_ranges:
        for name, model in models.items():
            out = bundled_ranges_dir() / f"{weights_digest(model)}-{QuantConfig().key()}.json"
            int8_onnx(model, cache, calibration=images, ranges_out=out, progress=print)
            print(f"{name}: ranges written to {out}", flush=True)
    report = {"command": " ".join(["python", *sys.argv]), "threads": torch.get_num_threads(), "results": []}
    for weights, dataset in pairs:
        model = models[weights]
        runners = {"fp32": build_runner(model, PathSpec("torch", "fp32"), args.threads, cache)}
        for spec in specs:
            runners[str(spec)] = build_runner(model, spec, args.threads, cache, progress=print,
                                              calibration=images if spec.precision == "int8" else None)
        start = time.time()
        result = gate_split(model, data / dataset, runners, limit=args.limit)
        result.update(weights=weights, weights_digest=weights_digest(model), minutes=(time.time() - start) / 60)
        report["results"].append(result)
        print(format_gate(result, f"{weights} on {dataset}"), flush=True)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
