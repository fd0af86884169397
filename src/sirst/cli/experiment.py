"""`sirst experiment`: the paper's tables (II-V) as recipes, one command each."""

from __future__ import annotations

import argparse

from sirst.cli.options import positive_int


def _parse_weights(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise ValueError(f"{item}: --weights entries are LABEL=PATH (LABEL: a row of the table)")
        out[label] = path
    return out


def run(args: argparse.Namespace) -> int:
    from sirst.cli.options import check_device, ensure_output_dir
    from sirst.experiments import ExperimentOptions, run_experiment

    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    check_device(args.device)
    ensure_output_dir(args.out)
    opts = ExperimentOptions(
        data=args.data, out=args.out, quick=args.quick, device=args.device, epochs=args.epochs,
        weights=_parse_weights(args.weights), jobs=args.jobs, progress=not args.no_progress,
        threads=args.threads if args.threads is not None else (1 if args.quick else None),
        only=[o.strip() for o in args.only.split(",") if o.strip()] if args.only else None,
        time_budget=args.time_budget, method_budget=args.method_budget,
    )
    res = run_experiment(args.recipe, opts)
    print(res.markdown.read_text())
    print(f"wrote {res.markdown} and {res.json} in {res.seconds:.1f} s")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from sirst.experiments import RECIPES

    p = subparsers.add_parser(
        "experiment",
        help="reproduce a table of the DNANet paper (table2: methods, table3/4: ablations, table5: synthesized+real)",
        description="Run a recipe (src/sirst/recipes/NAME.yaml, or a path to your own YAML): train the networks "
        "with the paper's protocol, score them (and the classical methods) on the test split and write "
        "OUT/NAME.md and OUT/NAME.json. --quick: tiny models and a few images (on a synthesized dataset when "
        "--data is not given) to check the recipe end to end in a minute; interrupted runs resume (networks from "
        "OUT/runs/, classical methods image by image from OUT/classical/).",
    )
    p.add_argument("recipe", help=f"{' | '.join(RECIPES)} or a recipe .yaml file")
    p.add_argument("--data", default=None, help="dataset root (required unless --quick)")
    p.add_argument("--out", required=True, help="output folder (tables, runs/, mixed datasets)")
    p.add_argument("--quick", action="store_true", help="tiny settings from the recipe's quick: section")
    p.add_argument("--device", default="cpu", help="training/inference device (default cpu)")
    p.add_argument("--epochs", type=positive_int, default=None, help="override the recipe's epochs for every network")
    p.add_argument("--weights", action="append", default=[], metavar="LABEL=PATH",
                   help="score this checkpoint for row LABEL instead of training it (repeatable)")
    p.add_argument("--jobs", type=positive_int, default=1, help="processes for the classical methods (default 1)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: 1 with --quick, else torch's)")
    p.add_argument("--only", default=None, metavar="ROWS",
                   help="comma-separated rows to run (labels or classical method names, or 'classical' / 'networks'); "
                        "default: every row")
    p.add_argument("--time-budget", type=float, default=None, metavar="S",
                   help="stop starting classical images after S seconds; unfinished rows are reported as pending "
                        "and the same command continues them (per-image results cached in OUT/classical/)")
    p.add_argument("--method-budget", type=float, default=None, metavar="S",
                   help="the same limit per classical method, so a slow method cannot take the whole budget")
    p.add_argument("--quiet", "--no-progress", dest="no_progress", action="store_true",
                   help="no progress bars or epoch lines (results, warnings and errors are still printed); "
                        "--no-progress is the same")
    p.set_defaults(func=run)
