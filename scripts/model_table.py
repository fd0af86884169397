"""Write the table of registered models (parameters, FLOPs) to docs/models.md and print it.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` for one ``1 x 3 x S x S`` image in
eval mode (S = 256 by default). The counter reports FLOPs = 2 x MACs (a multiply-add is two
operations) and counts convolutions, transposed convolutions and matrix products only (no
normalisation, activation, pooling, interpolation or element-wise work). Many papers in the field,
DNANet's included, quote MACs (e.g. from ``thop``) under the name "FLOPs", so the table shows both.
Models are built on the ``meta`` device: nothing is computed, so even MDvsFA is counted instantly.

Usage: ``PYTHONPATH=src python scripts/model_table.py [--size 256] [--out docs/models.md] [--no-write]``
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from sirst.bench import count_flops
from sirst.models import create_model, list_models

# The DNANet paper's comparison (params in M, "FLOPs" in G at 256x256, i.e. MACs). DNANet's are the
# paper's headline numbers; the baselines' parameter counts are recalled from its table and could not
# be verified with the search tools (they agree with the counts measured here for ACM and MDvsFA).
PAPER: dict[str, tuple[float | None, float | None, str]] = {
    "dnanet": (4.70, 14.26, "DNANet paper (ResNet-18, channel size three)"),
    "acm": (0.520, None, "DNANet paper's table, recalled, unverified"),
    "alcnet": (0.427, None, "DNANet paper's table, recalled, unverified"),
    "mdvsfa": (3.919, None, "DNANet paper's table, recalled, unverified (1-channel input)"),
}


@dataclass(frozen=True)
class Row:
    name: str
    params: int
    flops: int
    size_divisor: int


def measure(name: str, size: int) -> Row:
    """Parameters and eval-mode FLOPs of registered model ``name`` for one ``3 x size x size`` image."""
    with torch.device("meta"):
        model = create_model(name).eval()
    params = sum(p.numel() for p in model.parameters())
    return Row(name, params, count_flops(name, size), int(model.size_divisor))


def _fmt(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def render(rows: list[Row], size: int) -> str:
    """The Markdown page (title, notes and the table)."""
    lines = [
        "# Models",
        "",
        f"Every model in the registry (`sirst.models.list_models()`), default constructor arguments, "
        f"3 input channels, one {size}x{size} image in eval mode. Written by `scripts/model_table.py`.",
        "",
        "- **GFLOPs** are counted by `torch.utils.flop_counter.FlopCounterMode`: FLOPs = 2 x MACs, "
        "convolutions and matrix products only. **GMACs** = GFLOPs / 2, the unit most IRSTD papers "
        "(DNANet's included) call \"FLOPs\".",
        "- **Paper** columns: the DNANet paper's numbers where known (params in M, \"FLOPs\" = MACs in G "
        "at 256x256). DNANet's are the paper's; the baselines' parameter counts are recalled from the "
        "DNANet paper's comparison table and could not be verified with the available search tools.",
        "- ALCNet's local contrast (cyclic shifts, products, minima) is element-wise work the counter "
        "does not see; MDvsFA's count covers both generators (its discriminator is training-only).",
        "",
        "| model | params | params (M) | GFLOPs | GMACs | size divisor | paper params (M) | paper GMACs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        paper_params, paper_macs, _ = PAPER.get(r.name, (None, None, ""))
        lines.append(
            f"| `{r.name}` | {r.params:,} | {r.params / 1e6:.3f} | {r.flops / 1e9:.3f} | {r.flops / 2e9:.3f} | "
            f"{r.size_divisor} | {_fmt(paper_params, 3)} | {_fmt(paper_macs, 2)} |"
        )
    lines += [
        "",
        "Families:",
        "",
        "- `dnanet*`: DNANet (Li et al., TIP 2022) and its ablation variants, `sirst/models/dnanet.py`.",
        "- `acm`: ACM-U-Net with asymmetric bi-directional (AsymBi) fusion (Dai et al., WACV 2021), "
        "`sirst/models/acm.py`.",
        "- `alcnet`: attentional local contrast network (Dai et al., TGRS 2021), `sirst/models/alcnet.py`; "
        "full-resolution first stage as in the authors' code, hence more MACs than ACM.",
        "- `mdvsfa`: MDvsFA-cGAN (Wang et al., ICCV 2019), two generators and a discriminator with its own "
        "adversarial training step (train with `--optimizer adam --lr 1e-4`), `sirst/models/mdvsfa.py`.",
    ]
    lines += ["", "Sources of the paper columns:", ""]
    lines += [f"- `{k}`: {src}" for k, (_, _, src) in PAPER.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="square input size (default 256)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "models.md")
    parser.add_argument("--no-write", action="store_true", help="only print the table")
    args = parser.parse_args(argv)
    if args.size < 16 or args.size % 16:
        raise SystemExit(f"--size must be a positive multiple of 16, got {args.size}")
    rows = [measure(name, args.size) for name in tqdm(list_models(), desc="counting", unit="model")]
    page = render(rows, args.size)
    print(page, end="")
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(page)
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
