"""Data: image IO, the standard dataset layout, augmentation and the synthesizer."""

from sirst.data.dataset import SirstDataset, load_pair, pad_collate, resolve_split
from sirst.data.io import from_network_input, read_image, read_mask, to_network_input, write_png

__all__ = [
    "SirstDataset",
    "from_network_input",
    "load_pair",
    "pad_collate",
    "read_image",
    "read_mask",
    "resolve_split",
    "to_network_input",
    "write_png",
]
