"""Allows ``python -m sirst ...`` and ``torchrun -m sirst train ...``."""

from sirst.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
