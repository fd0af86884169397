"""`sirst data check ROOT`: validate a dataset folder and print its statistics."""

from __future__ import annotations

import argparse


def run_check(args: argparse.Namespace) -> int:
    from sirst.data.check import check_dataset

    report = check_dataset(args.root, args.split, progress=not args.quiet)
    print(report.format())
    return 1 if report.problems else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("data", help="dataset tools (check)")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True
    c = sub.add_parser("check", help="validate a dataset folder, print counts, sizes, target statistics, problems")
    c.add_argument("root", help="dataset folder (images/, masks/, split files)")
    c.add_argument("--split", default="auto", help="split folder name, 'root', or 'auto' (default)")
    c.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true",
                   help="no progress bar (results, warnings and errors are still printed); --no-progress is the same")
    c.set_defaults(func=run_check)
