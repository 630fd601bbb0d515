"""make train / make test: the torch build scripts/setup_env.py chooses, and make train's run."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("setup_env", REPO / "scripts" / "setup_env.py")
setup_env = importlib.util.module_from_spec(spec)
spec.loader.exec_module(setup_env)


@pytest.fixture
def offline_cpu_machine(monkeypatch):
    monkeypatch.setattr(setup_env, "gpu_visible", lambda: False)
    monkeypatch.setattr(setup_env, "reachable", lambda url, timeout=5.0: False)


def test_no_gpu_and_the_cpu_index_reachable_gives_the_cpu_index(monkeypatch):
    monkeypatch.setattr(setup_env, "gpu_visible", lambda: False)
    monkeypatch.setattr(setup_env, "reachable", lambda url, timeout=5.0: True)
    assert setup_env.torch_install_args("auto", sys.executable) == ["torch", "--index-url", setup_env.CPU_INDEX]


def test_a_visible_gpu_gives_pypis_default_build(monkeypatch):
    monkeypatch.setattr(setup_env, "gpu_visible", lambda: True)
    assert setup_env.torch_install_args("auto", sys.executable) == ["torch"]


def test_offline_the_newest_local_cpu_wheel_is_taken(offline_cpu_machine, monkeypatch, tmp_path):
    for name in ("torch-2.9.1+cpu-cp311-cp311-linux_x86_64.whl", "torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl",
                 "torch-2.14.1-cp311-cp311-linux_x86_64.whl"):  # the last is a CUDA build: never taken for cpu
        (tmp_path / name).touch()
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    monkeypatch.setattr(setup_env, "pip_find_links", lambda python: [str(tmp_path)])
    assert setup_env.torch_install_args("cpu", sys.executable) == ["torch==2.13.0"]


def test_offline_without_a_local_wheel_stops_with_the_fix(offline_cpu_machine, monkeypatch):
    monkeypatch.setattr(setup_env, "pip_find_links", lambda python: [])
    with pytest.raises(SystemExit, match="Fix:"):
        setup_env.torch_install_args("cpu", sys.executable)


def test_an_explicit_requirement_is_passed_to_pip():
    assert setup_env.torch_install_args("torch==2.5.1", sys.executable) == ["torch==2.5.1"]


def test_make_train_writes_an_mlflow_run_with_a_test_mse(tmp_path):
    """``make train`` in the environment running these tests (the one ``make test`` made; the
    set-up step is not redone here: -o marks it done)."""
    venv = Path(sys.prefix)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    out = subprocess.run(["make", "-C", str(REPO), "-o", f"{venv}/.installed", "train", f"VENV={venv}",
                          f"ARGS=data.seq_len=48 data.pred_len=24 trainer.max_epochs=1 log_model=false "
                          f"trainer.enable_progress_bar=false hydra.run.dir={tmp_path / 'out'}"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("etth1").experiment_id])
    assert 0 < run.data.metrics["test/mse"] < 0.6  # one epoch of DLinear: about 0.4 on these windows
