"""Synthesize a dataset, run `sirst compare` over every classical baseline (and DNANet if weights
are available) on its test split, write docs/baselines.md and the table of the README's
"Baselines" section (between its baselines-table markers).

Usage: python scripts/run_comparison.py [--num 200] [--size 128] [--jobs 2] [--weights W.pt]
                                         [--work /tmp/sirst_comparison] [--doc docs/baselines.md]

The dataset is synthesized with a fixed seed (same bytes every time), so adding a DNANet row later
is one re-run: ``python scripts/run_comparison.py --weights runs/synth/best.pt``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num", type=int, default=200, help="images to synthesize (half go to the test split)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--weights", default=None, help="DNANet checkpoint (default: the bundled weights if present)")
    ap.add_argument("--work", default="/tmp/sirst_comparison")
    ap.add_argument("--doc", default=str(ROOT / "docs" / "baselines.md"))
    ap.add_argument("--readme", default=str(ROOT / "README.md"), help="README whose baselines-table markers get the table ('' to skip)")
    args = ap.parse_args()

    from sirst.classical import UNSUPPORTED, list_methods
    from sirst.data.synth import synthesize

    work = Path(args.work)
    data = work / "data"
    if not (data / "50_50" / "test.txt").is_file():
        synthesize(data, args.num, seed=args.seed, size=args.size)
    weights = args.weights
    if weights is None:
        from sirst.weights import default_weights_path

        bundled = default_weights_path()
        weights = str(bundled) if bundled.is_file() else None
    methods = list_methods() + ([f"dnanet:{weights}"] if weights else [])
    out = work / "results"
    cmd = [sys.executable, "-m", "sirst", "compare", "--data", str(data), "--methods", ",".join(methods),
           "--jobs", str(args.jobs), "--out", str(out), "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    print("running:", shlex.join(cmd), flush=True)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        print(proc.stdout)
        return proc.returncode
    print(proc.stdout)
    table = (out / "compare.md").read_text()
    n_test = len([ln for ln in (data / "50_50" / "test.txt").read_text().splitlines() if ln.strip()])
    shown = shlex.join(["sirst", "compare", "--data", "DATA", "--methods", ",".join(methods), "--jobs", str(args.jobs), "--out", "OUT"])
    dnanet_note = (
        f"DNANet row: weights `{Path(weights).name}`, thresholded at probability 0.5; the bundled weights were "
        "trained on a real dataset and never saw this synthesized data, so their row measures transfer."
        if weights else "No DNANet weights were available when this was run, so the table has no DNANet row."
    )
    unsupported = ("\nUnsupported: " + "; ".join(f"**{k}**: {v}" for k, v in UNSUPPORTED.items()) + ".\n") if UNSUPPORTED else ""
    doc = f"""# Classical baselines

The traditional methods of the DNANet paper's Table II are in `sirst.classical`
(`sirst.classical.list_methods()`); each maps an image `(H, W)` to a target-likelihood map
(for the low-rank models, the target component of the decomposition). They are evaluated by the
same metric code as the networks (`sirst.metrics`): every response map is binarised per image with
the paper's adaptive threshold (Eq. 13, `max(0.7 max G, 0.5 std G + mean G)`), networks at
probability 0.5. The Pd-Fa curves sweep a threshold on the response divided by its maximum
(networks: 37 probabilities evenly spaced in logit, 1.2e-4 to 1 - 1.2e-4).

