"""Regenerate the bundled sample images src/sirst/samples/*.png with the synthesizer.

Usage: python scripts/make_samples.py
"""

from pathlib import Path

import numpy as np

from sirst.data.io import write_png
from sirst.data.synth import SynthConfig, make_sample

OUT = Path(__file__).resolve().parents[1] / "src" / "sirst" / "samples"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for k, kind in enumerate(("cloud", "city", "sea", "field")):
        rng = np.random.default_rng(np.random.SeedSequence([2026, k]))
        image, _, targets = make_sample(rng, SynthConfig(size=256, scr=(4.0, 10.0), targets=(1, 3)), kind=kind)
        write_png(OUT / f"sample_{kind}.png", image)
        print(f"sample_{kind}.png: {len(targets)} target(s) at", [t["centroid"] for t in targets])


if __name__ == "__main__":
    main()
