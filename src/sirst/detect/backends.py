"""Inference paths on the CPU: backends (torch, ONNX Runtime, OpenVINO) x precisions (fp32, bf16, INT8),
and the cached ONNX / INT8 models they need.

A *path* is a :class:`PathSpec` ``(backend, precision)``; :func:`build_runner` turns a trained
``nn.Module`` into a callable for it, ``(N, C, H, W)`` float32 tensor -> logits ``(N, 1, H, W)``
float32, with ``size_divisor`` and ``in_channels`` attributes (what :class:`sirst.detect.Detector`
takes).

* ``torch``: ``fp32`` (BN folded, channels_last) and ``bf16`` (autocast), :mod:`sirst.detect.optimize`.
* ``onnxruntime``: the BN-folded ONNX export (``fp32``, :mod:`sirst.detect.export`) and its INT8 static
  quantization (``int8``): QDQ, per-channel symmetric INT8 weights, per-tensor asymmetric UINT8
  activations, ranges from calibration images (min/max).
* ``openvino`` (optional, ``pip install openvino``): the same ONNX files; ``fp32`` forces f32 inference,
  ``bf16`` asks OpenVINO's CPU plugin for bf16 (AMX / AVX512-BF16), ``int8`` runs the QDQ model with
  its other layers in bf16.

Exported and quantized models are cached under :func:`cache_dir` keyed by a digest of the weights,
so only the first run with given weights pays for the export (seconds) and the INT8 calibration
(tens of seconds). Which path a job runs on is :mod:`sirst.detect.choose`'s business.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

BACKENDS = ("torch", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "int8")
#: Which precisions each backend runs (fp16 stays a torch/GPU option of :mod:`sirst.detect.optimize`).
BACKEND_PRECISIONS: dict[str, tuple[str, ...]] = {
    "torch": ("fp32", "bf16"),
    "onnxruntime": ("fp32", "int8"),
    "openvino": ("fp32", "bf16", "int8"),
}
#: Precisions ``--precision auto`` chooses among: those that passed the accuracy gate on both full test
#: splits with every bundled weights (docs/performance.md, scripts/precision_gate.py).
AUTO_PRECISIONS = ("fp32", "bf16")
INSTALL_HINT = {
    "onnxruntime": "pip install 'sirst[export]' (onnx, onnxruntime)",
    "openvino": "pip install 'sirst[openvino]' (openvino)",
}


@dataclass(frozen=True)
class PathSpec:
    """One inference path: a backend and a precision."""

    backend: str
    precision: str

    def __str__(self) -> str:
        return f"{self.backend}-{self.precision}"

    @classmethod
    def parse(cls, text: str) -> PathSpec:
        backend, _, precision = text.partition("-")
        spec = cls(backend, precision)
        spec.validate()
        return spec

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.precision not in BACKEND_PRECISIONS[self.backend]:
            raise ValueError(f"the {self.backend} backend runs {', '.join(BACKEND_PRECISIONS[self.backend])}, "
                             f"not {self.precision!r}")


def backend_available(backend: str) -> bool:
    """Whether the packages of ``backend`` are importable (torch always is)."""
    import importlib.util

    if backend == "torch":
        return True
    if backend == "onnxruntime":
        return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
    if backend == "openvino":
        # OpenVINO reads the ONNX files that the onnx package writes.
        return importlib.util.find_spec("openvino") is not None and importlib.util.find_spec("onnx") is not None
    return False


def require_backend(backend: str) -> None:
    """Raise ``ValueError`` with the install command when ``backend`` is not installed."""
    if not backend_available(backend):
        raise ValueError(f"the {backend} backend is not installed: {INSTALL_HINT[backend]}")


def candidate_paths(precision: str = "auto", backend: str = "auto") -> list[PathSpec]:
    """Installed paths matching ``precision`` / ``backend`` (``"auto"`` = any), torch fp32 first."""
    out = []
    for b in BACKENDS:
        if backend not in ("auto", b) or not backend_available(b):
            continue
        for p in BACKEND_PRECISIONS[b]:
            if precision in ("auto", p):
                out.append(PathSpec(b, p))
    return out


# ------------------------------------------------------------------------------------------------
# Cache
# ------------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where exported models and path choices are kept: ``$SIRST_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/sirst``, else ``~/.cache/sirst``."""
    if os.environ.get("SIRST_CACHE_DIR"):
        return Path(os.environ["SIRST_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sirst"


def weights_digest(model: nn.Module) -> str:
    """16 hex digits identifying ``model``'s class and weights (parameters and buffers, as float32)."""
    h = hashlib.sha256(type(model).__name__.encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes() if t.is_floating_point()
                 else t.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def cpu_flags() -> set[str]:
    """The CPU's feature flags (``/proc/cpuinfo``; empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine_key(threads: int) -> str:
    """What a speed measurement depends on besides the weights: CPU, flags, threads, library versions."""
    name = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    versions = [torch.__version__]
    for mod in ("onnxruntime", "openvino"):
        if backend_available(mod):
            import importlib.metadata

            try:
                versions.append(f"{mod}={importlib.metadata.version(mod)}")
            except importlib.metadata.PackageNotFoundError:
                pass
    text = json.dumps([name, sorted(cpu_flags()), os.cpu_count(), threads, versions])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Write through ``write(tmp)`` and rename, so a crash never leaves a half-written cache file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def fp32_onnx(model: nn.Module, cache: Path | None = None) -> Path:
    """The BN-folded fp32 ONNX export of ``model`` (dynamic batch, height, width), cached by weights."""
    from sirst.detect.export import export_onnx
    from sirst.detect.optimize import fold_batchnorm, in_channels_of

    require_backend("onnxruntime")  # the export needs the onnx package, which the extra brings
    path = (cache or cache_dir()) / "models" / weights_digest(model) / "fp32.onnx"
    if not path.is_file():
        net = fold_batchnorm(model.float().cpu())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _atomic_write(path, lambda tmp: export_onnx(net, tmp, in_channels=in_channels_of(model)))
    return path


# ------------------------------------------------------------------------------------------------
# INT8 static quantization (ONNX Runtime QDQ)
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantConfig:
    """How the INT8 model is made (every field is part of its cache key).

    ``exclude_first_last``: keep the first convolution (raw image in) and the last one (logits out)
    in float; the rest are INT8. ``calibration_images``: how many images feed the min/max ranges.
    """

    per_channel: bool = True
    exclude_first_last: bool = True
    calibration_images: int = 16
    op_types: tuple[str, ...] = ("Conv",)

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self)).encode()).hexdigest()[:8]


def default_calibration_images(n: int = 16, seed: int = 0) -> list[np.ndarray]:
    """Images available to every installation: the bundled samples plus synthesized NUDT-style frames,
    ``(H, W)`` float32 in [0, 1]."""
    from sirst.detect.check import synthetic_images
    from sirst.data.io import read_image

    samples = sorted((Path(__file__).resolve().parents[1] / "samples").glob("*.png"))
    images = [read_image(p) for p in samples][:n]
    return images + synthetic_images(max(0, n - len(images)), 256, seed)


def dataset_calibration_images(roots: Sequence[str | os.PathLike], n: int = 16) -> list[np.ndarray]:
    """``n`` training images spread evenly over the train splits of the datasets at ``roots``
    (``(H, W)`` float32 in [0, 1], alternating between datasets)."""
    from sirst.data.dataset import SirstDataset

    per = [SirstDataset(r, subset="train", mode="eval", check_sizes=False) for r in roots]
    picks = []
    for k, ds in enumerate(per):
        count = n // len(per) + (1 if k < n % len(per) else 0)
        picks += [(ds, int(i)) for i in np.linspace(0, len(ds) - 1, count).round()]
    return [ds.load(i)[0] for ds, i in picks]


def _network_inputs(images: Sequence[np.ndarray], in_channels: int, divisor: int = 16) -> list[np.ndarray]:
    from sirst.data.io import to_network_input

    out = []
    for g in images:
        h, w = g.shape
        g = np.pad(g, ((0, -h % divisor), (0, -w % divisor)))
        out.append(to_network_input(g, in_channels)[None].numpy())
    return out


def _first_last_convs(onnx_path: Path) -> list[str]:
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    convs = [n.name for n in graph.node if n.op_type == "Conv"]
    return [convs[0], convs[-1]] if convs else []


def bundled_ranges_dir() -> Path:
    """Activation ranges shipped with the package: ``<weights digest>-<config key>.json``, computed on
    training images of NUAA-SIRST and NUDT-SIRST (``scripts/precision_gate.py --write-ranges``)."""
    return Path(__file__).resolve().parents[1] / "calibration"


def int8_onnx(
    model: nn.Module,
    cache: Path | None = None,
    config: QuantConfig | None = None,
    calibration: Sequence[np.ndarray] | None = None,
    progress: Callable[[str], None] | None = None,
    ranges_out: Path | None = None,
) -> Path:
    """The INT8 QDQ ONNX model of ``model``, made once per weights, config and calibration, then cached.

    Activation ranges, first found wins: ``calibration`` images ``(H, W)`` in [0, 1] when given;
    the ranges shipped for these weights (:func:`bundled_ranges_dir`, from training images of the
    datasets); else :func:`default_calibration_images` (bundled samples and synthesized frames).
    ``ranges_out``: also write the ranges used there (ONNX Runtime's calibration-cache JSON).
    """
    require_backend("onnxruntime")
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from sirst.detect.optimize import in_channels_of

    config = config or QuantConfig()
    cache = cache or cache_dir()
    digest = weights_digest(model)
    shipped = bundled_ranges_dir() / f"{digest}-{config.key()}.json"
    if calibration is not None:
        images = list(calibration)
        source_tag = "c" + hashlib.sha256(b"".join(np.ascontiguousarray(g, np.float32).tobytes()
                                                   for g in images)).hexdigest()[:8]
    elif shipped.is_file():
        images, source_tag = [], "shipped"
    else:
        images, source_tag = default_calibration_images(config.calibration_images), "default"
    path = cache / "models" / digest / f"int8-{config.key()}-{source_tag}.onnx"
    if path.is_file() and ranges_out is None:
        return path
    source = fp32_onnx(model, cache)
    inputs = _network_inputs(images, in_channels_of(model), int(getattr(model, "size_divisor", 16)))
    if progress:
        what = "the shipped ranges" if source_tag == "shipped" else f"{len(inputs)} calibration images"
        progress(f"quantizing to INT8 with {what} (once for these weights; cached in {path.parent})")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(inputs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.it, None)
            return None if x is None else {"image": x}

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        ranges = Path(tmp) / "ranges.json"
        if source_tag == "shipped":
            ranges.write_bytes(shipped.read_bytes())
        quant_pre_process(str(source), str(pre), skip_symbolic_shape=True)
        exclude = _first_last_convs(pre) if config.exclude_first_last else []

        def write(out: Path) -> None:
            quantize_static(
                str(pre), str(out), None if source_tag == "shipped" else Reader(), quant_format=QuantFormat.QDQ,
                per_channel=config.per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=list(config.op_types),
                nodes_to_exclude=exclude, extra_options={"ActivationSymmetric": False},
                calibration_cache_path=str(ranges),
            )

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _atomic_write(path, write)
        if ranges_out is not None:
            Path(ranges_out).parent.mkdir(parents=True, exist_ok=True)
            Path(ranges_out).write_bytes(ranges.read_bytes())
    _copy_metadata(source, path)
    return path


def _copy_metadata(source: Path, target: Path) -> None:
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(source)).metadata_props}
    m = onnx.load(str(target))
    have = {p.key for p in m.metadata_props}
    for k, v in meta.items():
        if k not in have:
            m.metadata_props.add(key=k, value=v)
    onnx.save(m, str(target))


# ------------------------------------------------------------------------------------------------
# Runners
# ------------------------------------------------------------------------------------------------


class OpenVinoRunner:
    """Callable ``(N, C, H, W)`` tensor -> logits tensor, backed by OpenVINO's CPU plugin.

    Shapes seen for the first time run on one model compiled for dynamic shapes; a shape seen again
    gets its own static compilation (~1.5 s once; measured 25 % faster per image at 256x256), so a
    folder of equal frames runs static and a folder of mixed sizes does not compile per image.
    ``cache``: OpenVINO's compiled-model cache folder, which makes later processes start faster.
    """

    def __init__(self, path: str | os.PathLike, precision: str = "bf16", threads: int | None = None,
                 cache: Path | None = None) -> None:
        import openvino as ov

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: ONNX file not found")
        self.core = ov.Core()
        if cache is not None:
            self.core.set_property({"CACHE_DIR": str(cache)})
        try:
            self.model = self.core.read_model(str(self.path))
        except Exception as exc:  # OpenVINO raises its own exception types for bad files
            raise ValueError(f"{self.path}: cannot load ONNX model ({exc})") from exc
        # f32 forces fp32 everywhere; bf16 lets the CPU plugin run bf16 (it keeps INT8 layers INT8).
        self.config: dict[str, object] = {"INFERENCE_PRECISION_HINT": "f32" if precision == "fp32" else "bf16",
                                          "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = int(threads)
        meta = _onnx_metadata(self.path)
        self.size_divisor = int(meta.get("size_divisor", 16))
        self.in_channels = int(meta.get("in_channels", 3))
        self.static: dict[tuple[int, ...], object] = {}
        self.seen: set[tuple[int, ...]] = set()
        self.dynamic: object | None = None

    def _compiled(self, shape: tuple[int, ...]) -> object:
        if shape in self.static:
            return self.static[shape]
        if shape in self.seen:
            m = self.model.clone()
            m.reshape({m.inputs[0].any_name: list(shape)})
            self.static[shape] = self.core.compile_model(m, "CPU", self.config)
            return self.static[shape]
        self.seen.add(shape)
        if self.dynamic is None:
            self.dynamic = self.core.compile_model(self.model, "CPU", self.config)
        return self.dynamic

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        compiled = self._compiled(tuple(x.shape))
        out = compiled(x.detach().cpu().numpy().astype(np.float32, copy=False))[0]  # type: ignore[operator]
        return torch.from_numpy(np.asarray(out))


def _onnx_metadata(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def build_runner(
    model: nn.Module,
    spec: PathSpec,
    threads: int | None = None,
    cache: Path | None = None,
    quant: QuantConfig | None = None,
    calibration: Sequence[np.ndarray] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable ``(N, C, H, W)`` normalised float32 -> logits ``(N, 1, H, W)`` float32 for ``spec``
    on the CPU, with ``size_divisor`` and ``in_channels`` attributes."""
    spec.validate()
    require_backend(spec.backend)
    if spec.backend == "torch":
        from sirst.detect.optimize import optimize_for_inference

        return optimize_for_inference(model, "cpu", precision=spec.precision)
    path = int8_onnx(model, cache, quant, calibration, progress) if spec.precision == "int8" else fp32_onnx(model, cache)
    if spec.backend == "onnxruntime":
        from sirst.detect.export import OnnxRunner

        return OnnxRunner(path, threads=threads)
    return OpenVinoRunner(path, spec.precision, threads, (cache or cache_dir()) / "openvino")
