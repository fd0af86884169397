"""The training configuration: one dataclass, written to ``RUN_DIR/config.yaml`` as resolved, and the
configuration a resumed run continues with (:func:`resume_config`)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sirst.metrics.protocol import PROTOCOLS

OPTIMIZERS: tuple[str, ...] = ("adagrad", "adam", "adamw", "sgd")
SCHEDULERS: tuple[str, ...] = ("constant", "cosine")
DEVICES: tuple[str, ...] = ("cpu", "cuda")
#: Argparse group of the options beyond one labelled split.
MORE_DATA = "more data: several datasets, hard negatives, synthesized samples"
#: Per-invocation settings that never come from a saved config (``out``: the run may have been moved).
NOT_SAVED: tuple[str, ...] = ("resume", "progress", "out")


def option(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, help: str | None = None,
           flag: str | None = None, type: str | None = None, metavar: str | None = None,
           choices: tuple[str, ...] | None = None, group: str | None = None, required: bool = False) -> Any:
    """A field that is also a ``sirst train`` option, described once here (``sirst.cli.train`` builds the
    parser from these): ``help``; ``flag`` (default ``--field-name``; ``--quiet`` sets ``progress`` to False);
    ``type``, the name of an argument parser in ``sirst.cli.options`` (``positive_int``...; default: the
    annotation's int or float; booleans are switches, lists take one or more values); ``metavar``, ``choices``, the help ``group``; ``required``."""
    cli = {"help": help, "flag": flag, "type": type, "metavar": metavar, "choices": choices, "group": group,
           "required": required}
    return field(default=default, default_factory=factory, metadata={"cli": cli})


def more_data(**kwargs: Any) -> Any:
    """An :func:`option` shown in the help group of the options beyond one labelled split."""
    return option(group=MORE_DATA, **kwargs)


@dataclass
class TrainConfig:
    """Everything a training run depends on. Defaults follow the DNANet paper's protocol.

    Paper protocol: Soft-IoU loss (deep supervision, heads averaged), Adagrad with learning rate
    0.05 kept constant, batch size 16, random crops of 256x256, Xavier init (done by the model).
    ``batch_size`` is per process: under ``torchrun --nproc-per-node N`` the global batch is
    ``N * batch_size``.
    """

    data: str = option(metavar="ROOT", help="dataset root (with --resume: the saved one)")
    out: str = option(metavar="RUN_DIR", required=True, help="run directory (created)")
    split: str = option(default="50_50", help="split folder under ROOT (default: 50_50)")
    model: str = option(default="dnanet", help="registered model name (default: dnanet)")
    # None: the model's own default (resnet18 for DNANet)
    backbone: str | None = option(default=None,
        help="model backbone, e.g. resnet10/resnet18/resnet34/vgg10 (model default)")
    # None: the model's own default ("three" for DNANet)
    channel_size: str | None = option(default=None, help="DNANet widths: one/two/three/four (model default: three)")
    in_channels: int = option(default=3, type="positive_int",
        help="input channels (gray copied; default 3 as the paper)")
    deep_supervision: bool | None = None  # None: the model's own default (True for DNANet)
    epochs: int = option(default=1500, type="positive_int", help="epochs (default: 1500, the paper)")
    # stop cleanly after the first epoch that ends past this wall time
    max_minutes: float | None = option(default=None, type="positive_float", metavar="M",
        help="stop after the first epoch that ends M minutes after the start (evaluated and saved; --resume "
             "continues it)")
    batch_size: int = option(default=16, type="positive_int", help="training batch per process (default: 16)")
    eval_batch_size: int = option(default=1, type="positive_int", help="images per evaluation forward (default: 1)")
    crop_size: int = option(default=256, type="multiple_of_16",
        help="training crop size, multiple of 16 (default: 256)")
    base_size: int = option(default=256, type="positive_int",
        help="base resize size of the augmentation (default: 256)")
    lr: float = option(default=0.05, type="positive_float", help="learning rate (default: 0.05)")
    min_lr: float = option(default=1e-5, type="non_negative_float", help="final learning rate of the cosine schedule")
    weight_decay: float = option(default=0.0, type="non_negative_float")
    optimizer: str = option(default="adagrad", choices=OPTIMIZERS)
    scheduler: str = option(default="constant", choices=SCHEDULERS)
    resume: bool = option(default=False,
        help="continue from RUN_DIR/last.pt with the saved config.yaml; options given override it (recorded in"
             " RUN_DIR/overrides.jsonl)")
    amp: bool = option(default=False, help="bfloat16 autocast")
    channels_last: bool = option(default=False, help="channels_last memory format")
    # torch.compile the training forward/backward (one-off compile time)
    compile: bool = option(default=False,
        help="torch.compile the model for training (compiles once, about a minute on a small CPU)")
    device: str = option(default="cpu", help="cpu or cuda (default: cpu)")
    eval_every: int = option(default=1, type="positive_int", metavar="K", help="evaluate every K epochs and at the end")
    workers: int = option(default=0, type="non_negative_int", metavar="N", help="data loader worker processes")
    seed: int = option(default=0)
    val_fraction: float = option(default=0.0, type="fraction", metavar="F",
        help="carve this fraction of train as validation for checkpoint selection (default: use test)")
    max_train_images: int | None = option(default=None, type="positive_int", metavar="N",
        help="use only the first N training images")
    max_test_images: int | None = option(default=None, type="positive_int", metavar="N",
        help="evaluate on the first N images only")
    log_every: int = option(default=10, type="positive_int", metavar="N",
        help="progress bar update (host sync) every N steps")
    protocol: str = option(default="exact", choices=PROTOCOLS, help="metrics protocol")
    progress: bool = option(default=True, flag="--quiet", help="no progress bars or per-epoch lines")
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    # Beyond one labelled split (see sirst.data.mixture): more labelled datasets, whose train splits
    # (less their --val-fraction carve, which joins validation) join training; target-free frames as
    # hard negatives; synthesized samples (half with hard-negative clutter) drawn fresh every epoch.
    extra_data: list[str] = more_data(factory=list, metavar="ROOT",
        help="more labelled datasets: their train splits join training (and their --val-fraction carves join "
             "validation)")
    negatives: list[str] = more_data(factory=list, metavar="ROOT[:IDS]",
        help="folders of target-free frames (IDS: a file of frame ids, else ROOT/all.txt or all images)")
    negatives_per_epoch: int = more_data(default=0, metavar="N",
        help="random crops of --negatives per epoch, at scales 0.5-2x native (default: 0)")
    negatives_hard_p: float = more_data(default=0.0, metavar="P",
        help="fraction of --negatives crops placed on bright small structures such as lamps and glints, which "
             "random crops of large frames rarely hold (default: 0)")
    negatives_mined: list[str] = more_data(factory=list, metavar="CSV",
        help="places a detector falsely fired on in --negatives frames (CSV with image, x, y: the detections.csv "
             "of sirst detect FRAMES --min-peak 0); the --negatives-hard-p crops of such frames sit on them")
    val_negatives: list[str] = more_data(factory=list, metavar="ROOT[:IDS]",
        help="target-free frames whose fixed crops join validation (false alarms there lower val IoU)")
    val_negative_crops: int = more_data(default=0, metavar="N",
        help="native-scale crops of --val-negatives in validation (default: 0)")
    synth_per_epoch: int = more_data(default=0, metavar="N",
        help="synthesized samples drawn fresh every epoch (default: 0)")
    synth_hard_p: float = more_data(default=0.5, metavar="P",
        help="fraction of synthesized samples carrying hard-negative clutter (default: 0.5)")
    init_weights: str | None = more_data(default=None, metavar="W",
        help="start from these weights (bundled name or checkpoint) instead of a random init")
    # 0: the paper's Soft-IoU alone. > 0 adds this weight times the pixel-mean cross-entropy, whose
    # gradient does not vanish on confident false alarms (see sirst.losses.SoftIoUBCELoss).
    bce_weight: float = more_data(default=0.0, metavar="W",
        help="add W x pixel-mean cross-entropy to Soft-IoU; unlike Soft-IoU it still pushes down confident "
             "false alarms (default: 0, the paper's loss)")

    def validate(self) -> None:
        """Raise ``ValueError``/``FileNotFoundError`` naming the bad value (paths first)."""
        for root in [self.data, *self.extra_data]:
            if not Path(root).is_dir():
                raise FileNotFoundError(f"{root}: dataset directory does not exist")
        for spec in [*self.negatives, *self.val_negatives]:
            if not Path(str(spec).partition(":")[0]).is_dir():
                raise FileNotFoundError(f"{spec}: folder of target-free frames does not exist")
        for mined in self.negatives_mined:
            if not Path(mined).is_file():
                raise FileNotFoundError(f"{mined}: file of mined false alarms does not exist")
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
            (not self.negatives_mined or bool(self.negatives_per_epoch),
             "--negatives-mined needs --negatives and --negatives-per-epoch (the crops placed on the mined places)"),
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


def saved_config(out: str | os.PathLike) -> TrainConfig:
    """The configuration the run in folder ``out`` was saved with: ``config.yaml``, else (runs from before
    it existed, or a deleted one) the one inside ``last.pt``. ``FileNotFoundError`` when there is no run."""
    out = Path(out)
    if (out / "config.yaml").is_file():
        return TrainConfig.load_yaml(out / "config.yaml")
    if (out / "last.pt").is_file():
        from sirst.checkpoint import read_checkpoint

        return TrainConfig.from_dict(read_checkpoint(out / "last.pt").get("config") or {})
    raise FileNotFoundError(f"{out / 'last.pt'}: --resume given but there is no run to resume in {out}")


def resume_config(fresh: TrainConfig, given: Collection[str]) -> tuple[TrainConfig, dict[str, list[Any]]]:
    """The configuration that resumes the run in ``fresh.out`` (``sirst train --resume``): the saved one
    (:func:`saved_config`), with the fields named in ``given`` (the options typed on the command line)
    and the per-invocation ones (:data:`NOT_SAVED`) taken from ``fresh``.

    Returns:
        ``(config, changes)``: ``changes`` is ``{field: [saved value, new value]}`` for the given fields
        whose value differs, what :func:`sirst.engine.train.train` records in ``overrides.jsonl``.
    """
    merged = saved_config(fresh.out).to_dict()
    changes: dict[str, list[Any]] = {}
    for key, value in fresh.to_dict().items():
        if key in NOT_SAVED:
            merged[key] = value
        elif key in given and merged.get(key) != value:
            changes[key] = [merged.get(key), value]
            merged[key] = value
    return TrainConfig.from_dict(merged), changes
