"""Bad input through the CLI: one line on stderr, the documented exit code, no traceback, nothing lost.

The exit-code contract (README, "Errors and exit codes"): 0 success, 1 the run finished but some
inputs failed (or training stopped on a non-finite loss), 2 bad options or unusable input (nothing
done). A representative set runs ``python -m sirst`` in subprocesses (started together, so the
interpreter start-ups overlap); the rest call ``sirst.cli.main`` in-process, where any uncaught
exception fails the test. Models are tiny (DNANet, channel size "one", ResNet-10) or stubs.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sirst.checkpoint import save_checkpoint
from sirst.cli import main
from sirst.models import create_model

TINY = {"channel_size": "one", "backbone": "resnet10"}
ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------
# Fixtures: a tiny checkpoint, a few images, a tiny dataset
# ------------------------------------------------------------------------------------------------


def frame(h: int = 48, w: int = 64) -> np.ndarray:
    img = np.full((h, w), 50, np.uint8)
    img[10:13, 20:23] = 255
    return img


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli_errors")
    torch.manual_seed(0)
    model = create_model("dnanet", **TINY).eval()
    ckpt = {"model_name": "dnanet", "model_kwargs": TINY, "state_dict": model.state_dict()}
    save_checkpoint(ckpt, root / "tiny.pt")
    save_checkpoint({**ckpt, "model_name": "no_such_net"}, root / "unknown_model.pt")
    wrong = dict(model.state_dict())
    key = next(k for k, v in wrong.items() if v.ndim == 4)
    wrong[key] = torch.zeros(1, 1, 1, 1)
    save_checkpoint({**ckpt, "state_dict": wrong}, root / "wrong_shapes.pt")
    (root / "corrupt.pt").write_bytes(b"not a checkpoint")
    (root / "model.onnx").write_bytes(b"onnx bytes")
    (root / "img.png").parent.mkdir(exist_ok=True)
    Image.fromarray(frame()).save(root / "img.png")
    (root / "a_file").write_text("precious\n")
    (root / "a_folder").mkdir()
    return {k: root / v for k, v in {
        "root": "", "ckpt": "tiny.pt", "unknown_model": "unknown_model.pt", "wrong_shapes": "wrong_shapes.pt",
        "corrupt": "corrupt.pt", "onnx": "model.onnx", "img": "img.png", "file": "a_file", "folder": "a_folder",
    }.items()}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from test_engine import make_tiny_dataset

    return make_tiny_dataset(tmp_path_factory.mktemp("cli_errors_data") / "data", num=8, num_test=2)


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--out", str(out), "--backbone", "resnet10", "--channel-size", "one",
            "--batch-size", "4", "--crop-size", "32", "--base-size", "64", "--max-test-images", "1",
            "--quiet", *extra]


@pytest.fixture(scope="module")
def run_dir(data, tmp_path_factory) -> Path:
    """A finished one-epoch run (copy it before changing it)."""
    out = tmp_path_factory.mktemp("cli_errors_run") / "run"
    assert main(train_args(data, out, "--epochs", "1")) == 0
    return out


def copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes: to show that nothing was lost or rewritten."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(err: str, *expected: str) -> str:
    """The single non-empty stderr line of a failed command, checked for the expected fragments."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert "error:" in lines[0], err
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]


# ------------------------------------------------------------------------------------------------
# Subprocess cases: the real entry point, its exit code and stderr
# ------------------------------------------------------------------------------------------------

SUBPROCESS_CASES = {
    "detect_out_is_a_file": (lambda f: ["detect", str(f["img"]), "--weights", str(f["ckpt"]), "--out", str(f["file"])],
                             2, ["a_file", "is a file"]),
    "detect_cuda_without_cuda": (lambda f: ["detect", str(f["img"]), "--device", "cuda", "--out", str(f["root"] / "o1")],
                                 2, ["--device cuda", "CUDA is not available"]),
    "detect_onnx_with_torch_backend": (lambda f: ["detect", str(f["img"]), "--weights", str(f["onnx"]), "--backend",
                                                  "torch", "--out", str(f["root"] / "o2")], 2, ["--backend onnxruntime"]),
    "detect_batch_size_0": (lambda f: ["detect", str(f["img"]), "--batch-size", "0"], 2, ["--batch-size", ">= 1"]),
    "eval_json_is_a_folder": (lambda f: ["eval", "--pred", str(f["folder"]), "--masks", str(f["folder"]),
                                         "--json", str(f["folder"])], 2, ["--json", "is a folder"]),
    "synth_out_is_a_file": (lambda f: ["synth", "--out", str(f["file"]), "--num", "1", "--size", "64"],
                            2, ["a_file", "is a file"]),
    "train_lr_nan": (lambda f: ["train", "--data", str(f["folder"]), "--out", str(f["root"] / "r"), "--lr", "nan"],
                     2, ["--lr", "finite"]),
    "export_shapes_mismatch": (lambda f: ["export", "--weights", str(f["wrong_shapes"]), "--out",
                                          str(f["root"] / "x.onnx")], 2, ["wrong_shapes.pt", "do not fit"]),
}


