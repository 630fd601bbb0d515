"""What several test modules share: paths, the one Hydra-compose helper, synthetic series, the
MLflow runs of an experiment, the ``train.py`` subprocess, and small networks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from forecast.models.base import Network

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
ETTH1 = REPO / "data" / "ETT-small" / "ETTh1.csv"
SHARED_DATA = REPO.parent / "shared" / "data"


def compose(config_name: str, overrides=(), conf_dir: Path = CONF, return_hydra_config: bool = False) -> DictConfig:
    """``config_name`` of ``conf_dir`` composed with ``overrides``, as its entry point would (the
    one place tests initialise Hydra)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        return hydra_compose(config_name, overrides=list(overrides), return_hydra_config=return_hydra_config)


def compose_config(overrides: list[str], output_dir: Path, tracking_uri: str | None = None) -> DictConfig:
    """The config ``python train.py <overrides>`` would run, with Hydra's runtime set as in an
    app (so ``${hydra:...}`` resolves) and outputs under ``output_dir``."""
    cfg = compose("train", [f"hydra.run.dir={output_dir}", *overrides], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    if tracking_uri and cfg.logger and "tracking_uri" in cfg.logger:
        cfg.logger.tracking_uri = tracking_uri
    return cfg


def sinusoid_frame(n: int = 2000, channels: int = 3, period: int = 24, noise: float = 0.3, freq: str = "h", seed: int = 0) -> pd.DataFrame:
    """A wide frame: ``date`` + ``channels`` noisy sinusoids (phase-shifted), the last named OT."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    cols = {"date": pd.date_range("2020-01-01", periods=n, freq=freq)}
    for c in range(channels):
        name = "OT" if c == channels - 1 else f"ch{c}"
        cols[name] = 10 + (c + 1) * np.sin(2 * np.pi * t / period + c) + noise * rng.standard_normal(n)
    return pd.DataFrame(cols)


def runs_of(uri: str, experiment: str):
    """``(client, runs)`` of ``experiment`` at ``uri`` (no runs when it does not exist)."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client, (client.search_runs([exp.experiment_id]) if exp else [])


def train_py(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """``python train.py <args> trainer=debug`` in ``tmp_path``, MLflow in ``tmp_path/mlflow.db``."""
    env = {**os.environ, "FORECAST_DATA_DIR": str(REPO / "data"), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args, "trainer=debug", "num_threads=1", "trainer.enable_progress_bar=false"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )


class LastValue(Network):
    """Repeats the last observed value over the horizon: no trainable parameters."""

    uses_time_features = False
    channel_independent = True

    def __init__(self, seq_len: int, pred_len: int):
        super().__init__()
        self.seq_len, self.pred_len = seq_len, pred_len

    def forward(self, x, x_mark=None, y_mark=None):
        return x[:, -1:, :].expand(-1, self.pred_len, -1)
