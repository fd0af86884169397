"""Pictures of the results: per-image comparisons with detections circled, 3D response surfaces,
Pd-Fa curves on target-size subsets and a sortable HTML index (``sirst visualize``)."""

from sirst.viz.figures import (
    DETECTED_RGB,
    FALSE_ALARM_RGB,
    MISS_RGB,
    draw_comparison,
    draw_surfaces,
    rgb_pixel_count,
    target_window,
    write_pdfa_subsets,
)
from sirst.viz.html import ImageRecord, write_index
from sirst.viz.pipeline import VisualizeResult, visualize

__all__ = [
    "DETECTED_RGB",
    "FALSE_ALARM_RGB",
    "MISS_RGB",
    "ImageRecord",
    "VisualizeResult",
    "draw_comparison",
    "draw_surfaces",
    "rgb_pixel_count",
    "target_window",
    "visualize",
    "write_index",
    "write_pdfa_subsets",
]
