"""Shared fixtures: one torch thread, composed configs, small synthetic series files (the
helpers themselves live in ``tests/helpers.py``)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from forecast.config import register_configs
from tests.helpers import REPO, SHARED_DATA, compose_config

# Two threads on a shared 2-core machine were measured up to 10x slower than one.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

register_configs()


@pytest.fixture
def make_config(tmp_path, monkeypatch):
    """``make_config(*overrides)`` -> composed config, MLflow in tmp; data from the shared
    benchmark folder beside this checkout where there is one, else the bundled folder."""
    monkeypatch.setenv("FORECAST_DATA_DIR", str(SHARED_DATA if SHARED_DATA.exists() else REPO / "data"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def make(*overrides):
        return compose_config(list(overrides), tmp_path / "run", tracking_uri=uri)

    make.tracking_uri = uri
    make.db = tmp_path / "mlflow.db"
    return make


@pytest.fixture
def write_csv(tmp_path):
    """``write_csv(frame_or_text, name="series.csv")`` -> path of the written file."""

    def write(content, name: str = "series.csv") -> Path:
        path = tmp_path / name
        if isinstance(content, pd.DataFrame):
            content.to_csv(path, index=False)
        else:
            path.write_text(content)
        return path

    return write