@pytest.fixture(scope="module")
def subprocess_results(files) -> dict[str, subprocess.CompletedProcess]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    results, running = {}, []
    names = list(SUBPROCESS_CASES)
    # Two at a time: the interpreter start-ups (torch import) overlap without loading the machine.
    for start in range(0, len(names), 2):
        running = [(n, subprocess.Popen([sys.executable, "-m", "sirst", *SUBPROCESS_CASES[n][0](files)],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
                   for n in names[start : start + 2]]
        for n, proc in running:
            out, err = proc.communicate(timeout=120)
            results[n] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return results


@pytest.mark.parametrize("case", list(SUBPROCESS_CASES))
def test_subprocess_one_line_error(case, files, subprocess_results):
    before = files["file"].read_text()
    res = subprocess_results[case]
    _, code, expected = SUBPROCESS_CASES[case]
    assert res.returncode == code, (res.returncode, res.stderr)
    one_line_error(res.stderr, *expected)
    assert files["file"].read_text() == before == "precious\n"


# ------------------------------------------------------------------------------------------------
# In-process cases: option validation (before any work), one line, exit code 2
# ------------------------------------------------------------------------------------------------

OPTION_CASES = {
    "detect_threshold_1.5": (["detect", "x.png", "--threshold", "1.5"], ["--threshold", "(0, 1)"]),
    "detect_tile_negative": (["detect", "x.png", "--tile", "-1"], ["--tile", "auto"]),
    "detect_bit_depth_0": (["detect", "x.png", "--bit-depth", "0"], ["--bit-depth", "1..16"]),
    "detect_input_range_inf": (["detect", "x.png", "--input-range", "0", "inf"], ["--input-range", "finite"]),
    "detect_max_pixels_10": (["detect", "x.png", "--max-pixels", "10"], ["--max-pixels", ">= 256"]),
    "detect_save_scores_jpg": (["detect", "x.png", "--save-scores", "jpg"], ["--save-scores", "invalid choice"]),
    "train_batch_size_0": (["train", "--data", "d", "--out", "o", "--batch-size", "0"], ["--batch-size", ">= 1"]),
    "train_lr_negative": (["train", "--data", "d", "--out", "o", "--lr", "-1"], ["--lr", "(0, inf)"]),
    "train_lr_inf": (["train", "--data", "d", "--out", "o", "--lr", "inf"], ["--lr", "finite"]),
    "train_epochs_0": (["train", "--data", "d", "--out", "o", "--epochs", "0"], ["--epochs", ">= 1"]),
    "train_crop_30": (["train", "--data", "d", "--out", "o", "--crop-size", "30"], ["--crop-size", "multiple of 16"]),
    "train_workers_negative": (["train", "--data", "d", "--out", "o", "--workers", "-1"], ["--workers", ">= 0"]),
    "train_val_fraction_1": (["train", "--data", "d", "--out", "o", "--val-fraction", "1"], ["--val-fraction", "[0, 1)"]),
    "train_epochs_text": (["train", "--data", "d", "--out", "o", "--epochs", "many"], ["--epochs", "integer"]),
    "eval_roc_steps_0": (["eval", "--pred", "p", "--masks", "m", "--roc-steps", "0"], ["--roc-steps", ">= 1"]),
    "eval_workers_0": (["eval", "--pred", "p", "--masks", "m", "--workers", "0"], ["--workers", ">= 1"]),
    "synth_num_0": (["synth", "--out", "o", "--num", "0"], ["--num", ">= 1"]),
    "synth_size_50": (["synth", "--out", "o", "--num", "1", "--size", "50"], ["multiple of 16"]),
    "synth_workers_0": (["synth", "--out", "o", "--num", "1", "--workers", "0"], ["--workers", ">= 1"]),
    "eval_method_jobs_0": (["eval-method", "--method", "tophat", "--data", "d", "--jobs", "0"], ["--jobs", ">= 1"]),
    "experiment_threads_0": (["experiment", "table3", "--out", "o", "--threads", "0"], ["--threads", ">= 1"]),
    "bench_size_30": (["bench", "--size", "30"], ["--size", "multiple of 16"]),
    "bench_threads_0": (["bench", "--threads", "0"], ["--threads", ">= 1"]),
    "bench_batch_0": (["bench", "--batch", "0,4"], ["--batch", ">= 1"]),
    "unknown_command": (["frobnicate"], ["invalid choice"]),
}


@pytest.mark.parametrize("case", list(OPTION_CASES))
def test_bad_option_is_one_line_exit_2(case, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # any output a bug might write lands here, and is checked below
    argv, expected = OPTION_CASES[case]
    assert main(argv) == 2
    captured = capsys.readouterr()
    one_line_error(captured.err, *expected)
    assert not any(tmp_path.iterdir()), "an option error must stop before anything is written"


# ------------------------------------------------------------------------------------------------
# In-process cases: files, devices, checkpoints
# ------------------------------------------------------------------------------------------------


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


@pytest.mark.parametrize("weights,expected", [
    ("unknown_model", ["unknown_model.pt", "cannot build its model", "no_such_net"]),
    ("wrong_shapes", ["wrong_shapes.pt", "do not fit", "other shapes"]),
    ("corrupt", ["corrupt.pt", "not a readable checkpoint"]),
])
def test_detect_bad_checkpoint(weights, expected, files, tmp_path, capsys):
    code, _, err = run_cli(["detect", files["img"], "--weights", files[weights], "--out", tmp_path / "o", "--quiet"],
                           capsys)
    assert code == 2
    one_line_error(err, *expected)


def test_detect_unwritable_output_folder(files, capsys):
    # /sys refuses new entries even to root, which chmod cannot ensure.
    try:
        Path("/sys/sirst_probe").mkdir()
    except OSError:
        pass
    else:
        Path("/sys/sirst_probe").rmdir()
        pytest.skip("/sys is writable here")
    code, _, err = run_cli(["detect", files["img"], "--weights", files["ckpt"], "--out", "/sys/sirst_out"], capsys)
    assert code == 2
    one_line_error(err, "/sys/sirst_out", "cannot create the folder")


def test_detect_output_under_a_file(files, capsys):
    code, _, err = run_cli(["detect", files["img"], "--weights", files["ckpt"], "--out", files["file"] / "sub"], capsys)
    assert code == 2
    one_line_error(err, "a_file/sub")
    assert files["file"].read_text() == "precious\n"


def test_detect_bad_device_name(files, tmp_path, capsys):
    code, _, err = run_cli(["detect", files["img"], "--device", "gpu0", "--out", tmp_path / "o"], capsys)
    assert code == 2
    one_line_error(err, "--device gpu0", "cpu, cuda")


def test_detect_backend_without_the_precision(files, tmp_path, capsys):
    code, _, err = run_cli(["detect", files["img"], "--backend", "onnxruntime", "--precision", "bf16", "--weights",
                            files["ckpt"], "--out", tmp_path / "o"], capsys)
    assert code == 2
    one_line_error(err, "the onnxruntime backend runs fp32, int8, not 'bf16'")


def test_detect_range_options_conflict(files, tmp_path, capsys):
    code, _, err = run_cli(["detect", files["img"], "--bit-depth", "12", "--input-range", "0", "4095",
                            "--out", tmp_path / "o"], capsys)
    assert code == 2
    one_line_error(err, "--input-range or --bit-depth")
    code, _, err = run_cli(["detect", files["img"], "--input-range", "9", "3", "--out", tmp_path / "o"], capsys)
    assert code == 2
    one_line_error(err, "MIN must be below MAX")


def test_detect_overlap_not_below_tile(files, tmp_path, capsys):
    code, _, err = run_cli(["detect", files["img"], "--tile", "64", "--overlap", "64", "--out", tmp_path / "o"], capsys)
    assert code == 2
    one_line_error(err, "--overlap 64 must be smaller than --tile 64")


def test_detect_no_inputs(tmp_path, capsys):
    code, _, err = run_cli(["detect", "--out", tmp_path / "o"], capsys)
    assert code == 2
    one_line_error(err, "give images, folders or videos")


def test_eval_outputs_checked_before_work(files, tmp_path, capsys):
    code, _, err = run_cli(["eval", "--pred", files["folder"], "--masks", files["folder"], "--roc-csv",
                            tmp_path / "missing" / "roc.csv"], capsys)
    assert code == 2
    one_line_error(err, "--roc-csv", "does not exist")


def test_eval_network_cuda_and_onnx(files, capsys):
    code, _, err = run_cli(["eval", "--data", files["folder"], "--device", "cuda", "--weights", files["ckpt"]], capsys)
    assert code == 2
    one_line_error(err, "CUDA is not available")
    code, _, err = run_cli(["eval", "--data", files["folder"], "--weights", files["onnx"]], capsys)
    assert code == 2
    one_line_error(err, "is an ONNX model", "--backend onnxruntime")


def test_eval_missing_prediction_folder(files, tmp_path, capsys):
    code, _, err = run_cli(["eval", "--pred", tmp_path / "nope", "--masks", tmp_path / "nope"], capsys)
    assert code == 2
    one_line_error(err, "nope", "does not exist")


def test_synth_does_not_overwrite_a_dataset(tmp_path, capsys):
    out = tmp_path / "ds"
    assert run_cli(["synth", "--out", out, "--num", "2", "--size", "64", "--quiet"], capsys)[0] == 0
    before = snapshot(out)
    code, _, err = run_cli(["synth", "--out", out, "--num", "3", "--size", "64", "--seed", "5", "--quiet"], capsys)
    assert code == 2
    one_line_error(err, "already holds a dataset", "--overwrite")
    assert snapshot(out) == before


def test_synth_missing_backgrounds(tmp_path, capsys):
    code, _, err = run_cli(["synth", "--out", tmp_path / "o", "--num", "1", "--backgrounds", tmp_path / "nope"], capsys)
    assert code == 2
    one_line_error(err, "--backgrounds", "no such folder")


def test_export_out_is_a_folder(files, capsys):
    code, _, err = run_cli(["export", "--weights", files["ckpt"], "--out", files["folder"]], capsys)
    assert code == 2
    one_line_error(err, "is a folder")


def test_visualize_out_is_a_file(files, capsys):
    code, _, err = run_cli(["visualize", "--methods", "tophat", "--data", files["folder"], "--out", files["file"]],
                           capsys)
    assert code == 2
    one_line_error(err, "a_file", "is a file")
    assert files["file"].read_text() == "precious\n"


def test_compare_network_on_cuda_without_cuda(files, capsys):
    code, _, err = run_cli(["compare", "--methods", f"tophat,dnanet:{files['ckpt']}", "--data", files["folder"],
                            "--device", "cuda"], capsys)
    assert code == 2
    one_line_error(err, "CUDA is not available")


# ------------------------------------------------------------------------------------------------
# Training: resume, optimizer changes, faults
# ------------------------------------------------------------------------------------------------


def test_train_requires_data_unless_resuming(tmp_path, capsys):
    code, _, err = run_cli(["train", "--out", tmp_path / "r"], capsys)
    assert code == 2
    one_line_error(err, "--data ROOT is required")


def test_train_out_is_a_file(data, files, capsys):
    code, _, err = run_cli(train_args(data, files["file"]), capsys)
    assert code == 2
    one_line_error(err, "a_file")
    assert files["file"].read_text() == "precious\n"


def test_train_cuda_without_cuda(data, tmp_path, capsys):
    code, _, err = run_cli(train_args(data, tmp_path / "r", "--device", "cuda"), capsys)
    assert code == 2
    one_line_error(err, "CUDA")


def test_resume_without_a_run(data, tmp_path, capsys):
    code, _, err = run_cli(train_args(data, tmp_path / "r", "--resume"), capsys)
    assert code == 2
    one_line_error(err, "no run to resume")


def test_resume_with_another_optimizer_changes_nothing(run_dir, tmp_path, capsys):
    out = copy_run(run_dir, tmp_path / "run")
    before = snapshot(out)
    code, _, err = run_cli(["train", "--out", out, "--resume", "--optimizer", "adam", "--epochs", "2", "--quiet"],
                           capsys)
    assert code == 2
    one_line_error(err, "optimizer='adagrad'", "optimizer='adam'", "new run")
    assert snapshot(out) == before  # config.yaml, last.pt and metrics.jsonl untouched


def test_resume_with_another_cosine_length(data, tmp_path, capsys):
    out = tmp_path / "cos"
    assert run_cli(train_args(data, out, "--epochs", "1", "--scheduler", "cosine", "--max-train-images", "4"),
                   capsys)[0] == 0
    before = snapshot(out)
    code, _, err = run_cli(["train", "--out", out, "--resume", "--epochs", "3", "--quiet"], capsys)
    assert code == 2
    one_line_error(err, "cosine schedule", "1 epochs")
    assert snapshot(out) == before


def test_resume_reads_saved_config_and_records_overrides(run_dir, tmp_path, capsys):
    import yaml

    out = copy_run(run_dir, tmp_path / "run")
    # --epochs 2 is explicit; everything else (the tiny model, crops, batch) comes from config.yaml.
    code, _, err = run_cli(["train", "--out", out, "--resume", "--epochs", "2", "--eval-every", "2"], capsys)
    assert code == 0, err
    assert "epochs=2 (was 1)" in err
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["epochs"] == 2 and cfg["channel_size"] == "one" and cfg["crop_size"] == 32 and cfg["batch_size"] == 4
    record = json.loads((out / "overrides.jsonl").read_text().splitlines()[-1])
    assert record["epoch"] == 1 and record["changed"] == {"epochs": [1, 2], "eval_every": [1, 2]}
    assert torch.load(out / "last.pt", weights_only=False)["epoch"] == 2
    assert (out / "last.prev.pt").is_file()  # the epoch-1 checkpoint, kept as the fallback
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


def test_corrupt_last_checkpoint_falls_back_with_a_warning(run_dir, tmp_path, capsys):
    out = copy_run(run_dir, tmp_path / "run")
    (out / "last.pt").write_bytes(b"\0" * 100)  # a damaged disk block, a truncated copy
    (out / ".last.pt.abc123.tmp").write_bytes(b"")  # what a kill during a save leaves behind
    code, _, err = run_cli(["train", "--out", out, "--resume", "--epochs", "2"], capsys)
    assert code == 0, err
    warning = [line for line in err.splitlines() if "warning" in line]
    assert len(warning) == 1 and "last.pt: cannot be read" in warning[0] and "best.pt (epoch 1)" in warning[0]
    assert torch.load(out / "last.pt", weights_only=False)["epoch"] == 2
    assert not list(out.glob(".*.tmp"))


def test_non_finite_loss_stops_and_names_an_existing_checkpoint(run_dir, tmp_path, capsys, monkeypatch):
    from sirst.engine import steps

    out = copy_run(run_dir, tmp_path / "run")
    calls = []

    def nan_step(self, model, batch, optimizers):
        calls.append(1)
        return {"loss": torch.tensor(float("nan"))}

    monkeypatch.setattr(steps.SegmentationStep, "step", nan_step)
    code, _, err = run_cli(["train", "--out", out, "--resume", "--epochs", "2", "--log-every", "100", "--quiet"],
                           capsys)
    assert code == 1
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in err
    line = one_line_error(errors[0], "non-finite training loss at epoch 2, step 1")
    named = Path(line.split("the last good checkpoint is ")[1])
    assert named.is_file() and named == out / "last.pt"
    assert len(calls) == 1  # stopped at once, not after --log-every steps


# ------------------------------------------------------------------------------------------------
# Folders: failures counted, videos processed, other files reported
# ------------------------------------------------------------------------------------------------


def write_video(path: Path, frames: int = 2) -> None:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    assert writer.isOpened()
    for _ in range(frames):
        writer.write(np.dstack([frame()] * 3))
    writer.release()


def test_folder_with_unreadable_files_continues_counts_and_exits_1(files, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b"):
        Image.fromarray(frame()).save(folder / f"{name}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG truncated")
    (folder / "empty.tif").write_bytes(b"")
    write_video(folder / "clip.avi")
    (folder / "notes.txt").write_text("not an image")
    before = snapshot(folder)
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("earlier output")
    code, printed, err = run_cli(["detect", folder, "--weights", files["ckpt"], "--out", out, "--quiet"], capsys)
    assert code == 1
    assert "4 image(s) done, 2 failed" in printed
    failures = [line for line in err.splitlines() if "failed:" in line]
    assert len(failures) == 2 and any("broken.png" in f for f in failures) and any("empty.tif" in f for f in failures)
    assert any("skipped 1 file(s) that are neither images nor videos (notes.txt)" in line for line in err.splitlines())
    masks = sorted(p.name for p in (out / "masks").iterdir())
    assert masks == ["a.png", "b.png", "clip_f000000.png", "clip_f000001.png"]  # the video inside the folder
    assert len((out / "errors.txt").read_text().splitlines()) == 2
    assert snapshot(folder) == before and (out / "keep.txt").read_text() == "earlier output"


# ------------------------------------------------------------------------------------------------
# Bit depths: 12-bit data read like their 8-bit version, forced ranges, warnings
# ------------------------------------------------------------------------------------------------


def test_12bit_frame_gives_the_same_detections_as_its_8bit_version(tmp_path, capsys):
    from sirst.data.io import read_image

    eight = np.asarray(Image.open(ROOT / "src" / "sirst" / "samples" / "sample_city.png"))
    twelve = np.round(eight.astype(np.float64) * 4095 / 255).astype(np.uint16)  # 12-bit counts, 16-bit PNG
    Image.fromarray(eight).save(tmp_path / "f8.png")
    Image.fromarray(twelve).save(tmp_path / "f12.png")
    Image.fromarray(twelve).save(tmp_path / "f12.tif")
    np.testing.assert_allclose(read_image(tmp_path / "f12.png"), read_image(tmp_path / "f8.png"), atol=1.3e-4)
    out = tmp_path / "o"
    # fp32: reduced precision may flip a border pixel for inputs that differ by 1e-4, which is not what this tests.
    assert run_cli(["detect", tmp_path / "f8.png", tmp_path / "f12.png", tmp_path / "f12.tif", "--out", out,
                    "--precision", "fp32", "--backend", "torch", "--quiet"], capsys)[0] == 0
    rows = list(csv.DictReader(open(out / "detections.csv")))
    by_image = {k: [(r["x"], r["y"], r["area"]) for r in rows if r["image"] == k] for k in ("f8", "f12", "f12_2")}
    assert by_image["f8"], "the bundled weights find targets in the sample"
    assert by_image["f12"] == by_image["f8"] == by_image["f12_2"]
    assert {r["source"] for r in rows if r["image"] == "f12_2"} == {str(tmp_path / "f12.tif")}
    m8, m12 = (np.asarray(Image.open(out / "masks" / f"{k}.png")) for k in ("f8", "f12"))
    assert (m8 == m12).all()


def test_raw_counts_are_stretched_and_forced_ranges_apply(tmp_path):
    from sirst.data.io import InputRangeWarning, read_image

    raw = np.full((64, 64), 8000, np.uint16)  # 14-bit counts in a narrow band, as a raw sensor gives
    raw[::2] += 300
    raw[30:33, 30:33] = 9000
    Image.fromarray(raw).save(tmp_path / "raw.png")
    auto = read_image(tmp_path / "raw.png")
    assert auto.max() == pytest.approx(1.0) and auto.min() == pytest.approx(0.0)  # robust percentiles
    forced = read_image(tmp_path / "raw.png", value_range=(7000.0, 9000.0))
    assert forced[31, 31] == pytest.approx(1.0) and forced[1, 0] == pytest.approx(0.5)
    with pytest.warns(InputRangeWarning, match="nearly uniform"):
        read_image(tmp_path / "raw.png", bit_depth=16)  # 8000..9000 of 65535: almost black
    flat = np.full((32, 32), 1000, np.uint16)
    flat[5, 5] = 1004
    Image.fromarray(flat).save(tmp_path / "flat.png")
    with pytest.warns(InputRangeWarning, match="spans only"):
        read_image(tmp_path / "flat.png")


def test_detect_prints_range_warnings_as_one_line(files, tmp_path, capsys):
    dim = np.full((48, 64), 30, np.uint16)
    Image.fromarray(dim).save(tmp_path / "dim.png")
    code, _, err = run_cli(["detect", tmp_path / "dim.png", "--weights", files["ckpt"], "--bit-depth", "16",
                            "--out", tmp_path / "o", "--quiet"], capsys)
    assert code == 0
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sirst detect: warning:") and "dim.png" in lines[0]


# ------------------------------------------------------------------------------------------------
# Outputs: score maps for eval, the source column, progress totals, --quiet everywhere
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "npy"])
def test_saved_scores_feed_eval_roc(fmt, files, tmp_path, capsys):
    folder, masks = tmp_path / "in", tmp_path / "masks"
    folder.mkdir()
    masks.mkdir()
    for name in ("a", "b"):
        Image.fromarray(frame()).save(folder / f"{name}.png")
        mask = np.zeros((48, 64), np.uint8)
        mask[10:13, 20:23] = 255
        Image.fromarray(mask).save(masks / f"{name}.png")
    out = tmp_path / "o"
    code, printed, _ = run_cli(["detect", folder, "--weights", files["ckpt"], "--out", out, "--save-scores", fmt,
                                "--quiet"], capsys)
    assert code == 0 and "scores:" in printed
    assert sorted(p.name for p in (out / "scores").iterdir()) == [f"a.{fmt}", f"b.{fmt}"]
    roc = tmp_path / "roc.csv"
    assert run_cli(["eval", "--pred", out / "scores", "--masks", masks, "--roc-csv", roc, "--quiet"], capsys)[0] == 0
    rows = list(csv.DictReader(open(roc)))
    assert len(rows) == 21 and {"pd", "fa", "tpr", "fpr"} <= set(rows[0])
    # The saved map agrees with the mask that detect wrote at its threshold.
    from sirst.evaluation import read_map

    score = read_map(next((out / "scores").iterdir()))
    mask = np.asarray(Image.open(out / "masks" / "a.png")) > 0
    assert ((score > 0.5) == mask).mean() > 0.999


def test_progress_bar_shows_total(files, tmp_path, capsys):
    for name in ("a", "b", "c"):
        Image.fromarray(frame()).save(tmp_path / f"{name}.png")
    code, _, err = run_cli(["detect", *(tmp_path / f"{n}.png" for n in "abc"), "--weights", files["ckpt"],
                            "--out", tmp_path / "o"], capsys)
    assert code == 0
    assert "3/3" in err and "<" in err  # total and elapsed<remaining (the ETA)


def test_quiet_means_the_same_in_every_command():
    from sirst.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    names = ["detect", "train", "eval", "synth", "export", "eval-method", "compare", "visualize", "experiment", "bench"]
    for name in names:
        p = sub.choices[name]
        quiet = [a for a in p._actions if "--quiet" in a.option_strings]
        assert quiet, f"sirst {name} has no --quiet"
        assert "progress" in quiet[0].help, name
    check = next(a for a in sub.choices["data"]._actions if a.dest == "data_command").choices["check"]
    assert any("--quiet" in a.option_strings for a in check._actions)


def test_a_command_gets_a_parser_of_its_own_and_anything_else_the_full_one():
    from sirst.cli import build_parser

    def commands(parser):
        return set(next(a for a in parser._actions if a.dest == "command").choices)

    full = commands(build_parser())
    assert commands(build_parser("detect")) == {"detect"}  # sirst detect does not import the training code
    assert build_parser("detect").parse_args(["detect", "x.png", "--quiet"]).quiet
    for other in ("classical", "detct", "--help", None):  # no sub-command of that name: every one, for the message
        assert commands(build_parser(other)) == full


def test_only_the_program_skips_the_last_garbage_collections(monkeypatch, tmp_path):
    import gc

    from sirst.cli import main

    argv = ["detect", "--out", str(tmp_path / "o"), "--quiet"]  # no inputs: an error, after the command ran
    before = gc.get_freeze_count()
    assert main(argv) == 2 and gc.get_freeze_count() == before  # called as a library: untouched
    monkeypatch.setattr(sys, "argv", ["sirst", *argv])
    try:
        assert main() == 2 and gc.get_freeze_count() > 0  # the program: its objects left to the exit
    finally:
        gc.unfreeze()
