"""Training and evaluation: ``TrainConfig``, ``train``, ``evaluate``, DDP helpers and train steps.

Import the submodules (``sirst.engine.train`` etc.) for the rest; this package imports torch.
"""

from sirst.engine.config import TrainConfig
from sirst.engine.evaluate import evaluate
from sirst.engine.steps import SegmentationStep, TrainStep, get_train_step
from sirst.engine.train import NonFiniteLossError, TrainResult, train

__all__ = [
    "NonFiniteLossError",
    "SegmentationStep",
    "TrainConfig",
    "TrainResult",
    "TrainStep",
    "evaluate",
    "get_train_step",
    "train",
]