| Method | Reference | Defaults |
|---|---|---|
| tophat | Rivest & Fortin, Opt. Eng. 1996 | 5x5 flat square structuring element |
| maxmedian | Deshpande et al., SPIE 3809, 1999 | 9-pixel lines (H, V, two diagonals) |
| wslcm | Han et al., IEEE GRSL 2021 | cells 3, 5, 7, 9; max over scales |
| tllcm | Han et al., IEEE GRSL 2020 (2019 online) | cores 3, 5, 7, 9; reserve ring; top-9 core mean |
| ipi | Gao et al., IEEE TIP 2013 | patch 50, step 10, lambda = 1/sqrt(max(m, n)), inexact ALM, tol 1e-7, median fold |
| nram | Zhang et al., Remote Sens. 2018 | patch 50, step 10, patch image min-max normalised, gamma = 0.002, lambda = 1/sqrt(min(m, n)), beta = 3/sqrt(min(m, n)), W = C/(abs(T)+0.04) with C = sqrt(min(m, n))/2.5, mu0 = 3 sqrt(max(m, n)), rho = 1.1 (the authors' published parameters) |
| ript | Dai & Wu, IEEE JSTARS 2017 | patch 30, step 10, lambda = 1/sqrt(min(I, J, P)), h = 1, eps = 0.01 (grey levels 0-255), stop when the target support is stable |
| pstnn | Zhang & Peng, Remote Sens. 2019 | patch 40, step 40, lambda = 0.6/sqrt(max(n1, n2) n3), mu0 = 1e-2, rho = 1.05, eps = 0.01 (grey levels 0-255) |
| mslstipt | Sun, Yang & An, IEEE TGRS 2021 | single frame: the patch tensor (patch 40, step 40) in place of the frames; dictionary from tensor RPCA (lambda_0 = 4/sqrt(max(n1, n2) n3)) truncated at 50 grey levels; weighted Schatten p-norm, p = 0.8, C = 5; lambda = 1/sqrt(n3 max(n1, n2)) (the authors' settings). Multi-frame form: `sirst.classical.mslstipt_sequence`, `sirst classical-detect` |
{unsupported}

The local contrast measures (TLLCM, WSLCM) and the NRAM/RIPT weighting are our re-implementations
from the papers' descriptions, not ports of the authors' code; see the docstrings for the exact
formulas used and where they depart from the papers. NRAM's parameter values are the ones of the
authors' released demo (its first version here used our own, which let bright regions of real
images flood the target map, see docs/baselines_real.md). On these small 128x128 images (81
patches, and the parameters scale with the patch count) they make NRAM conservative: fewer
detections, far fewer false alarms than those earlier parameters (Pd 64 %, Fa 3,209e-6).

RIPT and PSTNN reweight the target term by `1 / (|T| + eps)` with `eps = 0.01`, a constant the
papers set for 8-bit grey levels: the images (read in [0, 1]) are multiplied by 255 before the
decomposition and the maps divided back. An earlier version ran them on [0, 1] images and
rescaled the weights to a minimum of 1, which made the target penalty far too strong: RIPT put
almost every target into the low-rank part (Pd 2.0 on this set, PSTNN 31.5).
`tests/test_classical.py::test_ript_finds_synthesized_targets` guards against it. RIPT's
`lambda = L / sqrt(min(I, J, P))` with `L = 1` is the paper's; `L = 0.1` (`lam_scale=0.1`) gave a
higher Pd in a 12-image check (52 vs 30), but we report the paper's setting.

## Results on synthetic data

{n_test} test images ({args.size}x{args.size}) of a dataset synthesized by `sirst.data.synth`
(`synthesize(num={args.num}, seed={args.seed}, size={args.size})`), on this machine
({platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, shared), `--jobs {args.jobs}`,
`OMP_NUM_THREADS=1`. Seconds per image are the time of the method itself in one process
(file reading excluded). {dnanet_note}

{table}
Command (`python scripts/run_comparison.py` runs it end to end):

```
{shown}
```

Results on real data (NUAA-SIRST and NUDT-SIRST, Table II beside the paper's numbers), with the Pd-Fa
curves: [baselines_real.md](baselines_real.md).
"""
    Path(args.doc).write_text(doc)
    print(f"wrote {args.doc}")
    if args.readme:
        update_readme(Path(args.readme), table, n_test, args, dnanet_note)
    return 0


def update_readme(readme: Path, table: str, n_test: int, args: argparse.Namespace, dnanet_note: str) -> None:
    """Replace the README's baselines-table block with the new table."""
    from readme_blocks import replace_block

    body = (
        f"{n_test} test images ({args.size}x{args.size}, `synthesize(num={args.num}, seed={args.seed})`), "
        f"{os.cpu_count()}-core CPU shared with other work (seconds are upper bounds), `--jobs {args.jobs}`, "
        f"`OMP_NUM_THREADS=1`. {dnanet_note}\n\n{table.rstrip()}"
    )
    replace_block(readme, "baselines-table", body)


if __name__ == "__main__":
    raise SystemExit(main())
