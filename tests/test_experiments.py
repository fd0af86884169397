"""`sirst experiment`: every recipe's quick mode runs end to end on synthesized data and writes its table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sirst.cli import main
from sirst.experiments import RECIPES, load_recipe, row_labels
from sirst.models import list_models


def _table_rows(md: Path) -> list[list[str]]:
    lines = [ln for ln in md.read_text().splitlines() if ln.startswith("| ")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[1:]]  # without the header


def test_bundled_recipes_load_and_name_registered_models() -> None:
    for name in RECIPES:
        for quick in (False, True):
            r = load_recipe(name, quick)
            assert r.networks and all(n.model in list_models() for n in r.networks)
    full, quick = load_recipe("table2"), load_recipe("table2", quick=True)
    assert full.classical == ["tophat", "maxmedian", "wslcm", "tllcm", "ipi", "nram", "ript", "pstnn", "mslstipt"]
    assert set(full.paper["NUAA-SIRST"]) == set(full.paper["NUDT-SIRST"]) == set(full.classical)
    assert [n.model for n in full.networks] == ["mdvsfa", "acm", "alcnet", "dnanet"]
    assert full.networks[3].model_kwargs == {} and full.train == {}  # the paper's protocol: TrainConfig defaults
    assert quick.networks[3].model_kwargs["widths"] == [4, 8, 16, 32, 64] and quick.train["epochs"] == 2
    assert {n.model for n in load_recipe("table3").networks} == {"dnanet_wo_dnim", "dnanet_top_to_bottom", "dnanet_left_to_right", "dnanet"}
    assert "dnanet_wo_csam" in {n.model for n in load_recipe("table4").networks}
    assert load_recipe("table5").real_fractions == [0.0, 0.1, 0.2, 0.3]


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exp")
    for name in RECIPES:
        assert main(["experiment", name, "--quick", "--out", str(out / name), "--no-progress"]) == 0
    return out


def test_quick_recipes_write_their_tables(quick_runs: Path) -> None:
    expected_first = {"table2": ["tophat", "maxmedian", "MDvsFA-cGAN", "ACM", "ALCNet", "DNANet"],
                      "table3": [n.label for n in load_recipe("table3").networks],
                      "table4": [n.label for n in load_recipe("table4").networks],
                      "table5": ["0", "10", "20", "30"]}
    for name in RECIPES:
        rows = _table_rows(quick_runs / name / f"{name}.md")
        assert [r[0] for r in rows] == expected_first[name], name
        for r in rows:  # every metric cell is a number (or n/a for an undefined ratio)
            assert all(c == "n/a" or float(c) >= 0 for c in r[1:]), (name, r)
        doc = json.loads((quick_runs / name / f"{name}.json").read_text())
        assert doc["quick"] is True and len(doc["rows"]) == len(rows)
        assert all(res["num_images"] == 4 for res in doc["results"])
    t5 = json.loads((quick_runs / "table5" / "table5.json").read_text())["rows"]
    assert [r["real_images"] for r in t5] == [0, 1, 2, 2]  # of the 8 training images of the stand-in "real" set
    t3 = json.loads((quick_runs / "table3" / "table3.json").read_text())["rows"]
    assert t3[0]["params_m"] < t3[-1]["params_m"]  # without DNIM the network is smaller
    assert (quick_runs / "table2" / "pdfa_subsets.png").stat().st_size > 10_000


def test_mixed_training_sets_hold_synthesized_and_real_images(quick_runs: Path) -> None:
    mix = quick_runs / "table5" / "mix"
    for tag, n_real in (("real_00", 0), ("real_20", 2)):
        train = (mix / tag / "50_50" / "train.txt").read_text().split()
        assert sum(i.startswith("real_") for i in train) == n_real and sum(i.startswith("synth_") for i in train) == 8
        test = (mix / tag / "50_50" / "test.txt").read_text().split()
        assert len(test) == 4 and all(i.startswith("real_") for i in test)
        assert not set(train) & set(test)


def test_rerun_resumes_and_weights_replace_training(quick_runs: Path, tmp_path: Path, capsys) -> None:
    before = json.loads((quick_runs / "table3" / "table3.json").read_text())["rows"]
    assert main(["experiment", "table3", "--quick", "--out", str(quick_runs / "table3"), "--no-progress"]) == 0
    after = json.loads((quick_runs / "table3" / "table3.json").read_text())["rows"]
    assert [r["iou_x100"] for r in after] == [r["iou_x100"] for r in before]  # finished runs are not retrained

    weights = quick_runs / "table3" / "runs" / "DNANet" / "best.pt"
    out = tmp_path / "t5"
    labels = row_labels(load_recipe("table5", quick=True))
    assert main(["experiment", "table5", "--quick", "--out", str(out), "--no-progress", "--weights", f"{labels[0]}={weights}"]) == 0
    assert not (out / "runs" / "real_00").exists() and (out / "runs" / "real_10" / "best.pt").is_file()
    doc = json.loads((out / "table5.json").read_text())
    assert doc["results"][0]["extra"]["weights"] == str(weights)


def test_experiment_errors(tmp_path: Path, capsys) -> None:
    assert main(["experiment", "table9", "--out", str(tmp_path)]) == 2
    assert "table9: unknown recipe" in capsys.readouterr().err
    assert main(["experiment", "table3", "--out", str(tmp_path / "o")]) == 2
    assert "--data is required" in capsys.readouterr().err
    assert main(["experiment", "table3", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert f"{tmp_path / 'nope'}: dataset folder not found" in capsys.readouterr().err
    assert main(["experiment", "table3", "--quick", "--out", str(tmp_path / "o"), "--weights", "Nope=x.pt"]) == 2
    assert "no network row labelled ['Nope']" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nkind: models\nnetworks: [{model: dnanet}]\nepochs: 3\n")
    assert main(["experiment", str(bad), "--quick", "--out", str(tmp_path / "o")]) == 2
    assert f"{bad}: unknown recipe keys ['epochs']" in capsys.readouterr().err
    bad.write_text("name: x\nkind: models\nnetworks: [{model: resnet}]\n")
    assert main(["experiment", str(bad), "--quick", "--out", str(tmp_path / "o")]) == 2
    assert "unknown model 'resnet'" in capsys.readouterr().err


def test_table2_classical_rows_are_budgeted_and_resume(tmp_path: Path) -> None:
    """`--only classical --time-budget`: rows past the budget are pending; rerunning continues them
    from the per-image cache; the paper's numbers appear for a dataset folder the recipe knows."""
    from sirst.data.synth import synthesize

    data = synthesize(tmp_path / "NUDT-SIRST", 6, seed=0, size=64, progress=False)  # named like the real set
    out = tmp_path / "out"
    argv = ["experiment", "table2", "--data", str(data), "--out", str(out), "--only", "tophat,maxmedian", "--no-progress"]
    assert main([*argv, "--time-budget", "0"]) == 0  # start nothing: the table of what is cached
    doc = json.loads((out / "table2.json").read_text())
    assert [(r["method"], r["images"]) for r in doc["rows"]] == [("tophat", "0/3 (pending)"), ("maxmedian", "0/3 (pending)")]
    assert "**Pending** (tophat, maxmedian)" in (out / "table2.md").read_text()
    assert main(argv) == 0
    rows = _table_rows(out / "table2.md")
    header = (out / "table2.md").read_text().splitlines()[2]
    assert "| IoU ref | Pd ref | Fa ref | paper IoU | paper Pd | paper Fa |" in header
    assert [r[0] for r in rows] == ["tophat", "maxmedian"] and all(r[-1] == "3" for r in rows)
    paper = load_recipe("table2").paper["NUDT-SIRST"]
    assert [float(c) for c in rows[0][8:11]] == paper["tophat"]
    assert sorted(p.name for p in (out / "classical").iterdir()) == ["maxmedian.json", "tophat.json"]
    # Running one row later keeps the cached rows in the table (nothing is started for them).
    before = (out / "classical" / "tophat.json").read_bytes()
    assert main(["experiment", "table2", "--data", str(data), "--out", str(out), "--only", "wslcm", "--no-progress"]) == 0
    assert [r[0] for r in _table_rows(out / "table2.md")] == ["tophat", "maxmedian", "wslcm"]
    assert _table_rows(out / "table2.md")[:2] == rows and (out / "classical" / "tophat.json").read_bytes() == before


def test_only_names_rows_of_the_recipe(tmp_path: Path, capsys) -> None:
    assert main(["experiment", "table2", "--quick", "--out", str(tmp_path), "--only", "tophat,nope"]) == 2
    assert "--only: no row ['nope'] in table2" in capsys.readouterr().err
