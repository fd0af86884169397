"""MDvsFA-cGAN (Wang, Zhou and Wang, "Miss Detection vs. False Alarm: Adversarial Learning for Small
Object Segmentation in Infrared Images", ICCV 2019).

Two generators segment the image, each trained with a data loss that favours one error type, and a
discriminator judges (image, segmentation) pairs; the prediction is the average of the two maps.
Architecture as the authors' released PyTorch demo (``demo_MDvsFA_pytorch.py``), ``width = 64``:

* G1 (miss-detection oriented, ``lambda1 = 100`` on MD): a context-aggregation network of 8 dilated
  ``conv3x3 + BN + LeakyReLU(0.2)`` layers, dilations 1, 1, 2, 4, 8, 4, 2, 1 and widths
  ``w, w, 2w, 4w, 8w, 4w, 2w, w``, then ``conv1x1 -> 1``;
* G2 (false-alarm oriented, ``lambda2 = 10`` on FA): 13 layers of width ``w``, dilations
  1, 2, 4, ..., 64, 32, ..., 1, U-Net-like (each decoder layer also takes the encoder layer of the same
  dilation), then ``conv1x1 -> 1``;
* D: the pair ``[image, 2 * seg - 1]`` max-pooled to 32x32 (the paper's 128x128 crops pooled twice by 2;
  here an adaptive max-pool so any crop size works), 4 ``conv3x3`` layers of width 24 (the last to 1
  channel) with BN + LeakyReLU, then fully connected ``1024 -> 128 -> 64 -> 3`` with BN and tanh. It
  classifies a pair as ground truth, G1's output or G2's output (3 classes).

Generator outputs are clamped to [0, 1] (the paper's maps are probabilities, not logits). sirst's
networks return logits, so :meth:`MDvsFA.forward` returns ``logit(mean(clamp(G1), clamp(G2)))`` (with
the probability clipped to ``[1e-4, 1 - 1e-4]``): thresholding at 0 equals the paper's 0.5.

Training (:class:`MDvsFAStep`, chosen by :meth:`MDvsFA.make_train_step`) per batch, as the demo:
the discriminator step (cross-entropy of the three classes), then G1, then G2, each with
``100 * (data loss) + 10 * (adversarial loss) + 1 * (generator consistency)`` where the data loss is
``lambda1 * MD + FA`` (G1) or ``MD + lambda2 * FA`` (G2) with ``MD = mean((p - y)^2 * y)``,
``FA = mean((p - y)^2 * (1 - y))``, the adversarial loss asks D to call the generator's pair ground
truth, and the consistency is the mean squared distance between D's last conv features of the G1 and
G2 pairs. The demo feeds softmax probabilities into ``BCEWithLogitsLoss``; here D's logits go to a
3-class cross-entropy, the formulation of the paper. Optimizers: Adam, betas (0.5, 0.999); the demo uses
lr 1e-4 for the generators and 1e-5 for D.

Parameters (width 64): 3,922,334 measured here with 3 input channels (G1 3,139,649, G2 630,977,
D 151,708) and 3,919,598 with 1 input channel, the paper's grayscale input; the DNANet paper's
comparison table lists 3.919M for MDvsFA (recalled, the search tools could not retrieve the table to
verify it). Everything runs at full resolution, which makes it by far the most expensive model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from sirst.models.base import SirstModel, unwrap
from sirst.models.registry import register_model

if TYPE_CHECKING:
    from sirst.engine.config import TrainConfig

G1_DILATIONS: tuple[int, ...] = (1, 1, 2, 4, 8, 4, 2, 1)
G1_WIDTH_FACTORS: tuple[int, ...] = (1, 1, 2, 4, 8, 4, 2, 1)
G2_DILATIONS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 32, 16, 8, 4, 2, 1)
D_POOLED = 32  # the discriminator sees 32x32 pooled pairs (128x128 crops max-pooled twice by 2)
D_WIDTH = 24
LOGIT_EPS = 1e-4


def _cbl(cin: int, cout: int, dilation: int) -> nn.Sequential:
    """Dilated ``conv3x3 + BN + LeakyReLU(0.2)`` keeping the spatial size."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.2, inplace=True),
    )


