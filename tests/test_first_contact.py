"""What a newcomer meets first: configuration mistakes in one line with the fix, debug runs kept
apart from results, a new tracking store that survives runs started together, a quiet log."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mlflow import MlflowClient

from forecast import tracking
from forecast.config import compose_train
from forecast.errors import ConfigError, config_error
from forecast.pipelines.train import run
from tests.helpers import REPO


def _train(tmp_path, *args, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FORECAST_DATA_DIR": str(REPO / "data"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    return subprocess.run([sys.executable, str(REPO / "train.py"), "num_threads=1", "trainer.enable_progress_bar=false",
                           f"hydra.run.dir={tmp_path / 'out'}", *args],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=timeout)


def _composed_error(*overrides) -> ConfigError:
    with pytest.raises(Exception) as caught:
        compose_train(list(overrides))
    return config_error(caught.value)


# ------------------------------------------------------------------ one error style
def test_a_misspelt_key_names_the_closest_valid_one():
    assert "Did you mean model.d_model?" in str(_composed_error("model=autoformer", "model.d_modle=3"))
    # DLinear has no width: the networks that do are named
    assert "model.d_model is a setting of model=autoformer" in str(_composed_error("model.d_modle=3"))
    assert "Did you mean data.seq_len?" in str(_composed_error("data.seq_lne=3"))
    assert "Did you mean model=karma" in str(_composed_error("model=karmaa"))
    assert "Fix:" in str(_composed_error("data.seq_len=abc"))


def test_entry_point_errors_are_one_line_with_the_fix(tmp_path):
    for args, expected in ((["model=autoformer", "model.label_len=200"], "label_len"),
                           (["model.d_modle=3"], "d_model"),
                           (["+model.d_modle=3"], "d_model")):
        out = _train(tmp_path, *args, "logger=none")
        assert out.returncode == 1, out.stderr
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Fix:" in lines[0], out.stderr
        assert expected in lines[0] and "HYDRA_FULL_ERROR" not in out.stderr


# ------------------------------------------------------------------ debug runs are never results
def test_debug_limits_are_recognised_in_configs_and_logged_params():
    assert tracking.debug_reasons(compose_train(["trainer=debug"]))
    assert not tracking.debug_reasons(compose_train([]))
    assert not tracking.debug_reasons(compose_train(["trainer.max_epochs=1", "trainer.limit_train_batches=1.0"]))
    assert tracking.debug_reasons(compose_train(["trainer.limit_train_batches=0.5"]))
    assert tracking.debug_reasons(compose_train(["trainer.limit_test_batches=1"]))  # an int: one batch

    class Run:  # a run logged before the debug tag existed: judged by its params
        class data:
            tags = {}
            params = {"trainer.max_steps": "2", "trainer.limit_train_batches": "1.0"}
    assert tracking.run_is_debug(Run)
    Run.data.params = {"trainer.max_steps": "-1", "trainer.limit_train_batches": "1.0", "trainer.fast_dev_run": "False"}
    assert not tracking.run_is_debug(Run)


def test_a_debug_run_is_tagged_and_kept_in_its_own_experiment(make_config):
    run(make_config("trainer=debug", "data.seq_len=48", "data.pred_len=24", "log_model=false"))
    client = MlflowClient(make_config.tracking_uri)
    assert client.get_experiment_by_name("etth1") is None
    debug = client.get_experiment_by_name("etth1-debug")
    (logged,) = client.search_runs([debug.experiment_id])
    assert logged.data.tags["debug"] == "true"


@pytest.mark.parametrize("key", ["record=benchmarks_copy.csv", "register=true"])
def test_record_and_register_refuse_a_debug_run_before_logging(make_config, tmp_path, key):
    with pytest.raises(ConfigError, match="debug run"):
        run(make_config("trainer=debug", "data.seq_len=48", "data.pred_len=24", key))
    assert not (tmp_path / "benchmarks_copy.csv").exists()
    assert not MlflowClient(make_config.tracking_uri).search_experiments(filter_string="name LIKE 'etth1%'")


# ------------------------------------------------------------------ a new store, runs started together
def test_runs_started_together_on_a_new_store_all_finish(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FORECAST_DATA_DIR": str(REPO / "data")}
    env.pop("MLFLOW_TRACKING_URI", None)  # the default store of the working directory, new each attempt
    for attempt in range(2):
        folder = tmp_path / f"attempt{attempt}"
        folder.mkdir()
        procs = [subprocess.Popen([sys.executable, str(REPO / "train.py"), "model=naive", "data.seq_len=48", "data.pred_len=24",
                                   "data.eval_batch_size=512", "log_model=false", "plot_windows=1", "num_threads=1",
                                   "trainer.enable_progress_bar=false", f"hydra.run.dir={folder / f'out{i}'}"],
                                  cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for i in range(3)]
        outputs = [p.communicate(timeout=600)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], "\n\n".join(o[-2000:] for o in outputs)
        client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
        experiment = client.get_experiment_by_name("etth1")
        assert len(client.search_runs([experiment.experiment_id])) == 3
        assert not any("Creating initial MLflow database tables" in o for o in outputs)


# ------------------------------------------------------------------ quiet by default
def test_a_run_prints_no_adverts_and_one_mse_line(tmp_path):
    out = _train(tmp_path, "data.seq_len=48", "data.pred_len=24", "trainer.max_epochs=1", "log_model=false")
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    assert "litlogger" not in text and "Creating initial MLflow database tables" not in text
    assert text.count("test/mse") == 1 and "test/loss" not in text
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (logged,) = client.search_runs([client.get_experiment_by_name("etth1").experiment_id])
    assert logged.data.tags["debug"] == "false"
    assert not [k for k in logged.data.params if k.endswith("dirpath")]  # run folders stay out of the diff view


def test_record_refuses_testing_weights_that_a_debug_run_trained(make_config, tmp_path):
    trained = ["trainer=debug", "logger=none", "data.seq_len=48", "data.pred_len=24"]
    run(make_config(*trained))
    (tmp_path / "run" / ".hydra").mkdir(exist_ok=True)  # what train.py leaves beside its checkpoints
    (tmp_path / "run" / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in trained))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError, match=r"weights trained by a debug run \(trainer=debug"):
        run(make_config("logger=none", "data.seq_len=48", "data.pred_len=24", "train=false", f"ckpt_path={ckpt}",
                        f"record={tmp_path / 'accuracy.csv'}"))
    assert not (tmp_path / "accuracy.csv").exists()
