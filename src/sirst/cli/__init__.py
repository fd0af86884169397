"""The ``sirst`` command line.

Each sub-command lives in its own module of this package, exposing ``register(subparsers)``, which
adds an ``argparse`` parser and sets ``func`` (a callable taking the parsed ``Namespace`` and
returning an exit code). Modules import heavy dependencies (torch, matplotlib) inside their
``run`` functions so that ``sirst --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Order is the order shown in ``sirst --help``.
COMMAND_MODULES: tuple[str, ...] = (
    "sirst.cli.detect",
    "sirst.cli.train",
    "sirst.cli.eval",
    "sirst.cli.synth",
    "sirst.cli.data",
    "sirst.cli.export",
    "sirst.cli.classical",
    "sirst.cli.visualize",
    "sirst.cli.experiment",
    "sirst.cli.bench",
    "sirst.cli.window",
)


class CLIError(Exception):
    """An error caused by the user's input; printed as one line without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    from sirst import __version__

    parser = argparse.ArgumentParser(
        prog="sirst",
        description="Infrared small target detection: DNANet, metrics, data, training, detection.",
    )
    parser.add_argument("--version", action="version", version=f"sirst {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CLIError as exc:
        print(f"sirst {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as exc:
        # Our own input checks raise these with messages that name the file and the problem.
        print(f"sirst {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sirst {args.command}: interrupted", file=sys.stderr)
        return 130
