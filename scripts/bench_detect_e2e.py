"""`sirst detect` end to end, as a user runs it, against the public code's best forward (issue 21).

In one run, on this machine:

1. the reference DNANet (eager fp32, ``sirst.bench.reference_dnanet``) forward on 256x256 frames at
   batch 1 and 8 (median of ``--repeats``), its best per-image time ``t_ref``;
2. ``sirst synth`` makes 64 frames of 256x256; ``sirst detect`` on that folder with the defaults, as a
   subprocess, wall time including start-up: first with an empty cache (exports the model and
   measures the paths once), then again (the cached choice, what every later run does); the target
   is ``64 * t_ref / wall >= 3``;
3. one 1920x1080 frame, one 3840x2160 frame and a 240-frame video, end to end (warm cache).

    python scripts/bench_detect_e2e.py --work /tmp/e2e --json docs/perf/e2e.json

Writes a JSON report and prints a table. ``--threads`` pins both sides to the same thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def reference_best(threads: int, repeats: int) -> dict:
    import torch

    from sirst.bench import network_batch, synthetic_images
    from sirst.bench.reference_dnanet import reference_from
    from sirst.checkpoint import model_from_checkpoint

    torch.set_num_threads(threads)
    ref = reference_from(model_from_checkpoint("general", "cpu").float().eval())
    frames = network_batch(synthetic_images(8, 256, 11), 3)
    out = {}
    for b in (1, 8):
        x = frames[:b].contiguous()
        with torch.no_grad():
            ref(x)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                ref(x)
                times.append(time.perf_counter() - start)
        out[str(b)] = statistics.median(times) / b
    best = min(out, key=out.get)
    return {"per_image_s": out, "best_batch": int(best), "best_s": out[best]}


def run(cmd: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall, proc.stdout + proc.stderr


def mosaic(h: int, w: int, seed: int) -> np.ndarray:
    from sirst.bench import synthetic_images

    tiles = synthetic_images(((h + 255) // 256) * ((w + 255) // 256), 256, seed)
    rows = [np.concatenate(tiles[r * ((w + 255) // 256):(r + 1) * ((w + 255) // 256)], axis=1)
            for r in range((h + 255) // 256)]
    return np.concatenate(rows, axis=0)[:h, :w]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", required=True, help="scratch folder (inputs, outputs, a private cache)")
    p.add_argument("--json", default=None, help="write the report here")
    p.add_argument("--threads", type=int, default=None, help="threads for both sides (default: every core)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--video-size", default="640x512", help="WxH of the 240-frame video (default %(default)s)")
    p.add_argument("--extra", default="", help="extra sirst detect options, e.g. '--precision fp32'")
    p.add_argument("--folder-only", action="store_true",
                   help="only the reference and the 64-frame folder (first and second run), not the large frames "
                        "and the video")
    args = p.parse_args()
    from PIL import Image

    threads = args.threads or len(os.sched_getaffinity(0))
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = dict(os.environ, SIRST_CACHE_DIR=str(work / "cache"))
    sirst = [sys.executable, "-m", "sirst"]
    detect = [*sirst, "detect", "--quiet", *(["--threads", str(args.threads)] if args.threads else []), *args.extra.split()]
    report: dict = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "threads": threads}
    print("reference forward ...", flush=True)
    report["reference"] = ref = reference_best(threads, args.repeats)
    run([*sirst, "synth", "--out", str(work / "synth"), "--num", "64", "--size", "256", "--quiet"], env)
    frames = work / "synth" / "images"
    for tag in ("first_run", "second_run"):
        wall, log = run([*detect, str(frames), "--out", str(work / f"out_{tag}")], env)
        summary = json.loads((work / f"out_{tag}" / "summary.json").read_text())
        report[f"folder64_{tag}"] = {"wall_s": wall, "summary": summary,
                                     "ratio_vs_64_reference_forwards": 64 * ref["best_s"] / wall}
        print(f"64 frames, {tag}: {wall:.2f} s, {64 * ref['best_s'] / wall:.2f}x 64 reference forwards "
              f"({summary['inference']['path']}, batch {summary['inference']['batch_size']})", flush=True)
    if args.folder_only:
        return write_report(report, args.json)
    large = {"1080p": (1080, 1920), "4k": (2160, 3840)}
    for name, (h, w) in large.items():
        folder = work / f"in_{name}"
        folder.mkdir()
        Image.fromarray((mosaic(h, w, 5) * 255).astype(np.uint8)).save(folder / f"{name}.png")
        wall, _ = run([*detect, str(folder), "--out", str(work / f"out_{name}")], env)
        summary = json.loads((work / f"out_{name}" / "summary.json").read_text())
        equiv = ref["best_s"] * h * w / 256**2  # the reference's per-pixel cost at 256x256
        report[name] = {"wall_s": wall, "summary": summary, "reference_forward_equivalent_s": equiv}
        print(f"{name} frame: {wall:.2f} s end to end (reference forward at its 256x256 per-pixel rate: "
              f"{equiv:.1f} s)", flush=True)
    import cv2

    vw, vh = (int(v) for v in args.video_size.split("x"))
    video = work / "in_video" / "clip.mp4"
    video.parent.mkdir()
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 25, (vw, vh))
    base = mosaic(vh, vw, 9)
    rng = np.random.default_rng(0)
    for k in range(240):
        frame = np.roll(base, k, axis=1) + rng.normal(0, 0.01, base.shape)
        g = (np.clip(frame, 0, 1) * 255).astype(np.uint8)
        writer.write(cv2.cvtColor(g, cv2.COLOR_GRAY2BGR))
    writer.release()
    wall, _ = run([*detect, str(video), "--out", str(work / "out_video")], env)
    summary = json.loads((work / "out_video" / "summary.json").read_text())
    equiv = 240 * ref["best_s"] * vw * vh / 256**2
    report["video240"] = {"wall_s": wall, "size": args.video_size, "summary": summary,
                          "reference_forward_equivalent_s": equiv, "fps": 240 / wall}
    print(f"240-frame {args.video_size} video: {wall:.1f} s end to end, {240 / wall:.1f} frames/s "
          f"(reference forwards alone: {equiv:.1f} s)", flush=True)
    return write_report(report, args.json)


def write_report(report: dict, path: str | None) -> int:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
