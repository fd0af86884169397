"""The CUDA training fast path (sirst.engine.fast), checked on the CPU where the same code runs eagerly.

* the GPU augmentation makes the same random choices as ``train_augment`` and computes the same
  crops (image to ~1e-6; mask to the pixel except where a source position is exactly half-way);
* its distribution: flips half the time, long side within [0.5, 2] x base, crop size, determinism;
* the fast step's loss, gradients and Adagrad update equal ``SegmentationStep``'s (fp32, 1e-5);
* checkpoints: ``sirst train --resume`` and ``sirst eval --weights`` accept the window's files, and
  the compact state expands to a loadable Adagrad state;
* on CUDA only (skipped here): the captured graph equals the eager step.

Tiny everywhere: DNANet-ResNet10 with widths 4..16, 32x32 crops.
"""

from __future__ import annotations

import copy
import json
import math
import time

import numpy as np
import pytest
import torch

from sirst.data.transforms import train_augment
from sirst.engine.fast import (
    AUG_FLIP,
    AUG_HEIGHT,
    AUG_SIGMA,
    AUG_WIDTH,
    FastStep,
    FastStepOptions,
    ImageBank,
    TrainSource,
    adagrad_step_,
    augment_batch,
    draw_augment,
    epoch_params,
)
from sirst.checkpoint import compact_training_state as compact_state
from sirst.checkpoint import dequantize_log8, quantize_log8
from sirst.checkpoint import expand_training_state as expand_state
from sirst.models import create_model

WIDTHS = (4, 8, 8, 16, 16)


def tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("dnanet", backbone="resnet10", widths=WIDTHS).train()


def random_bank(sizes, seed: int = 0, p: float = 0.2) -> tuple[ImageBank, list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, size, dtype=np.uint8) for size in sizes]
    masks = [rng.random(size) < p for size in sizes]
    return ImageBank(images, masks), images, masks


# --------------------------------------------------------------------------------------------------
# Augmentation


def test_draw_augment_consumes_the_generator_as_train_augment_does():
    for seed in range(200):
        h, w = (int(v) for v in np.random.default_rng(seed + 1000).integers(20, 400, 2))
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        train_augment(np.zeros((h, w), np.float32), np.zeros((h, w), bool), a, 256, 256)
        flip, oh, ow, y, x, sigma = draw_augment(b, h, w, 256, 256)
        assert a.random() == b.random()  # same number of draws, in the same order
        assert max(oh, ow) in range(128, 513) and flip in (0.0, 1.0) and 0 <= sigma < 1
        assert 0 <= y <= max(oh, 256) - 256 and 0 <= x <= max(ow, 256) - 256


def _ties(start: int, crop: int, src: int, dst: int) -> np.ndarray:
    """Output positions whose nearest source pixel is exactly half-way between two (either is right)."""
    r = start + np.arange(crop)
    return ((2 * r + 1) * src) % (2 * dst) == 0


def test_gpu_augmentation_equals_train_augment():
    sizes = [(37, 53), (96, 64), (120, 200), (64, 64), (31, 17)]
    bank, images, masks = random_bank(sizes)
    worst = 0.0
    for seed in range(150):
        k = seed % len(sizes)
        rng = np.random.default_rng(seed)
        cpu_image, cpu_mask = train_augment(images[k].astype(np.float32) / 255, masks[k], rng, 64, 32)
        flip, oh, ow, y, x, sigma = draw_augment(np.random.default_rng(seed), *sizes[k], 64, 32)
        gray, mask = augment_batch(bank, torch.tensor([[k, flip, oh, ow, y, x, sigma]], dtype=torch.float32), 32)
        assert gray.shape == mask.shape == (1, 1, 32, 32)
        worst = max(worst, float(np.abs(gray[0, 0].numpy() - cpu_image).max()))
        differ = mask[0, 0].numpy().astype(bool) != cpu_mask
        tie = _ties(y, 32, sizes[k][0], oh)[:, None] | _ties(x, 32, sizes[k][1], ow)[None, :]
        assert not (differ & ~tie).any(), f"seed {seed}: mask differs away from half-way positions"
    assert worst < 1e-5


def _sources(sizes, n_train=None):
    return [TrainSource(offset=0, sizes=np.array(sizes, np.int64), indices=np.arange(n_train or len(sizes)))]


