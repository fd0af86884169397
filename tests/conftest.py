"""Shared test settings: small, deterministic, CPU only; where the real datasets are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Environment variable naming a folder that holds the real datasets (NUAA-SIRST/, NUDT-SIRST/).
DATA_ENV = "SIRST_DATA"


def shared_data_dirs() -> list[Path]:
    """Folders searched for real datasets, in order: ``$SIRST_DATA``, then ``../shared/data``
    relative to the repository root (read-only data next to the checkout, never copied into it)."""
    dirs = [Path(os.environ[DATA_ENV]).expanduser()] if os.environ.get(DATA_ENV) else []
    return dirs + [REPO_ROOT.parent / "shared" / "data"]


def shared_dataset(name: str) -> Path | None:
    """The folder of real dataset ``name`` (e.g. ``"NUAA-SIRST"``), or ``None`` when absent (tests skip)."""
    for folder in shared_data_dirs():
        if (folder / name / "images").is_dir():
            return folder / name
    return None


@pytest.fixture(autouse=True, scope="session")
def _private_sirst_cache(tmp_path_factory):
    """`sirst detect` caches exported models and its inference-path choice (sirst.detect.backends.cache_dir):
    tests keep theirs in a temporary folder, never in the user's ~/.cache."""
    old = os.environ.get("SIRST_CACHE_DIR")
    os.environ["SIRST_CACHE_DIR"] = str(tmp_path_factory.mktemp("sirst_cache"))
    yield
    if old is None:
        os.environ.pop("SIRST_CACHE_DIR", None)
    else:
        os.environ["SIRST_CACHE_DIR"] = old


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield
