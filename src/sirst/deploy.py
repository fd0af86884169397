"""Fast CPU inference paths: backends (torch, ONNX Runtime, OpenVINO) x precisions (fp32, bf16, INT8),
the cached ONNX / INT8 models they need, and the per-machine choice of the fastest verified one.

A *path* is a :class:`PathSpec` ``(backend, precision)``; :func:`build_runner` turns a trained
``nn.Module`` into a callable for it, ``(N, C, H, W)`` float32 tensor -> logits ``(N, 1, H, W)``
float32, with ``size_divisor`` and ``in_channels`` attributes (what :class:`sirst.inference.Detector`
takes).

* ``torch``: ``fp32`` (BN folded, channels_last) and ``bf16`` (autocast), :mod:`sirst.optimize`.
* ``onnxruntime``: the BN-folded ONNX export (``fp32``) and its INT8 static quantization (``int8``):
  QDQ, per-channel symmetric INT8 weights, per-tensor asymmetric UINT8 activations, ranges from
  calibration images (min/max).
* ``openvino`` (optional, ``pip install openvino``): the same ONNX files; ``fp32`` forces f32 inference,
  ``bf16`` asks OpenVINO's CPU plugin for bf16 (AMX / AVX512-BF16), ``int8`` runs the QDQ model with
  its other layers in bf16.

Exported and quantized models are cached under :func:`cache_dir` keyed by a digest of the weights,
so only the first run with given weights pays for the export (seconds) and the INT8 calibration
(tens of seconds). :func:`plan_path` picks the path for a job: a measured choice when one is cached;
else, for a job too small to pay for measuring (:data:`MEASURE_MIN_WORK`), a rule (:func:`rule_path`):
the paths in the order measured fastest for this CPU class (:func:`ranked_paths`), each taken only when
its one-off costs are paid already or the job is large enough to pay them (:func:`min_work`), and
checked against fp32 on two bundled sample images (:func:`verify_path`, verdict cached).
:func:`choose_path` times the available paths once per machine, weights and thread count, checks each
against fp32 on the bundled sample images (same targets), and caches the fastest verified path with
its fastest batch size.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

BACKENDS = ("torch", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "int8")
#: Which precisions each backend runs (fp16 stays a torch/GPU option of :mod:`sirst.optimize`).
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


def auto_candidates(backend: str = "auto", bf16_units: bool | None = None) -> list[PathSpec]:
    """The paths ``--precision auto`` chooses among, fastest first for this CPU class
    (:func:`ranked_paths`): installed, of a gated precision (:data:`AUTO_PRECISIONS`), less those
    measured slower than a sibling on every CPU tried: with OpenVINO, its bf16 beats ONNX Runtime fp32
    and its own fp32 (on CPUs with bf16 units; without, its fp32 beats ONNX Runtime's)
    (docs/performance.md); torch fp32 always stays (the verification reference).
    """
    paths = ranked_paths([c for c in candidate_paths("auto", backend) if c.precision in AUTO_PRECISIONS], bf16_units)
    if PathSpec("openvino", "bf16") in paths:
        paths = [c for c in paths if c not in (PathSpec("onnxruntime", "fp32"), PathSpec("openvino", "fp32"))]
    elif PathSpec("openvino", "fp32") in paths:
        paths = [c for c in paths if c != PathSpec("onnxruntime", "fp32")]
    return paths


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


def machine_key(threads: int) -> str:
    """What a speed measurement depends on besides the weights: CPU, flags, threads, library versions."""
    from sirst.bench import _cpu_flags

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
    text = json.dumps([name, sorted(_cpu_flags()), os.cpu_count(), threads, versions])
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
    from sirst.export import export_onnx
    from sirst.optimize import fold_batchnorm, in_channels_of

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
    from sirst.bench import synthetic_images
    from sirst.data.io import read_image

    samples = sorted((Path(__file__).resolve().parent / "samples").glob("*.png"))
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
    return Path(__file__).resolve().parent / "calibration"


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

    from sirst.optimize import in_channels_of

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
        from sirst.optimize import optimize_for_inference

        return optimize_for_inference(model, "cpu", precision=spec.precision)
    path = int8_onnx(model, cache, quant, calibration, progress) if spec.precision == "int8" else fp32_onnx(model, cache)
    if spec.backend == "onnxruntime":
        from sirst.export import OnnxRunner

        return OnnxRunner(path, threads=threads)
    return OpenVinoRunner(path, spec.precision, threads, (cache or cache_dir()) / "openvino")


# ------------------------------------------------------------------------------------------------
# Choosing the path
# ------------------------------------------------------------------------------------------------


@dataclass
class PathChoice:
    """The path :func:`choose_path` picked, the batch size it runs fastest at, and what was measured."""

    spec: PathSpec
    batch_size: int
    threads: int
    ms_per_img: float
    measured: dict[str, dict[str, float]] = field(default_factory=dict)  # path -> {batch: ms/img}
    verified: dict[str, str] = field(default_factory=dict)  # path -> "ok" or why not
    cached: bool = False
    source: str = "measured"
    #: The runner already built for ``spec`` while choosing (not saved), or ``None``.
    runner: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False, compare=False)

    def describe(self) -> str:
        how = "cached measurement" if self.cached else self.source
        return (f"{self.spec} at batch {self.batch_size}, {self.threads} thread(s), "
                f"{self.ms_per_img:.0f} ms per 256x256 image ({how})")

    def to_json(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "runner"}
        d["spec"] = str(self.spec)
        return d

    @classmethod
    def from_json(cls, d: dict) -> PathChoice:
        d = dict(d)
        d["spec"] = PathSpec.parse(d["spec"])
        return cls(**d)


def verify_runner(reference: np.ndarray, candidate: np.ndarray) -> str:
    """``"ok"`` when the candidate's logits ``(N, H, W)`` give the same targets as the reference's
    (count, centroids within 1 px), else what differs."""
    from sirst.bench import same_detections

    check = same_detections(reference, candidate)
    return "ok" if check.same_targets else check.describe()


def _verification_batch(in_channels: int, n: int = 4) -> torch.Tensor:
    """``n`` bundled sample images (synthesized frames where missing), 256x256: ``(n, C, 256, 256)``;
    the ones with most targets first (sea, then city), so a short check still compares targets."""
    from sirst.bench import network_batch, synthetic_images

    images = [g[:256, :256] for g in default_calibration_images(4)[:4] if min(g.shape) >= 256]
    if len(images) == 4:  # sorted by name: city, cloud, field, sea
        images = [images[i] for i in (3, 0, 1, 2)]
    images = images[:n]
    images += synthetic_images(max(0, n - len(images)), 256, seed=7)
    return network_batch(images, in_channels)


def _choice_file(model: nn.Module, candidates: Sequence[PathSpec], threads: int, batches: Sequence[int],
                 cache: Path) -> Path:
    key = f"{machine_key(threads)}-{weights_digest(model)}-{'_'.join(sorted(map(str, candidates)))}-{'_'.join(map(str, batches))}"
    return cache / "choices" / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"


def cached_choice(model: nn.Module, candidates: Sequence[PathSpec], threads: int, batches: Sequence[int] = (1, 2, 4, 8),
                  cache: Path | None = None) -> PathChoice | None:
    """The choice :func:`choose_path` measured and cached for these arguments, or ``None``."""
    file = _choice_file(model, candidates, threads, batches, cache or cache_dir())
    if not file.is_file():
        return None
    try:
        choice = PathChoice.from_json(json.loads(file.read_text()))
    except (ValueError, KeyError, TypeError):
        return None  # an unreadable cache entry is measured again
    choice.cached = True
    return choice


def choose_path(
    model: nn.Module,
    candidates: Sequence[PathSpec],
    threads: int,
    batches: Sequence[int] = (1, 2, 4, 8),
    cache: Path | None = None,
    use_cache: bool = True,
    progress: Callable[[str], None] | None = None,
) -> PathChoice:
    """The fastest of ``candidates`` whose detections match torch fp32 on the verification images.

    Each candidate is timed on 256x256 synthesized frames at batch 1 (median of 3 after a warm-up);
    the two fastest verified ones are then timed at the other ``batches`` and the best per-image
    time wins. The result is cached in ``cache/choices/<machine>-<weights>.json``.
    """
    from sirst.bench import median, network_batch, synthetic_images
    from sirst.optimize import in_channels_of

    cache = cache or cache_dir()
    if not candidates:
        raise ValueError("no inference path is installed for the requested precision/backend")
    file = _choice_file(model, candidates, threads, batches, cache)
    if use_cache and (choice := cached_choice(model, candidates, threads, batches, cache)) is not None:
        return choice
    if len(candidates) == 1 and len(batches) == 1:
        return PathChoice(candidates[0], batches[0], threads, float("nan"), source="only option")
    in_ch = in_channels_of(model)
    verify_x = _verification_batch(in_ch)
    reference = build_runner(model, PathSpec("torch", "fp32"), threads, cache)
    with torch.inference_mode():
        ref_out = torch.cat([reference(verify_x[i : i + 1]) for i in range(len(verify_x))]).float().numpy()[:, 0]
    frames = network_batch(synthetic_images(max(batches), 256, seed=3), in_ch)
    runners: dict[str, Callable] = {}
    verified: dict[str, str] = {}
    measured: dict[str, dict[str, float]] = {}

    def time_at(fn: Callable, b: int, rounds: int = 3) -> float:
        x = frames[:b].contiguous()
        fn(x)  # warm-up: first-call allocation, per-shape compilation
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - start)
        return 1000.0 * median(times) / b

    for k, spec in enumerate(candidates):
        if progress:
            progress(f"measuring inference paths on this machine ({k + 1}/{len(candidates)}: {spec})")
        try:
            fn = reference if spec == PathSpec("torch", "fp32") else build_runner(model, spec, threads, cache,
                                                                                  progress=progress)
            with torch.inference_mode():
                out = torch.cat([fn(verify_x[i : i + 1]) for i in range(len(verify_x))]).float().numpy()[:, 0]
            verified[str(spec)] = verify_runner(ref_out, out)
        except Exception as exc:  # a backend that fails on this machine is reported, not fatal
            verified[str(spec)] = f"failed: {exc}"
            continue
        runners[str(spec)] = fn
        if verified[str(spec)] == "ok":
            with torch.inference_mode():
                measured[str(spec)] = {str(batches[0]): time_at(fn, batches[0])}
    ok = sorted(measured, key=lambda s: measured[s][str(batches[0])])
    for name in ok[:2]:
        for b in batches[1:]:
            with torch.inference_mode():
                measured[name][str(b)] = time_at(runners[name], b)
    if not measured:
        raise RuntimeError(f"no inference path could be verified on this machine: {verified}")
    best, best_b, best_ms = None, batches[0], float("inf")
    for name, per_batch in measured.items():
        for b, ms in per_batch.items():
            if ms < best_ms:
                best, best_b, best_ms = name, int(b), ms
    choice = PathChoice(PathSpec.parse(best), best_b, threads, best_ms, measured, verified)
    _atomic_write(file, lambda tmp: tmp.write_text(json.dumps(choice.to_json(), indent=1)))
    return choice


# ------------------------------------------------------------------------------------------------
# The rule for jobs too small to pay for a measurement
# ------------------------------------------------------------------------------------------------

#: Job size, in 256x256-frame equivalents (:func:`sirst.inference.job_work`), from which ``auto``
#: measures the paths (:func:`choose_path`) before running: the measurement costs about as much as
#: 150 frames of the job on the fastest path (docs/performance.md, "The first run"), so it is run
#: only where that is at most 5 % of the job; smaller jobs follow :func:`rule_path`.
MEASURE_MIN_WORK = 3000
#: Job size from which ``auto`` pays a path's one-off costs on a machine where they are not paid yet:
#: an ONNX export and OpenVINO / ONNX Runtime compile (~7 s on one core, what ~30 frames save on
#: OpenVINO bf16 against torch bf16), or the check against fp32 alone (two sample frames through both
#: paths, what ~6 frames save on torch bf16 against torch fp32). docs/performance.md has the numbers.
EXPORT_MIN_WORK = 32
VERIFY_MIN_WORK = 8
#: The batch the rule runs at: per-image time grows with the batch on the CPUs measured (every path).
RULE_BATCH = 1
#: Fastest first, as measured (docs/performance.md): with bf16 units (AMX, AVX512-BF16) and without.
#: torch bf16 is left out without bf16 units (emulated, slower than fp32); OpenVINO bf16 there would
#: run fp32 under a bf16 name, so its fp32 path stands in.
RANKED_BF16 = ("openvino-bf16", "torch-bf16", "onnxruntime-fp32", "openvino-fp32", "torch-fp32")
RANKED_NO_BF16 = ("openvino-fp32", "onnxruntime-fp32", "torch-fp32")
REFERENCE_PATH = PathSpec("torch", "fp32")


def has_bf16_units(flags: set[str] | None = None) -> bool:
    """Whether the CPU has bf16 matrix / vector units (AMX-BF16 or AVX512-BF16)."""
    if flags is None:
        from sirst.bench import _cpu_flags

        flags = _cpu_flags()
    return bool({"amx_bf16", "avx512_bf16"} & set(flags))


def ranked_paths(candidates: Sequence[PathSpec], bf16_units: bool | None = None) -> list[PathSpec]:
    """``candidates`` in the order measured fastest for this CPU class (:data:`RANKED_BF16` or
    :data:`RANKED_NO_BF16`), less those not in that order (INT8, which failed the accuracy gate, and
    bf16 paths without bf16 units); when that leaves none, ``candidates`` as given."""
    order = RANKED_BF16 if (has_bf16_units() if bf16_units is None else bf16_units) else RANKED_NO_BF16
    names = {str(c): c for c in candidates}
    ranked = [names[n] for n in order if n in names]
    return ranked or list(candidates)


def min_work(spec: PathSpec) -> float:
    """The job size (256x256 frames) from which :func:`rule_path` pays ``spec``'s one-off costs:
    0 for torch fp32 (the reference: nothing to export or check), :data:`VERIFY_MIN_WORK` for the
    other torch paths, :data:`EXPORT_MIN_WORK` for the exported ones."""
    if spec == REFERENCE_PATH:
        return 0.0
    return float(VERIFY_MIN_WORK if spec.backend == "torch" else EXPORT_MIN_WORK)


def rule_path(ranked: Sequence[PathSpec], work: float | None, ready: Sequence[str] = ()) -> tuple[PathSpec, str]:
    """The first of ``ranked`` (fastest first) whose one-off costs are paid on this machine (its name
    in ``ready``) or that this job pays for (``work`` >= :func:`min_work`; ``None``: a job of unknown
    size, taken as large), with why; when none qualifies, the first of those with the least to pay."""
    for spec in ranked:
        need = min_work(spec)
        if need == 0:
            return spec, "the reference path"
        if str(spec) in ready:
            return spec, "checked on this machine before"
        if work is None or work >= need:
            size = "of unknown size" if work is None else f"of {work:.0f} 256x256 frame(s) >= {need:.0f}"
            return spec, f"the job {size} pays its one-off check" + (" and export" if spec.backend != "torch" else "")
    return min(ranked, key=min_work), "the cheapest to start of the paths asked for"


def _verdict_file(model: nn.Module, spec: PathSpec, threads: int, cache: Path) -> Path:
    key = f"{machine_key(threads)}-{weights_digest(model)}-{spec}"
    return cache / "verified" / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"


def cached_verdict(model: nn.Module, spec: PathSpec, threads: int, cache: Path | None = None) -> str | None:
    """What :func:`verify_path` found for ``spec`` on this machine before, or ``None``."""
    file = _verdict_file(model, spec, threads, cache or cache_dir())
    try:
        return str(json.loads(file.read_text())["verdict"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def path_ready(model: nn.Module, spec: PathSpec, threads: int, cache: Path | None = None) -> bool:
    """Whether ``spec``'s one-off costs are paid on this machine: checked ``ok`` (and exported)."""
    cache = cache or cache_dir()
    if spec == REFERENCE_PATH:
        return True
    if cached_verdict(model, spec, threads, cache) != "ok":
        return False
    return spec.backend == "torch" or (cache / "models" / weights_digest(model) / "fp32.onnx").is_file()


def verify_path(
    model: nn.Module,
    spec: PathSpec,
    threads: int,
    cache: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[str, Callable[[torch.Tensor], torch.Tensor] | None]:
    """Check ``spec`` against torch fp32 on two bundled sample frames (same targets: count, centroids
    within 1 px) and cache the verdict; returns it (``"ok"`` or what differs) and the runner built."""
    from sirst.optimize import in_channels_of

    cache = cache or cache_dir()
    if progress:
        progress(f"checking {spec} against fp32 on 2 sample frames (once on this machine)")
    x = _verification_batch(in_channels_of(model), 2)
    runner = None
    try:
        runner = build_runner(model, spec, threads, cache, progress=progress)
        reference = build_runner(model, REFERENCE_PATH, threads, cache)
        with torch.inference_mode():
            ref = torch.cat([reference(x[i : i + 1]) for i in range(len(x))]).float().numpy()[:, 0]
            out = torch.cat([runner(x[i : i + 1]) for i in range(len(x))]).float().numpy()[:, 0]
        verdict = verify_runner(ref, out)
    except Exception as exc:  # a backend that fails on this machine is reported, not fatal
        verdict, runner = f"failed: {exc}", None
    file = _verdict_file(model, spec, threads, cache)
    _atomic_write(file, lambda tmp: tmp.write_text(json.dumps({"path": str(spec), "verdict": verdict})))
    return verdict, runner


def plan_path(
    model: nn.Module,
    candidates: Sequence[PathSpec],
    threads: int,
    work: float | None,
    batch_size: int | None = None,
    cache: Path | None = None,
    remeasure: bool = False,
    progress: Callable[[str], None] | None = None,
) -> PathChoice:
    """The path to run a job of ``work`` 256x256-frame equivalents on (``None``: unknown size).

    In order: a measured choice cached for these candidates (:func:`cached_choice`); a measurement
    (:func:`choose_path`) when ``remeasure`` or the job reaches :data:`MEASURE_MIN_WORK`; else the
    rule (:func:`rule_path` over :func:`ranked_paths`), whose pick, unless it is torch fp32, is
    checked against fp32 once per machine (:func:`verify_path`); a pick that fails the check is
    dropped and the rule asked again. ``batch_size``: the batch to run (and the only one measured);
    default :data:`RULE_BATCH`, or the fastest measured. With one candidate it is taken as it is.
    """
    cache = cache or cache_dir()
    ranked = ranked_paths(candidates)
    if not ranked:
        raise ValueError("no inference path is installed for the requested precision/backend")
    batches = (batch_size,) if batch_size else (1, 4)
    if len(ranked) > 1:
        if not remeasure and (choice := cached_choice(model, ranked, threads, batches, cache)) is not None:
            return choice
        if remeasure or (work is not None and work >= MEASURE_MIN_WORK):
            return choose_path(model, ranked, threads, batches, cache, use_cache=False, progress=progress)
    batch = batch_size or RULE_BATCH
    if len(ranked) == 1:
        return PathChoice(ranked[0], batch, threads, float("nan"), source="only option")
    remaining, verified = list(ranked), {}
    while True:
        ready = [str(s) for s in remaining if path_ready(model, s, threads, cache)]
        spec, why = rule_path(remaining, work, ready)
        runner = None
        if spec == REFERENCE_PATH or len(remaining) == 1:
            break
        verdict = cached_verdict(model, spec, threads, cache)  # a path that failed here before is not tried again
        if verdict is None:
            verdict, runner = verify_path(model, spec, threads, cache, progress)
        verified[str(spec)] = verdict
        if verdict == "ok":
            break
        remaining.remove(spec)
    return PathChoice(spec, batch, threads, float("nan"), verified=verified, source=f"rule: {why}", runner=runner)


def default_threads() -> int:
    """CPU threads for inference: every core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
