"""The training configuration: one dataclass, written to ``RUN_DIR/config.yaml`` as resolved."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OPTIMIZERS: tuple[str, ...] = ("adagrad", "adam", "adamw", "sgd")
SCHEDULERS: tuple[str, ...] = ("constant", "cosine")
DEVICES: tuple[str, ...] = ("cpu", "cuda")


@dataclass
class TrainConfig:
    """Everything a training run depends on. Defaults follow the DNANet paper's protocol.

    Paper protocol: Soft-IoU loss (deep supervision, heads averaged), Adagrad with learning rate
    0.05 kept constant, batch size 16, random crops of 256x256, Xavier init (done by the model).
    ``batch_size`` is per process: under ``torchrun --nproc-per-node N`` the global batch is
    ``N * batch_size``.
    """

    data: str
    out: str
    split: str = "50_50"
    model: str = "dnanet"
    backbone: str | None = None  # None: the model's own default (resnet18 for DNANet)
    channel_size: str | None = None  # None: the model's own default ("three" for DNANet)
    in_channels: int = 3
    deep_supervision: bool | None = None  # None: the model's own default (True for DNANet)
    epochs: int = 1500
    max_minutes: float | None = None  # stop cleanly after the first epoch that ends past this wall time
    batch_size: int = 16
    eval_batch_size: int = 1
    crop_size: int = 256
    base_size: int = 256
    lr: float = 0.05
    min_lr: float = 1e-5
    weight_decay: float = 0.0
    optimizer: str = "adagrad"
    scheduler: str = "constant"
    resume: bool = False
    amp: bool = False
    channels_last: bool = False
    compile: bool = False  # torch.compile the training forward/backward (one-off compile time)
    device: str = "cpu"
    eval_every: int = 1
    workers: int = 0
    seed: int = 0
    val_fraction: float = 0.0
    max_train_images: int | None = None
    max_test_images: int | None = None
    log_every: int = 10
    protocol: str = "exact"
    progress: bool = True
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    # Beyond one labelled split (see sirst.data.mixture): more labelled datasets, whose train splits
    # (less their --val-fraction carve, which joins validation) join training; target-free frames as
    # hard negatives; synthesized samples (half with hard-negative clutter) drawn fresh every epoch.
    extra_data: list[str] = field(default_factory=list)
    negatives: list[str] = field(default_factory=list)  # "ROOT" or "ROOT:IDS_FILE" of target-free frames
    negatives_per_epoch: int = 0  # random multi-scale crops of ``negatives`` per epoch
    negatives_hard_p: float = 0.0  # fraction of those crops placed on bright small structures (lamps, glints)
    val_negatives: list[str] = field(default_factory=list)  # target-free frames added to validation
    val_negative_crops: int = 0  # fixed native-scale crops of ``val_negatives`` in validation
    synth_per_epoch: int = 0
    synth_hard_p: float = 0.5  # fraction of synthesized samples with hard-negative clutter
    init_weights: str | None = None  # start from these weights (bundled name or checkpoint), not from scratch
    # 0: the paper's Soft-IoU alone. > 0 adds this weight times the pixel-mean cross-entropy, whose
    # gradient does not vanish on confident false alarms (see sirst.losses.SoftIoUBCELoss).
    bce_weight: float = 0.0

    def validate(self) -> None:
        """Raise ``ValueError``/``FileNotFoundError`` naming the bad value (paths first)."""
        for root in [self.data, *self.extra_data]:
            if not Path(root).is_dir():
                raise FileNotFoundError(f"{root}: dataset directory does not exist")
        for spec in [*self.negatives, *self.val_negatives]:
            if not Path(str(spec).partition(":")[0]).is_dir():
                raise FileNotFoundError(f"{spec}: folder of target-free frames does not exist")
        out = Path(self.out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"{self.out}: output path exists and is not a directory")
        if self.resume and not (out / "last.pt").is_file():
            raise FileNotFoundError(f"{out / 'last.pt'}: --resume given but there is no checkpoint to resume from")
        checks: list[tuple[bool, str]] = [
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.max_minutes is None or self.max_minutes > 0, f"--max-minutes must be > 0, got {self.max_minutes}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.eval_batch_size >= 1, f"--eval-batch-size must be >= 1, got {self.eval_batch_size}"),
            (self.crop_size >= 16 and self.crop_size % 16 == 0,
             f"--crop-size must be a positive multiple of 16, got {self.crop_size}"),
            (0 < self.lr < float("inf"), f"--lr must be a finite number > 0, got {self.lr}"),
            (0 <= self.min_lr < float("inf"), f"--min-lr must be a finite number >= 0, got {self.min_lr}"),
            (0 <= self.weight_decay < float("inf"), f"--weight-decay must be a finite number >= 0, got {self.weight_decay}"),
            (self.optimizer in OPTIMIZERS, f"--optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}"),
            (self.scheduler in SCHEDULERS, f"--scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}"),
            (self.device.split(":")[0] in DEVICES, f"--device must be cpu or cuda[:i], got {self.device!r}"),
            (self.eval_every >= 1, f"--eval-every must be >= 1, got {self.eval_every}"),
            (self.workers >= 0, f"--workers must be >= 0, got {self.workers}"),
            (0.0 <= self.val_fraction < 1.0, f"--val-fraction must be in [0, 1), got {self.val_fraction}"),
            (self.max_train_images is None or self.max_train_images >= 1,
             f"--max-train-images must be >= 1, got {self.max_train_images}"),
            (self.max_test_images is None or self.max_test_images >= 1,
             f"--max-test-images must be >= 1, got {self.max_test_images}"),
            (self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}"),
            (self.in_channels >= 1, f"--in-channels must be >= 1, got {self.in_channels}"),
            (self.negatives_per_epoch >= 0, f"--negatives-per-epoch must be >= 0, got {self.negatives_per_epoch}"),
            (not self.negatives_per_epoch or bool(self.negatives),
             "--negatives-per-epoch needs --negatives (folders of target-free frames)"),
            (self.val_negative_crops >= 0, f"--val-negative-crops must be >= 0, got {self.val_negative_crops}"),
            (not self.val_negative_crops or bool(self.val_negatives),
             "--val-negative-crops needs --val-negatives (folders of target-free frames)"),
            (self.synth_per_epoch >= 0, f"--synth-per-epoch must be >= 0, got {self.synth_per_epoch}"),
            (0.0 <= self.synth_hard_p <= 1.0, f"--synth-hard-p must be in [0, 1], got {self.synth_hard_p}"),
            (0.0 <= self.negatives_hard_p <= 1.0, f"--negatives-hard-p must be in [0, 1], got {self.negatives_hard_p}"),
            (0.0 <= self.bce_weight < float("inf"), f"--bce-weight must be a finite number >= 0, got {self.bce_weight}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"{self.out}: {message}")

    def resolved_model_kwargs(self) -> dict[str, Any]:
        """Constructor keywords for ``create_model(self.model, ...)``: only the options that were set."""
        kwargs: dict[str, Any] = {"in_channels": self.in_channels}
        if self.backbone is not None:
            kwargs["backbone"] = self.backbone
        if self.channel_size is not None:
            kwargs["channel_size"] = self.channel_size
        if self.deep_supervision is not None:
            kwargs["deep_supervision"] = self.deep_supervision
        kwargs.update(self.model_kwargs)
        return kwargs

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"TrainConfig: unknown keys {unknown}")
        return cls(**d)

    def save_yaml(self, path: str | os.PathLike) -> None:
        """Write the config as YAML (atomically, so a killed run never leaves half a file)."""
        import yaml

        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        os.replace(tmp, path)

    @classmethod
    def load_yaml(cls, path: str | os.PathLike) -> TrainConfig:
        import yaml

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: config file not found")
        d = yaml.safe_load(path.read_text())
        if not isinstance(d, dict):
            raise ValueError(f"{path}: not a YAML mapping")
        return cls.from_dict(d)
