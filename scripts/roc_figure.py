"""Draw docs/roc.png: the Pd-Fa curves that `sirst compare --out DIR` wrote (DIR/*_pdfa.csv), one figure.

The threshold-0 point of each curve (every pixel a target: Fa ~ 1) is left out; it says nothing about a
method and squeezes the interesting range. Usage:

    sirst compare --data NUAA-SIRST --max-images 100 --methods all,dnanet:nuaa --jobs 2 --out results/nuaa
    python scripts/roc_figure.py results/nuaa --title "NUAA-SIRST test, first 100 images" --out docs/roc.png
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_curve(path: Path) -> tuple[list[float], list[float]]:
    """``(fa, pd)`` of the curve's points with a threshold above 0."""
    rows = [r for r in csv.DictReader(path.open()) if float(r["threshold"]) > 0]
    return [float(r["fa"]) for r in rows], [float(r["pd"]) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="the --out folder of `sirst compare`")
    parser.add_argument("--title", default="")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "roc.png")
    args = parser.parse_args()
    files = sorted(args.results.glob("*_pdfa.csv"))
    if not files:
        raise SystemExit(f"{args.results}: no *_pdfa.csv files (run `sirst compare --out {args.results}` first)")
    fig, ax = plt.subplots(figsize=(7, 5))
    for f in sorted(files, key=lambda p: p.name.startswith("dnanet")):  # networks drawn last, on top
        fa, pd = read_curve(f)
        network = f.name.startswith("dnanet")
        label = "DNANet (ours)" if network else f.name.removesuffix("_pdfa.csv")
        ax.plot(fa, pd, marker="o", ms=3, lw=2.5 if network else 1.2, color="black" if network else None, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("Fa (false-alarm pixels / all pixels)")
    ax.set_ylabel("Pd")
    ax.set_ylim(0, 1.02)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(args.title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
