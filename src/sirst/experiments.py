"""The paper's tables as recipes: a YAML file each (``sirst/recipes/*.yaml``) and one command,
``sirst experiment table2|table3|table4|table5 --data ROOT --out DIR [--quick]``.

Recipe kinds:

``compare`` (Table II)
    Classical methods (:func:`sirst.evaluation.evaluate_classical`, adaptive threshold) and
    networks trained with :func:`sirst.engine.train` then scored by
    :func:`sirst.evaluation.evaluate_network` (probability 0.5): the rows of ``sirst compare``.
``models`` (Tables III, IV)
    Each network of the recipe (the registry's ablation variants) trained and scored the same way,
    with its parameter count.
``synth_mix`` (Table V)
    DNANet trained on a synthesized set (:func:`sirst.data.synth.synthesize`) plus a fraction
    ``p`` of the real training list (the first ``round(p * N)`` ids, at least one when ``p > 0``),
    scored on the real test list. The mixed training sets are folders of symbolic links.

Every network trains in ``OUT/runs/<label>/``; a run that already holds ``last.pt`` is resumed (and
is not retrained when it has finished), so an interrupted recipe continues where it stopped.
``--weights LABEL=PATH`` scores an existing checkpoint instead of training that row.

Classical rows are resumable image by image: each method keeps ``OUT/classical/<method>.json``
(per-image summaries and running metric sums, :func:`sirst.evaluation.evaluate_classical_cached`).
``--time-budget S`` / ``--method-budget S`` stop starting images after S seconds (all classical rows /
each); unfinished rows are written as pending and the same command continues them. ``--only ROWS``
runs a subset of rows (``classical``, ``networks`` or names). Classical rows are scored with the exact
and the reference protocol; a recipe's ``paper:`` section adds the published numbers for the dataset
folder it names (``NUAA-SIRST``, ``NUDT-SIRST``).

``--quick`` merges the recipe's ``quick:`` section over it (tiny widths, 2 epochs, 32-pixel crops,
a few images) and, without ``--data``, synthesizes a small dataset first: it checks that the
recipe runs end to end (CI does), its numbers mean nothing.

Outputs: ``OUT/<name>.md`` (Markdown table) and ``OUT/<name>.json`` (rows, full metrics, curves,
resolved recipe), and for ``compare`` the size-subset Pd-Fa curves ``OUT/pdfa_subsets.png/.csv``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RECIPES: tuple[str, ...] = ("table2", "table3", "table4", "table5")
KINDS: tuple[str, ...] = ("compare", "models", "synth_mix")


@dataclass(frozen=True)
class NetworkEntry:
    """One network row: display label, registry name, constructor keywords, training overrides."""

    label: str
    model: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)


@dataclass
class Recipe:
    """A resolved recipe (after the ``quick`` merge)."""

    name: str
    title: str
    kind: str
    networks: list[NetworkEntry]
    classical: list[str] = field(default_factory=list)
    train: dict[str, Any] = field(default_factory=dict)
    max_test_images: int | None = None
    real_fractions: list[float] = field(default_factory=list)
    synth_train: dict[str, Any] = field(default_factory=dict)
    synth: dict[str, Any] = field(default_factory=lambda: {"num": 16, "size": 64, "seed": 0})
    quick: bool = False
    paper: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # dataset -> row -> [IoU, Pd, Fa]


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def recipe_path(name: str) -> Path:
    """The YAML file of a bundled recipe name, or ``name`` itself when it is a path to a file."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: recipe file not found")
        return p
    if name not in RECIPES:
        raise ValueError(f"{name}: unknown recipe; valid: {', '.join(RECIPES)} or a path to a .yaml file")
    return Path(__file__).resolve().parent / "recipes" / f"{name}.yaml"


