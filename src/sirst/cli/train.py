"""`sirst train`: train a network with the DNANet paper's protocol (or variations of it).

Single process::

    sirst train --data ROOT --out RUN_DIR --epochs 1500

Several processes (DDP; gloo on CPU, NCCL on CUDA)::

    torchrun --nproc-per-node 2 -m sirst train --data ROOT --out RUN_DIR ...

Resuming (``--resume``) reads ``RUN_DIR/config.yaml``: options left out keep their saved values;
options given explicitly override them, are printed, and recorded in ``RUN_DIR/overrides.jsonl``.
"""

from __future__ import annotations

import argparse
import sys

from sirst.cli.options import float_range, non_negative_float, non_negative_int, positive_float, positive_int

# Per-invocation settings that never come from a saved config (``out``: the run may have been moved).
_NOT_SAVED = ("resume", "progress", "out")


def _multiple_of_16(text: str) -> int:
    value = positive_int(text)
    if value % 16:
        raise argparse.ArgumentTypeError(f"must be a positive multiple of 16 (the network halves the size 4 "
                                         f"times), got {value}")
    return value


def _track_explicit(p: argparse.ArgumentParser) -> None:
    """Let ``run`` tell which options were typed: every default is replaced by ``SUPPRESS`` (absent
    from the namespace unless given) and kept in ``_option_defaults`` to be filled in afterwards."""
    defaults = {}
    for action in p._actions:
        if action.dest == "help" or action.default is argparse.SUPPRESS:
            continue
        defaults[action.dest] = action.default
        action.default = argparse.SUPPRESS
    p.set_defaults(_option_defaults=defaults)


def _explicit_options(args: argparse.Namespace) -> set[str]:
    """The destinations the user gave on the command line; fills in the defaults of the others."""
    defaults = getattr(args, "_option_defaults", {})
    explicit = {d for d in defaults if hasattr(args, d)}
    for dest, value in defaults.items():
        if not hasattr(args, dest):
            setattr(args, dest, value)
    return explicit


def _resume_config(args: argparse.Namespace, explicit: set[str]):
    """The saved configuration of ``args.out`` with the explicitly given options applied, and
    ``{option: [saved, new]}`` for those that changed."""
    from pathlib import Path

    from sirst.checkpoint import read_checkpoint
    from sirst.engine.config import TrainConfig

    out = Path(args.out)
    if (out / "config.yaml").is_file():
        saved = TrainConfig.load_yaml(out / "config.yaml")
    elif (out / "last.pt").is_file():  # runs from before config.yaml existed, or a deleted one
        saved = TrainConfig.from_dict(read_checkpoint(out / "last.pt").get("config") or {})
    else:
        raise FileNotFoundError(f"{out / 'last.pt'}: --resume given but there is no run to resume in {out}")
    if args.data is None:
        args.data = saved.data
    fresh = _config_from_args(args).to_dict()
    merged = saved.to_dict()
    given = {"progress" if d == "quiet" else d for d in explicit}
    changes = {}
    for key, value in fresh.items():
        if key in _NOT_SAVED:
            merged[key] = value
        elif key in given and merged.get(key) != value:
            changes[key] = [merged.get(key), value]
            merged[key] = value
    return TrainConfig.from_dict(merged), changes


def _config_from_args(args: argparse.Namespace):
    from sirst.engine.config import TrainConfig

    return TrainConfig(
        data=args.data,
        out=args.out,
        split=args.split,
        model=args.model,
        backbone=args.backbone,
        channel_size=args.channel_size,
        in_channels=args.in_channels,
        epochs=args.epochs,
        max_minutes=args.max_minutes,
        batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size,
        crop_size=args.crop_size,
        base_size=args.base_size,
        lr=args.lr,
        min_lr=args.min_lr,
        weight_decay=args.weight_decay,
        optimizer=args.optimizer,
        scheduler=args.scheduler,
        resume=args.resume,
        amp=args.amp,
        channels_last=args.channels_last,
        compile=args.compile,
        device=args.device,
        eval_every=args.eval_every,
        workers=args.workers,
        seed=args.seed,
        val_fraction=args.val_fraction,
        max_train_images=args.max_train_images,
        max_test_images=args.max_test_images,
        log_every=args.log_every,
        protocol=args.protocol,
        progress=not args.quiet,
        extra_data=list(args.extra_data or []),
        negatives=list(args.negatives or []),
        negatives_per_epoch=args.negatives_per_epoch,
        negatives_hard_p=args.negatives_hard_p,
        val_negatives=list(args.val_negatives or []),
        val_negative_crops=args.val_negative_crops,
        synth_per_epoch=args.synth_per_epoch,
        synth_hard_p=args.synth_hard_p,
        init_weights=args.init_weights,
        bce_weight=args.bce_weight,
    )


