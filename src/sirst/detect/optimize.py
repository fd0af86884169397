"""Fast inference without changing results: BatchNorm folding, channels_last, inference mode,
reduced precision, ``torch.compile`` and CUDA graphs.

``optimize_for_inference(model, device)`` returns an :class:`OptimizedModel`: an eval-only copy of
the network (the original is left untouched) whose ``forward(x)`` maps a normalised ``(N, C, H, W)``
tensor (any device) to float32 logits ``(N, 1, H, W)`` on ``device``. What it does:

* **BatchNorm folding** (:func:`fold_batchnorm`): every eval-mode BatchNorm that directly follows a
  convolution is merged into the convolution's weights and bias (``w' = w * g / s``,
  ``b' = (b - mu) * g / s + beta`` with ``s = sqrt(var + eps)``). fp32 results agree to ~1e-6.
* **channels_last** memory format (NHWC), which oneDNN and cuDNN convolutions prefer.
* ``torch.inference_mode`` (no autograd bookkeeping at all).
* **CPU micro-batches** (``micro_batch``, default 1 on the CPU): a batch is run as forwards of at most
  ``micro_batch`` images and concatenated. On the CPUs measured the per-image time of DNANet grows
  with the batch (its full-resolution feature maps stop fitting the caches: 152 ms per image at batch
  1 against 195 at batch 8, quiet 2-core CPU, docs/performance.md), so a batch of 8 runs fastest as
  8 forwards of 1. Results equal the whole-batch forward (same targets; logits to float rounding).
* **oneDNN prepacking** (``onednn``, default on the CPU in fp32 with channels_last): every
  convolution is replaced by :class:`PackedConv2d`, which holds its weights reordered once into
  oneDNN's blocked layout and calls oneDNN's fused convolution, so the weights are not reordered on
  every call; in DNANet's Res-CBAM blocks the ReLU after the first convolution and the shortcut's
  ``+ residual`` and ReLU run inside the convolutions (:class:`PackedResCBAMBlock`). Same fp32
  arithmetic (logits to ~1e-5); falls back to the plain modules where the ops are missing.
* ``precision="bf16"``/``"fp16"``: autocast. Logits change by ~1e-2, so scores move slightly; the
  detections of a trained model stay the same except for pixels whose logit is within that of 0.
* ``compile=True``: ``torch.compile`` (inductor; with weight freezing), a one-off compile of a
  minute or more per input shape on a small CPU.
* ``cuda_graphs=True`` (CUDA only): each input shape is captured once in a ``torch.cuda.CUDAGraph``
  and replayed, which removes the per-kernel launch cost (DNANet launches ~800 kernels).
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from sirst.layers import ChannelAttention, ResCBAMBlock

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


# ------------------------------------------------------------------------------------------------
# BatchNorm folding
# ------------------------------------------------------------------------------------------------


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (
        isinstance(conv, nn.Conv2d)
        and isinstance(bn, nn.BatchNorm2d)
        and bn.track_running_stats
        and bn.running_mean is not None
        and bn.num_features == conv.out_channels
    )


def _fold_pairs_(module: nn.Module) -> int:
    """Fold the conv/BN pairs of ``module`` itself (not its children); returns how many."""
    folded = 0
    if isinstance(module, nn.Sequential):
        # In a Sequential, a BN right after a convolution is applied to exactly its output.
        names = list(module._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = module._modules[a], module._modules[b]
            if _foldable(conv, bn):
                module._modules[a] = fuse_conv_bn_eval(conv, bn)
                module._modules[b] = nn.Identity()
                folded += 1
    # Blocks declare which (conv, bn) attributes their forward applies as bn(conv(x)).
    for conv_name, bn_name in getattr(module, "conv_bn_pairs", ()):
        conv, bn = getattr(module, conv_name), getattr(module, bn_name)
        if _foldable(conv, bn):
            setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
            setattr(module, bn_name, nn.Identity())
            folded += 1
    return folded


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every BatchNorm that follows a convolution folded into it.

    Folded: consecutive ``Conv2d``, ``BatchNorm2d`` in an ``nn.Sequential``, and the pairs a block
    lists in its ``conv_bn_pairs`` attribute (``sirst.layers.ResCBAMBlock``, ``VGGBlock``). Other
    BatchNorms (e.g. on the input, or after a sum) are kept. The copy computes the same function
    as ``model.eval()`` (to float rounding) for inputs of any shape; ``model`` is not modified.
    """
    folded_model = copy.deepcopy(model).eval()
    for module in folded_model.modules():
        _fold_pairs_(module)
    return folded_model


