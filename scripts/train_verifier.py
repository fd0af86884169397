"""Train the candidate verifier on mined candidates (scripts/mine_candidates.py) and tabulate, on the
validation candidates, Pd and false alarms for confidence gates x verifier thresholds.

Usage: python scripts/train_verifier.py --train runs/verifier/train.npz --val runs/verifier/val.npz --out runs/verifier/verifier.pt
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

LABELLED = ("NUAA-SIRST", "NUDT-SIRST")


PER_CANDIDATE = ("label", "peak_logit", "area", "row", "col", "source", "image_id", "patch")


def load(path: str) -> dict:
    z = np.load(path)
    return {k: z[k] for k in z.files}


def merge(paths: list[str]) -> dict:
    """Concatenate candidate files; ``FILE:SRC1+SRC2`` keeps only those sources of FILE."""
    parts = []
    for spec in paths:
        path, _, keep = spec.partition(":")
        d = load(path)
        m = np.isin(d["source"], keep.split("+")) if keep else np.ones(len(d["label"]), bool)
        parts.append({k: d[k][m] for k in PER_CANDIDATE})
    return {k: np.concatenate([p[k] for p in parts]) for k in PER_CANDIDATE}


def choose(rows: list[dict], max_pd_drop: float) -> dict:
    """The operating point: within ``max_pd_drop`` of the carves' Pd without gate or verifier, the
    fewest alarmed target-free frames, then the fewest false targets, then the highest Pd."""
    base = max(r["carve_pd"] for r in rows)
    ok = [r for r in rows if r["carve_pd"] >= base - max_pd_drop - 1e-9]
    return min(ok, key=lambda r: (r["frames_alarmed"], r["frame_false"] + r["carve_false"] + r["composite_false"],
                                  -r["carve_pd"], -r["composite_pd"]))


GATES = (0.0, 2.0, 4.0, 6.0, 8.0)
THRESHOLDS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
SURE = (15.0, 20.0, 25.0, float("inf"))


def table(d: dict, prob: np.ndarray, gates=GATES, thresholds=THRESHOLDS, sure=SURE):
    """Rows of (gate, threshold): Pd and false targets on the carves, target-free frames alarmed and
    their false targets, composites' Pd and false targets."""
    src = d["source"]
    totals = dict(zip(d["sources"].tolist(), d["source_targets"].tolist())) if "sources" in d else {}
    frames_n = dict(zip(d["sources"].tolist(), d["source_images"].tolist())) if "sources" in d else {}
    lab = d["label"] == 1
    carve = np.isin(src, LABELLED)
    frame = src == "negative-frames"
    comp = src == "composites"
    rows = []
    for g, t, hi in ((g, t, hi) for g in gates for t in thresholds for hi in sure):
        kept = (d["peak_logit"] > g) & ((prob > t) | (d["peak_logit"] > hi))
        n_carve = sum(totals.get(s, 0) for s in LABELLED) or 1
        rows.append({
            "gate": g, "threshold": t, "sure_logit": None if np.isinf(hi) else hi,
            "carve_pd": float((kept & lab & carve).sum() / n_carve),
            "carve_false": int((kept & ~lab & carve).sum()),
            "frames_alarmed": len(set(d["image_id"][kept & frame].tolist())),
            "frames": int(frames_n.get("negative-frames", 0)),
            "frame_false": int((kept & frame).sum()),
            "composite_pd": float((kept & lab & comp).sum() / max(totals.get("composites", 0), 1)),
            "composite_false": int((kept & ~lab & comp).sum()),
        })
    return rows


