"""sirst bench: FLOP counts, peaks, the detection check, the reference baseline, metric loop, CLI."""

import json

import numpy as np
import pytest
import torch

from sirst.bench import (
    count_flops,
    estimate_peak_gflops,
    make_score_maps,
    public_style_pd_fa,
    same_detections,
)
from sirst.bench.reference_dnanet import reference_from
from sirst.cli import main
from sirst.metrics import SirstMetrics
from sirst.models import create_model


def test_flops_known_answer_and_training_is_about_three_forwards():
    # docs/models.md: DNANet-ResNet18 at 256x256 = 27.854 GFLOPs (13.93 GMACs, the paper's 14.26 "FLOPs").
    assert count_flops("dnanet", 256) == 27_853_916_928
    model = create_model("dnanet", channel_size="one")
    assert count_flops(create_model("dnanet"), 64) == count_flops("dnanet", 64)  # module or name
    fwd = count_flops(model, 64)
    train = count_flops(model, 64, train=True)
    assert 2.5 * fwd < train < 3.6 * fwd


def test_peak_estimate_is_positive_or_says_why():
    peak = estimate_peak_gflops(torch.device("cpu"), "fp32", threads=1)
    assert (peak.gflops is None and "--peak-gflops" in peak.source) or peak.gflops > 1
    if peak.gflops is not None:
        assert "1 cores" in peak.source


def test_detection_check_known_answers():
    a = np.full((2, 16, 16), -5.0, np.float32)
    a[0, 4:6, 4:6] = 3.0
    a[1, 10, 10] = 2.0
    assert same_detections(a, a).identical
    b = a.copy()
    b[0, 6, 4] = 0.5  # one border pixel more: same target, centroid moves by 1/5 px
    check = same_detections(a, b)
    assert not check.identical and check.same_targets and check.pixels_differing == 1
    assert check.targets == 2 and check.images_differing == 1
    c = a.copy()
    c[1, 0, 0] = 1.0  # a new false alarm
    assert not same_detections(a, c).same_targets


def test_reference_baseline_loads_the_same_weights_and_agrees():
    model = create_model("dnanet").eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    ref = reference_from(model)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        outs = ref(x)
        ours = model(x)
    assert len(outs) == 4  # all deep-supervision heads, as the public code computes at test time
    torch.testing.assert_close(outs[-1], ours, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="DNANet"):
        reference_from(create_model("dnanet_wo_dnim"))
    with pytest.raises(ValueError, match="CSAM"):
        reference_from(create_model("dnanet_spatial_only"))


def test_public_style_loop_agrees_with_sirst_metrics():
    scores, masks = make_score_maps(12, 256, seed=1)  # the reference protocol works at 256x256
    pd, fa = public_style_pd_fa(scores, masks, 0.5)
    m = SirstMetrics(0.5, "reference")
    m.update(scores, masks)
    r = m.compute()
    assert 0 < pd <= 1 and fa > 0
    assert pd == pytest.approx(r["pd"], abs=1e-12) and fa == pytest.approx(r["fa"], abs=1e-15)


def test_cli_bench_tiny_run_writes_json(tmp_path, capsys, monkeypatch):
    from sirst.checkpoint import save_checkpoint

    monkeypatch.setenv("SIRST_CACHE_DIR", str(tmp_path / "cache"))  # the INT8 model is cached there

    out = tmp_path / "bench.json"
    # The smallest DNANet the reference baseline supports: ResNet-10 blocks (random weights).
    model = create_model("dnanet", backbone="resnet10")
    save_checkpoint({"model_name": "dnanet", "model_kwargs": {"backbone": "resnet10"},
                     "state_dict": model.state_dict()}, tmp_path / "w.pt")
    threads = torch.get_num_threads()
    rc = main(["bench", "--size", "32", "--batch", "1,2", "--warmup", "0", "--repeats", "1", "--threads", "1",
               "--weights", str(tmp_path / "w.pt"), "--variants", "eager,fold_cl,bf16,onnxruntime,onnxruntime_int8",
               "--train-batch", "2", "--train-repeats", "1", "--eval-maps", "4", "--eval-threads", "1",
               "--json", str(out), "--quiet"])
    assert rc == 0
    assert torch.get_num_threads() == threads  # restored
    text = capsys.readouterr().out
    assert "reference DNANet" in text and "maps/s" in text and "GFLOP" in text
    report = json.loads(out.read_text())
    rows = report["inference"]
    assert [r["variant"] for r in rows[:5]] == ["reference", "eager", "fold_cl", "bf16", "onnxruntime"]
    assert {r["batch"] for r in rows} == {1, 2}
    # Best against best: every variant once, at the batch where it was fastest, against the reference's best.
    best = report["best"]
    assert sorted(b["variant"] for b in best) == sorted({r["variant"] for r in rows})
    ref_best = min(r["ms_per_img"] for r in rows if r["variant"] == "reference")
    for b in best:
        mine = [r for r in rows if r["variant"] == b["variant"]]
        assert b["ms_per_img"] == min(r["ms_per_img"] for r in mine)
        assert b["batch"] == min(mine, key=lambda r: r["ms_per_img"])["batch"]
        assert b["ratio"] == pytest.approx(ref_best / b["ms_per_img"])
    assert "Best against best" in text
    for r in rows:
        assert r["img_per_s"] > 0 and len(r["seconds"]) == 1
        if r["precision"] == "fp32":
            assert r["identical_detections"] and r["max_abs_logit_diff"] < 1e-4, r
    assert report["flops_per_image"] == count_flops(model, 32) and report["threads"] == 1
    assert {r["variant"] for r in report["training"]} == {"fp32", "amp_cl"}
    assert all(r["pd_fa_agree"] and r["threads"] == 1 for r in report["metrics"])
    # The measured matrix-product ceiling: fp32 always, bf16 because a bf16 variant ran.
    assert set(report["gemm_gflops"]) == {"fp32", "bf16"} and min(report["gemm_gflops"].values()) > 0
    # %gemm for every float row; INT8 has no measured matrix-product ceiling (its %peak is the estimate).
    assert all(r["pct_gemm"] > 0 for r in rows if r["precision"] != "int8") and "%gemm" in text
    assert all(r["pct_gemm"] is None and r["pct_peak"] > 0 for r in rows if r["precision"] == "int8")


@pytest.mark.parametrize("argv,message", [
    (["--size", "30"], "multiple of 16"),
    (["--variants", "warp"], "unknown"),
    (["--weights", "nope.pt"], "nope.pt: checkpoint not found"),
    (["--eval-threads", "0"], "--eval-threads"),
])
def test_cli_bench_bad_input(argv, message, capsys):
    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_random_bench_model_has_targets_so_the_check_is_not_vacuous():
    from sirst.bench import network_batch, synthetic_images
    from sirst.bench.run import BenchConfig, load_bench_model

    # Not plain "dnanet": that benchmarks the bundled weights where the package has them.
    model, description = load_bench_model(BenchConfig(size=32, model="dnanet_resnet10"))
    with torch.no_grad():
        logits = model(network_batch(synthetic_images(2, 32)))
    assert "random" in description
    assert 0 < float((logits > 0).float().mean()) < 0.05
