"""`sirst window`: train every run of a plan in one time-boxed GPU window, detached, and collect results.

See docs/device_window.md for the procedure on a device machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def _named(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, value


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def run_pack(args: argparse.Namespace) -> int:
    from sirst.data.pack import pack_sources

    manifest = pack_sources(args.out, args.dataset, args.negatives, args.split, args.subset, args.crops_per_frame,
                            args.crop_size, log=lambda line: print(line, flush=True))
    for s in manifest["sources"]:
        print(f"  {s['name']:<16} {s['kind']:<10} {len(s['ids']):>5} images {s['bytes'] / 1e6:7.2f} MB")
    print(f"wrote {args.out}: {manifest['file_bytes'] / 1e6:.2f} MB ({manifest['file_bytes'] / 2**20:.2f} MiB), "
          f"images as {manifest['image_format']}")
    return 0


def run_start(args: argparse.Namespace) -> int:
    from sirst.cli import CLIError
    from sirst.engine.window_ctl import start_window

    deadline = time.time() + 60.0 * args.minutes
    try:
        pid = start_window(args.out, args.plan, args.pack, deadline, args.device, args.resume_from, args.workers)
    except RuntimeError as exc:
        raise CLIError(str(exc)) from exc
    print(f"window started: pid {pid}, log {Path(args.out) / 'window.log'}, stops by "
          f"{time.strftime('%H:%M:%S', time.localtime(deadline))} ({args.minutes:g} min); "
          f"follow with `sirst window wait {args.out}`", flush=True)
    return 0


def run_train(args: argparse.Namespace) -> int:
    from sirst.engine.window_ctl import check_window_inputs, train_in_foreground

    if args.deadline is None:  # started by hand, not by `sirst window start` (which checked)
        check_window_inputs(args.plan, args.pack, args.device, args.resume_from)
    deadline = args.deadline if args.deadline is not None else time.time() + 60.0 * args.minutes
    status = train_in_foreground(args.plan, args.pack, args.out, deadline, args.device, args.resume_from, args.workers)
    return 0 if status["state"] == "done" else 1


def run_wait(args: argparse.Namespace) -> int:
    from sirst.engine.window_ctl import MIB, wait_window

    status = wait_window(args.out, args.seconds, collect_to=args.collect_to, collect_every=args.collect_every,
                         print_every=args.print_every, max_files=args.max_files, max_bytes=int(args.max_mb * MIB))
    return 1 if status.get("state") == "failed" else 0


def run_collect(args: argparse.Namespace) -> int:
    from sirst.engine.window_ctl import MIB, collect

    summary = collect(args.out, args.to, max_files=args.max_files, max_bytes=int(args.max_mb * MIB),
                      items=args.items, runs=args.runs)
    for name, size in summary["collected"].items():
        print(f"{name}: {size / MIB:.2f} MiB")
    for item in summary["left_out"]:
        print(f"left out: {item}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from sirst.engine.window import read_status
    from sirst.engine.window_ctl import progress_line

    status = read_status(args.out)
    print(json.dumps(status, indent=1) if args.json else progress_line(status))
    return 0


def run_stop(args: argparse.Namespace) -> int:
    from sirst.engine.window_ctl import stop_window

    ended = stop_window(args.out, args.wait)
    print("window stopped" if ended else f"window still running after {args.wait:g} s (it ends its epochs first)")
    return 0 if ended else 1


def run_budget(args: argparse.Namespace) -> int:
    from sirst.engine.window_ctl import MIB, tree_budget

    b = tree_budget(args.repo, args.carry)
    print(f"tracked files            {b['tracked'] / MIB:8.2f} MiB")
    print(f"untracked, not ignored   {b['untracked'] / MIB:8.2f} MiB")
    for path, size in b["carry"].items():
        print(f"carry {path:<19}{size / MIB:8.2f} MiB")
    print(f"total                    {b['total'] / MIB:8.2f} MiB of {b['limit'] / MIB:.0f} "
          f"({'fits' if b['fits'] else 'TOO LARGE'}; room {b['room'] / MIB:.2f} MiB)")
    return 0 if b["fits"] else 1


def run_expand(args: argparse.Namespace) -> int:
    from sirst.checkpoint import read_checkpoint, save_checkpoint
    from sirst.checkpoint import expand_training_state

    ckpt = expand_training_state(read_checkpoint(args.state))
    save_checkpoint(ckpt, args.out)
    print(f"wrote {args.out} (epoch {ckpt.get('epoch')}): `sirst train --resume` continues from it when --out is "
          f"its folder and the options match its config")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "window", help="train several runs in one time-boxed GPU window (fast path), detached; collect results",
        description="Train every run of a plan at once on one GPU (data and augmentation on the GPU, each step "
                    "one CUDA graph), detached from the calling command, under a time budget; follow it, copy "
                    "its checkpoints out within a device machine's return limits, resume it in a later window. "
                    "See docs/device_window.md.",
    )
    sub = p.add_subparsers(dest="window_command", metavar="ACTION")
    sub.required = True

    c = sub.add_parser("pack", help="pack dataset splits and negative crops into one compact file to carry")
    c.add_argument("--out", required=True, help="pack file to write, e.g. runs/window_pack/train.pack (git-ignored)")
    c.add_argument("--dataset", type=_named, action="append", default=[], metavar="NAME=ROOT",
                   help="a labelled dataset in the standard layout (repeatable), e.g. nuaa=../shared/data/NUAA-SIRST")
    c.add_argument("--split", default="50_50", help="split folder (default 50_50)")
    c.add_argument("--subset", default="train", choices=("train", "test"), help="which split file (default train)")
    c.add_argument("--negatives", type=_named, action="append", default=[], metavar="NAME=ROOT[:IDS]",
                   help="target-free frames to crop hard negatives from (repeatable)")
    c.add_argument("--crops-per-frame", type=int, default=1, help="negative crops per frame (default 1)")
    c.add_argument("--crop-size", type=int, default=256, help="side of the negative crops (default 256)")
    c.set_defaults(func=run_pack)

    for name, helptext, func in (("start", "start training detached (returns at once)", run_start),
                                 ("train", "train in the foreground (what start runs)", run_train)):
        c = sub.add_parser(name, help=helptext)
        c.add_argument("--plan", required=True, help="plan YAML, or a bundled plan name (paper, tiny)")
        c.add_argument("--pack", required=True, help="data pack made by `sirst window pack`")
        c.add_argument("--out", required=True, help="the window's folder (checkpoints, status, log)")
        c.add_argument("--minutes", type=float, default=10.0, help="time budget from now (default 10)")
        if name == "train":
            c.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)
        c.add_argument("--resume-from", default=None, help="folder of RUN-state.pt files returned by an earlier window")
        c.add_argument("--device", default="cuda", help="cuda (default) or cpu")
        c.add_argument("--workers", type=int, default=None,
                       help="CPU processes for decoding and synthesis (default all)")
        c.set_defaults(func=func)

    c = sub.add_parser("wait", help="follow a window, printing progress; collect results every minute")
    c.add_argument("out", help="the window's folder")
    c.add_argument("--seconds", type=float, default=540.0, help="return after this long at most (default 540)")
    c.add_argument("--collect-to", default=None, help="copy results here (e.g. $OUT) every --collect-every seconds")
    c.add_argument("--collect-every", type=float, default=60.0, help="default 60")
    c.add_argument("--print-every", type=float, default=30.0, help="default 30")
    c.add_argument("--max-files", type=int, default=7, help="files to return at most (default 7)")
    c.add_argument("--max-mb", type=float, default=60.0, help="MiB to return at most (default 60)")
    c.set_defaults(func=run_wait)

    c = sub.add_parser("collect", help="copy a window's results into a folder within the return limits")
    c.add_argument("out", help="the window's folder")
    c.add_argument("--to", required=True, help="destination folder, e.g. $OUT")
    c.add_argument("--max-files", type=int, default=7, help="default 7")
    c.add_argument("--max-mb", type=float, default=60.0, help="default 60")
    c.add_argument("--items", type=_names, default=["log", "best", "state"], help="log,best,state (default all)")
    c.add_argument("--runs", type=_names, default=None, help="only these runs (default all)")
    c.set_defaults(func=run_collect)

    c = sub.add_parser("status", help="print a window's progress")
    c.add_argument("out", help="the window's folder")
    c.add_argument("--json", action="store_true", help="the whole status.json")
    c.set_defaults(func=run_status)

    c = sub.add_parser("stop", help="ask a running window to stop early (it saves first)")
    c.add_argument("out", help="the window's folder")
    c.add_argument("--wait", type=float, default=60.0, help="seconds to wait for it (default 60)")
    c.set_defaults(func=run_stop)

    c = sub.add_parser("budget", help="MiB a device call would carry: the repository's files plus carried paths")
    c.add_argument("--carry", nargs="*", default=[], help="git-ignored paths to carry (relative to the repository)")
    c.add_argument("--repo", default=".", help="repository root (default .)")
    c.set_defaults(func=run_budget)

    c = sub.add_parser("expand", help="turn a returned RUN-state.pt into a full last.pt for `sirst train --resume`")
    c.add_argument("state", help="a state.pt (compact) or last.pt")
    c.add_argument("--out", required=True, help="file to write, e.g. runs/nuaa/last.pt")
    c.set_defaults(func=run_expand)
