"""`sirst train`'s options are generated from the TrainConfig fields: every option is a field, with its default."""

from __future__ import annotations

import dataclasses

import pytest

from sirst.cli import build_parser
from sirst.engine.config import TrainConfig


def _config(argv: list[str]) -> TrainConfig:
    from sirst.cli.train import _config_from_args, _explicit_options

    args = build_parser().parse_args(["train", *argv])
    _explicit_options(args)
    return _config_from_args(args)


def test_defaults_of_the_options_are_those_of_the_dataclass() -> None:
    assert _config(["--data", "D", "--out", "O"]) == TrainConfig(data="D", out="O")


def test_every_field_but_the_internal_ones_is_an_option() -> None:
    flags = {s for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions for s in a.option_strings}
    for f in dataclasses.fields(TrainConfig):
        if "cli" in f.metadata:
            assert (f.metadata["cli"]["flag"] or "--" + f.name.replace("_", "-")) in flags, f.name
    internal = {f.name for f in dataclasses.fields(TrainConfig) if "cli" not in f.metadata}
    assert internal == {"deep_supervision", "model_kwargs"}


def test_options_reach_their_fields() -> None:
    cfg = _config(["--data", "D", "--out", "O", "--quiet", "--epochs", "3", "--extra-data", "A", "B", "--amp",
                   "--val-fraction", "0.25", "--optimizer", "adam", "--negatives-hard-p", "0.5"])
    assert (cfg.progress, cfg.epochs, cfg.extra_data, cfg.amp, cfg.val_fraction, cfg.optimizer, cfg.negatives_hard_p) == (
        False, 3, ["A", "B"], True, 0.25, "adam", 0.5)


@pytest.mark.parametrize(("argv", "message"), [
    (["--val-fraction", "1"], "--val-fraction: must be a finite number in [0, 1), got 1"),
    (["--crop-size", "30"], "--crop-size: must be a positive multiple of 16"),
    (["--optimizer", "lbfgs"], "--optimizer: invalid choice: 'lbfgs'"),
])
def test_option_types_come_from_the_field_declarations(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["train", "--data", "D", "--out", "O", *argv])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_resume_takes_the_saved_config_and_the_given_options(tmp_path) -> None:
    """engine.config.resume_config: saved values unless typed again; per-invocation fields always fresh."""
    from sirst.engine.config import resume_config, saved_config

    saved = TrainConfig(data="D", out=str(tmp_path), epochs=5, lr=0.01, progress=True, extra_data=["E"])
    saved.save_yaml(tmp_path / "config.yaml")
    assert saved_config(tmp_path) == saved
    fresh = _config(["--out", str(tmp_path), "--resume", "--epochs", "9", "--lr", "0.01", "--quiet"])
    cfg, changes = resume_config(fresh, {"out", "resume", "epochs", "lr", "progress"})
    assert (cfg.data, cfg.extra_data, cfg.epochs, cfg.lr, cfg.progress, cfg.resume) == ("D", ["E"], 9, 0.01, False, True)
    assert changes == {"epochs": [5, 9]}  # lr was typed with its saved value; progress is per invocation
    with pytest.raises(FileNotFoundError, match="no run to resume"):
        resume_config(TrainConfig(data="D", out=str(tmp_path / "none")), set())