def run(args: argparse.Namespace) -> int:
    from sirst.cli.options import check_device, ensure_output_dir
    from sirst.engine.train import NonFiniteLossError, train

    explicit = _explicit_options(args)
    changes: dict = {}
    if args.resume:
        cfg, changes = _resume_config(args, explicit)
    elif args.data is None:
        raise ValueError("--data ROOT is required (it may be left out only with --resume)")
    else:
        cfg = _config_from_args(args)
    cfg.validate()
    check_device(cfg.device)
    ensure_output_dir(cfg.out)
    try:
        result = train(cfg, overrides=changes)
    except NonFiniteLossError as exc:
        print(f"sirst train: error: {exc}", file=sys.stderr)
        return 1
    if result.is_main and result.best_epoch is not None:
        done = "stopped by --max-minutes" if result.stopped_by_time else "done"
        print(
            f"sirst train: {done} after epoch {result.history[-1]['epoch'] if result.history else '?'}; best {result.eval_split} IoU {result.best_iou:.4f} at epoch {result.best_epoch}; "
            f"checkpoints in {result.out_dir}"
        )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a network (DNANet paper protocol by default; DDP under torchrun)",
        description=(
            "Train a network on a SIRST dataset (ROOT/images, ROOT/masks, ROOT/<split>/train.txt|test.txt). "
            "Defaults follow the DNANet paper: Soft-IoU loss with deep supervision, Adagrad lr 0.05 constant, "
            "batch 16, 256x256 crops. Writes RUN_DIR/config.yaml, last.pt, best.pt (by IoU) and metrics.jsonl. "
            "Run under `torchrun --nproc-per-node N -m sirst train ...` for DDP (--batch-size is per process)."
        ),
    )
    p.add_argument("--data", default=None, metavar="ROOT", help="dataset root (with --resume: the saved one)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (created)")
    p.add_argument("--split", default="50_50", help="split folder under ROOT (default: 50_50)")
    p.add_argument("--model", default="dnanet", help="registered model name (default: dnanet)")
    p.add_argument("--backbone", default=None, help="model backbone, e.g. resnet10/resnet18/resnet34/vgg10 (model default)")
    p.add_argument("--channel-size", default=None, help="DNANet widths: one/two/three/four (model default: three)")
    p.add_argument("--in-channels", type=positive_int, default=3, help="input channels (gray copied; default 3 as the paper)")
    p.add_argument("--epochs", type=positive_int, default=1500, help="epochs (default: 1500, the paper)")
    p.add_argument("--max-minutes", type=positive_float, default=None, metavar="M",
                   help="stop after the first epoch that ends M minutes after the start (evaluated and saved; "
                        "--resume continues it)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="training batch per process (default: 16)")
    p.add_argument("--eval-batch-size", type=positive_int, default=1, help="images per evaluation forward (default: 1)")
    p.add_argument("--crop-size", type=_multiple_of_16, default=256, help="training crop size, multiple of 16 (default: 256)")
    p.add_argument("--base-size", type=positive_int, default=256, help="base resize size of the augmentation (default: 256)")
    p.add_argument("--lr", type=positive_float, default=0.05, help="learning rate (default: 0.05)")
    p.add_argument("--min-lr", type=non_negative_float, default=1e-5, help="final learning rate of the cosine schedule")
    p.add_argument("--weight-decay", type=non_negative_float, default=0.0)
    p.add_argument("--optimizer", choices=("adagrad", "adam", "adamw", "sgd"), default="adagrad")
    p.add_argument("--scheduler", choices=("constant", "cosine"), default="constant")
    p.add_argument("--resume", action="store_true",
                   help="continue from RUN_DIR/last.pt with the saved config.yaml; options given override it "
                        "(recorded in RUN_DIR/overrides.jsonl)")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the model for training (compiles once, about a minute on a small CPU)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--eval-every", type=positive_int, default=1, metavar="K", help="evaluate every K epochs and at the end")
    p.add_argument("--workers", type=non_negative_int, default=0, metavar="N", help="data loader worker processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float_range(0.0, 1.0, high_open=True), default=0.0, metavar="F",
                   help="carve this fraction of train as validation for checkpoint selection (default: use test)")
    p.add_argument("--max-train-images", type=positive_int, default=None, metavar="N", help="use only the first N training images")
    p.add_argument("--max-test-images", type=positive_int, default=None, metavar="N", help="evaluate on the first N images only")
    p.add_argument("--protocol", choices=("exact", "reference"), default="exact", help="metrics protocol")
    p.add_argument("--log-every", type=positive_int, default=10, metavar="N", help="progress bar update (host sync) every N steps")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    g = p.add_argument_group("more data: several datasets, hard negatives, synthesized samples")
    g.add_argument("--extra-data", nargs="+", metavar="ROOT", default=None,
                   help="more labelled datasets: their train splits join training (and their --val-fraction "
                        "carves join validation)")
    g.add_argument("--negatives", nargs="+", metavar="ROOT[:IDS]", default=None,
                   help="folders of target-free frames (IDS: a file of frame ids, else ROOT/all.txt or all images)")
    g.add_argument("--negatives-per-epoch", type=int, default=0, metavar="N",
                   help="random crops of --negatives per epoch, at scales 0.5-2x native (default: 0)")
    g.add_argument("--val-negatives", nargs="+", metavar="ROOT[:IDS]", default=None,
                   help="target-free frames whose fixed crops join validation (false alarms there lower val IoU)")
    g.add_argument("--val-negative-crops", type=int, default=0, metavar="N",
                   help="native-scale crops of --val-negatives in validation (default: 0)")
    g.add_argument("--synth-per-epoch", type=int, default=0, metavar="N",
                   help="synthesized samples drawn fresh every epoch (default: 0)")
    g.add_argument("--synth-hard-p", type=float, default=0.5, metavar="P",
                   help="fraction of synthesized samples carrying hard-negative clutter (default: 0.5)")
    g.add_argument("--init-weights", default=None, metavar="W",
                   help="start from these weights (bundled name or checkpoint) instead of a random init")
    g.add_argument("--negatives-hard-p", type=float, default=0.0, metavar="P",
                   help="fraction of --negatives crops placed on bright small structures such as lamps and "
                        "glints, which random crops of large frames rarely hold (default: 0)")
    g.add_argument("--bce-weight", type=float, default=0.0, metavar="W",
                   help="add W x pixel-mean cross-entropy to Soft-IoU; unlike Soft-IoU it still pushes down "
                        "confident false alarms (default: 0, the paper's loss)")
    _track_explicit(p)  # last: after every option is added
    p.set_defaults(func=run)
