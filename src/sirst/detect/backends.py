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
import io
import json
import os
import platform
import tempfile
import threading
import warnings
import weakref
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
    state = model.state_dict()
    try:  # storage and version counter of every tensor: unchanged weights are not hashed again
        stamp = tuple((name, t.data_ptr(), t._version, t.dtype, tuple(t.shape)) for name, t in state.items())
    except RuntimeError:  # inference tensors have no version counter
        stamp = None
    if stamp is not None and (known := _DIGESTS.get(model)) is not None and known[0] == stamp:
        return known[1]
    h = hashlib.sha256(type(model).__name__.encode())
    for name, t in state.items():
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes() if t.is_floating_point()
                 else t.detach().cpu().numpy().tobytes())
    digest = h.hexdigest()[:16]
    if stamp is not None:
        _DIGESTS[model] = (stamp, digest)
    return digest


#: model -> (stamp of its tensors, digest): a first run asks for the digest of the same weights 6 times
#: (cache keys), 35 ms each for DNANet on one core.
_DIGESTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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
    path, _ = fp32_onnx_export(model, cache)
    _wait_for_write(path)
    return path


def fp32_onnx_export(model: nn.Module, cache: Path | None = None) -> tuple[Path, bytes | None]:
    """Where :func:`fp32_onnx` caches ``model``'s export, and the exported bytes when it is exported
    just now: the file is then being written by a background thread (``fp32_onnx`` waits for it)."""
    from sirst.detect.export import onnx_bytes
    from sirst.detect.optimize import fold_batchnorm, in_channels_of

    require_backend("onnxruntime")  # the export needs the onnx package, which the extra brings
    path = (cache or cache_dir()) / "models" / weights_digest(model) / "fp32.onnx"
    _wait_for_write(path)
    if path.is_file():
        return path, None
    net = fold_batchnorm(model.float().cpu())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = onnx_bytes(net, in_channels=in_channels_of(model))

    def write() -> None:
        try:
            _atomic_write(path, lambda tmp: tmp.write_bytes(data))
        except OSError as exc:  # the next run exports again
            warnings.warn(f"{path}: cannot cache the ONNX export ({exc.strerror or exc})")

    # Written beside what follows (OpenVINO reads the bytes): a first run's 19 MB waited ~0.15 s for the
    # disk on one core. Not a daemon thread, so the interpreter finishes the file before it exits.
    _WRITING[path] = thread = threading.Thread(target=write, name="sirst-onnx-cache")
    thread.start()
    return path, data


#: Exports being written to the cache in the background, by path (:func:`fp32_onnx_export`).
_WRITING: dict[Path, threading.Thread] = {}


def _wait_for_write(path: Path) -> None:
    if (thread := _WRITING.pop(path, None)) is not None:
        thread.join()


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
    (or announced with :meth:`expect`, or compiled so by an earlier run with this ``cache``) gets its
    own static compilation (~0.5 s once; measured 20 % faster per image at 256x256), so a folder of
    equal frames runs static and a folder of mixed sizes does not compile per image.
    ``cache``: OpenVINO's compiled-model cache folder, which makes later processes start faster.
    ``data``: the model's bytes, read instead of ``path`` (an export still being written there).
    """

    def __init__(self, path: str | os.PathLike, precision: str = "bf16", threads: int | None = None,
                 cache: Path | None = None, data: bytes | None = None) -> None:
        import openvino as ov

        self.path = Path(path)
        if data is None and not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: ONNX file not found")
        self.core = ov.Core()
        if cache is not None:
            self.core.set_property({"CACHE_DIR": str(cache)})
        try:
            self.model = self.core.read_model(io.BytesIO(data) if data is not None else str(self.path))
        except Exception as exc:  # OpenVINO raises its own exception types for bad files
            raise ValueError(f"{self.path}: cannot load ONNX model ({exc})") from exc
        # f32 forces fp32 everywhere; bf16 lets the CPU plugin run bf16 (it keeps INT8 layers INT8).
        self.config: dict[str, object] = {"INFERENCE_PRECISION_HINT": "f32" if precision == "fp32" else "bf16",
                                          "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = int(threads)
        # ONNX metadata as OpenVINO reads it: importing the onnx package would add 0.6 s to every start.
        meta = {k: self.model.get_rt_info(["framework", k]).astype(str) for k in ("size_divisor", "in_channels")
                if self.model.has_rt_info(["framework", k])}
        self.size_divisor = int(meta.get("size_divisor", 16))
        self.in_channels = int(meta.get("in_channels", 3))
        self.static: dict[tuple[int, ...], object] = {}
        self.dynamic: object | None = None
        # Shapes compiled for themselves by earlier runs on this machine (OpenVINO's cache holds them) are
        # compiled so again at their first call, not run on the dynamic model first: a later run on a folder
        # of equal frames loads one compiled model, not two (0.3 s on one core).
        self.shapes_file = cache / "static_shapes.json" if cache is not None else None
        self.key = f"{self.path.resolve()}|{precision}|{threads}"
        self.seen: set[tuple[int, ...]] = set(self._static_before())

    def expect(self, shape: Sequence[int]) -> None:
        """Compile ``shape`` for itself at its first call (it will recur), not the dynamic model."""
        self.seen.add(tuple(shape))

    def _static_before(self) -> list[tuple[int, ...]]:
        if self.shapes_file is None:
            return []
        try:
            return [tuple(s) for s in json.loads(self.shapes_file.read_text()).get(self.key, [])]
        except (AttributeError, OSError, ValueError, TypeError):  # none yet, or unreadable: a hint only
            return []

    def _remember_static(self, shape: tuple[int, ...]) -> None:
        if self.shapes_file is None:
            return
        try:
            table = json.loads(self.shapes_file.read_text())
        except (OSError, ValueError):
            table = {}
        shapes = [list(s) for s in self._static_before() if tuple(s) != shape][-15:] + [list(shape)]
        table[self.key] = shapes
        _atomic_write(self.shapes_file, lambda tmp: tmp.write_text(json.dumps(table)))

    def _compiled(self, shape: tuple[int, ...]) -> object:
        if shape in self.static:
            return self.static[shape]
        if shape in self.seen:
            m = self.model.clone()
            m.reshape({m.inputs[0].any_name: list(shape)})
            self.static[shape] = self.core.compile_model(m, "CPU", self.config)
            self._remember_static(shape)
            return self.static[shape]
        self.seen.add(shape)
        if self.dynamic is None:
            self.dynamic = self.core.compile_model(self.model, "CPU", self.config)
        return self.dynamic

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        compiled = self._compiled(tuple(x.shape))
        out = compiled(x.detach().cpu().numpy().astype(np.float32, copy=False))[0]  # type: ignore[operator]
        return torch.from_numpy(np.asarray(out))


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
    if spec.backend == "openvino" and spec.precision != "int8":
        path, data = fp32_onnx_export(model, cache)  # a new export is read from memory while it is written
        return OpenVinoRunner(path, spec.precision, threads, (cache or cache_dir()) / "openvino", data)
    path = int8_onnx(model, cache, quant, calibration, progress) if spec.precision == "int8" else fp32_onnx(model, cache)
    if spec.backend == "onnxruntime":
        from sirst.detect.export import OnnxRunner

        return OnnxRunner(path, threads=threads)
    return OpenVinoRunner(path, spec.precision, threads, (cache or cache_dir()) / "openvino")
