"""Scheduled retraining: champion/challenger through the MLflow registry, nothing lost on failure.

A synthetic hourly series (two noisy sinusoids of period 24) written to a CSV that the tests
append to, as a nightly job would find it. DLinear, look-back 96, horizon 24, 4 evaluation
windows: a retrain takes a few seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient
from omegaconf import OmegaConf

from forecast.config import ScheduleConfig
from forecast.errors import ConfigError, DataError
from forecast.evaluation import rolling_origins
from forecast.pipelines import retrain as rt
from forecast.pipelines.predict import load_model
from forecast.registry import retrain_history

from tests.helpers import REPO, compose

SEQ, H, WINDOWS = 96, 24, 4
TRAIN = ["model=dlinear", "data=csv", f"data.seq_len={SEQ}", f"data.pred_len={H}", "trainer.max_epochs=8",
         "num_threads=1", "plot_windows=1"]


def series(start: int, n: int, period: int = 24, amplitude: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """Rows ``start .. start+n-1`` of two noisy sinusoids (same noise for the same rows)."""
    t = np.arange(start, start + n)
    noise = np.random.default_rng(seed + start).standard_normal((n, 2)) * 0.2
    return pd.DataFrame({
        "date": pd.date_range("2024-01-01", periods=start + n, freq="h")[start:],
        "load": 5 + amplitude * np.sin(2 * np.pi * t / period) + noise[:, 0],
        "OT": 10 + 2 * amplitude * np.sin(2 * np.pi * t / period + 1.0) + noise[:, 1],
    })


def append(path: Path, frame: pd.DataFrame) -> None:
    frame.to_csv(path, mode="a", header=False, index=False)


def retrain_config(tmp: Path, source: Path, *overrides: str, name: str = "syn-dlinear"):
    cfg = compose("retrain", overrides=[f"name={name}", f"source={source}", f"tracking_uri=sqlite:///{tmp / 'mlflow.db'}",
                                        f"work_dir={tmp / 'work' / name}", f"eval_windows={WINDOWS}", *overrides])
    with_train = OmegaConf.create({"train": TRAIN})
    return OmegaConf.merge(cfg, with_train) if not any(o.startswith("train=") for o in overrides) else cfg


def versions(client, name: str) -> list[int]:
    return sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))


def champion_forecast(tmp: Path, source: Path, name: str = "syn-dlinear") -> tuple[str, np.ndarray]:
    """The champion's version and its forecast from the first 600 rows of ``source``."""
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    version = str(client.get_model_version_by_alias(name, "champion").version)
    _, model = load_model(f"models:/{name}@champion", f"sqlite:///{tmp / 'mlflow.db'}")
    history = pd.read_csv(source).head(600)
    return version, model.predict(None, history).drop(columns="date").to_numpy()


def retrain_command(tmp: Path, source: Path, *overrides: str) -> list[str]:
    return [sys.executable, str(REPO / "scripts" / "retrain.py"), "name=syn-dlinear", f"source={source}",
            f"tracking_uri=sqlite:///{tmp / 'mlflow.db'}", f"work_dir={tmp / 'work' / 'syn-dlinear'}",
            f"eval_windows={WINDOWS}", *overrides]


def latest_retrain_run(client):
    experiment = client.get_experiment_by_name("retrain").experiment_id
    return client.search_runs([experiment], "tags.kind = 'retrain'", order_by=["attributes.start_time DESC"])[0]


