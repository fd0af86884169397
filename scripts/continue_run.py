"""Continue a long CPU training run from the compact state the last session committed.

A run is a recipe (``src/sirst/recipes/<name>/train.yaml``: TrainConfig fields, with ``{data}`` for the
datasets folder and ``{here}`` for the recipe folder) plus its committed state:

    states/<name>/state.pt        compact resumable state (fp16 weights, 8-bit log optimizer statistics; ~14 MB
                                  for DNANet-R18 with Adam), replaced in place, one per run
    states/<name>/metrics.jsonl   every evaluation so far
    states/<name>/sessions.jsonl  one line per call: date, epochs trained, wall minutes, threads

Each call trains for about ``--minutes`` (it stops at the first epoch end after that; see the recipe for
an epoch's length) in ``runs/<name>/`` (git-ignored; within a session ``last.pt`` resumes exactly), then
writes the state back. ``--bundle`` also writes the run's best checkpoint as the bundled fp16 weights
``src/sirst/weights/dnanet_<name>.pt``, or as ``runs/<name>/best_fp16.pt`` when the shipped file carries a
gate or verifier made for its own weights. Commit ``states/<name>`` (and the weights) afterwards.

Usage: python scripts/continue_run.py general --minutes 60 [--data ../shared/data] [--bundle]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "src" / "sirst" / "recipes"
# Fields that name places, not the run's semantics: the current session's paths replace the saved ones.
PATH_FIELDS = ("data", "extra_data", "negatives", "negatives_mined", "val_negatives", "out")


def recipe_config(name: str, data: Path, out: Path, minutes: float | None):
    from sirst.engine.config import TrainConfig

    path = RECIPES / name / "train.yaml"
    if not path.is_file():
        raise SystemExit(f"continue_run: error: {path}: no such recipe")
    text = path.read_text().replace("{data}", str(data.resolve())).replace("{here}", str(path.parent.resolve()))
    fields = yaml.safe_load(text)
    return TrainConfig(**fields, out=str(out), max_minutes=minutes)


def main() -> None:
    import torch

    from sirst.checkpoint import (
        compact_training_state,
        expand_training_state,
        read_checkpoint,
        save_checkpoint,
    )
    from sirst.engine.train import train

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="recipe name (src/sirst/recipes/NAME/train.yaml)")
    parser.add_argument("--minutes", type=float, required=True, help="training budget of this call")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="folder holding the datasets")
    parser.add_argument("--bundle", action="store_true",
                        help="also write best.pt as src/sirst/weights/dnanet_NAME.pt (as runs/NAME/best_fp16.pt "
                             "when the shipped file carries a gate or verifier)")
    args = parser.parse_args()

    run_dir, state_dir = ROOT / "runs" / args.name, ROOT / "states" / args.name
    cfg = recipe_config(args.name, Path(args.data), run_dir, args.minutes)
    state_file = state_dir / "state.pt"
    first_epoch = 1
    saved: dict = {}  # the config the run was saved with
    if (run_dir / "last.pt").is_file():
        ckpt = read_checkpoint(run_dir / "last.pt")
        first_epoch, saved = int(ckpt["epoch"]) + 1, ckpt.get("config") or {}
        print(f"continuing {run_dir / 'last.pt'} (this session's run, from epoch {first_epoch})")
        cfg.resume = True
    elif state_file.is_file():
        ckpt = expand_training_state(torch.load(state_file, map_location="cpu", weights_only=False))
        ckpt["config"] = {**ckpt["config"], **{k: getattr(cfg, k) for k in PATH_FIELDS}}
        save_checkpoint(ckpt, run_dir / "last.pt")
        if (state_dir / "metrics.jsonl").is_file():
            shutil.copy(state_dir / "metrics.jsonl", run_dir / "metrics.jsonl")
        first_epoch, saved = int(ckpt["epoch"]) + 1, ckpt["config"]
        print(f"continuing from {state_file} (epoch {ckpt['epoch']}, best val IoU {ckpt['best_iou']:.4f} "
              f"at epoch {ckpt['best_epoch']})")
        cfg.resume = True
    else:
        print(f"starting {args.name} from its recipe")
    import datetime
    import json
    import time

    # Options the recipe gained after the run began (a key its saved config predates) take effect from
    # this epoch on; say so in the run's overrides.jsonl, as `sirst train --resume` does for flags.
    overrides = {k: [None, v] for k, v in cfg.to_dict().items() if k not in saved} if cfg.resume else {}
    started = time.time()
    train(cfg, overrides)
    last = read_checkpoint(run_dir / "last.pt")
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "sessions.jsonl", "a") as f:  # what each session added, for the model card
        f.write(json.dumps({"date": datetime.date.today().isoformat(), "first_epoch": first_epoch,
                            "last_epoch": int(last["epoch"]), "minutes": round((time.time() - started) / 60, 1),
                            "threads": torch.get_num_threads()}) + "\n")
    save_checkpoint(compact_training_state(last), state_file)
    shutil.copy(run_dir / "metrics.jsonl", state_dir / "metrics.jsonl")
    print(f"wrote {state_file} ({state_file.stat().st_size / 1e6:.1f} MB, epoch {last['epoch']})")
    if args.bundle and (run_dir / "best.pt").is_file():
        import subprocess
        import sys

        from sirst.checkpoint import read_checkpoint

        shipped = ROOT / "src" / "sirst" / "weights" / f"dnanet_{args.name}.pt"
        where = ["--name", args.name]
        if shipped.is_file() and any(k in read_checkpoint(shipped) for k in ("verifier", "min_peak_logit")):
            # The shipped gate and verifier were made for the shipped network weights; a new epoch
            # needs its own (docs/long_runs.md), so it is not shipped without them.
            where = ["--out", str(run_dir / "best_fp16.pt")]
            print(f"{shipped.name} carries a gate/verifier made for its own weights: wrote the new best to "
                  f"{where[1]} instead; make its gate and verifier (docs/verifier.md) before bundling it")
        subprocess.run([sys.executable, str(ROOT / "scripts" / "bundle_weights.py"), str(run_dir / "best.pt"),
                        *where], check=True)


if __name__ == "__main__":
    main()
