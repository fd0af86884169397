"""Evaluation: one harness that scores any method on a dataset split or on lists of images.

* :mod:`~sirst.evaluation.samples`: what is scored (:class:`Sample`, :func:`load_samples`).
* :mod:`~sirst.evaluation.methods`: the :class:`Method` protocol, classical baselines, networks and
  saved predictions as methods, and the one parser of method specs (``tophat``, ``all``,
  ``dnanet:nuaa``, ``preds:DIR``).
* :mod:`~sirst.evaluation.harness`: :func:`evaluate_method` (and its cached, resumable form for
  long classical runs); ``sirst eval-method``, ``sirst compare`` and ``sirst experiment`` call it,
  ``sirst visualize`` uses its methods.
* :mod:`~sirst.evaluation.saved`: saved score maps against masks (``sirst eval --pred --masks``).
* :mod:`~sirst.evaluation.dataset`: a network on a whole split, batched and shardable:
  training's validation (:func:`evaluate_dataset`) and a checkpoint on a split (``sirst eval --data``).
* :mod:`~sirst.evaluation.report`: the one writer of summaries, JSON, CSV curves and markdown tables.

All of them score with :mod:`sirst.metrics`.
"""

from sirst.evaluation.dataset import evaluate_checkpoint, evaluate_dataset
from sirst.evaluation.harness import evaluate_classical, evaluate_classical_cached, evaluate_method, evaluate_network
from sirst.evaluation.methods import (
    CURVE_THRESHOLDS,
    NETWORK_CURVE_THRESHOLDS,
    ClassicalMethod,
    Method,
    MethodOutput,
    NetworkMethod,
    SavedMethod,
    build_methods,
    parse_method,
    parse_methods,
)
from sirst.evaluation.report import MethodResult, markdown_table, write_curve, write_results
from sirst.evaluation.samples import Sample, load_samples
from sirst.evaluation.saved import evaluate_dirs, pair_files, read_map

__all__ = [
    "CURVE_THRESHOLDS", "NETWORK_CURVE_THRESHOLDS", "ClassicalMethod", "Method", "MethodOutput", "MethodResult",
    "NetworkMethod", "Sample", "SavedMethod", "build_methods", "evaluate_checkpoint", "evaluate_classical",
    "evaluate_classical_cached", "evaluate_dataset", "evaluate_dirs", "evaluate_method", "evaluate_network",
    "load_samples", "markdown_table", "pair_files", "parse_method", "parse_methods", "read_map", "write_curve",
    "write_results",
]
