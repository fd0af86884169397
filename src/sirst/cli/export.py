"""`sirst export`: placeholder until its issue lands."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    print("sirst export: not yet implemented")
    return 1


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="(not yet implemented)")
    p.set_defaults(func=run)
