"""Generated tables in the README live between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` markers;
the scripts that measure them rewrite only their own block."""

from __future__ import annotations

from pathlib import Path


def replace_block(readme: Path, name: str, body: str) -> bool:
    """Put ``body`` between the README's ``name`` markers; False (README untouched) if they are missing."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = readme.read_text()
    if start not in text or end not in text:
        print(f"{readme}: no {start} ... {end} markers; README not updated")
        return False
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    readme.write_text(f"{head}{start}\n{body.strip()}\n{end}{tail}")
    print(f"updated the {name} block in {readme}")
    return True
