"""The classical part of Table II on both full test splits, beside the paper's numbers, for
docs/baselines_real.md.

Reads what `sirst experiment table2` has cached in results/table2/<nuaa|nudt>/classical/ (it starts no
image: `--time-budget 0`), writes the two per-dataset tables there again and puts one combined
Markdown table between the markers `<!-- table2:begin -->` and `<!-- table2:end -->` of the docs page.
Unfinished rows are marked pending with the command that continues them.

    python scripts/table2_classical.py                      # print the table
    python scripts/table2_classical.py --write docs/baselines_real.md
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from sirst.experiments import ExperimentOptions, run_experiment

ROOT = Path(__file__).resolve().parents[1]
DATASETS = (("NUAA-SIRST", "nuaa"), ("NUDT-SIRST", "nudt"))
BEGIN, END = "<!-- table2:begin -->", "<!-- table2:end -->"


def continue_command(data_root: str, dataset: str, tag: str, method: str) -> str:
    """The command that continues one row (run from the repository root)."""
    default = (ROOT.parent / "shared" / "data").resolve()
    shown = "../shared/data" if Path(data_root).resolve() == default else data_root
    return (f"nice -n 19 sirst experiment table2 --data {shown}/{dataset} --out results/table2/{tag} "
            f"--only {method} --jobs 2")


def fmt(v: float, digits: int = 2) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def ratio_flag(ours: float, paper: float) -> str:
    """``*`` when ours and the paper's differ by more than a factor of 2 (either way)."""
    if ours is None or paper is None or not (ours > 0 and paper > 0):
        return ""
    r = ours / paper
    return "*" if r > 2 or r < 0.5 else ""


def build(data_root: str) -> tuple[str, list[str]]:
    header = ("| Method | Data | IoU | Pd | Fa | IoU ref | Pd ref | Fa ref | paper IoU | paper Pd | paper Fa "
              "| CPU s / image | images |")
    lines = [header, "|---|---|" + "---:|" * 11]
    pending: list[str] = []
    per_data = {}
    for dataset, tag in DATASETS:
        res = run_experiment("table2", ExperimentOptions(data=f"{data_root}/{dataset}", out=str(ROOT / "results" / "table2" / tag),
                                                         only=["classical"], time_budget=0.0, progress=False))
        per_data[dataset] = {r["method"]: r for r in res.rows}
    methods = list(per_data[DATASETS[0][0]])
    for m in methods:
        for dataset, tag in DATASETS:
            r = per_data[dataset][m]
            paper = [r.get("paper_iou_x100"), r.get("paper_pd_x100"), r.get("paper_fa_x1e6")]
            paper_cells = [f"{p:g}" if p is not None else "" for p in paper]
            if not r["complete"]:
                done = r["images"].split(" ")[0]
                lines.append(f"| {m} | {dataset} | pending | | | | | | {' | '.join(paper_cells)} | | {done} |")
                pending.append(f"- {m}, {dataset} ({done} images): `{continue_command(data_root, dataset, tag, m)}`")
                continue
            iou = fmt(r["iou_x100"]) + ratio_flag(r["iou_x100"], paper[0])
            fa = fmt(r["fa_x1e6"]) + ratio_flag(r["fa_x1e6"], paper[2])
            lines.append(f"| {m} | {dataset} | {iou} | {fmt(r['pd_x100'])} | {fa} | {fmt(r['iou_ref_x100'])} "
                         f"| {fmt(r['pd_ref_x100'])} | {fmt(r['fa_ref_x1e6'])} | {' | '.join(paper_cells)} "
                         f"| {fmt(r.get('cpu_seconds_per_image'), 3)} | {r['images']} |")
    return "\n".join(lines), pending


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"), help="folder holding NUAA-SIRST/ and NUDT-SIRST/")
    ap.add_argument("--write", default=None, help="Markdown file whose table2 markers receive the table")
    args = ap.parse_args()
    table, pending = build(args.data_root)
    block = table + "\n"
    if pending:
        block += "\nPending rows, continued (from their per-image caches) by:\n\n" + "\n".join(pending) + "\n"
    print(block)
    if args.write:
        path = Path(args.write)
        text = path.read_text()
        if BEGIN not in text or END not in text:
            raise SystemExit(f"{path}: no {BEGIN} ... {END} markers")
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        path.write_text(f"{head}{BEGIN}\n{block}{END}{tail}")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
