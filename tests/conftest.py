"""Shared fixtures: one torch thread, composed configs, small synthetic series files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from forecast.config import register_configs

# Two threads on a shared 2-core machine were measured up to 10x slower than one.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
ETTH1 = REPO / "data" / "ETT-small" / "ETTh1.csv"
SHARED_DATA = REPO.parent / "shared" / "data"

register_configs()


def compose_config(overrides: list[str], output_dir: Path, tracking_uri: str | None = None):
    """The config ``python train.py <overrides>`` would run, with Hydra's runtime set as in an
    app (so ``${hydra:...}`` resolves) and outputs under ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra.run.dir={output_dir}", *overrides], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    if tracking_uri and cfg.logger and "tracking_uri" in cfg.logger:
        cfg.logger.tracking_uri = tracking_uri
    return cfg


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


def sinusoid_frame(n: int = 2000, channels: int = 3, period: int = 24, noise: float = 0.3, freq: str = "h", seed: int = 0) -> pd.DataFrame:
    """A wide frame: ``date`` + ``channels`` noisy sinusoids (phase-shifted), the last named OT."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    cols = {"date": pd.date_range("2020-01-01", periods=n, freq=freq)}
    for c in range(channels):
        name = "OT" if c == channels - 1 else f"ch{c}"
        cols[name] = 10 + (c + 1) * np.sin(2 * np.pi * t / period + c) + noise * rng.standard_normal(n)
    return pd.DataFrame(cols)


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
