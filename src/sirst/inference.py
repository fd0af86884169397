"""Moved to :mod:`sirst.detect` (``from sirst.detect import Detector, run_detection``); this module
only re-exports it for code written against the old name."""

from sirst.detect import (  # noqa: F401
    CSV_COLUMNS,
    DEFAULT_MAX_PIXELS,
    SCORE_FORMATS,
    Detection,
    DetectionSummary,
    Detector,
    InputFile,
    InputItem,
    iter_inputs,
    job_work,
    list_inputs,
    run_detection,
    tile_starts,
)
