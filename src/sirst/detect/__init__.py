"""Detection on one's own images, folders and videos (``sirst detect``), one module a job:

| module | owns |
|---|---|
| :mod:`~sirst.detect.detector` | :class:`Detector`: padding or tiling, batched inference, the confidence gate, targets |
| :mod:`~sirst.detect.optimize` | ``optimize_for_inference``: BN folding, channels_last, precision, compile, CUDA graphs |
| :mod:`~sirst.detect.export` | ONNX export and the ONNX Runtime runner |
| :mod:`~sirst.detect.backends` | inference paths (torch / ONNX Runtime / OpenVINO x fp32 / bf16 / INT8), cached exports |
| :mod:`~sirst.detect.check` | comparing a path's detections with a reference; the check frames |
| :mod:`~sirst.detect.choose` | which path a job runs on: the rule, the check, the measurement |
| :mod:`~sirst.detect.build` | :func:`load_detector`: a Detector from weights and ``sirst detect``'s options |
| :mod:`~sirst.detect.inputs` | files, folders (recursive) and videos -> frames; a job's size |
| :mod:`~sirst.detect.outputs` | ``detections.csv`` rows, masks, overlays, score maps, ``summary.json`` |
| :mod:`~sirst.detect.pipeline` | :func:`run_detection`: read, ``Detector.detect`` and write in three threads |
"""

from sirst.detect.build import load_detector
from sirst.detect.detector import DEFAULT_MAX_PIXELS, Detection, Detector, tile_starts
from sirst.detect.inputs import InputFile, InputItem, iter_inputs, job_work, list_inputs
from sirst.detect.outputs import CSV_COLUMNS, SCORE_FORMATS, DetectionSummary, write_summary
from sirst.detect.pipeline import run_detection

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_MAX_PIXELS",
    "SCORE_FORMATS",
    "Detection",
    "DetectionSummary",
    "Detector",
    "InputFile",
    "InputItem",
    "iter_inputs",
    "job_work",
    "list_inputs",
    "load_detector",
    "run_detection",
    "tile_starts",
    "write_summary",
]