class GeneratorCAN(nn.Module):
    """G1: context-aggregation network with widening dilated layers.

    Input ``(N, C, H, W)``; output the raw map ``(N, 1, H, W)`` (clamp to [0, 1] for a probability).
    """

    def __init__(self, in_channels: int, width: int = 64) -> None:
        super().__init__()
        widths = [width * f for f in G1_WIDTH_FACTORS]
        cins = [in_channels, *widths[:-1]]
        self.layers = nn.Sequential(*[_cbl(ci, co, d) for ci, co, d in zip(cins, widths, G1_DILATIONS)])
        self.out = nn.Conv2d(widths[-1], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.layers(x))


class GeneratorUCAN(nn.Module):
    """G2: 13 dilated layers (1..64..1) with U-Net-like concatenations of equal-dilation layers.

    Decoder layer ``k`` (dilations 16, 8, 4, 2, 1) takes ``[encoder layer with dilation 2d, previous]``
    exactly as the reference (``net9 = conv([net6, net8])``, ...). Input ``(N, C, H, W)``; output the raw
    map ``(N, 1, H, W)``.
    """

    def __init__(self, in_channels: int, width: int = 64) -> None:
        super().__init__()
        n_enc = G2_DILATIONS.index(max(G2_DILATIONS)) + 1  # 7 layers up to dilation 64
        self.encoder = nn.ModuleList(
            _cbl(in_channels if i == 0 else width, width, d) for i, d in enumerate(G2_DILATIONS[:n_enc])
        )
        decoder_dilations = G2_DILATIONS[n_enc:]
        # The first decoder layer (dilation 32) takes only the previous layer; the others concatenate.
        self.decoder = nn.ModuleList(
            _cbl(width if i == 0 else 2 * width, width, d) for i, d in enumerate(decoder_dilations)
        )
        self.out = nn.Conv2d(width, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        enc = []
        for layer in self.encoder:
            x = layer(x)
            enc.append(x)
        # enc[i] has dilation 2**i; decoder layer j >= 1 (dilation 2**(6 - j)) pairs with enc[6 - j].
        x = self.decoder[0](x)
        for j, layer in enumerate(self.decoder[1:], start=1):
            x = layer(torch.cat([enc[len(enc) - 1 - j], x], dim=1))
        return self.out(x)


class Discriminator(nn.Module):
    """Three-class discriminator over ``[image, 2 * seg - 1]`` pairs.

    Input ``(B, C + 1, H, W)``; returns ``(logits (B, 3), features (B, 1, 32, 32))``, the features being
    the last conv layer's output used by the generator-consistency loss. Needs ``B >= 2`` in training
    mode (BatchNorm over the fully connected layers); the train step always passes 3 pairs per image.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            _cbl(in_channels + 1, D_WIDTH, 1),
            _cbl(D_WIDTH, D_WIDTH, 1),
            _cbl(D_WIDTH, D_WIDTH, 1),
            _cbl(D_WIDTH, 1, 1),
        )
        self.fc = nn.Sequential(
            nn.Linear(D_POOLED * D_POOLED, 128),
            nn.BatchNorm1d(128),
            nn.Tanh(),
            nn.Linear(128, 64),
            nn.BatchNorm1d(64),
            nn.Tanh(),
            nn.Linear(64, 3),
            nn.BatchNorm1d(3),
        )

    def forward(self, pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.convs(F.adaptive_max_pool2d(pairs, D_POOLED))
        return self.fc(feats.flatten(1)), feats


class MDvsFA(SirstModel):
    """MDvsFA-cGAN: generators ``g1``, ``g2`` and discriminator ``disc`` (see the module docstring).

    Args:
        in_channels: input channels (3 = grayscale copied, as the rest of sirst; 1 works, the paper's).
        width: generator base width (64 in the paper; smaller for tests).

    Forward: ``(N, C, H, W)``, any size -> logits ``(N, 1, H, W)`` of the averaged generator maps, in
    both modes (training uses :class:`MDvsFAStep`, not the forward output).
    """

    size_divisor = 1  # fully convolutional at full resolution

    def __init__(self, in_channels: int = 3, width: int = 64) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.g1 = GeneratorCAN(in_channels, width)
        self.g2 = GeneratorUCAN(in_channels, width)
        self.disc = Discriminator(in_channels)

    def generate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two generators' probability maps ``(N, 1, H, W)`` in [0, 1] (clamped, as the paper)."""
        return self.g1(x).clamp(0.0, 1.0), self.g2(x).clamp(0.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p1, p2 = self.generate(x)
        return torch.logit((p1 + p2) / 2, eps=LOGIT_EPS)

    def make_train_step(self, cfg: TrainConfig) -> MDvsFAStep:
        """The adversarial training step (see :class:`MDvsFAStep`)."""
        return MDvsFAStep(cfg)


@dataclass(frozen=True)
class MDvsFAWeights:
    """Loss weights of the paper/demo."""

    lambda1: float = 100.0  # MD weight in G1's data loss
    lambda2: float = 10.0  # FA weight in G2's data loss
    data: float = 100.0
    adversarial: float = 10.0
    consistency: float = 1.0
    d_lr_ratio: float = 0.1  # discriminator lr / generator lr (1e-5 vs 1e-4 in the demo)
    betas: tuple[float, float] = (0.5, 0.999)


def md_fa_losses(prob: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Miss-detection and false-alarm losses of a probability map.

    ``MD = mean((p - y)^2 * y)``, ``FA = mean((p - y)^2 * (1 - y))``; ``prob``, ``target`` ``(N, 1, H, W)``.
    """
    err = (prob.float() - target.float()) ** 2
    return (err * target).mean(), (err * (1 - target)).mean()


def _average_gradients(params: Sequence[nn.Parameter]) -> None:
    """All-reduce (mean) the gradients under torch.distributed.

    The step runs the sub-networks directly instead of through the DDP wrapper (three networks, three
    backward passes per batch), so DDP's own gradient hooks stay idle and this keeps replicas in sync.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    world = dist.get_world_size()
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world)


class MDvsFAStep:
    """Adversarial training step of MDvsFA, conforming to :class:`sirst.engine.steps.TrainStep`.

    Optimizers, in this order: ``[discriminator, G1, G2]``, Adam with betas (0.5, 0.999), generator lr
    ``cfg.lr`` and discriminator lr ``cfg.lr * 0.1``. ``cfg.optimizer`` must be ``"adam"`` or ``"adamw"``
    (the paper's protocol is Adam, lr 1e-4: ``--optimizer adam --lr 1e-4``); anything else raises
    ``ValueError`` rather than silently replacing the user's choice.

    :meth:`step` returns detached ``loss`` (G1 + G2 losses), ``loss_d``, ``loss_g1``, ``loss_g2``,
    ``md`` and ``fa`` (of the averaged prediction).
    """

    def __init__(self, cfg: TrainConfig, weights: MDvsFAWeights | None = None) -> None:
        self.cfg = cfg
        self.w = weights or MDvsFAWeights()

    def configure_optimizers(self, model: nn.Module, cfg: TrainConfig) -> list[torch.optim.Optimizer]:
        net = unwrap(model)
        if cfg.optimizer not in ("adam", "adamw"):
            raise ValueError(
                f"{cfg.out}: mdvsfa trains its GAN with Adam as in its paper (lr 1e-4); "
                f"got --optimizer {cfg.optimizer}: pass --optimizer adam --lr 1e-4"
            )
        opt = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
        d_lr = cfg.lr * self.w.d_lr_ratio
        return [
            opt(net.disc.parameters(), lr=d_lr, betas=self.w.betas, weight_decay=cfg.weight_decay),
            opt(net.g1.parameters(), lr=cfg.lr, betas=self.w.betas, weight_decay=cfg.weight_decay),
            opt(net.g2.parameters(), lr=cfg.lr, betas=self.w.betas, weight_decay=cfg.weight_decay),
        ]

    def _pairs(self, image: torch.Tensor, mask: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
        # Segmentations enter D in [-1, 1], as the reference; one batch so BN statistics are shared.
        segs = [mask.to(image.dtype), p1.to(image.dtype), p2.to(image.dtype)]
        return torch.cat([torch.cat([image, 2 * s - 1], dim=1) for s in segs], dim=0)

    def step(self, model: nn.Module, batch: dict, optimizers: list[torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        from sirst.engine.steps import autocast

        net: MDvsFA = unwrap(model)
        opt_d, opt_g1, opt_g2 = optimizers
        image, mask = batch["image"], batch["mask"].float()
        n = image.shape[0]
        labels = torch.arange(3, device=image.device).repeat_interleave(n)  # real, G1, G2
        real = torch.zeros(n, dtype=torch.long, device=image.device)
        w = self.w

        def set_modes(d: bool, g1: bool, g2: bool) -> None:
            # The networks not being updated run with their BN running statistics, as the demo.
            net.disc.train(d)
            net.g1.train(g1)
            net.g2.train(g2)

        try:
            # 1. Discriminator: tell ground truth, G1 and G2 apart.
            set_modes(True, False, False)
            opt_d.zero_grad(set_to_none=True)
            with torch.no_grad(), autocast(self.cfg):
                p1, p2 = net.generate(image)
            with autocast(self.cfg):
                logits, _ = net.disc(self._pairs(image, mask, p1, p2))
            loss_d = F.cross_entropy(logits.float(), labels)
            loss_d.backward()
            _average_gradients(list(net.disc.parameters()))
            opt_d.step()

            # 2./3. Each generator: its data loss, fooling D, and consistency with the other generator.
            gen_losses = []
            for idx, (gen, opt, modes) in enumerate(
                ((net.g1, opt_g1, (False, True, False)), (net.g2, opt_g2, (False, False, True)))
            ):
                set_modes(*modes)
                opt.zero_grad(set_to_none=True)
                with autocast(self.cfg):
                    own = gen(image).clamp(0.0, 1.0)
                    with torch.no_grad():
                        other = (net.g2 if idx == 0 else net.g1)(image).clamp(0.0, 1.0)
                    p1, p2 = (own, other) if idx == 0 else (other, own)
                    logits, feats = net.disc(self._pairs(image, mask, p1, p2))
                md, fa = md_fa_losses(own, mask)
                data = w.lambda1 * md + fa if idx == 0 else md + w.lambda2 * fa
                adversarial = F.cross_entropy(logits[(idx + 1) * n : (idx + 2) * n].float(), real)
                f1, f2 = feats[n : 2 * n].float(), feats[2 * n :].float()
                consistency = ((f1 - f2) ** 2).mean()
                loss = w.data * data + w.adversarial * adversarial + w.consistency * consistency
                loss.backward()
                _average_gradients(list(gen.parameters()))
                opt.step()
                gen_losses.append(loss.detach())
        finally:
            net.train(True)
        with torch.no_grad():
            md, fa = md_fa_losses((p1.detach() + p2.detach()) / 2, mask)
        return {
            "loss": gen_losses[0] + gen_losses[1],
            "loss_d": loss_d.detach(),
            "loss_g1": gen_losses[0],
            "loss_g2": gen_losses[1],
            "md": md,
            "fa": fa,
        }


@register_model("mdvsfa")
def mdvsfa(in_channels: int = 3, width: int = 64) -> MDvsFA:
    """MDvsFA-cGAN (two generators + discriminator), generator width 64 as the paper's code."""
    return MDvsFA(in_channels=in_channels, width=width)


__all__ = ["MDvsFA", "MDvsFAStep", "MDvsFAWeights", "md_fa_losses"]