def run_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A tracking store with a first champion of ``syn-dlinear`` trained on 1,500 rows."""
    tmp = tmp_path_factory.mktemp("retrain")
    source = tmp / "series.csv"
    series(0, 1500).to_csv(source, index=False)
    result = rt.retrain(retrain_config(tmp, source))
    assert result["decision"] == "first"
    return tmp, source


def test_first_retrain_creates_the_champion_on_rows_before_the_evaluation_windows(registry):
    tmp, source = registry
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    assert str(client.get_model_version_by_alias("syn-dlinear", "champion").version) == "1"
    run = rt.last_decided(client, "retrain", "syn-dlinear")
    challenger = client.get_run(run.data.tags["challenger_run_id"])
    # the challenger's own lineage (logged by train.py) against the evaluation windows
    first_eval = pd.Timestamp(series(1500 - WINDOWS * H, 1)["date"].iloc[0])
    assert int(challenger.data.tags["data_rows"]) == 1500 - WINDOWS * H
    lineage = json.loads(Path(client.download_artifacts(challenger.info.run_id, "data.json")).read_text())
    assert pd.Timestamp(lineage["last_timestamp"]) < first_eval
    assert challenger.data.tags["mlflow.parentRunId"] == run.info.run_id
    assert run.data.tags["data_sha256"] and int(run.data.tags["data_rows"]) == 1500


def test_retrain_without_new_data_changes_nothing(registry):
    tmp, source = registry
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    before = versions(client, "syn-dlinear")
    result = rt.retrain(retrain_config(tmp, source))
    assert result["decision"] == "skipped"
    assert versions(client, "syn-dlinear") == before


def test_same_dynamics_keep_a_champion_and_a_regime_change_promotes_the_challenger(registry, tmp_path):
    tmp, source = registry
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    grown = tmp_path / "series.csv"
    grown.write_bytes(source.read_bytes())
    append(grown, series(1500, 240))
    before = versions(client, "syn-dlinear")
    serving = str(client.get_model_version_by_alias("syn-dlinear", "champion").version)
    same = rt.retrain(retrain_config(tmp, grown))
    assert same["decision"] in ("promoted", "rejected")
    assert same["champion_before"] == serving and len(versions(client, "syn-dlinear")) == len(before) + 1
    kept, forecast = champion_forecast(tmp, grown)
    assert kept == same["champion_version"] and np.isfinite(forecast).all()
    if same["decision"] == "rejected":
        tags = client.get_model_version("syn-dlinear", same["challenger_version"]).tags
        assert "vs champion" in tags["rejected"]

    # the period halves: the champion never saw it; a challenger trained on 1,000 new rows has
    append(grown, series(1740, 1100, period=12, amplitude=1.5))
    changed = rt.retrain(retrain_config(tmp, grown))
    assert changed["decision"] == "promoted", changed["scores"]
    assert changed["scores"]["challenger"]["mse"] < 0.5 * changed["scores"]["champion"]["mse"]
    assert str(client.get_model_version_by_alias("syn-dlinear", "champion").version) == changed["challenger_version"]
    assert changed["lineage"]["train_rows"] == 1500 + 240 + 1100 - WINDOWS * H

    cfg = OmegaConf.create({"history": "syn-dlinear", "retrain_experiment": "retrain", "out_dir": str(tmp_path / "out"),
                            "tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}"})
    table = retrain_history(cfg)["table"]
    decided = table[table["decision"] != "failed"]
    assert decided["decision"].tolist()[0] == "first" and decided["decision"].tolist()[-1] == "promoted"
    assert decided["champion_after"].tolist()[-1] == changed["challenger_version"]
    assert (tmp_path / "out" / "retrain-history-syn-dlinear.png").stat().st_size > 10_000


@pytest.mark.parametrize("corrupt, message", [
    (lambda last: series(last + 2, 3), "not spaced by the inferred frequency"),                 # a missing hour
    (lambda last: series(last + 1, 3).assign(OT=["1.0", "high", "2.0"]), "column 'OT' is not numeric"),
    (lambda last: pd.concat([series(last + 1, 2), series(last + 2, 1)]), "duplicate timestamps"),
], ids=["gap", "text", "duplicate"])
def test_corrupt_rows_fail_with_the_data_layers_message_and_keep_the_champion(registry, tmp_path, corrupt, message):
    tmp, source = registry
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    bad = tmp_path / "series.csv"
    bad.write_bytes(source.read_bytes())
    append(bad, corrupt(len(pd.read_csv(source)) - 1))
    version, forecast = champion_forecast(tmp, source)
    before = versions(client, "syn-dlinear")
    with pytest.raises(DataError, match=message):
        rt.retrain(retrain_config(tmp, bad))
    after_version, after_forecast = champion_forecast(tmp, source)
    assert after_version == version and versions(client, "syn-dlinear") == before
    np.testing.assert_array_equal(after_forecast, forecast)
    experiment = client.get_experiment_by_name("retrain").experiment_id
    failed = client.search_runs([experiment], "attributes.status = 'FAILED'", order_by=["attributes.start_time DESC"])[0]
    assert failed.data.tags["decision"] == "failed" and str(bad) in failed.data.tags["error"]


def test_sigterm_during_training_keeps_the_champion_and_frees_the_lock(registry):
    tmp, source = registry
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    version, forecast = champion_forecast(tmp, source)
    before = versions(client, "syn-dlinear")
    slow = ["force=true", "overrides=['trainer.max_epochs=500','callbacks.early_stopping.patience=1000']"]
    proc = subprocess.Popen(retrain_command(tmp, source, *slow), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=run_env())
    seen = []
    deadline = time.time() + 120
    for line in proc.stdout:  # wait until the challenger is training
        seen.append(line)
        if "training the challenger" in line or time.time() > deadline:
            break
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    out = "".join(seen) + proc.communicate(timeout=60)[0]
    assert "training the challenger" in out, out[-2000:]
    assert proc.returncode == 128 + signal.SIGTERM, out[-3000:]
    assert champion_forecast(tmp, source)[0] == version and versions(client, "syn-dlinear") == before
    last = latest_retrain_run(client)
    assert last.info.status == "FAILED" and last.data.tags["error"] == "interrupted (SIGTERM)", out[-3000:]
    with rt.retrain_lock(tmp / "work" / "syn-dlinear" / "retrain.lock", "syn-dlinear"):
        pass  # free again


@pytest.mark.parametrize("when", ["during training", "after training"])
def test_a_stop_request_ends_the_retrain_at_a_safe_point_and_changes_nothing(registry, monkeypatch, when):
    """The SIGTERM handler only sets a flag; the retrain raises at its next safe point, so no
    tracking-store write is cut in half (the run is FAILED, not left RUNNING)."""
    tmp, source = registry
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    version, forecast = champion_forecast(tmp, source)
    before = versions(client, "syn-dlinear")
    monkeypatch.setattr(rt, "_stop_signal", None)
    batches = []

    class SignalAtBatch3(rt.StopOnRequest):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            batches.append(batch_idx)
            if len(batches) == 3 and when == "during training":
                rt.request_stop(signal.SIGTERM)
            super().on_train_batch_start(trainer, pl_module, batch, batch_idx)

    monkeypatch.setattr(rt, "StopOnRequest", SignalAtBatch3)
    if when == "after training":
        from forecast.pipelines import train as train_pipeline
        original = train_pipeline.run

        def run_then_signal(cfg, callbacks=()):
            metrics = original(cfg, callbacks)
            rt.request_stop(signal.SIGTERM)
            return metrics
        monkeypatch.setattr(train_pipeline, "run", run_then_signal)
    with pytest.raises(SystemExit) as stopped:
        rt.retrain(retrain_config(tmp, source, "force=true"))
    assert stopped.value.code == 128 + signal.SIGTERM
    assert len(batches) == 3 if when == "during training" else len(batches) > 3
    assert champion_forecast(tmp, source)[0] == version and versions(client, "syn-dlinear") == before
    last = latest_retrain_run(client)
    assert last.info.status == "FAILED" and last.data.tags["error"] == "interrupted (SIGTERM)"
    child = client.search_runs([last.info.experiment_id], f"tags.retrain_id = '{last.info.run_id}'")
    assert [r.info.status for r in child] == ["FAILED" if when == "during training" else "FINISHED"]


def test_two_retrains_at_once_one_runs_the_other_says_busy(registry):
    tmp, source = registry
    args = ["force=true", "overrides=['trainer.max_epochs=30','callbacks.early_stopping.patience=1000']"]
    procs = [subprocess.Popen(retrain_command(tmp, source, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=run_env()) for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, rt.EXIT_BUSY], [err[-1500:] for _, _, err in results]
    busy = next(err for code, _, err in results if code == rt.EXIT_BUSY)
    assert "another retrain of 'syn-dlinear' is running" in busy and "pid" in busy


def test_a_killed_holder_leaves_the_lock_reclaimable(tmp_path):
    lock = tmp_path / "retrain.lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from forecast.pipelines.retrain import retrain_lock\n"
        f"with retrain_lock(Path({str(lock)!r}), 'x'):\n    print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True, env=run_env())
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(rt.RetrainBusy, match=r"another retrain of 'x' is running \(pid \d+"):
        with rt.retrain_lock(lock, "x"):
            pass
    holder.kill()  # SIGKILL: no clean-up code runs
    holder.wait()
    with rt.retrain_lock(lock, "x"):
        assert str(os.getpid()) in lock.read_text()


def test_warm_start_begins_from_the_champions_weights(registry, tmp_path):
    tmp, source = registry
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    champion = load_model("models:/syn-dlinear@champion", f"sqlite:///{tmp / 'mlflow.db'}")[1]
    grown = tmp_path / "series.csv"
    grown.write_bytes(source.read_bytes())
    append(grown, series(1500, 48))
    # a learning rate of zero: the challenger's weights are exactly where it started
    result = rt.retrain(retrain_config(tmp, grown, "warm_start=true", "overrides=['module.optimizer.lr=0.0']"))
    challenger = load_model(f"models:/syn-dlinear/{result['challenger_version']}", f"sqlite:///{tmp / 'mlflow.db'}")[1]
    for key, value in champion.network.state_dict().items():
        torch.testing.assert_close(challenger.network.state_dict()[key], value, rtol=0, atol=0)
    assert client.get_model_version("syn-dlinear", result["challenger_version"]).tags["warm_start"] == "true"


def test_first_retrain_needs_a_config_and_bad_settings_are_named(tmp_path):
    source = tmp_path / "series.csv"
    series(0, 400).to_csv(source, index=False)
    with pytest.raises(ConfigError, match="no 'champion' yet"):
        rt.retrain(retrain_config(tmp_path, source, "train=[]", name="other"))
    with pytest.raises(ConfigError, match="metric=rmse"):
        rt.retrain(retrain_config(tmp_path, source, "metric=rmse", name="other"))
    with pytest.raises(DataError, match="need at least"):
        rolling_origins(100, WINDOWS, H, start=SEQ)
    assert rolling_origins(1000, 2, H, start=SEQ) == [952, 976]


def test_decision_rule():
    old = {"mse": 1.0}
    assert rt.decide(None, {"mse": 5.0}, "mse", 0.1) == ("first", pytest.approx(float("nan"), nan_ok=True))
    assert rt.decide(old, {"mse": 0.89}, "mse", 0.1)[0] == "promoted"
    assert rt.decide(old, {"mse": 0.95}, "mse", 0.1)[0] == "rejected"
    assert rt.decide(old, {"mse": float("nan")}, "mse", 0.0)[0] == "rejected"
    assert rt.decide(old, {"mse": 1.0}, "mse", 0.0)[0] == "rejected"  # a tie keeps the champion
    assert rt.decide(old, {"mse": 0.999}, "mse", 0.0)[0] == "promoted"


def test_dated_files_of_a_directory_are_joined_in_name_order(tmp_path):
    folder = tmp_path / "daily"
    folder.mkdir()
    frame = series(0, 72)
    for day in range(3):  # written out of order; the names sort by date
        frame.iloc[day * 24:(day + 1) * 24].to_csv(folder / f"2024-01-0{day + 1}.csv", index=False)
    snap, files = rt.snapshot(folder, "*.csv", tmp_path / "snap")
    joined = pd.read_csv(snap, parse_dates=["date"])
    pd.testing.assert_frame_equal(joined, frame, check_exact=False, rtol=1e-15)
    assert [Path(f["path"]).name for f in files] == ["2024-01-01.csv", "2024-01-02.csv", "2024-01-03.csv"]
    frame.iloc[:24].drop(columns="load").to_csv(folder / "2024-01-04.csv", index=False)
    with pytest.raises(DataError, match="2024-01-04.csv: its columns"):
        rt.snapshot(folder, "*.csv", tmp_path / "snap2")


def test_init_from_loads_weights_and_rejects_a_mismatch(make_config, tmp_path):
    from forecast.pipelines.train import build_data, build_module, load_initial_weights

    cfg = make_config("model=dlinear", "data.seq_len=48", "data.pred_len=24")
    module = build_module(cfg, build_data(cfg))
    weights = {k: torch.randn_like(v) for k, v in module.network.state_dict().items()}
    torch.save(weights, tmp_path / "w.pt")
    load_initial_weights(module, str(tmp_path / "w.pt"))
    for key, value in module.network.state_dict().items():
        assert torch.equal(value, weights[key])
    other = make_config("model=dlinear", "data.seq_len=96", "data.pred_len=24")
    with pytest.raises(ConfigError, match="do not fit this network"):
        load_initial_weights(build_module(other, build_data(other)), str(tmp_path / "w.pt"))


def test_scheduler_fires_jobs_on_an_interval_and_stops_cleanly(tmp_path):
    from forecast.pipelines import schedule

    marks = tmp_path / "marks.txt"
    job = {"interval_seconds": 0.4, "command": [sys.executable, "-c", f"open({str(marks)!r}, 'a').write('x')"]}
    cfg = OmegaConf.merge(OmegaConf.structured(ScheduleConfig),
                          {"jobs": {"tick": job}, "max_runs": 3, "log_dir": str(tmp_path / "logs")})
    started = time.perf_counter()
    runs = schedule.run(cfg)
    assert [r["returncode"] for r in runs] == [0, 0, 0] and marks.read_text() == "xxx"
    assert time.perf_counter() - started < 30
    assert len(list((tmp_path / "logs").glob("tick-*.log"))) == 3

    stop = threading.Event()  # SIGTERM's path: the stop event, set from another thread here
    cfg.max_runs = None
    threading.Timer(1.5, stop.set).start()
    runs = schedule.run(cfg, stop=stop)
    assert stop.is_set() and 1 <= len(runs) <= 6 and all(r["returncode"] == 0 for r in runs)


def test_scheduler_rejects_a_bad_cron_expression_and_an_empty_job(tmp_path):
    from forecast.pipelines import schedule

    with pytest.raises(ConfigError, match="not a cron expression"):
        schedule.job_trigger("nightly", OmegaConf.create({"cron": "61 2 * * *", "interval_seconds": None}), None)
    with pytest.raises(ConfigError, match="jobs.nightly: .*crn"):
        schedule.checked_job("nightly", {"crn": "0 2 * * *"})
    with pytest.raises(ConfigError, match="either retrain .* or command"):
        schedule.job_command("nightly", OmegaConf.create({"retrain": [], "command": []}))
    trigger = schedule.job_trigger("nightly", OmegaConf.create({"cron": "0 2 * * *", "interval_seconds": None}), "UTC")
    nxt = trigger.get_next_fire_time(None, pd.Timestamp("2026-01-01 12:00", tz="UTC").to_pydatetime())
    assert (nxt.hour, nxt.minute, nxt.day) == (2, 0, 2)


def test_the_registered_challenger_serves_bands_adapted_on_the_evaluation_windows(tmp_path):
    """ACI in the retrain: the noise triples in the evaluation windows, which the challenger did
    not train on, so its bands miss there and its served miscoverage drops below nominal (wider
    bands); the registered version is the adapted copy of the run's model. γ 0: no copy."""
    from forecast import intervals

    source = tmp_path / "series.csv"
    frame = series(0, 1500)
    loud = slice(1500 - WINDOWS * H, 1500)
    frame.loc[frame.index[loud], ["load", "OT"]] += np.random.default_rng(1).normal(0, 0.6, (WINDOWS * H, 2))
    frame.to_csv(source, index=False)
    result = rt.retrain(retrain_config(tmp_path, source, "aci_gamma=0.05", name="syn-aci"))
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(result["challenger_run_id"])
    adapted_uri, original_uri = run.data.tags["model_uri"], run.data.tags["model_uri_unadapted"]
    version = client.get_model_version("syn-aci", result["challenger_version"])
    assert adapted_uri != original_uri and version.source == adapted_uri
    _, served = load_model("models:/syn-aci@champion", f"sqlite:///{tmp_path / 'mlflow.db'}")
    _, original = load_model(original_uri, f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert original.calibration.alphas == {}
    assert served.calibration.alphas[80] < 0.2 and served.calibration.alphas[95] < 0.05
    np.testing.assert_array_equal(served.calibration.scores, original.calibration.scores)
    history = pd.read_csv(source).tail(SEQ)
    wide, nominal = served.predict(None, history), original.predict(None, history)
    assert ((wide["OT-hi-80"] - wide["OT"]) > (nominal["OT-hi-80"] - nominal["OT"])).all()
    retrain_run = client.get_run(result["retrain_run_id"]).data.metrics
    assert retrain_run["challenger/aci_alpha_80"] == pytest.approx(served.calibration.alphas[80])
    assert set(intervals.check_levels(list(served.calibration.alphas))) == {80, 95}

    off = rt.retrain(retrain_config(tmp_path, source, "aci_gamma=0", "force=true", name="syn-aci"))
    tags = client.get_run(off["challenger_run_id"]).data.tags
    assert "model_uri_unadapted" not in tags
