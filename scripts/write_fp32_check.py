"""Write ``src/sirst/detect/fp32_check.json``: torch fp32's masks of the check frames for each bundled
weights file, which ``sirst detect`` compares a fast path against on a first run instead of running fp32
itself (:data:`sirst.detect.choose.FP32_CHECK_FILE`). Run it after bundling new weights:

    python scripts/write_fp32_check.py
"""

from __future__ import annotations

import json

import torch


def main() -> int:
    from sirst.checkpoint import model_from_checkpoint
    from sirst.detect.check import pack_masks
    from sirst.detect.choose import FP32_CHECK_FILE, _verification_batch, fp32_check_key, fp32_masks
    from sirst.detect.optimize import in_channels_of
    from sirst.weights import bundled_names

    torch.set_num_threads(1)
    table = {}
    for name in bundled_names():
        model = model_from_checkpoint(name, "cpu")
        x = _verification_batch(in_channels_of(model), 2)
        masks = fp32_masks(model, x, threads=1)
        table[fp32_check_key(model, x)] = pack_masks(masks)
        print(f"{name}: {int(masks.sum())} target pixels in {len(masks)} frames")
    FP32_CHECK_FILE.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {FP32_CHECK_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
