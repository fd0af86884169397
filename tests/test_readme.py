"""The README's command lines are accepted by the CLI (sub-commands and flags exist as shown)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from sirst.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands() -> list[str]:
    """``sirst ...`` command lines of the README's bash blocks (``torchrun ... -m sirst`` included)."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    commands = []
    for line in "\n".join(blocks).splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("sirst "):
            commands.append(line)
        elif " -m sirst " in line:
            commands.append("sirst " + line.split(" -m sirst ", 1)[1])
    return commands


def test_readme_shows_every_main_command():
    shown = {shlex.split(c)[1] for c in readme_commands()}
    assert {"detect", "synth", "data", "train", "eval", "export"} <= shown


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_parses(command):
    line = re.sub(r"\[([^\]]*)\]", r"\1", command)  # optional parts must parse too
    argv = ["X" if tok == "..." else tok for tok in shlex.split(line)[1:]]
    args = build_parser().parse_args(argv)  # SystemExit (a failed test) on an unknown flag
    assert callable(args.func)