def count_batchnorms(model: nn.Module) -> int:
    """Number of ``BatchNorm2d`` modules in ``model`` (0 after folding a DNANet)."""
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


# ------------------------------------------------------------------------------------------------
# oneDNN prepacked convolutions (CPU, fp32)
# ------------------------------------------------------------------------------------------------


def onednn_packing_available() -> bool:
    """Whether this PyTorch build has the oneDNN ops :class:`PackedConv2d` calls."""
    ops = torch.ops.mkldnn
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(ops, "_convolution_pointwise")
        and hasattr(ops, "_reorder_convolution_weight")
    )


def _packable(conv: nn.Module) -> bool:
    return (
        type(conv) is nn.Conv2d
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and conv.weight.dtype == torch.float32
        and conv.weight.device.type == "cpu"
    )


class PackedConv2d(nn.Module):
    """A CPU fp32 ``Conv2d`` whose weights are reordered once into oneDNN's layout.

    ``forward(x)`` is ``conv(x)``, followed by ``unary`` (``"none"`` or ``"relu"``) inside the
    convolution; ``forward(x, add)`` is ``act(conv(x) + add)`` with ``act`` given by ``add_unary``,
    written into ``add`` (which the caller must own).
    Inference only: the packed weights are an opaque oneDNN tensor, not a parameter.
    """

    def __init__(self, conv: nn.Conv2d, unary: str = "none") -> None:
        super().__init__()
        self.padding = list(conv.padding)
        self.stride = list(conv.stride)
        self.dilation = list(conv.dilation)
        self.groups = conv.groups
        self.unary = unary
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        weight = conv.weight.detach().contiguous()
        self.packed_weight = torch.ops.mkldnn._reorder_convolution_weight(
            weight, self.padding, self.stride, self.dilation, self.groups)
        self.bias = None if conv.bias is None else conv.bias.detach().contiguous()

    def forward(self, x: torch.Tensor, add: torch.Tensor | None = None, add_unary: str = "none") -> torch.Tensor:
        if add is None:
            return torch.ops.mkldnn._convolution_pointwise(
                x, self.packed_weight, self.bias, self.padding, self.stride, self.dilation, self.groups,
                self.unary, [], "")
        # Written into ``add`` (no new full-size tensor); no unary post-op is spelled None here.
        return torch.ops.mkldnn._convolution_pointwise_.binary(
            add, x, self.packed_weight, self.bias, self.padding, self.stride, self.dilation, self.groups,
            "add", None, None if add_unary == "none" else add_unary, [], "")

    def __deepcopy__(self, memo: dict) -> PackedConv2d:
        return self  # the packed weights are immutable; oneDNN tensors cannot be deep-copied

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, unary={self.unary!r}"


