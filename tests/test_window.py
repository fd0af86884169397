"""`sirst window`: data packs, plans, the detached time-boxed window, collecting within the return limits.

The window runs on the CPU here with a tiny DNANet (widths 4..16, 32x32 crops) for seconds; the same
code trains the paper's runs on a GPU (docs/device_window.md).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from sirst.cli import main
from sirst.data.pack import load_labelled, peak_crops, read_manifest, read_pack, write_pack
from sirst.engine.window import load_plan, plan_from_dict, read_status

TINY_DEFAULTS = dict(backbone="resnet10", model_kwargs={"widths": [4, 8, 8, 16, 16]}, batch_size=4, crop_size=32,
                     base_size=32, eval_every=1, amp=False, channels_last=False, eval_batch_size=4)


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory) -> Path:
    from test_engine import make_tiny_dataset

    base = tmp_path_factory.mktemp("pack")
    root = make_tiny_dataset(base / "data", num=20, num_test=4, size=48)
    path = base / "tiny.pack"
    write_pack(path, {"tiny": load_labelled(root)})
    return path


def make_negatives(root: Path, num: int = 2, size: tuple[int, int] = (120, 160)) -> Path:
    """Target-free frames with a few bright 3x3 spots (where the hard-negative crops should centre)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    ids = []
    for i in range(num):
        frame = rng.integers(40, 60, size).astype(np.uint8)
        y, x = 30 + 20 * i, 100 - 10 * i
        frame[y - 1 : y + 2, x - 1 : x + 2] = 250
        Image.fromarray(frame).save(root / "images" / f"f{i}.png")
        ids.append(f"f{i}")
    (root / "all.txt").write_text("\n".join(ids) + "\n")
    return root


# --------------------------------------------------------------------------------------------------
# Packs


def test_pack_round_trip_is_lossless_and_keeps_the_split_order(tmp_path):
    from test_engine import make_tiny_dataset

    from sirst.data import SirstDataset

    root = make_tiny_dataset(tmp_path / "data", num=10, num_test=3, size=40)
    negatives = make_negatives(tmp_path / "neg")
    rc = main(["window", "pack", "--out", str(tmp_path / "p" / "train.pack"), "--dataset", f"tiny={root}",
               "--negatives", f"neg={negatives}", "--crops-per-frame", "2", "--crop-size", "32"])
    assert rc == 0
    manifest = read_manifest(tmp_path / "p" / "train.pack")
    assert [s["name"] for s in manifest["sources"]] == ["tiny", "neg"]
    pack = read_pack(tmp_path / "p" / "train.pack", workers=2)
    ds = SirstDataset(root, subset="train", mode="eval")
    assert pack["tiny"].ids == ds.ids and pack["tiny"].root == str(root) and pack["tiny"].split == "50_50/train"
    for i in range(len(ds)):
        image, mask = ds.load(i)
        np.testing.assert_array_equal(pack["tiny"].images[i], np.rint(image * 255).astype(np.uint8))
        np.testing.assert_array_equal(pack["tiny"].masks[i], mask)
    neg = pack["neg"]
    assert neg.kind == "negatives" and len(neg) == 4 and all(im.shape == (32, 32) for im in neg.images)
    assert not any(m.any() for m in neg.masks)
    assert neg.images[0].max() == 250 and neg.images[2].max() == 250  # the first crop of each frame holds its spot
    with pytest.raises(ValueError, match="no source"):
        read_pack(tmp_path / "p" / "train.pack", ["nope"])


def test_peak_crops_centre_on_bright_spots_and_spread():
    frame = np.full((100, 200), 50, np.uint8)
    frame[20, 30] = frame[70, 170] = 255
    corners = peak_crops(frame, 2, 40)
    centres = {(y + 20, x + 20) for y, x in corners}
    assert all(0 <= y <= 60 and 0 <= x <= 160 for y, x in corners)
    assert any(abs(cy - 20) <= 1 and abs(cx - 30) <= 11 for cy, cx in centres)
    assert any(abs(cy - 70) <= 11 and abs(cx - 170) <= 11 for cy, cx in centres)


def test_pack_errors(tmp_path):
    assert main(["window", "pack", "--out", str(tmp_path / "x.pack")]) == 2
    assert main(["window", "pack", "--out", str(tmp_path / "x.pack"), "--dataset", f"a={tmp_path / 'missing'}"]) == 2
    (tmp_path / "bad.pack").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a sirst pack"):
        read_manifest(tmp_path / "bad.pack")


# --------------------------------------------------------------------------------------------------
# Plans


def test_bundled_paper_plan():
    plan = load_plan("paper")
    assert [r.name for r in plan.runs] == ["nuaa", "nudt", "general"]
    for r in plan.runs:
        protocol = (r.lr, r.batch_size, r.crop_size, r.base_size, r.epochs, r.val_fraction)
        assert protocol == (0.05, 16, 256, 256, 1500, 0.1)
        assert r.amp and r.channels_last and r.cuda_graphs and r.model == "dnanet"
    general = plan.runs[2]
    assert general.synth is not None and "synth" in general.train and general.val_extra == ["negatives_val"]


