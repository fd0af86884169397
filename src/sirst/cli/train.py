"""`sirst train`: train a network with the DNANet paper's protocol (or variations of it).

Single process::

    sirst train --data ROOT --out RUN_DIR --epochs 1500

Several processes (DDP; gloo on CPU, NCCL on CUDA)::

    torchrun --nproc-per-node 2 -m sirst train --data ROOT --out RUN_DIR ...
"""

from __future__ import annotations

import argparse
import sys


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
    )


def run(args: argparse.Namespace) -> int:
    from sirst.engine.train import NonFiniteLossError, train

    cfg = _config_from_args(args)
    try:
        result = train(cfg)
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
    p.add_argument("--data", required=True, metavar="ROOT", help="dataset root")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (created)")
    p.add_argument("--split", default="50_50", help="split folder under ROOT (default: 50_50)")
    p.add_argument("--model", default="dnanet", help="registered model name (default: dnanet)")
    p.add_argument("--backbone", default=None, help="model backbone, e.g. resnet10/resnet18/resnet34/vgg10 (model default)")
    p.add_argument("--channel-size", default=None, help="DNANet widths: one/two/three/four (model default: three)")
    p.add_argument("--in-channels", type=int, default=3, help="input channels (gray copied; default 3 as the paper)")
    p.add_argument("--epochs", type=int, default=1500, help="epochs (default: 1500, the paper)")
    p.add_argument("--max-minutes", type=float, default=None, metavar="M",
                   help="stop after the first epoch that ends M minutes after the start (evaluated and saved; "
                        "--resume continues it)")
    p.add_argument("--batch-size", type=int, default=16, help="training batch per process (default: 16)")
    p.add_argument("--eval-batch-size", type=int, default=1, help="images per evaluation forward (default: 1)")
    p.add_argument("--crop-size", type=int, default=256, help="training crop size, multiple of 16 (default: 256)")
    p.add_argument("--base-size", type=int, default=256, help="base resize size of the augmentation (default: 256)")
    p.add_argument("--lr", type=float, default=0.05, help="learning rate (default: 0.05)")
    p.add_argument("--min-lr", type=float, default=1e-5, help="final learning rate of the cosine schedule")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--optimizer", choices=("adagrad", "adam", "adamw", "sgd"), default="adagrad")
    p.add_argument("--scheduler", choices=("constant", "cosine"), default="constant")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the model for training (compiles once, about a minute on a small CPU)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--eval-every", type=int, default=1, metavar="K", help="evaluate every K epochs and at the end")
    p.add_argument("--workers", type=int, default=0, metavar="N", help="data loader worker processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.0, metavar="F",
                   help="carve this fraction of train as validation for checkpoint selection (default: use test)")
    p.add_argument("--max-train-images", type=int, default=None, metavar="N", help="use only the first N training images")
    p.add_argument("--max-test-images", type=int, default=None, metavar="N", help="evaluate on the first N images only")
    p.add_argument("--protocol", choices=("exact", "reference"), default="exact", help="metrics protocol")
    p.add_argument("--log-every", type=int, default=10, metavar="N", help="progress bar update (host sync) every N steps")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    p.set_defaults(func=run)
