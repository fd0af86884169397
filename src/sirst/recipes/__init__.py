"""YAML recipes of the paper's tables, run by ``sirst experiment NAME`` (see :mod:`sirst.experiments`)."""