@pytest.mark.parametrize("change,message", [
    ({"bogus": 1}, "unknown keys"),
    ({"val_fraction": 0.0}, "never on test"),
    ({"train": ["tiny", "synth"]}, "no synth settings"),
    ({"synth": {"num": 4}}, "not in train"),
    ({"synth": {"nmu": 4}, "train": ["synth"]}, "synth: unknown keys"),
    ({"crop_size": 30}, "multiple of 16"),
    ({"name": "a b"}, "letters"),
])
def test_plan_errors_name_the_run_and_key(change, message):
    run = {"name": "a", "train": ["tiny"], **change}
    with pytest.raises(ValueError, match=message):
        plan_from_dict({"runs": [run]})
    with pytest.raises(ValueError, match="unique"):
        plan_from_dict({"runs": [{"name": "a", "train": ["x"]}, {"name": "a", "train": ["y"]}]})
    with pytest.raises(FileNotFoundError, match="bundled plan"):
        load_plan("no-such-plan")


# --------------------------------------------------------------------------------------------------
# The detached window


def _write_plan(path: Path, epochs: int = 1000, **window) -> Path:
    data = {"defaults": {**TINY_DEFAULTS, "epochs": epochs}, "runs": [{"name": "a", "train": ["tiny"]}],
            "checkpoint_every_s": 1.0, "reserve_s": 3.0, "abort_s": 1.0, "status_every_s": 0.3, "log_every_s": 2.0,
            **window}
    path.write_text(yaml.safe_dump(data))
    return path


def test_window_starts_detached_stops_itself_and_resumes(tiny_pack, tmp_path, capsys):
    plan = _write_plan(tmp_path / "plan.yaml")
    out, back = tmp_path / "win", tmp_path / "back"
    start = time.time()
    assert main(["window", "start", "--plan", str(plan), "--pack", str(tiny_pack), "--out", str(out),
                 "--minutes", "0.5", "--device", "cpu", "--workers", "1"]) == 0
    assert time.time() - start < 6  # returns while the window trains in its own session
    assert "window started" in capsys.readouterr().out
    # 30 s of budget: a loaded 2-core machine takes over 15 s to import torch and start the window.
    assert main(["window", "wait", str(out), "--seconds", "70", "--collect-to", str(back), "--collect-every", "1",
                 "--print-every", "2"]) == 0
    status = read_status(out)
    run = status["runs"]["a"]
    assert status["state"] == "done", (out / "window.log").read_text()
    assert run["state"] == "stopped" and run["epoch"] >= 1 and run["checkpoint_epoch"] == run["epoch"]
    assert status["updated"] < status["deadline"]  # saved and done before the budget ran out
    for name in ("last.pt", "state.pt", "best.pt", "metrics.jsonl", "config.yaml"):
        assert (out / "a" / name).is_file(), name
    assert sorted(p.name for p in back.iterdir()) == ["a-best.pt", "a-state.pt", "window.json", "window.log"]
    summary = json.loads((back / "window.json").read_text())
    evaluated = [e["epoch"] for e in summary["evaluations"]["a"]]
    # Evaluations run in the background; one due while the previous runs is taken at the next epoch end.
    assert summary["status"]["state"] == "done"
    assert evaluated[-1] <= run["epoch"] and evaluated == sorted(set(evaluated))  # the last one if time allowed
    first_epoch = run["epoch"]

    # A second window in the same folder continues from last.pt; stopped early, it still saves.
    assert main(["window", "start", "--plan", str(plan), "--pack", str(tiny_pack), "--out", str(out),
                 "--minutes", "1", "--device", "cpu", "--workers", "1"]) == 0
    deadline = time.time() + 30
    while time.time() < deadline and read_status(out).get("runs", {}).get("a", {}).get("epoch", 0) <= first_epoch:
        time.sleep(0.2)
    assert main(["window", "stop", str(out), "--wait", "20"]) == 0
    status = read_status(out)
    run = status["runs"]["a"]
    assert status["state"] == "done" and run["resumed_from"] == str(out / "a" / "last.pt")
    assert run["epoch"] > first_epoch and run["checkpoint_epoch"] == run["epoch"]
    assert status["left_s"] > 20  # it did not run to its budget
    epochs = [json.loads(s)["epoch"] for s in (out / "a" / "metrics.jsonl").read_text().splitlines()]
    assert epochs[: len(evaluated)] == evaluated and epochs == sorted(set(epochs)) and epochs[-1] > first_epoch
    assert main(["window", "status", str(out)]) == 0 and "done" in capsys.readouterr().out