def test_augmentation_distribution_and_determinism():
    sizes = [(int(h), int(w)) for h, w in np.random.default_rng(3).integers(40, 300, (50, 2))]
    src = _sources(sizes)
    params = np.concatenate([epoch_params(src, 0, e, 10, 64, 32) for e in range(40)]).reshape(-1, 7)
    assert 0.45 < params[:, AUG_FLIP].mean() < 0.55
    long_side = np.maximum(params[:, AUG_HEIGHT], params[:, AUG_WIDTH])
    assert long_side.min() >= 32 and long_side.max() <= 128 and len(np.unique(long_side)) > 60
    assert 0.4 < (params[:, AUG_SIGMA] > 0).mean() < 0.5  # p = 0.5, minus sigmas below 0.05
    index = params[:, 0].astype(int)
    hs, ws = np.array(sizes)[index].T
    # Aspect kept: the short side is the long side's scale applied to it, rounded.
    short_out = np.minimum(params[:, AUG_HEIGHT], params[:, AUG_WIDTH])
    expected = np.minimum(hs, ws) * long_side / np.maximum(hs, ws)
    assert np.all(np.abs(short_out - expected) <= 0.5 + 1e-4)
    np.testing.assert_array_equal(epoch_params(src, 0, 5, 10, 64, 32), epoch_params(src, 0, 5, 10, 64, 32))
    assert not np.array_equal(epoch_params(src, 0, 5, 10, 64, 32), epoch_params(src, 0, 6, 10, 64, 32))
    assert not np.array_equal(epoch_params(src, 1, 5, 10, 64, 32), epoch_params(src, 0, 5, 10, 64, 32))
    # Every sample once per epoch, partial batch dropped (the standard loop's order and drop_last).
    p = epoch_params(src, 0, 7, 8, 64, 32)
    assert p.shape == (6, 8, 7) and len(np.unique(p[..., 0])) == 48


def test_epoch_order_and_crops_are_the_standard_loops(tmp_path):
    """Batches hold the samples the DistributedSampler would give, augmented as SirstDataset would."""
    from test_engine import make_tiny_dataset

    from sirst.data import SirstDataset
    from sirst.data.pack import load_labelled

    root = make_tiny_dataset(tmp_path / "data", num=14, num_test=2, size=48)
    ds = SirstDataset(root, subset="train", mode="train", crop_size=32, base_size=32, seed=3)
    src = load_labelled(root)
    bank = ImageBank(src.images, src.masks)
    sources = [TrainSource(0, np.array([im.shape for im in src.images]), np.arange(len(src.images)))]
    epoch = 2
    ds.set_epoch(epoch)
    sampler = torch.utils.data.DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=3)
    sampler.set_epoch(epoch)
    order = list(sampler)
    params = epoch_params(sources, 3, epoch, 4, 32, 32)
    assert [int(i) for i in params[..., 0].ravel()] == order[:12]
    gray, mask = augment_batch(bank, torch.from_numpy(params[1]), 32)
    for j, index in enumerate(order[4:8]):
        item = ds[index]
        np.testing.assert_allclose(gray[j, 0].numpy(), item["image"][0].numpy() * 0.229 + 0.485, atol=1e-5)
        assert (mask[j, 0] != item["mask"][0]).float().mean() < 0.05  # only half-way ties may differ


def test_mask_stays_on_the_bright_pixels():
    rng = np.random.default_rng(5)
    images, masks = [], []
    for h, w in [(90, 140), (200, 120), (64, 64)]:
        m = np.zeros((h, w), bool)
        for _ in range(6):
            y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
            m[y : y + int(rng.integers(4, 9)), x : x + int(rng.integers(4, 9))] = True
        images.append(m.astype(np.uint8) * 255)
        masks.append(m)
    bank = ImageBank(images, masks)
    sources = _sources([im.shape for im in images])
    inter = union = 0.0
    for epoch in range(30):
        params = torch.from_numpy(epoch_params(sources, 0, epoch, 3, 64, 32)[0])
        params[:, AUG_SIGMA] = 0  # alignment of geometry, not the blur
        gray, mask = augment_batch(bank, params, 32)
        bright = gray > 0.5
        inter += float((bright & (mask > 0)).sum())
        union += float((bright | (mask > 0)).sum())
    assert union > 500 and inter / union > 0.9