def load_recipe(name: str, quick: bool = False) -> Recipe:
    """Read a recipe (bundled name or YAML path) and resolve it; ``quick`` merges its ``quick:`` section.

    Raises ``ValueError`` naming the file for unknown keys, kinds or models.
    """
    import yaml

    from sirst.models import list_models

    path = recipe_path(name)
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: a recipe is a YAML mapping")
    quick_doc = doc.pop("quick", None) or {}
    if quick:
        doc = _deep_merge(doc, {k: v for k, v in quick_doc.items() if k != "model_kwargs"})
    per_model = quick_doc.get("model_kwargs", {}) if quick else {}
    known = {"name", "title", "kind", "networks", "classical", "train", "max_test_images", "real_fractions", "synth_train", "synth",
             "paper"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ValueError(f"{path}: unknown recipe keys {unknown}")
    if doc.get("kind") not in KINDS:
        raise ValueError(f"{path}: kind must be one of {KINDS}, got {doc.get('kind')!r}")
    networks = []
    for i, n in enumerate(doc.get("networks") or []):
        if not isinstance(n, dict) or "model" not in n:
            raise ValueError(f"{path}: networks[{i}] needs a model")
        if n["model"] not in list_models():
            raise ValueError(f"{path}: networks[{i}]: unknown model {n['model']!r}; valid: {', '.join(list_models())}")
        kwargs = {**per_model.get("*", {}), **per_model.get(n["model"], {}), **n.get("model_kwargs", {})}
        networks.append(NetworkEntry(str(n.get("label", n["model"])), n["model"], kwargs, dict(n.get("train") or {})))
    recipe = Recipe(
        name=str(doc.get("name", path.stem)),
        title=str(doc.get("title", path.stem)),
        kind=doc["kind"],
        networks=networks,
        classical=[str(c) for c in doc.get("classical") or []],
        train=dict(doc.get("train") or {}),
        max_test_images=doc.get("max_test_images"),
        real_fractions=[float(p) for p in doc.get("real_fractions") or []],
        synth_train=dict(doc.get("synth_train") or {}),
        synth={"num": 16, "size": 64, "seed": 0, **(doc.get("synth") or {})},
        quick=quick,
        paper={str(d): {str(k): [float(x) for x in v] for k, v in rows.items()} for d, rows in (doc.get("paper") or {}).items()},
    )
    for d, rows in recipe.paper.items():
        bad = [k for k, v in rows.items() if len(v) != 3]
        if bad:
            raise ValueError(f"{path}: paper.{d}: rows {bad} need [IoU, Pd, Fa]")
    if recipe.kind == "synth_mix" and (not recipe.real_fractions or not recipe.synth_train or len(networks) != 1):
        raise ValueError(f"{path}: a synth_mix recipe needs real_fractions, synth_train and exactly one network")
    if any(not 0.0 <= p <= 1.0 for p in recipe.real_fractions):
        raise ValueError(f"{path}: real_fractions must lie in [0, 1], got {recipe.real_fractions}")
    return recipe


# --------------------------------------------------------------------------------------------------
# Running


@dataclass
class ExperimentOptions:
    """What the command line adds to a recipe."""

    data: str | None
    out: str
    quick: bool = False
    device: str = "cpu"
    epochs: int | None = None
    weights: dict[str, str] = field(default_factory=dict)  # row label -> checkpoint to score instead of training
    jobs: int = 1
    progress: bool = True
    threads: int | None = None  # torch CPU threads while the recipe runs (None: leave as is)
    only: list[str] | None = None  # rows to run: labels / method names, or "classical" / "networks" (None: all)
    time_budget: float | None = None  # seconds for all classical rows of this call (None: no limit)
    method_budget: float | None = None  # seconds per classical row of this call (None: no limit)


@dataclass
class ExperimentResult:
    """The table a recipe produced: its rows (dicts of the Markdown columns) and the files written."""

    recipe: Recipe
    rows: list[dict[str, Any]]
    markdown: Path
    json: Path
    seconds: float


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    import torch

    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def safe_label(label: str) -> str:
    """A folder-name-safe form of a row label."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "run"


def _prepare_data(recipe: Recipe, opts: ExperimentOptions) -> Path:
    """The evaluation dataset: ``--data``, or (quick mode only) a small synthesized one."""
    from sirst.data.synth import synthesize

    if opts.data:
        root = Path(opts.data)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: dataset folder not found")
        return root
    if not opts.quick:
        raise ValueError(f"{opts.out}: --data is required (only --quick synthesizes a dataset on the fly)")
    s = recipe.synth
    root = Path(opts.out) / "data"
    if not (root / "50_50" / "test.txt").is_file():
        synthesize(root, int(s["num"]), seed=int(s["seed"]), size=int(s["size"]), progress=False)
    return root


def _train_network(entry: NetworkEntry, recipe: Recipe, data: Path, opts: ExperimentOptions, run_dir: Path) -> Path:
    """Train ``entry`` on ``data`` (resuming a run found in ``run_dir``); returns its best checkpoint."""
    from sirst.engine.config import TrainConfig
    from sirst.engine.train import train

    settings: dict[str, Any] = {**recipe.train, **entry.train}
    if opts.epochs is not None:
        settings["epochs"] = opts.epochs
    settings.setdefault("progress", opts.progress)
    cfg = TrainConfig(
        data=str(data), out=str(run_dir), model=entry.model, device=opts.device, model_kwargs=dict(entry.model_kwargs),
        resume=(run_dir / "last.pt").is_file(), **settings,
    )
    if recipe.max_test_images is not None and cfg.max_test_images is None:
        cfg.max_test_images = recipe.max_test_images
    train(cfg)
    best = run_dir / "best.pt"
    if not best.is_file():
        raise RuntimeError(f"{run_dir}: training finished without best.pt")
    return best


def _network_row(entry: NetworkEntry, weights: Path, samples: Sequence[Any], opts: ExperimentOptions):
    from sirst.checkpoint import model_from_checkpoint
    from sirst.evaluation import evaluate_network

    res = evaluate_network(weights, samples, opts.device, opts.progress, label=entry.label)
    model = model_from_checkpoint(weights)
    res.extra["params"] = int(sum(p.numel() for p in model.parameters()))
    res.extra["weights"] = str(weights)
    res.extra["model"] = entry.model
    return res


def _weights_for(entry: NetworkEntry, recipe: Recipe, data: Path, opts: ExperimentOptions, run_name: str) -> Path:
    given = opts.weights.get(entry.label)
    if given is not None:
        if not Path(given).is_file():
            raise FileNotFoundError(f"{given}: checkpoint for row {entry.label!r} not found")
        return Path(given)
    return _train_network(entry, recipe, data, opts, Path(opts.out) / "runs" / run_name)


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    try:
        os.symlink(src.resolve(), dst)
    except OSError:  # file systems without symbolic links
        import shutil

        shutil.copyfile(src, dst)


def build_mix(synth_root: Path, real_root: Path, fraction: float, out: Path, max_test: int | None) -> tuple[Path, int]:
    """A dataset folder of links: every synthesized image plus the first ``fraction`` of the real
    training list for training, the real test list for testing. Returns ``(folder, real images used)``."""
    from sirst.data.dataset import locate_pairs, read_ids, resolve_split

    real = resolve_split(real_root, "auto")
    synth = resolve_split(synth_root, "auto")
    real_train = locate_pairs(real_root, read_ids(real.train), real.train)
    real_test = locate_pairs(real_root, read_ids(real.test), real.test)
    if max_test is not None:
        real_test = real_test[:max_test]
    synth_ids = read_ids(synth.train) + read_ids(synth.test)
    synth_pairs = locate_pairs(synth_root, synth_ids, synth.train)
    n_real = 0 if fraction <= 0 else max(1, round(fraction * len(real_train)))
    train_ids, test_ids = [], []
    for prefix, pairs, ids in (("synth_", synth_pairs, train_ids), ("real_", real_train[:n_real], train_ids), ("real_", real_test, test_ids)):
        for i, img, mask in pairs:
            name = prefix + i
            _link(img, out / "images" / f"{name}{img.suffix}")
            _link(mask, out / "masks" / f"{name}{mask.suffix}")
            ids.append(name)
    (out / "50_50").mkdir(parents=True, exist_ok=True)
    (out / "50_50" / "train.txt").write_text("".join(i + "\n" for i in train_ids))
    (out / "50_50" / "test.txt").write_text("".join(i + "\n" for i in test_ids))
    return out, n_real


def _mix_label(entry: NetworkEntry, fraction: float) -> str:
    return f"{entry.label} + {round(100 * fraction)}% real"


def row_labels(recipe: Recipe) -> list[str]:
    """Labels of the network rows (the keys ``--weights LABEL=PATH`` accepts)."""
    if recipe.kind == "synth_mix":
        return [_mix_label(recipe.networks[0], p) for p in recipe.real_fractions]
    return [n.label for n in recipe.networks]


def run_experiment(name: str, opts: ExperimentOptions) -> ExperimentResult:
    """Run recipe ``name`` (bundled name or YAML path) and write its table; see the module docstring."""
    start = time.perf_counter()
    recipe = load_recipe(name, opts.quick)
    labels = row_labels(recipe)
    unknown = sorted(set(opts.weights) - set(labels))
    if unknown:
        raise ValueError(f"--weights: no network row labelled {unknown} in {name}; rows: {labels}")
    if opts.only:
        valid = {v.lower() for v in [*recipe.classical, *labels, "classical", "networks"]}
        bad = [o for o in opts.only if o.lower() not in valid]
        if bad:
            raise ValueError(f"--only: no row {bad} in {name}; rows: {', '.join([*recipe.classical, *labels])} "
                             "(or 'classical', 'networks')")
    for what, v in (("--time-budget", opts.time_budget), ("--method-budget", opts.method_budget)):
        if v is not None and v < 0:  # 0: start nothing, report what the caches hold
            raise ValueError(f"{what} must be >= 0 seconds, got {v}")
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    with _torch_threads(opts.threads):
        data = _prepare_data(recipe, opts)
        rows, results = _run_kind(recipe, data, opts)
    paper = paper_numbers(recipe, data)
    for row in rows:
        if row["method"] in paper:
            row["paper_iou_x100"], row["paper_pd_x100"], row["paper_fa_x1e6"] = paper[row["method"]]
    md = out / f"{recipe.name}.md"
    columns = _columns(recipe.kind, bool(paper))
    md.write_text(f"## {recipe.title}\n\n" + _markdown(rows, columns) + "\n\n" + _footnote(recipe, data, opts, rows) + "\n")
    js = out / f"{recipe.name}.json"
    from sirst.evaluation.report import json_clean

    js.write_text(json.dumps(json_clean({
        "recipe": asdict(recipe), "data": str(data), "quick": opts.quick, "rows": rows,
        "results": [asdict(r) for r in results],
    }), indent=1))
    finished = {r.method: r.curve for r in results if r.extra.get("complete", True)}
    if recipe.kind == "compare" and finished:
        from sirst.viz.figures import write_pdfa_subsets

        write_pdfa_subsets(finished, out)
    return ExperimentResult(recipe, rows, md, js, time.perf_counter() - start)


def _run_kind(recipe: Recipe, data: Path, opts: ExperimentOptions) -> tuple[list[dict[str, Any]], list[Any]]:
    from sirst.evaluation import load_samples

    results: list[Any] = []
    rows: list[dict[str, Any]] = []
    if recipe.kind == "synth_mix":
        from sirst.data.synth import synthesize

        st = recipe.synth_train
        synth_root = Path(opts.out) / "synth_train"
        if not (synth_root / "50_50" / "test.txt").is_file():
            synthesize(synth_root, int(st["num"]), seed=int(st.get("seed", 1)), size=int(st.get("size", 256)), progress=opts.progress)
        entry = recipe.networks[0]
        for p in recipe.real_fractions:
            tag = f"real_{round(100 * p):02d}"
            mix, n_real = build_mix(synth_root, data, p, Path(opts.out) / "mix" / tag, recipe.max_test_images)
            samples = load_samples(mix, "50_50", "test")
            row_entry = NetworkEntry(_mix_label(entry, p), entry.model, entry.model_kwargs, entry.train)
            weights = _weights_for(row_entry, recipe, mix, opts, tag)
            res = _network_row(row_entry, weights, samples, opts)
            res.extra.update({"real_fraction": p, "real_images": n_real, "synth_images": int(st["num"])})
            results.append(res)
        rows = [_row(r, recipe.kind) for r in results]
        return rows, results
    samples = load_samples(data, "auto", "test", recipe.max_test_images)
    if recipe.kind == "compare":
        from sirst.evaluation import evaluate_classical_cached
        from sirst.evaluation.harness import cache_path

        now = time.monotonic()
        overall = None if opts.time_budget is None else now + opts.time_budget
        cache = Path(opts.out) / "classical"
        for c in recipe.classical:
            selected = _selected(opts, c, "classical")
            # A row --only leaves out keeps its place in the table when its cache holds some of it: running
            # one row must not drop the others from the table.
            if not selected and not cache_path(cache, c).is_file():
                continue
            # A method past the budget still reports what its cache holds (pending row).
            now = time.monotonic()
            limits = [t for t in (overall, None if opts.method_budget is None else now + opts.method_budget) if t is not None]
            if not selected:
                limits = [now]  # start nothing for it
            res = evaluate_classical_cached(c, samples, cache, "adaptive", opts.jobs, opts.progress,
                                            min(limits) if limits else None)
            results.append(res)
    for entry in recipe.networks:
        if not _selected(opts, entry.label, "networks"):
            continue
        weights = _weights_for(entry, recipe, data, opts, safe_label(entry.label))
        results.append(_network_row(entry, weights, samples, opts))
    rows = [_row(r, recipe.kind) for r in results]
    return rows, results


def _selected(opts: ExperimentOptions, label: str, group: str) -> bool:
    """Whether ``--only`` selects the row ``label`` of ``group`` (``classical`` / ``networks``)."""
    if not opts.only:
        return True
    keys = {o.lower() for o in opts.only}
    return label.lower() in keys or group in keys


def paper_numbers(recipe: Recipe, data: str | os.PathLike) -> dict[str, list[float]]:
    """The recipe's published ``[IoU, Pd, Fa]`` per row for the dataset folder ``data`` (matched by
    its name, case-insensitive; empty when the recipe has none for it)."""
    name = Path(data).name.lower()
    for d, rows in recipe.paper.items():
        if d.lower() == name:
            return rows
    return {}


def _row(res: Any, kind: str) -> dict[str, Any]:
    row: dict[str, Any] = dict(res.table_row())
    row["pd_point_x100"] = 100.0 * res.metrics.get("pd_point", float("nan"))
    row.setdefault("cpu_seconds_per_image", float("nan"))  # kept for cached classical rows only
    total = res.extra.get("images_total", res.num_images)
    row["complete"] = res.num_images == total
    row["images"] = str(res.num_images) if row["complete"] else f"{res.num_images}/{total} (pending)"
    if "params" in res.extra:
        row["params_m"] = res.extra["params"] / 1e6
    if kind == "synth_mix":
        row["real_percent"] = 100.0 * res.extra["real_fraction"]
        row["real_images"] = res.extra["real_images"]
        row["synth_images"] = res.extra["synth_images"]
    return row


def _columns(kind: str, paper: bool = False) -> list[tuple[str, str, str]]:
    metric_cols = [("iou_x100", "IoU (x1e-2)", "{:.2f}"), ("niou_x100", "nIoU (x1e-2)", "{:.2f}"),
                   ("pd_x100", "Pd (x1e-2)", "{:.2f}"), ("fa_x1e6", "Fa (x1e-6)", "{:.2f}")]
    if kind == "compare":
        ref_cols = [("iou_ref_x100", "IoU ref", "{:.2f}"), ("pd_ref_x100", "Pd ref", "{:.2f}"), ("fa_ref_x1e6", "Fa ref", "{:.2f}")]
        paper_cols = [("paper_iou_x100", "paper IoU", "{:g}"), ("paper_pd_x100", "paper Pd", "{:g}"),
                      ("paper_fa_x1e6", "paper Fa", "{:g}")] if paper else []
        return [("method", "Method", "{}"), *metric_cols, *ref_cols, *paper_cols, ("seconds_per_image", "s / image", "{:.4f}"),
                ("cpu_seconds_per_image", "CPU s / image", "{:.4f}"), ("images", "images", "{}")]
    if kind == "models":
        return [("method", "Model", "{}"), ("params_m", "Params (M)", "{:.3f}"), *metric_cols]
    return [("real_percent", "Real images (%)", "{:.0f}"), ("real_images", "real", "{:d}"), ("synth_images", "synthesized", "{:d}"),
            *metric_cols]


def _markdown(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str, str]]) -> str:
    import math

    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|"]
    for r in rows:
        cells = []
        for key, _, fmt in columns:
            v = r.get(key, "")
            cells.append("n/a" if isinstance(v, float) and math.isnan(v) else fmt.format(v) if v != "" else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _footnote(recipe: Recipe, data: Path, opts: ExperimentOptions, rows: Sequence[Mapping[str, Any]] = ()) -> str:
    note = (f"Data: `{data}`" + (f", first {recipe.max_test_images} test images" if recipe.max_test_images else "")
            + ". Pd, Fa: exact protocol (`sirst.metrics`); networks at probability 0.5"
            + (", classical methods at the adaptive threshold (Eq. 13)" if recipe.kind == "compare" else "") + ".")
    if recipe.kind == "compare":
        note += (" *ref*: the same predictions under the reference protocol (the public DNANet code: 256x256 resize, "
                 "greedy matching)." + (" *paper*: the DNANet paper's Table II." if paper_numbers(recipe, data) else ""))
    pending = [r["method"] for r in rows if not r.get("complete", True)]
    if pending:
        note += (f" **Pending** ({', '.join(pending)}): `images` gives those done; the same command continues them "
                 f"(per-image results are cached in `{Path(opts.out) / 'classical'}`).")
    if opts.quick:
        note += " **Quick mode**: tiny models, 2 epochs, a few images: checks that the recipe runs; the numbers mean nothing."
    return note
