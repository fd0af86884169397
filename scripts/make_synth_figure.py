"""Draw docs/synth.png: synthesized images (two per scene kind) with their masks.

Usage: python scripts/make_synth_figure.py [--out docs/synth.png] [--seed 0]
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from sirst.data.synth import SCENE_KINDS, SynthConfig, make_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="docs/synth.png")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cols = 2
    fig, axes = plt.subplots(len(SCENE_KINDS), 2 * cols, figsize=(2.2 * 2 * cols, 2.3 * len(SCENE_KINDS)))
    for row, kind in enumerate(SCENE_KINDS):
        for c in range(cols):
            rng = np.random.default_rng(np.random.SeedSequence([args.seed, row, c]))
            image, mask, targets = make_sample(rng, SynthConfig(), kind=kind)
            ax_img, ax_mask = axes[row, 2 * c], axes[row, 2 * c + 1]
            ax_img.imshow(image, cmap="gray", vmin=0, vmax=255)
            for t in targets:
                ax_img.add_patch(plt.Circle(t["centroid"][::-1], 10, fill=False, color="lime", lw=0.8))
            ax_mask.imshow(mask, cmap="gray")
            ax_img.set_title(f"{kind}: {len(targets)} target(s)", fontsize=8)
            ax_mask.set_title("mask: " + ", ".join(t["size_class"] for t in targets), fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
