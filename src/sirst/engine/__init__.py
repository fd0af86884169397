"""Training: ``TrainConfig``, ``train``, DDP helpers and train steps (validation goes through
:func:`sirst.evaluation.evaluate_dataset`).

Import the submodules (``sirst.engine.train`` etc.) for the rest; this package imports torch.
"""

from sirst.engine.config import TrainConfig
from sirst.engine.steps import SegmentationStep, TrainStep, get_train_step
from sirst.engine.train import NonFiniteLossError, TrainResult, train

__all__ = [
    "NonFiniteLossError",
    "SegmentationStep",
    "TrainConfig",
    "TrainResult",
    "TrainStep",
    "get_train_step",
    "train",
]