# --------------------------------------------------------------------------------------------------
# The step


def test_adagrad_step_equals_torch_adagrad():
    torch.manual_seed(0)
    for wd in (0.0, 0.01):
        params = [torch.randn(5, 3), torch.randn(7)]
        ref = [p.clone().requires_grad_(True) for p in params]
        opt = torch.optim.Adagrad(ref, lr=0.05, weight_decay=wd)
        sums = [torch.zeros_like(p) for p in params]
        for _ in range(4):
            grads = [torch.randn_like(p) for p in params]
            for r, g in zip(ref, grads):
                r.grad = g.clone()
            opt.step()
            adagrad_step_(params, grads, sums, lr=0.05, weight_decay=wd)
        for p, r in zip(params, ref):
            torch.testing.assert_close(p, r.detach(), rtol=1e-6, atol=1e-7)
        for s, r in zip(sums, ref):
            torch.testing.assert_close(s, opt.state[r]["sum"], rtol=1e-6, atol=1e-7)


def _fast_and_reference(amp: bool = False):
    from sirst.engine.config import TrainConfig
    from sirst.engine.steps import SegmentationStep

    model = tiny_model()
    reference = copy.deepcopy(model)
    bank, _, _ = random_bank([(40, 56), (64, 48), (33, 70), (50, 50)], seed=1, p=0.05)
    fast = FastStep(model, torch.optim.Adagrad(model.parameters(), lr=0.05), bank, 4,
                    FastStepOptions(crop_size=32, amp=amp, channels_last=False), "cpu")
    cfg = TrainConfig(data=".", out=".", amp=amp)
    step = SegmentationStep(cfg)
    optimizers = step.configure_optimizers(reference, cfg)
    return fast, reference, step, optimizers, bank


def test_fast_step_equals_segmentation_step():
    fast, reference, step, optimizers, bank = _fast_and_reference()
    sources = _sources([tuple(s) for s in bank.sizes])
    for epoch in range(2):
        image, mask = fast.make_batch(torch.from_numpy(epoch_params(sources, 0, epoch, 4, 64, 32)[0]))
        assert image.shape == (4, 3, 32, 32) and mask.sum() > 0
        loss = fast.step_on_batch(image, mask)
        ref_loss = step.step(reference, {"image": image, "mask": mask}, optimizers)["loss"]
        assert abs(float(loss) - float(ref_loss)) < 1e-6
        for (name, p), q in zip(fast.model.named_parameters(), reference.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7, msg=name)
            torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-6, msg=name)
        for s, q in zip(fast.sums, reference.parameters()):
            torch.testing.assert_close(s, optimizers[0].state[q]["sum"], rtol=1e-5, atol=1e-10)
    for a, b in zip(fast.model.buffers(), reference.buffers()):  # BatchNorm statistics too
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    stats = fast.take_stats()
    assert fast.steps == 2 and float(stats[1]) == 0 and float(fast.loss_sum) == 0


