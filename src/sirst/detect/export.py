"""ONNX export and an ONNX Runtime runner usable by :class:`sirst.detect.Detector`."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    in_channels: int = 3,
    dynamic: bool = True,
    opset: int = 17,
    example_size: tuple[int, int] = (64, 64),
) -> Path:
    """Export ``model`` (eval mode, one logits output ``(N, 1, H, W)``) to ONNX (:func:`onnx_bytes`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(onnx_bytes(model, in_channels, dynamic, opset, example_size))
    return path


def onnx_bytes(
    model: nn.Module,
    in_channels: int = 3,
    dynamic: bool = True,
    opset: int = 17,
    example_size: tuple[int, int] = (64, 64),
) -> bytes:
    """``model`` (eval mode, one logits output ``(N, 1, H, W)``) as a serialized ONNX model.

    With ``dynamic`` the batch, height and width axes are dynamic (H and W must still be multiples
    of the model's ``size_divisor``). Uses the TorchScript-based exporter, which maps the bilinear
    up/down-sampling to ONNX ``Resize`` with scales, so one file serves every input size. The
    model's metadata holds ``size_divisor`` and ``in_channels`` (what the runners read back).
    """
    model = model.eval().cpu()
    example = torch.zeros(1, in_channels, *example_size)
    axes = {"image": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), _without_onnxscript_functions():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter announces its own deprecation
        torch.onnx.export(
            model, (example,), buffer, input_names=["image"], output_names=["logits"],
            dynamic_axes=axes if dynamic else None, opset_version=opset, dynamo=False,
        )
    meta = {"size_divisor": str(getattr(model, "size_divisor", 1)), "in_channels": str(in_channels)}
    # Appended to the serialized model rather than through onnx.load/save, which re-encode the whole
    # file (0.16 s of the first run for DNANet's 19 MB).
    return buffer.getvalue() + b"".join(_metadata_entry(k, v) for k, v in meta.items())


@contextlib.contextmanager
def _without_onnxscript_functions() -> Iterator[None]:
    """Skip the TorchScript exporter's last step, which re-parses the model with the onnx package to
    add the onnxscript functions of custom operators: our networks have none, so the bytes are the
    same, without importing onnx (0.6 s, a sixth of a first run's one-off cost on one core). Where
    that private step is not found (another torch), the export runs as it is."""
    try:
        from torch.onnx._internal.torchscript_exporter import onnx_proto_utils
    except ImportError:
        yield
        return
    real = getattr(onnx_proto_utils, "_add_onnxscript_fn", None)
    if real is None:
        yield
        return
    onnx_proto_utils._add_onnxscript_fn = lambda model_bytes, custom_opsets: model_bytes
    try:
        yield
    finally:
        onnx_proto_utils._add_onnxscript_fn = real


def _metadata_entry(key: str, value: str) -> bytes:
    """``ModelProto.metadata_props`` (field 14) entry ``key: value``, serialized: protobuf parsers append
    the repeated fields they find at the end of a message to those before."""
    entry = _length_delimited(1, key.encode()) + _length_delimited(2, value.encode())
    return _length_delimited(14, entry)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class OnnxRunner:
    """Callable ``(N, C, H, W)`` tensor -> logits tensor, backed by an ONNX Runtime session."""

    def __init__(self, path: str | os.PathLike, providers: list[str] | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: ONNX file not found")
        try:
            options = ort.SessionOptions()
            # The CPU arena keeps its high-water mark and grows in powers of two: 3.4 GB per million
            # input pixels for DNANet against 1.9 GB without it, at no measurable speed cost here.
            options.enable_cpu_mem_arena = False
            if threads:
                options.intra_op_num_threads = threads
            self.session = ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ValueError(f"{path}: cannot load ONNX model ({exc})") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        self.size_divisor = int(meta.get("size_divisor", 16))
        self.in_channels = int(meta.get("in_channels", self.session.get_inputs()[0].shape[1]))
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: x.detach().cpu().numpy().astype(np.float32)})[0]
        return torch.from_numpy(out)
