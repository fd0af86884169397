"""sirst: single-frame infrared small target detection (DNANet and friends)."""

__version__ = "0.1.0"
