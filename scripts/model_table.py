"""Write the table of registered models (parameters, FLOPs) to docs/models.md and print it.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` for one ``1 x 3 x S x S`` image in
eval mode (S = 256 by default). The counter reports FLOPs = 2 x MACs (a multiply-add is two
operations) and counts convolutions, transposed convolutions and matrix products only (no
normalisation, activation, pooling, interpolation or element-wise work). Many papers in the field,
DNANet's included, quote MACs (e.g. from ``thop``) under the name "FLOPs", so the table shows both.
Models are built on the ``meta`` device: nothing is computed, so even MDvsFA is counted instantly.

The compact table (model, params, GFLOPs, paper params) also goes into README.md between its
``models-table`` markers.

Usage: ``PYTHONPATH=src python scripts/model_table.py [--size 256] [--out docs/models.md] [--readme README.md] [--no-write]``
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from sirst.bench import count_flops
from sirst.models import create_model, list_models

# Parameter counts stated by the DNANet paper (in M). Only numbers we could check are listed: the
# baselines' counts and all "FLOPs" of the paper's comparison table could not be verified with the
# tools at hand, so they are left out rather than quoted from memory.
PAPER: dict[str, tuple[float, str]] = {
    "dnanet": (4.70, "DNANet paper (ResNet-18, channel size three)"),
}
# The CSAM ablation gives 4.70-4.73M for every variant: the variants without (part of) the attention
# had their convolutions widened to keep that size. The DNIM variants' sizes are not listed here.
PAPER_ABLATION_RANGE = (4.70, 4.73)
ABLATION_VARIANTS = ("dnanet_wo_csam", "dnanet_channel_only", "dnanet_spatial_only", "dnanet_sum_attention")
DNIM_VARIANTS = ("dnanet_wo_dnim", "dnanet_top_to_bottom", "dnanet_left_to_right")


@dataclass(frozen=True)
class Row:
    name: str
    params: int
    flops: int
    size_divisor: int
    widths: tuple[int, ...] | None = None


def measure(name: str, size: int) -> Row:
    """Parameters and eval-mode FLOPs of registered model ``name`` for one ``3 x size x size`` image."""
    with torch.device("meta"):
        model = create_model(name).eval()
    params = sum(p.numel() for p in model.parameters())
    widths = tuple(int(w) for w in model.widths) if hasattr(model, "widths") else None
    return Row(name, params, count_flops(name, size), int(model.size_divisor), widths)


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
        "- **Paper params**: the DNANet paper's parameter count where we could verify it (DNANet, 4.70M; "
        "its ablation variants: 4.70-4.73M, see below). The baselines' counts and the paper's FLOPs could "
        "not be verified and are left out rather than quoted from memory.",
        "- ALCNet's local contrast (cyclic shifts, products, minima) is element-wise work the counter "
        "does not see; MDvsFA's count covers both generators (its discriminator is training-only).",
        "",
        "| model | params | params (M) | GFLOPs | GMACs | size divisor | paper params (M) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| `{r.name}` | {r.params:,} | {r.params / 1e6:.3f} | {r.flops / 1e9:.3f} | {r.flops / 2e9:.3f} | "
            f"{r.size_divisor} | {paper_cell(r.name)} |"
        )
    lo, hi = PAPER_ABLATION_RANGE
    lines += [
        "",
        f"Ablation variants. CSAM ablation (paper: {lo:.2f}-{hi:.2f}M each): the variants without (part of) "
        "the attention widen their last stage to stay in that range (`WO_CSAM_WIDTHS`, `CHANNEL_ONLY_WIDTHS`, "
        "`SPATIAL_ONLY_WIDTHS` in `sirst/models/dnanet.py`). DNIM ablation: not widened (no paper "
        "size we could verify; fewer nodes or none, so smaller).",
        "",
        "| variant | widths | params | vs paper range |",
        "|---|---|---:|---|",
    ]
    by_name = {r.name: r for r in rows}
    for name in ("dnanet", *ABLATION_VARIANTS, *DNIM_VARIANTS):
        if name in by_name:
            r = by_name[name]
            m = r.params / 1e6
            if name in DNIM_VARIANTS:
                where = "— (DNIM ablation)"
            else:
                where = "inside" if lo - 0.005 <= m < hi + 0.005 else f"{m - (lo if m < lo else hi):+.2f}M outside"
            lines.append(f"| `{name}` | {', '.join(map(str, r.widths or ()))} | {r.params:,} | {where} |")
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
    lines += ["", "Sources of the paper column:", ""]
    lines += [f"- `{k}`: {src}" for k, (_, src) in PAPER.items()]
    lines += [f"- CSAM ablation variants: DNANet paper's CSAM ablation ({lo:.2f}-{hi:.2f}M)"]
    return "\n".join(lines) + "\n"


def paper_cell(name: str) -> str:
    """The paper's parameter count for ``name`` (M), its ablation range, or a dash."""
    if name in PAPER:
        return f"{PAPER[name][0]:.2f}"
    if name in ABLATION_VARIANTS:
        return f"{PAPER_ABLATION_RANGE[0]:.2f}-{PAPER_ABLATION_RANGE[1]:.2f}"
    return "—"


def compact(rows: list[Row], size: int) -> str:
    """The short README version: model, params (M), GFLOPs, paper params (M)."""
    lines = [
        f"| model | params (M) | GFLOPs at {size}x{size} | paper params (M) |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| `{r.name}` | {r.params / 1e6:.3f} | {r.flops / 1e9:.2f} | {paper_cell(r.name)} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="square input size (default 256)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "models.md")
    parser.add_argument("--readme", type=Path, default=Path(__file__).resolve().parents[1] / "README.md")
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
        from readme_blocks import replace_block

        replace_block(args.readme, "models-table", compact(rows, args.size))


if __name__ == "__main__":
    main()