class PackedResCBAMBlock(nn.Module):
    """A BN-folded CSAM :class:`~sirst.layers.ResCBAMBlock` with :class:`PackedConv2d` convolutions.

    Same function as the block; the ReLU after ``conv1`` and, with a shortcut convolution,
    ``relu(shortcut(x) + sa * out)`` run inside oneDNN's convolutions (fewer passes over the maps).
    """

    def __init__(self, block: ResCBAMBlock) -> None:
        super().__init__()
        self.conv1 = PackedConv2d(block.conv1, "relu")
        self.conv2 = PackedConv2d(block.conv2)
        self.shortcut = None if block.shortcut is None else PackedConv2d(block.shortcut[0])
        self.ca = block.ca
        self.sa = block.sa
        self.sa.conv1 = PackedConv2d(block.sa.conv1)

    @staticmethod
    def fits(block: nn.Module) -> bool:
        """A CSAM block whose BatchNorms are folded away and whose convolutions can be packed."""
        if not (isinstance(block, ResCBAMBlock) and block.attention == "csam"):
            return False
        if not (isinstance(block.bn1, nn.Identity) and isinstance(block.bn2, nn.Identity)):
            return False
        convs = [block.conv1, block.conv2, block.sa.conv1]
        if block.shortcut is not None:
            if len(block.shortcut) != 2 or not isinstance(block.shortcut[1], nn.Identity):
                return False
            convs.append(block.shortcut[0])
        return all(_packable(c) for c in convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In place where the block owns the tensor: fewer fresh allocations, each of which costs page
        # faults on a full-resolution map.
        out = self.conv2(self.conv1(x))
        out = out.mul_(self.ca(out))
        if self.shortcut is None:
            return torch.addcmul(x, self.sa(out), out, out=out).relu_()
        return self.shortcut(x, add=out.mul_(self.sa(out)), add_unary="relu")


def pack_for_onednn(net: nn.Module) -> int:
    """Replace, in place, the convolutions of ``net`` by :class:`PackedConv2d` (and BN-folded CSAM
    blocks by :class:`PackedResCBAMBlock`); returns how many modules were replaced. CPU fp32 only;
    the channel-attention MLP (read as matrices) is left as it is."""
    replaced = 0
    for name, child in list(net.named_children()):
        if PackedResCBAMBlock.fits(child):
            setattr(net, name, PackedResCBAMBlock(child))
            replaced += 1
        elif _packable(child):
            setattr(net, name, PackedConv2d(child))
            replaced += 1
        elif not isinstance(child, ChannelAttention):
            replaced += pack_for_onednn(child)
    return replaced


# ------------------------------------------------------------------------------------------------
# The optimised model
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InferenceOptions:
    """How :func:`optimize_for_inference` prepares a model (see the module docstring).

    ``channels_last=None`` means yes (measured faster for DNANet with oneDNN and cuDNN).
    """

    fold_bn: bool = True
    channels_last: bool | None = None
    precision: str = "fp32"
    compile: bool = False
    cuda_graphs: bool = False
    #: Most images per forward on the CPU (larger batches are split); ``None``: 1 on the CPU, no split on
    #: other devices; ``0``: never split.
    micro_batch: int | None = None
    #: oneDNN prepacked (and fused) convolutions; ``None``: on the CPU in fp32 with channels_last and
    #: without compile, where it measured faster (docs/performance.md), if this build has the ops.
    onednn: bool | None = None

    def use_onednn(self, device: torch.device) -> bool:
        if self.onednn is False:
            return False
        fits = (device.type == "cpu" and self.precision == "fp32" and self.channels_last is not False
                and not self.compile)
        if self.onednn and not fits:
            raise ValueError("onednn packing needs the CPU, fp32, channels_last and no compile")
        return fits and onednn_packing_available()

    def validate(self, device: torch.device) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.cuda_graphs and device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, got {device}")
        if self.cuda_graphs and self.compile:
            raise ValueError("use either compile or cuda_graphs, not both (compile has its own graph mode)")
        if self.micro_batch is not None and self.micro_batch < 0:
            raise ValueError(f"micro_batch must be >= 0 (0: never split), got {self.micro_batch}")
        self.use_onednn(device)  # refuses onednn=True where it cannot apply


class _CudaGraphRunner:
    """Replays one captured CUDA graph per input shape; ``fn`` must be shape-static and pure."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], warmup: int = 3) -> None:
        self.fn = fn
        self.warmup = warmup
        self.graphs: dict[tuple[tuple[int, ...], torch.dtype], tuple] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), x.dtype)
        if key not in self.graphs:
            static_in = x.clone()
            # Warm up on a side stream (cuDNN autotuning, lazy allocations) before capturing.
            side = torch.cuda.Stream(device=x.device)
            side.wait_stream(torch.cuda.current_stream(x.device))
            with torch.cuda.stream(side):
                for _ in range(self.warmup):
                    self.fn(static_in)
            torch.cuda.current_stream(x.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.fn(static_in)
            self.graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = self.graphs[key]
        static_in.copy_(x)
        graph.replay()
        return static_out.clone()  # the next replay overwrites static_out


class OptimizedModel(nn.Module):
    """Eval-only network prepared by :func:`optimize_for_inference`.

    ``forward(x)``: ``x`` ``(N, C, H, W)`` float on any device -> float32 logits ``(N, 1, H, W)`` on
    ``self.device`` (the last output for models that return several). Keeps ``size_divisor`` and
    ``in_channels`` of the wrapped model.
    """

    def __init__(self, net: nn.Module, device: torch.device, options: InferenceOptions, in_channels: int) -> None:
        super().__init__()
        self.net = net
        self.device = device
        self.options = options
        self.size_divisor = int(getattr(net, "size_divisor", 1))
        self.in_channels = in_channels
        self.channels_last = options.channels_last is not False
        self._dtype = PRECISIONS[options.precision]
        micro = options.micro_batch
        self.micro_batch = (1 if device.type == "cpu" else 0) if micro is None else int(micro)
        self._run: Callable[[torch.Tensor], torch.Tensor] = self._logits
        if options.compile:
            # Freezing folds the (now constant) weights into the graph and pre-packs them for oneDNN.
            self._compiled = torch.compile(self.net, options={"freezing": True} if device.type == "cpu" else None)
        if options.cuda_graphs:
            self._run = _CudaGraphRunner(self._logits)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self._dtype is None:
            return contextlib.nullcontext()
        # The autocast weight-cast cache must be off while a CUDA graph is captured.
        return torch.autocast(self.device.type, dtype=self._dtype, cache_enabled=not self.options.cuda_graphs)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        net = self._compiled if self.options.compile else self.net
        with self._autocast():
            out = net(x)
        if isinstance(out, (list, tuple)):
            out = out[-1]
        return out.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            x = x.to(self.device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if 0 < self.micro_batch < x.shape[0]:
                return torch.cat([self._run(part) for part in x.split(self.micro_batch)])
            return self._run(x)

    def train(self, mode: bool = True) -> OptimizedModel:
        if mode:
            raise RuntimeError("an OptimizedModel is for inference only; train the original model")
        return super().train(False)


def in_channels_of(model: Callable) -> int:
    """Input channels of a model: its ``in_channels`` attribute or its first convolution's (else 3)."""
    if hasattr(model, "in_channels"):
        return int(model.in_channels)
    if isinstance(model, nn.Module):
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                return m.in_channels
    return 3


def _plain_copy(model: nn.Module, options: InferenceOptions, device: torch.device) -> nn.Module:
    """An eval copy of ``model`` on ``device`` without gradients: BN-folded and channels_last as
    ``options`` ask."""
    net = fold_batchnorm(model) if options.fold_bn else copy.deepcopy(model).eval()
    net = net.requires_grad_(False).to(device)
    return net.to(memory_format=torch.channels_last) if options.channels_last is not False else net


def optimize_for_inference(
    model: nn.Module,
    device: str | torch.device = "cpu",
    options: InferenceOptions | None = None,
    **overrides,
) -> OptimizedModel:
    """A fast eval-only copy of ``model`` on ``device`` (``model`` itself is not modified).

    ``options`` (or keyword overrides of :class:`InferenceOptions`, e.g. ``precision="bf16"``)
    select the optimisations. With the defaults (BN folding, channels_last, inference mode, fp32)
    the logits equal ``model.eval()(x)`` to ~1e-5. On CUDA, cuDNN autotuning
    (``torch.backends.cudnn.benchmark``, a process-wide switch) is turned on.
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    options = options or InferenceOptions()
    if overrides:
        options = InferenceOptions(**{**options.__dict__, **overrides})
    options.validate(device)
    in_channels = in_channels_of(model)
    net = _plain_copy(model, options, device)
    if options.use_onednn(device):
        try:
            pack_for_onednn(net)
        except RuntimeError as err:  # a oneDNN build that refuses the ops: keep the plain modules
            warnings.warn(f"oneDNN prepacking failed, using plain convolutions: {err}", stacklevel=2)
            net = _plain_copy(model, options, device)  # packing may have replaced some modules already
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return OptimizedModel(net, device, options, in_channels).eval()