def test_step_from_parameters_is_the_same_step():
    fast, reference, _, _, bank = _fast_and_reference()
    other = FastStep(reference, torch.optim.Adagrad(reference.parameters(), lr=0.05), bank, 4, fast.options, "cpu")
    params = torch.from_numpy(epoch_params(_sources([tuple(s) for s in bank.sizes]), 0, 0, 4, 64, 32)[0])
    fast.step(params)
    other.step_on_batch(*other.make_batch(params))
    assert fast.graph_check == {}
    assert fast.capture(params[None].repeat(2, 1, 1)) == {"graph": False, "reason": "not CUDA"}
    for p, q in zip(fast.model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    torch.testing.assert_close(fast.take_stats(), other.take_stats())


def test_bf16_step_runs_and_counts_non_finite_losses():
    fast, _, _, _, bank = _fast_and_reference(amp=True)
    params = torch.from_numpy(epoch_params(_sources([tuple(s) for s in bank.sizes]), 0, 0, 4, 64, 32)[0])
    fast.step(params)
    with torch.no_grad():
        next(fast.model.parameters()).fill_(float("nan"))
    fast.step(params)
    loss_sum, bad = fast.take_stats().tolist()
    assert math.isnan(loss_sum) and bad == 1.0


# --------------------------------------------------------------------------------------------------
# Checkpoints


def test_log8_quantisation_keeps_zeros_and_the_bound():
    wide = torch.cat([torch.zeros(10), torch.logspace(-12, 2, 1000)])[None]  # one row over 46 octaves
    back = dequantize_log8(quantize_log8(wide))
    assert torch.equal(back[0, :10], torch.zeros(10))
    rel = (back[0, 10:] - wide[0, 10:]).abs() / wide[0, 10:]
    assert float(rel.max()) <= 2 ** (14 * math.log2(10) / 508) - 1 + 1e-6
    rows = torch.rand(16, 8, 3, 3) * 9e-4 + 1e-4  # rows within a few octaves, as accumulators of a channel
    assert float(((dequantize_log8(quantize_log8(rows)) - rows).abs() / rows).max()) < 0.01
    vector = torch.tensor([1e-9, 2.0, 0.0, 3.5])  # 1-D tensors (biases, BatchNorm): one value a row, exact
    torch.testing.assert_close(dequantize_log8(quantize_log8(vector)), vector, rtol=1e-6, atol=0)
    assert torch.equal(dequantize_log8(quantize_log8(torch.zeros(3, 2))), torch.zeros(3, 2))
    assert float(dequantize_log8(quantize_log8(torch.tensor(0.25)))) == 0.25


def test_compact_state_expands_to_a_loadable_checkpoint(tmp_path):
    from sirst.checkpoint import model_from_checkpoint, read_checkpoint, save_checkpoint
    from sirst.engine.config import TrainConfig
    from sirst.engine.train import _checkpoint, make_scheduler

    fast, _, _, _, bank = _fast_and_reference()
    params = torch.from_numpy(epoch_params(_sources([tuple(s) for s in bank.sizes]), 0, 0, 4, 64, 32)[0])
    for _ in range(3):
        fast.step(params)
    cfg = TrainConfig(data=".", out=".")
    for p in fast.params:
        fast.optimizer.state[p]["step"] = torch.tensor(float(fast.steps))
    ckpt = _checkpoint(cfg, fast.model, {"backbone": "resnet10", "widths": WIDTHS}, 1, [fast.optimizer],
                       [make_scheduler(fast.optimizer, cfg)], None, 1, 0.5, "val")
    save_checkpoint(ckpt, tmp_path / "last.pt")
    save_checkpoint(compact_state(ckpt), tmp_path / "state.pt")
    state = read_checkpoint(tmp_path / "state.pt")
    model = model_from_checkpoint(state)  # fp16 weights load like the bundled ones
    expanded = expand_state(state)
    opt = torch.optim.Adagrad(model.parameters(), lr=0.05)
    opt.load_state_dict(expanded["optimizer"][0])
    for p, q, s in zip(model.parameters(), fast.params, fast.sums):
        torch.testing.assert_close(p, q.detach(), rtol=1e-3, atol=1e-4)
        code = quantize_log8(s)  # each row's promise: within 2^(log2 range / 508) of the value
        bound = (2 ** ((code["hi"] - code["lo"]).double() / 508) - 1).view(-1, *[1] * (s.dim() - 1)).expand_as(s)
        error = ((opt.state[p]["sum"].double() - s.double()).abs() / s.double())[s > 0]
        assert bool((error <= bound[s > 0] + 1e-5).all()) and float(error.mean()) < 0.015
        assert torch.equal(opt.state[p]["sum"] == 0, s == 0) and float(opt.state[p]["step"]) == 3.0
    assert expand_state(ckpt) is ckpt and expanded["epoch"] == 1 and expanded["best_iou"] == 0.5


def test_compact_state_of_the_paper_model_fits_one_returned_file(tmp_path):
    from sirst.checkpoint import save_checkpoint
    from sirst.engine.config import TrainConfig
    from sirst.engine.train import _checkpoint, make_scheduler

    model = create_model("dnanet")  # ResNet-18, widths 16..256: 4.7 M parameters
    opt = torch.optim.Adagrad(model.parameters(), lr=0.05)
    for p in model.parameters():
        opt.state[p]["sum"].copy_(torch.rand_like(p) ** 4 * 1e-3)
    cfg = TrainConfig(data=".", out=".")
    ckpt = _checkpoint(cfg, model, {}, 1, [opt], [make_scheduler(opt, cfg)], None, None, 0.0, "val")
    save_checkpoint(compact_state(ckpt), tmp_path / "state.pt")
    size = (tmp_path / "state.pt").stat().st_size
    assert 14.0e6 < size < 15.0e6 < 16 * 2**20  # 3 bytes a parameter, under a returned file's 16 MiB


def test_window_checkpoints_resume_in_sirst_train_and_evaluate(tmp_path):
    """A CPU window: its last.pt resumes under `sirst train --resume`, best.pt evaluates, and a new
    window resumes from the returned compact state."""
    from test_engine import make_tiny_dataset

    from sirst.checkpoint import model_from_checkpoint, read_checkpoint
    from sirst.cli import main
    from sirst.data.pack import load_labelled, write_pack
    from sirst.engine.config import TrainConfig
    from sirst.engine.train import train
    from sirst.engine.window import plan_from_dict, train_window

    root = make_tiny_dataset(tmp_path / "data", num=20, num_test=4, size=48)
    write_pack(tmp_path / "p.pack", {"tiny": load_labelled(root)})
    plan = plan_from_dict({
        "defaults": dict(backbone="resnet10", model_kwargs={"widths": list(WIDTHS)}, epochs=3, batch_size=4,
                         crop_size=32, base_size=32, eval_every=1, amp=False, channels_last=False, eval_batch_size=4),
        "runs": [{"name": "a", "train": ["tiny"]}], "checkpoint_every_s": 0.1, "reserve_s": 0.0,
    })
    status = train_window(plan, tmp_path / "p.pack", tmp_path / "w", time.time() + 60, device="cpu", workers=1,
                          log=lambda _: None)
    assert status["state"] == "done"
    assert status["runs"]["a"]["epoch"] == 3 and status["runs"]["a"]["state"] == "finished"
    run = tmp_path / "w" / "a"
    last = read_checkpoint(run / "last.pt")
    assert {"model_name", "model_kwargs", "state_dict", "epoch", "optimizer", "scheduler", "rng", "config", "metrics",
            "best_epoch", "best_iou", "eval_split"} <= set(last)
    assert last["eval_split"] == "val" and last["epoch"] == 3
    torch.optim.Adagrad(model_from_checkpoint(last).parameters()).load_state_dict(last["optimizer"][0])
    best = read_checkpoint(run / "best.pt")
    assert all(v.dtype == torch.float16 for v in best["state_dict"].values() if v.is_floating_point())
    assert best["best_epoch"] == last["best_epoch"]

    first = (run / "metrics.jsonl").read_text().splitlines()  # the window's evaluations
    cfg = TrainConfig.load_yaml(run / "config.yaml")
    assert cfg.data == str(root) and cfg.val_fraction == 0.1
    cfg.resume, cfg.epochs = True, 4
    result = train(cfg)  # `sirst train --resume` with the run's own options
    assert [h["epoch"] for h in result.history] == [4]
    assert main(["eval", "--data", str(root), "--weights", str(run / "best.pt")]) == 0

    # A later window on another machine: only the compact state came back.
    (tmp_path / "back").mkdir()
    (run / "state.pt").rename(tmp_path / "back" / "a-state.pt")
    plan.runs[0].epochs = 4
    status = train_window(plan, tmp_path / "p.pack", tmp_path / "w2", time.time() + 60, device="cpu",
                          resume_dir=tmp_path / "back", workers=1, log=lambda _: None)
    r = status["runs"]["a"]
    assert r["resumed_from"].endswith("a-state.pt") and r["epoch"] == 4 and status["state"] == "done"
    lines = (tmp_path / "w2" / "a" / "metrics.jsonl").read_text().splitlines()
    epochs = [json.loads(s)["epoch"] for s in lines]
    assert lines[: len(first)] == first and epochs[-1] == 4 and epochs == sorted(set(epochs))  # carried, then its own


def test_validation_carve_is_build_datasets(tmp_path):
    from test_engine import make_tiny_dataset, tiny_config

    from sirst.engine.train import build_datasets
    from sirst.engine.window import carve_validation

    root = make_tiny_dataset(tmp_path / "data", num=23, num_test=3, size=32)
    for seed, fraction in [(0, 0.1), (5, 0.25)]:
        train_set, eval_set, split = build_datasets(tiny_config(root, tmp_path / "o", seed=seed, val_fraction=fraction))
        train_idx, val_idx = carve_validation(20, fraction, seed)
        assert split == "val" and list(train_set.indices) == train_idx and list(eval_set.indices) == val_idx


# --------------------------------------------------------------------------------------------------
# CUDA (skipped without a GPU; run on the device machine)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
def test_cuda_graph_step_equals_eager_steps():
    """Graph replay on a side stream == eager steps. Gradients are compared on the first step only:
    CUDA backward kernels add with atomics (run to run differences ~1e-7), and Adagrad turns a
    near-zero gradient of either sign into a full step, so later parameters may differ where the
    gradient is ~0 while the losses stay equal."""
    device = torch.device("cuda")
    bank_cpu, images, masks = random_bank([(40, 56), (64, 48), (33, 70), (50, 50)], seed=1, p=0.05)
    bank = ImageBank(images, masks, device)
    sources = _sources([im.shape for im in images])
    params = torch.from_numpy(np.concatenate([epoch_params(sources, 0, e, 4, 64, 32) for e in range(4)])).to(device)
    models = [tiny_model().to(device).to(memory_format=torch.channels_last) for _ in range(2)]
    steps = [FastStep(m, torch.optim.Adagrad(m.parameters(), lr=0.05), bank, 4,
                      FastStepOptions(crop_size=32, amp=False, cuda_graphs=k == 0), device)
             for k, m in enumerate(models)]
    check = steps[0].capture(params[:2])
    assert check["graph"] and steps[0].graph is not None, check
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())  # the capture restored the weights on this stream
    for s in range(len(params)):
        with torch.cuda.stream(stream):  # replayed on a side stream, as the window does
            steps[0].step(params[s])
        torch.cuda.current_stream().wait_stream(stream)
        steps[1].step(params[s])
        graphed, eager = steps[0].take_stats(), steps[1].take_stats()
        torch.testing.assert_close(graphed, eager, rtol=1e-3, atol=1e-5)
        if s == 0:
            for (name, p), q in zip(models[0].named_parameters(), models[1].parameters()):
                torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-6, msg=name)
    close = sum(int(((p - q).abs() <= 1e-3).sum()) for p, q in zip(models[0].parameters(), models[1].parameters()))
    assert close / sum(p.numel() for p in models[0].parameters()) > 0.99
    # bf16 + channels_last, as the window trains: the capture's own check passes.
    m = tiny_model().to(device).to(memory_format=torch.channels_last)
    bf16 = FastStep(m, torch.optim.Adagrad(m.parameters(), lr=0.05), bank, 4, FastStepOptions(crop_size=32), device)
    assert bf16.capture(params[:2])["graph"]
    # The augmentation computes the same crops on the GPU as on the CPU.
    gray, mask = augment_batch(bank, params[0], 32)
    cpu_gray, cpu_mask = augment_batch(bank_cpu, params[0].cpu(), 32)
    torch.testing.assert_close(gray.cpu(), cpu_gray, rtol=0, atol=1e-5)
    assert torch.equal(mask.cpu(), cpu_mask)


def test_bench_section_times_the_fast_path_and_skips_it_on_cpu_by_default():
    from sirst.bench import Peak, count_flops
    from sirst.bench.fast_train import bench_fast_training
    from sirst.bench.run import BenchConfig, _fast_training, format_report

    model = tiny_model()
    flops = count_flops(model, 32, train=True)
    r = bench_fast_training(model, torch.device("cpu"), runs=2, batch=2, size=32, steps=1, flops_per_image=flops,
                            peak=Peak(100.0, "test"), amp=False, images=4)
    assert [row["runs"] for row in r["rows"]] == [1, 2] and not r["graphs"]
    for row in r["rows"]:
        assert row["img_per_s"] > 0 and row["pct_peak"] == pytest.approx(100 * row["gflops"] / 100.0)
    skipped = _fast_training(BenchConfig(), model, torch.device("cpu"), flops, {})
    assert "skipped" in skipped
    text = format_report({"device": "cpu", "torch": "x", "threads": 1, "model": "m", "weights": "w",
                          "config": {"size": 32}, "flops_per_image": 1, "train_flops_per_image": 1, "peaks": {},
                          "inference": [], "fast_training": r})
    assert "Training fast path" in text and "img/s a run" in text