def fit(x, y, w, xv, val_true, epochs: int, width: int, seed: int):
    """Train the verifier network on inputs ``x`` ``(N, 3, W, W)``, labels ``y`` and loss weights ``w``
    (dihedral augmentation, AdamW one-cycle, weights averaged over the last third); prints the
    validation inputs' mean probabilities per epoch."""
    import torch
    import torch.nn.functional as F

    from sirst.verify import _verifier_net

    net = _verifier_net(width)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-3)
    steps = epochs * ((len(y) + 127) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    # Weights averaged over the last third of the epochs: the small validation set cannot pick an epoch.
    swa = torch.optim.swa_utils.AveragedModel(net)
    swa_from = epochs - epochs // 3
    start = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(y), generator=g)
        total = 0.0
        for i in range(0, len(y), 128):
            idx = perm[i : i + 128]
            xb = x[idx]
            k = int(torch.randint(0, 4, (1,), generator=g))
            xb = torch.rot90(xb, k, (2, 3))
            if torch.rand(1, generator=g) < 0.5:
                xb = xb.flip(3)
            loss = (F.binary_cross_entropy_with_logits(net(xb)[:, 0], y[idx], reduction="none") * w[idx]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if epoch >= swa_from:
            swa.update_parameters(net)
        net.eval()
        with torch.no_grad():
            pv = torch.sigmoid(net(xv)[:, 0]).numpy()
        print(f"epoch {epoch + 1}: loss {total / len(y):.4f}, val mean p true {pv[val_true].mean():.3f} false "
              f"{pv[~val_true].mean():.3f}, {time.perf_counter() - start:.0f} s", flush=True)
    # Batch-norm statistics of the averaged weights, on the training inputs.
    torch.optim.swa_utils.update_bn([x[i : i + 256] for i in range(0, len(y), 256)], swa)
    return swa.module.eval()


def figure(d: dict, prob: np.ndarray, pick: dict, path: str) -> None:
    """Validation candidates that pass the gate: the strongest false ones the verifier drops (top row)
    and true ones it keeps (bottom row), each with its score and peak logit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sure = pick["sure_logit"] if pick["sure_logit"] is not None else np.inf
    passed = d["peak_logit"] > pick["gate"]
    kept_mask = passed & ((prob > pick["threshold"]) | (d["peak_logit"] > sure))
    rejected = np.flatnonzero(passed & ~kept_mask & (d["label"] == 0))
    rejected = rejected[np.argsort(-d["peak_logit"][rejected])][:8]
    kept = np.flatnonzero(kept_mask & (d["label"] == 1) & np.isin(d["source"], ["NUAA-SIRST", "composites"]))
    kept = np.random.default_rng(0).choice(kept, min(8, len(kept)), replace=False)
    fig, axes = plt.subplots(2, 8, figsize=(12, 3.9), squeeze=False)
    for row, (idx, title) in enumerate(((rejected, "dropped (false)"), (kept, "kept (true)"))):
        for j in range(8):
            ax = axes[row, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(idx):
                continue
            k = idx[j]
            img = d["patch"][k, 0].astype(np.float32)
            ax.imshow(img, cmap="gray", vmin=np.percentile(img, 1), vmax=np.percentile(img, 99.8))
            ax.contour(d["patch"][k, 1].astype(np.float32) > 0, [0.5], colors="r", linewidths=0.6)
            ax.set_title(f"p {prob[k]:.2f}, logit {d['peak_logit'][k]:.0f}", fontsize=7)
        axes[row, 0].set_ylabel(title, fontsize=8)
    fig.suptitle("Validation candidates after the gate (64x64 native pixels; red: logit > 0)", fontsize=9)
    fig.tight_layout(h_pad=1.2)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", required=True, nargs="+", help="candidate files (FILE or FILE:SOURCE+SOURCE)")
    parser.add_argument("--val", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real-negative-weight", type=float, default=1.0,
                        help="loss weight of false candidates on real target-free frames")
    parser.add_argument("--max-pd-drop", type=float, default=0.02,
                        help="largest loss of the validation carves' Pd for the operating point")
    parser.add_argument("--load", help="tabulate this trained verifier instead of training one")
    parser.add_argument("--figure", help="write examples of dropped and kept validation candidates here (PNG)")
    parser.add_argument("--json")
    args = parser.parse_args()

    import torch

    from sirst.verify import _verifier_net, verifier_input

    torch.manual_seed(args.seed)
    tr, va = merge(args.train), load(args.val)
    x = torch.from_numpy(verifier_input(tr["patch"]))
    y = torch.from_numpy(tr["label"].astype(np.float32))
    w = np.ones(len(y), np.float32)
    w[(tr["source"] == "negative-frames") & (tr["label"] == 0)] = args.real_negative_weight
    pos, neg = float(y.sum()), float(len(y) - y.sum())
    w[tr["label"] == 1] *= neg / max(pos, 1)  # balance the classes
    w = torch.from_numpy(w / w.mean())
    xv = torch.from_numpy(verifier_input(va["patch"]))
    print(f"train: {int(pos)} true, {int(neg)} false; val: {int(va['label'].sum())} true, "
          f"{int(len(va['label']) - va['label'].sum())} false", flush=True)
    for s in np.unique(tr["source"]):
        m = tr["source"] == s
        print(f"  train {s}: {int(tr['label'][m].sum())} true, {int((1 - tr['label'][m]).sum())} false")

    if args.load:
        v = torch.load(args.load, map_location="cpu", weights_only=True)
        net = _verifier_net(v["width"])
        net.load_state_dict(v["state_dict"])
        net.eval()
    else:
        net = fit(x, y, w, xv, va["label"] == 1, args.epochs, args.width, args.seed)
    with torch.no_grad():
        pv = torch.sigmoid(net(xv)[:, 0]).numpy()
    rows = table(va, pv)
    base = table(va, np.ones(len(pv)), thresholds=(0.0,), sure=(float("inf"),))
    print("gate-only:")
    for r in base:
        print(json.dumps(r))
    print("gate x verifier:")
    for r in rows:
        if r["threshold"] in (0.05, 0.1, 0.2, 0.3, 0.5) and r["gate"] in (0.0, 4.0, 6.0) and r["sure_logit"] in (20.0, None):
            print(json.dumps(r))
    pick = choose(rows, args.max_pd_drop)
    print("chosen:", json.dumps(pick))
    torch.save({"state_dict": net.state_dict(), "width": args.width, "threshold": pick["threshold"],
                "gate": pick["gate"], "sure_logit": pick["sure_logit"]}, args.out)
    if args.figure:
        figure(va, pv, pick, args.figure)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "gate_only": base, "chosen": pick, "args": vars(args)}, f, indent=1)


if __name__ == "__main__":
    main()
