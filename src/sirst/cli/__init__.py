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


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line (``sirst CMD: error: ...``), exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``sirst`` parser with every sub-command; with ``command``, the name of a sub-command whose
    module is ``sirst.cli.<command>``, only that one (``train``'s options import torch and the training
    code, 0.3 s that ``sirst detect`` need not pay); any other ``command`` gets the full parser."""
    from sirst import __version__

    parser = OneLineParser(
        prog="sirst",
        description="Infrared small target detection: DNANet, metrics, data, training, detection.",
    )
    parser.add_argument("--version", action="version", version=f"sirst {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    module = f"sirst.cli.{command}"
    if module in COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
        if command in subparsers.choices:
            return parser
        return build_parser()
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sirst`` with ``argv`` (default ``sys.argv[1:]``) and return the exit code.

    Exit codes: 0 success; 1 the run finished but some inputs failed, or training stopped on a
    non-finite loss; 2 bad options or unusable input (one line on stderr, nothing done); 130
    interrupted. Called without ``argv`` (the ``sirst`` program, ``python -m sirst``), it leaves the
    objects alive at its end out of the interpreter's last garbage collections (:func:`gc.freeze`).
    """
    import warnings

    program = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv else None)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors (one line, code 2), --help and --version (code 0)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    name = f"sirst {args.command}"
    shown = warnings.showwarning

    def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
        # Our warnings name the file and the problem; the default format adds a source line and location.
        print(f"{name}: warning: {message}", file=file or sys.stderr)

    warnings.showwarning = show_warning
    try:
        return int(args.func(args) or 0)
    except CLIError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as exc:
        # Our own input checks raise these with messages that name the file and the problem.
        print(f"{name}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # permissions, a full disk, a path that is a file: name the path
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"{name}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"{name}: error: out of memory; lower --batch-size (or --max-pixels for detect)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown
        if program:
            # The process ends next: its final collections would walk every object torch and OpenVINO
            # made (0.3 s of a 10 s `sirst detect` on one core) to free memory the exit frees anyway.
            # Reference counting still closes files; atexit handlers and thread joins still run.
            import gc

            gc.freeze()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split("\n"))