def test_start_refuses_a_plan_the_pack_cannot_feed(tiny_pack, tmp_path, capsys):
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"runs": [{"name": "a", "train": ["nudt"]}]}))
    assert main(["window", "start", "--plan", str(plan), "--pack", str(tiny_pack), "--out", str(tmp_path / "o"),
                 "--device", "cpu"]) == 2
    assert "needs sources ['nudt']" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# Collecting and carrying


def _fake_window(out: Path, runs: dict[str, tuple[str, int, int]]) -> None:
    """Run folders with best.pt / state.pt of given sizes and a status naming each run's state."""
    status = {"state": "done", "runs": {}}
    for name, (state, best, st) in runs.items():
        d = out / name
        d.mkdir(parents=True)
        (d / "config.yaml").write_text("x: 1\n")
        (d / "best.pt").write_bytes(b"b" * best)
        (d / "state.pt").write_bytes(b"s" * st)
        (d / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "iou": 0.5}) + "\n")
        status["runs"][name] = {"state": state, "epoch": 10 if state == "finished" else 5, "epochs": 10}
    (out / "status.json").write_text(json.dumps(status))
    (out / "window.log").write_bytes(b"x" * (3 * 2**20))


def test_collect_keeps_within_the_limits_and_says_what_it_left(tmp_path):
    from sirst.engine.window_ctl import MIB, collect

    out = tmp_path / "w"
    _fake_window(out, {"done1": ("finished", 9 * MIB, 14 * MIB), "nudt": ("stopped", 9 * MIB, 14 * MIB),
                       "zz": ("stopped", 9 * MIB, 14 * MIB)})
    summary = collect(out, tmp_path / "o1")
    files = {p.name: p.stat().st_size for p in (tmp_path / "o1").iterdir()}
    assert len(files) <= 7 and sum(files.values()) <= 60 * MIB
    assert files["window.log"] == MIB  # the log's last MiB
    assert {"done1-best.pt", "nudt-best.pt", "zz-best.pt", "nudt-state.pt", "zz-state.pt"} <= set(files)
    assert "done1-state.pt" not in files and any("done1-state.pt" in s for s in summary["left_out"])
    # Another call picks up what was left out.
    collect(out, tmp_path / "o2", items=["state"], runs=["done1"])
    assert sorted(p.name for p in (tmp_path / "o2").iterdir()) == ["done1-state.pt", "window.json"]
    # Fewer files allowed: the states of unfinished runs come before nothing else.
    collect(out, tmp_path / "o3", max_files=3, items=["state"])
    assert sorted(p.name for p in (tmp_path / "o3").iterdir()) == ["nudt-state.pt", "window.json", "zz-state.pt"]
    names = [p.name for p in (tmp_path / "o1").iterdir()]
    assert all(n.replace(".", "").replace("_", "").replace("-", "").isalnum() for n in names)


def test_budget_counts_tracked_files_and_carried_paths(tmp_path):
    from sirst.engine.window_ctl import tree_budget

    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".gitignore").write_text("runs/\n")
    (repo / "a.txt").write_bytes(b"a" * 1000)
    subprocess.run(["git", "-C", str(repo), "add", "a.txt", ".gitignore"], check=True)
    (repo / "new.txt").write_bytes(b"n" * 10)
    (repo / "runs" / "pack").mkdir(parents=True)
    (repo / "runs" / "pack" / "train.pack").write_bytes(b"p" * 500)
    b = tree_budget(repo, ["runs/pack"], limit=2000)
    assert b["tracked"] == 1000 + len("runs/\n") and b["untracked"] == 10 and b["carry"] == {"runs/pack": 500}
    assert b["fits"] and b["room"] == 2000 - b["total"]
    assert not tree_budget(repo, ["runs/pack"], limit=1000)["fits"]


def test_a_failed_evaluation_is_logged_and_training_goes_on(tiny_pack, tmp_path, monkeypatch):
    import importlib

    from sirst.engine.window import train_window

    evaluation = importlib.import_module("sirst.evaluation.dataset")  # the module (sirst.evaluation re-exports the function)

    real, calls = evaluation.evaluate_dataset, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate_dataset", flaky)
    plan = plan_from_dict({"defaults": {**TINY_DEFAULTS, "epochs": 3}, "runs": [{"name": "a", "train": ["tiny"]}],
                           "reserve_s": 0.0})
    lines: list[str] = []
    status = train_window(plan, tiny_pack, tmp_path / "w", time.time() + 60, device="cpu", workers=1, log=lines.append)
    run = status["runs"]["a"]
    assert status["state"] == "done" and run["epoch"] == 3 and run["eval_failures"] == 1
    assert any("evaluating epoch 1 failed: RuntimeError: CUDA out of memory" in s for s in lines)
    assert run["best_epoch"] is not None and (tmp_path / "w" / "a" / "best.pt").is_file()


def test_start_without_cuda_says_so(tiny_pack, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    plan = _write_plan(tmp_path / "plan.yaml")
    assert main(["window", "start", "--plan", str(plan), "--pack", str(tiny_pack), "--out", str(tmp_path / "o")]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
