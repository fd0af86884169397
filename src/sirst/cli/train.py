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

from sirst.cli.options import positive_int


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


def _config_from_args(args: argparse.Namespace):
    """The :class:`~sirst.engine.config.TrainConfig` of the parsed options (one per field, see :func:`_add_options`)."""
    from sirst.engine.config import TrainConfig

    values = {}
    for f in _option_fields():
        value = getattr(args, _dest(f))
        if f.metadata["cli"]["flag"] == "--quiet":
            value = not value
        elif _is_list(f):
            value = list(value or [])
        values[f.name] = value
    return TrainConfig(**values)


def _option_fields() -> list:
    """The fields of TrainConfig that are ``sirst train`` options (declared with ``option``)."""
    import dataclasses

    from sirst.engine.config import TrainConfig

    return [f for f in dataclasses.fields(TrainConfig) if "cli" in f.metadata]


def _dest(f) -> str:
    flag = f.metadata["cli"]["flag"]
    return flag[2:].replace("-", "_") if flag else f.name


def _is_list(f) -> bool:
    return str(f.type).startswith("list")


def _add_options(p: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field declared with ``option``: its flag, help, type, metavar, choices
    and default (a field without default, such as ``data``, defaults to None: ``run`` checks it)."""
    import dataclasses

    from sirst.cli import options

    types = {"int": int, "float": float, "multiple_of_16": _multiple_of_16,
             "fraction": options.float_range(0.0, 1.0, high_open=True)}
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in _option_fields():
        cli = f.metadata["cli"]
        target = p if cli["group"] is None else groups.setdefault(cli["group"], p.add_argument_group(cli["group"]))
        flag = cli["flag"] or "--" + f.name.replace("_", "-")
        kwargs = {k: cli[k] for k in ("help", "metavar", "choices") if cli[k] is not None}
        if cli["required"]:
            kwargs["required"] = True
        if str(f.type) == "bool":
            target.add_argument(flag, action="store_true", **kwargs)
            continue
        if _is_list(f):
            kwargs["nargs"] = "+"
        elif cli["type"]:
            kwargs["type"] = types[cli["type"]] if cli["type"] in types else getattr(options, cli["type"])
        elif str(f.type) in types:  # a plain int or float field
            kwargs["type"] = types[str(f.type)]
        if not cli["required"]:
            kwargs["default"] = None if f.default is dataclasses.MISSING or _is_list(f) else f.default
        target.add_argument(flag, **kwargs)


def run(args: argparse.Namespace) -> int:
    from sirst.cli.options import check_device, ensure_output_dir
    from sirst.engine.config import resume_config
    from sirst.engine.train import NonFiniteLossError, train

    explicit = _explicit_options(args)
    changes: dict = {}
    if args.resume:  # the saved config, with the options given here
        cfg, changes = resume_config(_config_from_args(args), {f.name for f in _option_fields() if _dest(f) in explicit})
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
    _add_options(p)  # one per TrainConfig field, with the help written there
    _track_explicit(p)  # last: after every option is added
    p.set_defaults(func=run)
