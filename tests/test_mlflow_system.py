"""MLflow as the system of record, against a real tracking server started here.

One lean ``mlflow server`` (SQLite backend, temporary artifact store, a free loopback port) and
one ``mlflow models serve`` are shared by the module and stopped by their own process ids.
Two tiny runs of different models (a trained DLinear and the parameter-free seasonal naive)
are logged through the server, their models registered with the alias ``champion``; the tests
then check the comparison keys, the leaderboard, ``predict.py``, the HTTP endpoint and the
rejection of bad history files against independent computations.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from mlflow import MlflowClient
from omegaconf import OmegaConf, open_dict, read_write

from forecast import leaderboard, tracking
from forecast.data.timefeatures import time_features
from forecast.errors import DataError
from forecast.pipelines.train import build_data, run
from forecast.registry import register_run
from tests.helpers import ETTH1, REPO, compose, compose_config, sinusoid_frame

H, L = 24, 48
COMMON = ["trainer.max_epochs=1", f"data.seq_len={L}", f"data.pred_len={H}", "trainer.enable_progress_bar=false", "num_threads=1"]
ACCURACY = {"test/mse", "test/mae", "test/mae_orig", "test/rmse_orig", "test/mase_orig", "test/smape_orig"}
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # the lean server of environment.md §4


# ------------------------------------------------------------------ processes
def venv_env() -> dict:
    """This environment with the interpreter's bin directory first on PATH: ``mlflow models
    serve`` starts ``uvicorn`` by name, which an unactivated virtual environment does not find."""
    return {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], url: str, log: Path, env: dict, timeout: float = 120) -> subprocess.Popen:
    """Start ``python -m mlflow <args>`` in its own session; wait until ``url`` answers 200."""
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "mlflow", *args], stdout=fh, stderr=subprocess.STDOUT,
                                env={**os.environ, **env}, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow {args[0]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        time.sleep(0.3)
    _stop(proc)
    raise RuntimeError(f"mlflow {args[0]} not ready after {timeout} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the mlflow CLI process we started (it stops its uvicorn workers); its own
    process group is killed only if something of it is still there after 20 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)  # the session we started: pgid == the CLI's pid
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A lean tracking server on a free port; the process env points MLflow at it."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    proc = _start(["server", "--backend-store-uri", f"sqlite:///{root / 'server.db'}", "--artifacts-destination",
                   str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                  f"{uri}/health", root / "server.log", SERVER_ENV)
    saved = mlflow.tracking._tracking_service.utils._tracking_uri
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("FORECAST_DATA_DIR", str(REPO / "data"))
        mp.setenv("OMP_NUM_THREADS", "1")
        try:
            yield {"uri": uri, "root": root, "proc": proc}
        finally:
            mlflow.tracking._tracking_service.utils._tracking_uri = saved
            _stop(proc)


@pytest.fixture(scope="module")
def runs(server, tmp_path_factory):
    """Two tiny runs through the server (DLinear trained 2 steps; seasonal naive), both
    registered as ``etth1-<model>`` with the alias ``champion``; the model server for DLinear is
    started at once so it boots while the other tests run."""
    out = tmp_path_factory.mktemp("runs")
    results = {}
    for model in ("dlinear", "seasonalnaive"):
        cfg = compose_config([f"model={model}", *COMMON, "register=true", "alias=champion"], out / model,
                             tracking_uri=server["uri"])
        results[model] = {"metrics": run(cfg), "cfg": cfg}
    port = _free_port()
    log = server["root"] / "serve.log"
    with open(log, "wb") as fh:
        serve = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/etth1-dlinear@champion",
                                  "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                                 stdout=fh, stderr=subprocess.STDOUT, env=venv_env(), start_new_session=True)
    try:
        yield {**results, "serve": {"proc": serve, "url": f"http://127.0.0.1:{port}", "log": log}}
    finally:
        _stop(serve)


def _client(server) -> MlflowClient:
    return MlflowClient(server["uri"])


def _etth1_runs(client):
    exp = client.get_experiment_by_name("etth1")
    return client.search_runs([exp.experiment_id], filter_string="attributes.status = 'FINISHED'",
                              order_by=["metrics.`test/mse` ASC"])


def _expected_dlinear(client, result):
    """The forecast after the last row of ETTh1 computed without the pyfunc: the run's logged
    best checkpoint in a network built from its logged config, fed by the data module."""
    found = [r for r in _etth1_runs(client) if r.data.tags["model"] == "dlinear"]
    r = found[0]
    folder = Path(mlflow.artifacts.download_artifacts(run_id=r.info.run_id, artifact_path="checkpoints",
                                                      tracking_uri=client.tracking_uri))
    state = torch.load(next(folder.glob("*.ckpt")), map_location="cpu", weights_only=False)["state_dict"]
    config = OmegaConf.create(mlflow.artifacts.load_text(f"{r.info.artifact_uri}/config.yaml"))
    from hydra.utils import instantiate

    network = instantiate(config.model)
    network.load_state_dict({k[len("network."):]: v for k, v in state.items() if k.startswith("network.")})
    network.eval()
    datamodule = build_data(result["cfg"].copy())
    future = pd.date_range(datamodule.table.dates[-1], periods=H + 1, freq="h")[1:]
    with torch.no_grad():
        out = network(datamodule.values[-L:][None], datamodule.marks[-L:][None],
                      torch.from_numpy(time_features(future, "h"))[None])
    pred = datamodule.target_scaler.inverse_transform(out[0].double().numpy())
    return future, pd.DataFrame(pred, columns=datamodule.columns)


# ------------------------------------------------------------------ comparable runs
def test_runs_of_different_models_line_up_in_search_runs(server, runs):
    client = _client(server)
    found = _etth1_runs(client)
    assert [r.data.tags["model"] for r in found] == sorted(("dlinear", "seasonalnaive"),
                                                           key=lambda m: runs[m]["metrics"]["test/mse"])
    mses = [r.data.metrics["test/mse"] for r in found]
    assert mses == sorted(mses) and mses[0] < mses[1]
    for r in found:
        assert r.data.metrics["test/mse"] == pytest.approx(runs[r.data.tags["model"]]["metrics"]["test/mse"], rel=1e-6)
    a, b = found
    # the same tag keys on a trained network and a classical baseline, "none" where one does not apply
    assert set(a.data.tags) == set(b.data.tags)
    assert set(tracking.COMPARISON_TAGS) <= set(a.data.tags)
    assert {r.data.tags["refit"] for r in found} == {"none"} and {r.data.tags["experiment"] for r in found} == {"none"}
    assert {(r.data.tags["horizon"], r.data.tags["seq_len"], r.data.tags["features"]) for r in found} == {(str(H), str(L), "M")}
    comparable = {"data.name", "data.features", "data.seq_len", "data.pred_len", "seed", "paper_compat", "model._target_"}
    assert comparable <= set(a.data.params) & set(b.data.params)
    # what differs between the param sets is the networks' own settings and their model files' reasons
    assert {k.split(".")[0] for k in set(a.data.params) ^ set(b.data.params)} <= {"model", "data", "recommends"}
    assert ACCURACY <= set(a.data.metrics) & set(b.data.metrics)

    for r in found:
        # the data as an MLflow dataset input: name, source, digest, split borders
        (data,) = r.inputs.dataset_inputs
        assert data.dataset.name == "etth1" and data.dataset.digest == r.data.tags["data_sha256"][:32]
        assert json.loads(data.dataset.source)["uri"].endswith("ETT-small/ETTh1.csv")
        input_tags = {t.key: t.value for t in data.tags}
        assert input_tags["mlflow.data.context"] == "training"
        assert (input_tags["train_rows"], input_tags["test_rows"]) == ("0-8639", "11520-14399")
        assert json.loads(data.dataset.profile)["num_rows"] == 17420
        # the logged model, linked to its run (the UI's Models column) and registered
        (output,) = r.outputs.model_outputs
        logged = client.get_logged_model(output.model_id)
        assert logged.source_run_id == r.info.run_id and logged.name == "model"
        assert r.data.tags["model_uri"] == f"models:/{output.model_id}"
        version = client.get_model_version_by_alias(f"etth1-{r.data.tags['model']}", "champion")
        assert version.run_id == r.info.run_id and version.tags["test_mse"] == f"{r.data.metrics['test/mse']:.6g}"


def test_hydra_multirun_jobs_are_children_of_one_parent_run(server, tmp_path):
    """Two jobs of one multirun (as the basic launcher runs them, with the callback of
    conf/train.yaml around them) log under one parent run that ends FINISHED."""
    path = tmp_path / "sweepseries.csv"
    sinusoid_frame(n=400, channels=2).to_csv(path, index=False)
    base = compose("train", overrides=["data=csv", f"data.path={path}", "logger=mlflow"], return_hydra_config=True)
    assert OmegaConf.select(base, "hydra.callbacks.mlflow_sweep._target_") == "forecast.tracking.SweepCallback"
    callback = tracking.SweepCallback()
    with open_dict(base):
        base.hydra.overrides.task = ["data.pred_len=12,24"]
        base.logger.tracking_uri = server["uri"]
    callback.on_multirun_start(base)
    for horizon in (12, 24):
        cfg = compose_config(["data=csv", f"data.path={path}", "data.seq_len=24", f"data.pred_len={horizon}",
                              "trainer.max_epochs=1", "log_model=false", "trainer.enable_progress_bar=false"],
                             tmp_path / str(horizon), tracking_uri=server["uri"])
        hydra_cfg = HydraConfig.get()
        with read_write(hydra_cfg), open_dict(hydra_cfg):
            hydra_cfg.mode = RunMode.MULTIRUN
            hydra_cfg.sweep.dir = str(tmp_path / "multirun")
        run(cfg)
    callback.on_multirun_end(base)
    client = _client(server)
    exp = client.get_experiment_by_name("sweepseries")
    every = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in every if r.data.tags.get("kind") == "sweep"]
    children = [r for r in every if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == ["dlinear-sweepseries-24-12", "dlinear-sweepseries-24-24"]
    assert len(every) == 3 and parent.info.status == "FINISHED" and parent.data.tags["jobs"] == "2"
    assert parent.info.run_name == "sweep data.pred_len=12,24" and "test/mse" not in parent.data.metrics


# ------------------------------------------------------------------ leaderboard
def _fake_run(client, experiment_id, model, horizon, mse, status="FINISHED", paper_compat="false"):
    r = client.create_run(experiment_id, tags={"dataset": "etth1", "model": model, "horizon": str(horizon),
                                               "seq_len": str(L), "features": "M", "paper_compat": paper_compat})
    client.log_metric(r.info.run_id, "test/mse", mse)
    client.log_metric(r.info.run_id, "test/mae", mse / 2)
    client.set_terminated(r.info.run_id, status)
    return r.info.run_id


def test_leaderboard_picks_the_best_run_per_cell_from_mlflow(server, runs, tmp_path):
    client = _client(server)
    real = {r.data.tags["model"]: r for r in _etth1_runs(client)}
    other = client.create_experiment("leaderboard-fixtures")
    worse = _fake_run(client, other, "dlinear", H, real["dlinear"].data.metrics["test/mse"] + 1.0)
    _fake_run(client, other, "dlinear", H, 1e-3, status="FAILED")          # not finished: ignored
    _fake_run(client, other, "dlinear", H, 2e-3, paper_compat="true")      # not comparable: ignored
    longer = _fake_run(client, other, "seasonalnaive", 48, 0.7)
    published = tmp_path / "published.csv"
    published.write_text("model,dataset,features,seq_len,pred_len,mse,mae,source\n"
                         f"dlinear,etth1,M,{L},{H},0.5,0.45,a test row\n")
    cfg = compose("compare", overrides=["data=etth1", f"published={published}", f"out_dir={tmp_path / 'lb'}",
                                        f"tracking_uri={server['uri']}"])
    result = leaderboard.compare(cfg)
    table = result["table"]
    assert list(zip(table["horizon"], table["model"])) == [
        (H, m) for m in sorted(real, key=lambda m: real[m].data.metrics["test/mse"])] + [(48, "seasonalnaive")]
    for row in table.itertuples():
        stored = client.get_run(row.run_id).data.metrics
        assert (row.mse, row.mae) == (stored["test/mse"], stored["test/mae"])
    cell = table.set_index(["horizon", "model"])
    assert cell.loc[(H, "dlinear"), "run_id"] == real["dlinear"].info.run_id != worse
    assert cell.loc[(H, "dlinear"), "runs"] == 2 and cell.loc[(48, "seasonalnaive"), "run_id"] == longer
    assert cell.loc[(H, "dlinear"), "paper_mse"] == 0.5 and np.isnan(cell.loc[(H, "seasonalnaive"), "paper_mse"])
    assert list(cell.loc[H, "rank"]) == [1, 2]

    paths = result["paths"]
    assert pd.read_csv(paths["csv"])["run_id"].tolist() == table["run_id"].tolist()
    markdown = paths["md"].read_text()
    assert f"| {H} | 1 |" in markdown and real["dlinear"].info.run_id in markdown and "(0.500 / 0.450)" in markdown
    assert paths["png"].stat().st_size > 5000
    lb = client.get_run(result["run_id"])
    assert {a.path for a in client.list_artifacts(lb.info.run_id)} == {p.name for p in paths.values()}
    assert lb.data.tags["kind"] == "leaderboard"

    cfg = compose("compare", overrides=["data=etth1", f"pred_len={H}", f"out_dir={tmp_path / 'lb'}", "log=false",
                                        f"tracking_uri={server['uri']}"])
    only = leaderboard.compare(cfg)["table"]
    assert set(only["horizon"]) == {H} and len(only) == 2 and (tmp_path / "lb" / f"leaderboard-etth1-{H}.md").exists()


def test_register_run_registers_the_best_run_of_a_model_or_a_given_run(server, runs):
    client = _client(server)
    real = {r.data.tags["model"]: r for r in _etth1_runs(client)}

    def cfg(*overrides):
        return compose("register", overrides=[f"tracking_uri={server['uri']}", *overrides])

    version = register_run(cfg("data=etth1", "best=seasonalnaive", "name=etth1-promoted", "alias=staging"))
    assert version.run_id == real["seasonalnaive"].info.run_id
    assert client.get_model_version_by_alias("etth1-promoted", "staging").version == version.version
    again = register_run(cfg(f"run_id={real['dlinear'].info.run_id}", "name=etth1-promoted", "alias=staging"))
    assert int(again.version) == int(version.version) + 1
    assert client.get_model_version_by_alias("etth1-promoted", "staging").run_id == real["dlinear"].info.run_id
    from forecast.errors import ConfigError

    with pytest.raises(ConfigError, match="no finished run of model 'karma' on 'etth1'"):
        register_run(cfg("data=etth1", "best=karma"))


# ------------------------------------------------------------------ forecasting
def test_predict_py_through_the_server_matches_the_in_process_model(server, runs, tmp_path):
    client = _client(server)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "predict.py"), "model_uri=models:/etth1-dlinear@champion",
                           f"data.path={ETTH1}", "output=out/forecast.csv"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = pd.read_csv(tmp_path / "out" / "forecast.csv", parse_dates=["date"])
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["forecast.csv", "forecast.png"]  # no Hydra files

    future, expected = _expected_dlinear(client, runs["dlinear"])
    assert (written["date"] == future).all() and written["date"].iloc[0] == pd.Timestamp("2018-06-26 20:00")
    np.testing.assert_allclose(written[expected.columns].to_numpy(), expected.to_numpy(), rtol=1e-6, atol=1e-6)

    model = mlflow.pyfunc.load_model("models:/etth1-dlinear@champion")
    history = pd.read_csv(ETTH1).tail(L)
    in_process = model.predict(history)
    np.testing.assert_allclose(written[expected.columns].to_numpy(), in_process[expected.columns].to_numpy(),
                               rtol=1e-6, atol=1e-6)


def test_classical_model_is_served_with_its_fitted_state(server, runs):
    """Seasonal naive repeats the last 24 hours; its period came from fit_training."""
    model = mlflow.pyfunc.load_model("models:/etth1-seasonalnaive@champion")
    history = pd.read_csv(ETTH1).tail(L)
    forecast = model.predict(history)
    np.testing.assert_allclose(forecast[history.columns[1:]].to_numpy(), history.iloc[-24:, 1:].to_numpy(), rtol=1e-5)


def _gap(frame):
    return frame.drop(index=frame.index[-30])


@pytest.mark.parametrize("name,edit,message", [
    ("short", lambda f: f.tail(L - 1), f"has {L - 1} rows, but the model forecasts from the last seq_len={L} rows"),
    ("columns", lambda f: f.drop(columns=["HULL"]).rename(columns={"LULL": "X"}),
     "but it lacks ['HULL', 'LULL'] and it has the extra column(s) ['X']"),
    ("gap", _gap, "timestamps are not spaced by the model's step 'h'"),
])
def test_predict_rejects_a_bad_history_and_writes_nothing(server, runs, tmp_path, name, edit, message):
    from forecast.pipelines.predict import run as predict

    path = tmp_path / f"{name}.csv"
    edit(pd.read_csv(ETTH1).tail(200)).to_csv(path, index=False)
    cfg = compose("predict", overrides=["model_uri=models:/etth1-dlinear@champion", f"data.path={path}",
                                        f"output={tmp_path / 'out' / 'f.parquet'}", f"tracking_uri={server['uri']}"])
    with pytest.raises(DataError, match="Fix:") as error:
        predict(cfg)
    assert message in str(error.value) and str(path) in str(error.value)
    assert not (tmp_path / "out").exists()


def test_predict_writes_parquet_and_rejects_an_unknown_model_or_format(server, runs, tmp_path):
    from forecast.errors import ConfigError
    from forecast.pipelines.predict import run as predict

    def cfg(*overrides):
        return compose("predict", overrides=[f"data.path={ETTH1}", f"tracking_uri={server['uri']}", *overrides])

    result = predict(cfg("model_uri=models:/etth1-dlinear@champion", f"output={tmp_path / 'f.parquet'}"))
    frame = pd.read_parquet(tmp_path / "f.parquet")
    assert frame["date"].dtype == "datetime64[ns]" and len(frame) == H
    np.testing.assert_array_equal(frame.drop(columns="date").to_numpy(), result["forecast"].drop(columns="date").to_numpy())
    with pytest.raises(ConfigError, match="models:/etth1-nope@champion: cannot be loaded"):
        predict(cfg("model_uri=models:/etth1-nope@champion", f"output={tmp_path / 'g.csv'}"))
    with pytest.raises(ConfigError, match="unknown format '.xlsx'"):
        predict(cfg("model_uri=models:/etth1-dlinear@champion", f"output={tmp_path / 'g.xlsx'}"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.parquet", "f.png"]


def test_mlflow_models_serve_answers_a_forecast_request(server, runs, tmp_path):
    serve = runs["serve"]
    deadline = time.monotonic() + 120
    while True:
        assert serve["proc"].poll() is None, serve["log"].read_text()[-3000:]
        try:
            if requests.get(f"{serve['url']}/ping", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, serve["log"].read_text()[-3000:]
        time.sleep(0.3)
    history = pd.read_csv(ETTH1).tail(L)
    body = {"dataframe_split": {"columns": list(history.columns), "data": history.to_numpy().tolist()}}
    response = requests.post(f"{serve['url']}/invocations", json=body, timeout=60)
    assert response.status_code == 200, response.text[:2000]
    answer = pd.DataFrame(response.json()["predictions"])
    future, expected = _expected_dlinear(_client(server), runs["dlinear"])
    assert (pd.to_datetime(answer["date"]) == future).all()
    np.testing.assert_allclose(answer[expected.columns].to_numpy(), expected.to_numpy(), rtol=1e-6, atol=1e-6)

    gap = _gap(pd.read_csv(ETTH1).tail(100))
    body = {"dataframe_split": {"columns": list(gap.columns), "data": gap.to_numpy().tolist()}}
    response = requests.post(f"{serve['url']}/invocations", json=body, timeout=60)
    assert response.status_code == 400
    assert "timestamps are not spaced by the model's step 'h'" in response.json()["message"]


# ------------------------------------------------------------------ the UI
@pytest.mark.slow
def test_mlflow_ui_run_table_lists_both_runs_with_their_test_mse(server, runs, tmp_path):
    """Debian's chromium, headless, renders the experiment's run table from the real server in
    the comparison view the runs stored; the rendered page names both runs and shows their
    test/mse; the screenshot goes to docs/mlflow-runs.png."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    client = _client(server)
    exp = client.get_experiment_by_name("etth1")
    found = _etth1_runs(client)
    url = tracking.comparison_view_url(server["uri"], exp.experiment_id)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=2200,420",
             "--virtual-time-budget=20000", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=180).stdout
    dom = " ".join(re.sub(r"<[^>]+>", " ", dom).split())  # the rendered text
    assert "Sort: test/mse" in dom and "forecast: compare models" in dom  # the stored view was applied
    table = dom[dom.index("Run Name"):]
    for r in found:
        assert r.info.run_name in table and repr(r.data.metrics["test/mse"]) in table
    # best first, as the view sorts
    assert table.index(found[0].info.run_name) < table.index(found[1].info.run_name)
    shot = tmp_path / "runs.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", url], capture_output=True, timeout=180)
    assert shot.stat().st_size > 20000
    (REPO / "docs").mkdir(exist_ok=True)
    shutil.copy(shot, REPO / "docs" / "mlflow-runs.png")
