"""One input contract on both channels: ``predict.py`` with a file and ``mlflow models serve``
with a request body refuse the same histories, each with a message that fits its channel, and
neither writes anything when it refuses (nor an artifact when it forecasts).

One DLinear (two training steps: these tests are about the contract, not accuracy) is logged
to a SQLite store with a local artifact folder, the set-up where loading a ``models:/`` URI
used to write into the run's artifacts, and served by ``mlflow models serve``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from forecast.errors import ConfigError, DataError
from forecast.pipelines.predict import load_model  # into a copy: mlflow.pyfunc.load_model would write into the store
from forecast.serving import ForecastFailed
from tests.helpers import CONF, ETTH1, REPO, compose_config
from tests.test_mlflow_system import _free_port, _stop, venv_env

L, H = 48, 24
MODEL = "models:/etth1-dlinear@champion"
OPTIONS = re.compile(r"\bdata\.(fill|freq|date_col|duplicates|regularize|path)\b|\bset data\b")


def history(n: int = 60) -> pd.DataFrame:
    """The last ``n`` rows of the bundled ETTh1 file: 2018-06-24 08:00 to 2018-06-26 19:00 for 60."""
    return pd.read_csv(ETTH1).tail(n).reset_index(drop=True)


def snapshot(root: Path) -> dict:
    """Every file under ``root`` with its size, modification time and digest."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A DLinear 48 -> 24 on ETTh1 in ``<tmp>/mlflow.db``, artifacts in ``<tmp>/mlruns``,
    registered as ``etth1-dlinear@champion``; the process env points MLflow at it."""
    from forecast.pipelines.train import run

    root = tmp_path_factory.mktemp("contract")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    saved = mlflow.tracking._tracking_service.utils._tracking_uri
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # MLflow's default artifact root is ./mlruns
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("OMP_NUM_THREADS", "1")
        cfg = compose_config(["trainer.max_epochs=1", f"data.seq_len={L}", f"data.pred_len={H}", "register=true",
                              "alias=champion", "trainer.enable_progress_bar=false", "num_threads=1",
                              f"data.path={ETTH1}"], root / "train", tracking_uri=uri)
        run(cfg)
        mlflow.set_tracking_uri(uri)
        try:
            yield {"root": root, "uri": uri, "artifacts": root / "mlruns"}
        finally:
            mlflow.tracking._tracking_service.utils._tracking_uri = saved


@pytest.fixture(scope="module")
def served(store):
    """``mlflow models serve`` of the champion, started from the repository (its ``forecast``
    package). MLflow itself writes ``registered_model_meta`` into a local artifact store when it
    starts from a ``models:/`` URI; the snapshot is taken after that, so a request that writes
    anything shows."""
    port = _free_port()
    log = store["root"] / "serve.log"
    env = {**venv_env(), "MLFLOW_TRACKING_URI": store["uri"], "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", MODEL, "--env-manager", "local",
                                 "-h", "127.0.0.1", "-p", str(port)], cwd=REPO, stdout=fh, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
        yield {"url": url, "before": snapshot(store["artifacts"]), "log": log}
    finally:
        _stop(proc)


def predict_cfg(path, output, *overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("predict", overrides=[f"model_uri={MODEL}", f"data.path={path}", f"output={output}", *overrides])


def body(frame: pd.DataFrame) -> str:
    """``frame`` as a dataframe_split request; NaN as null, infinities as JSON's Infinity tokens."""
    data = [[None if isinstance(v, float) and np.isnan(v) else v for v in row] for row in frame.astype(object).to_numpy().tolist()]
    return json.dumps({"dataframe_split": {"columns": list(frame.columns), "data": data}}, allow_nan=True)


def post(served, data, content_type="application/json"):
    return requests.post(f"{served['url']}/invocations", data=data, headers={"Content-Type": content_type}, timeout=120)


def _set(row, col, value):
    def edit(frame):
        frame = frame.astype(object) if isinstance(value, (bool, str)) else frame.copy()
        frame.loc[row, col] = value
        return frame
    return edit


def _epoch(frame):
    return frame.assign(date=pd.to_datetime(frame["date"]).astype("int64") // 10**9)


def _quarter_hours(frame):
    return frame.assign(date=pd.date_range("2018-06-26 00:00", periods=len(frame), freq="15min").astype(str))


# name: (edit of the 60-row history, the file's phrase, the request's phrase)
PROBES = {
    "inf": (_set(50, "OT", np.inf), "column 'OT' has infinite values at line 52", "column 'OT' has infinite values at row 50"),
    "1e308": (_set(50, "OT", 1e308), "column 'OT' has values the model cannot compute with at line 52",
              "column 'OT' has values the model cannot compute with at row 50"),
    "nan": (_set(50, "OT", np.nan), "missing values in 'OT' at line 52 (2018-06-26 10:00:00). Fix: clean the file, or opt "
            "in to filling with data.fill=ffill or data.fill=interpolate",
            "missing values in 'OT' at row 50 (2018-06-26 10:00:00). Fix: send a number in every cell"),
    "boolean": (_set(50, "OT", True), "column 'OT' is not numeric (line 52: 'True')",
                "column 'OT' is not numeric (row 50: True). Fix: send numbers"),
    "epoch dates": (_epoch, "column 'date' holds numbers, not timestamps, at line 2, line 3",
                    "column 'date' holds numbers, not timestamps, at row 0, row 1"),
    "extra column": (lambda f: f.assign(extra=1.0), "it has the extra column(s) ['extra']",
                     "it has the extra column(s) ['extra']. Fix: send exactly the columns ['date'] + "),
    "missing column": (lambda f: f.drop(columns=["HULL"]), "but it lacks ['HULL']. Fix: give the columns the model was "
                       "trained on (add ['HULL'])", "but it lacks ['HULL']. Fix: send exactly the columns"),
    "renamed column": (lambda f: f.rename(columns={"HULL": "hull"}), "it lacks ['HULL'] and it has the extra column(s) ['hull']",
                       "it lacks ['HULL'] and it has the extra column(s) ['hull']"),
    "too few rows": (lambda f: f.tail(L - 1), f"has {L - 1} rows, but the model forecasts from the last seq_len={L} rows",
                     f"has {L - 1} rows, but the model forecasts from the last seq_len={L} rows. Fix: send at least {L}"),
    "gap": (lambda f: f.drop(index=30), "timestamps are not spaced by the model's step 'h': 1 missing timestamp in 1 gap: "
            "2018-06-25 14:00:00 between line 31 (2018-06-25 13:00:00) and line 32 (2018-06-25 15:00:00)",
            "2018-06-25 14:00:00 between row 29 (2018-06-25 13:00:00) and row 30 (2018-06-25 15:00:00). Fix: send a row"),
    "reversed rows": (lambda f: f.iloc[::-1], "timestamps are not increasing at line 3 (2018-06-26 18:00:00)",
                      "timestamps are not increasing at row 1 (2018-06-26 18:00:00)"),
    "duplicate": (lambda f: pd.concat([f.iloc[:20], f.iloc[19:]]), "duplicate timestamps at line 22 (2018-06-25 03:00:00)",
                  "duplicate timestamps at row 20 (2018-06-25 03:00:00). Fix: send one row per timestamp"),
    "other step": (_quarter_hours, "the rows are spaced by '15min', but the model was trained on 'h' data. Fix: resample",
                   "the rows are spaced by '15min', but the model was trained on 'h' data. Fix: send rows spaced by"),
    "bad date": (_set(5, "date", "26/13/2018 25:00"), "column 'date' has 1 value(s) that are not dates (line 7: '26/13/2018 25:00')",
                 "column 'date' has 1 value(s) that are not dates (row 5: '26/13/2018 25:00')"),
    "text value": (_set(7, "HUFL", "4,2"), "column 'HUFL' is not numeric (line 9: '4,2')", "column 'HUFL' is not numeric (row 7: '4,2')"),
    "inf and a gap": (lambda f: _set(50, "OT", np.inf)(f).drop(index=30), "2 problems",  "2 problems"),
}


@pytest.mark.parametrize("name", PROBES)
def test_predict_py_refuses_a_bad_file_names_it_and_writes_nothing(store, tmp_path, name):
    from forecast.pipelines.predict import run as predict

    edit, phrase, _ = PROBES[name]
    path = tmp_path / f"{name.replace(' ', '_')}.csv"
    edit(history()).to_csv(path, index=False)
    before = snapshot(store["artifacts"])
    with pytest.raises(DataError) as error:
        predict(predict_cfg(path, tmp_path / "out" / "forecast.csv"))
    message = str(error.value)
    assert message.startswith(f"{path}: ") and phrase in message and "Fix:" in message
    assert not re.search(r"\brow \d", message)  # file lines, not request rows
    assert not (tmp_path / "out").exists() and snapshot(store["artifacts"]) == before


@pytest.mark.parametrize("name", PROBES)
def test_the_served_model_refuses_the_same_request_with_http_400(store, served, name):
    edit, _, phrase = PROBES[name]
    response = post(served, body(edit(history())))
    assert response.status_code == 400, response.text[:2000]
    message = response.json()["message"]
    assert message.startswith("the request: ") and phrase in message and "Fix:" in message
    assert not OPTIONS.search(message), message  # no command-line options over HTTP
    assert "Failed to predict data" not in message and len(message) < 3000  # the request is not echoed
    assert "Rows are counted from 0 as in dataframe_split.data" in message


def test_one_pass_lists_both_problems_on_both_channels(store, served, tmp_path):
    frame = PROBES["inf and a gap"][0](history())
    message = post(served, body(frame)).json()["message"]
    assert "column 'OT' has infinite values at row 49" in message and "1 missing timestamp in 1 gap" in message
    path = tmp_path / "two.csv"
    frame.to_csv(path, index=False)
    from forecast.pipelines.predict import run as predict

    with pytest.raises(DataError) as error:
        predict(predict_cfg(path, tmp_path / "out.csv"))
    assert "column 'OT' has infinite values at line 51" in str(error.value) and "1 missing timestamp in 1 gap" in str(error.value)


def test_a_forecast_is_the_same_from_json_records_and_a_csv_body(store, served):
    frame = history()
    split = post(served, body(frame))
    records = post(served, json.dumps({"dataframe_records": frame.to_dict(orient="records")}))
    csv = post(served, frame.to_csv(index=False), "text/csv")
    assert split.status_code == records.status_code == csv.status_code == 200, (records.text[:500], csv.text[:500])
    answers = [pd.DataFrame(r.json()["predictions"]) for r in (split, records, csv)]
    in_process = load_model(MODEL)[0].predict(frame)
    for answer in answers:
        assert list(answer["date"]) == [d.strftime("%Y-%m-%dT%H:%M:%S") for d in in_process["date"]]
        np.testing.assert_array_equal(answer.drop(columns="date").to_numpy(), in_process.drop(columns="date").to_numpy())
    assert answers[0]["date"].iloc[0] == "2018-06-26T20:00:00"


@pytest.mark.parametrize("data,content_type,phrase", [
    ("", "application/json", "Ensure that input is a valid JSON formatted string"),
    ("{not json", "application/json", "Ensure that input is a valid JSON formatted string"),
    (json.dumps({"dataframe_split": {"columns": list(history().columns), "data": []}}), "application/json",
     "the request: has no rows. Fix: send at least 48 rows"),
    (json.dumps({"instances": [1.0, 2.0, 3.0]}), "application/json", "the request: expected a table with named columns"),
    ("date,HUFL\n", "text/csv", "the request: has no rows"),
])
def test_empty_and_malformed_bodies_get_400(store, served, data, content_type, phrase):
    response = post(served, data, content_type)
    assert response.status_code == 400 and phrase in response.json()["message"]


def overflowing_history(model) -> pd.DataFrame:
    """A history that passes the input checks (every scaled value within float32's range) but on
    which the network overflows: the first of a few huge patterns (constant, or alternating in
    sign) whose forecast, computed in this process, is not finite. Whether a network overflows
    depends on how it sums (a moving average as a product with 1/k weights does not where
    sliding sums did), so the pattern is found, not assumed."""
    spec, L = model.spec, model.spec.seq_len
    for scale in (1e38, 3e38, 0.999 * np.finfo(np.float32).max):
        for sign in (np.ones(L), np.where(np.arange(L) % 2, 1.0, -1.0)):
            frame = history(L)
            frame.iloc[:, 1:] = np.asarray(spec.mean) + scale * sign[:, None] * np.asarray(spec.std)
            values = model.forecast(pd.DatetimeIndex(frame["date"]), frame[list(spec.columns)].to_numpy())
            if not np.isfinite(values[spec.outputs].to_numpy()).all():
                return frame
    pytest.fail("no huge history overflows the test's network; the non-finite guard needs another input")


def test_a_non_finite_forecast_is_never_returned(store, served, tmp_path):
    """Values that pass the input checks but are so large that the network overflows: HTTP 500
    and predict.py's error say so; no NaN reaches a client or a file."""
    frame = overflowing_history(load_model(MODEL)[1])
    response = post(served, body(frame))
    assert response.status_code == 500
    assert response.json()["message"].startswith("the request: the model's forecast is not finite (NaN or infinite)")
    path = tmp_path / "huge.csv"
    frame.to_csv(path, index=False)
    from forecast.pipelines.predict import run as predict

    with pytest.raises(ForecastFailed, match=f"{path}: the model's forecast is not finite"):
        predict(predict_cfg(path, tmp_path / "out" / "f.csv"))
    assert not (tmp_path / "out").exists()


def test_the_docs_example_requests_are_answered(store, served):
    """docs/examples/request.{json,csv} (the last 96 rows of ETTh1) as they are: 200, the
    forecast after 2018-06-26 19:00, the same as from the file's rows in process."""
    examples = REPO / "docs" / "examples"
    expected = load_model(MODEL)[0].predict(history(96))
    for data, content_type in ((examples / "request.json").read_bytes(), "application/json"), \
                              ((examples / "request.csv").read_bytes(), "text/csv"):
        response = post(served, data, content_type)
        assert response.status_code == 200, response.text[:1000]
        answer = pd.DataFrame(response.json()["predictions"])
        assert answer["date"].iloc[0] == "2018-06-26T20:00:00" and len(answer) == H
        np.testing.assert_array_equal(answer.drop(columns="date").to_numpy(), expected.drop(columns="date").to_numpy())


def test_a_parquet_body_is_read_with_its_datetimes(store, served):
    frame = history().assign(date=lambda f: pd.to_datetime(f["date"]))
    response = post(served, frame.to_parquet(index=False), "application/vnd.apache.parquet")
    assert response.status_code == 200, response.text[:1000]
    assert response.json()["predictions"][0]["date"] == "2018-06-26T20:00:00"


def test_deeply_nested_json_is_a_500_and_the_server_goes_on(store, served):
    response = post(served, "[" * 100_000 + "]" * 100_000)
    assert response.status_code == 500 and len(response.content) < 1000
    assert post(served, body(history())).status_code == 200


def test_the_request_timeout_bounds_a_huge_request(store, tmp_path):
    """``mlflow models serve --timeout 1``: a 300,000-row history (about 45 MB of JSON) gets 504;
    the server answers the next requests. Served from a downloaded copy, as docs/serving.md advises for a
    local store (serving the models:/ URI itself lets MLflow write into the store at start-up)."""
    copy = tmp_path / "served-model"
    copy.mkdir()
    mlflow.artifacts.download_artifacts(artifact_uri=MODEL, dst_path=str(copy))
    port = _free_port()
    env = {**venv_env(), "MLFLOW_TRACKING_URI": store["uri"], "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with open(tmp_path / "serve.log", "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", str(copy), "--env-manager", "local",
                                 "--timeout", "1", "-h", "127.0.0.1", "-p", str(port)], cwd=REPO, stdout=fh,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = {"url": f"http://127.0.0.1:{port}"}
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if requests.get(f"{url['url']}/ping", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.3)
        rows = 300_000
        values = np.resize(history(96).iloc[:, 1:].to_numpy(), (rows, 7))
        dates = pd.date_range(end="2018-06-26 19:00", periods=rows, freq="h").strftime("%Y-%m-%d %H:%M:%S")
        big = json.dumps({"dataframe_split": {"columns": list(history().columns),
                                              "data": [[d, *v] for d, v in zip(dates, values.tolist())]}})
        assert len(big) > 40e6
        slow = post(url, big)
        assert slow.status_code == 504 and slow.text == "Request processing time exceeded limit"
        # the timed-out request's work goes on in its thread; a small request may time out too
        # until it is done (the bound is on the client's wait), then the server answers again
        statuses = []
        while not statuses or statuses[-1] == 504 and len(statuses) < 60:
            statuses.append(post(url, body(history())).status_code)
        assert statuses[-1] == 200 and set(statuses) <= {200, 504}
    finally:
        _stop(proc)


def test_requests_write_no_artifact(store, served):
    """Runs after the probes above (pytest keeps file order): the served model's requests,
    refused or answered, changed nothing in the artifact store."""
    assert post(served, body(history())).status_code == 200
    assert snapshot(store["artifacts"]) == served["before"]


# ------------------------------------------------------------------ predict.py's options and output
def test_predict_py_applies_the_repairs_it_suggests(store, tmp_path, caplog):
    """A duplicate and a gap early in the history: refused, with data.duplicates and
    data.regularize in the fix; with them, the forecast equals the clean history's."""
    from forecast.pipelines.predict import run as predict

    clean = history(100)
    broken = pd.concat([clean.iloc[:10], clean.iloc[9:10], clean.iloc[10:]]).drop(index=[20, 21])
    path = tmp_path / "broken.csv"
    broken.to_csv(path, index=False)
    with pytest.raises(DataError) as error:
        predict(predict_cfg(path, tmp_path / "a.csv"))
    assert "data.duplicates=first|last|mean" in str(error.value) and "data.regularize=true" in str(error.value)
    with caplog.at_level("WARNING", logger="forecast.pipelines.predict"):
        repaired = predict(predict_cfg(path, tmp_path / "b.csv", "data.duplicates=first", "data.regularize=true",
                                       "data.fill=interpolate"))
    assert repaired["repairs"] == {"duplicates_dropped": 1, "rows_inserted": 2, "values_filled": 14}
    said = [r.getMessage() for r in caplog.records]
    assert f"{path}: data.duplicates=first dropped 1 row(s) with a repeated timestamp" in said
    assert f"{path}: data.regularize=true inserted 2 missing timestamp(s) at the step 'h'" in said
    expected = load_model(MODEL)[0].predict(clean)
    np.testing.assert_allclose(repaired["forecast"].drop(columns="date").to_numpy(), expected.drop(columns="date").to_numpy(),
                               rtol=1e-12)


def test_predict_py_reads_another_date_column_when_told(store, tmp_path):
    from forecast.pipelines.predict import run as predict

    path = tmp_path / "time.csv"
    history().rename(columns={"date": "time"}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"no date column 'date'; the columns are \['time', .*Fix: set data.date_col"):
        predict(predict_cfg(path, tmp_path / "a.csv"))
    result = predict(predict_cfg(path, tmp_path / "b.csv", "data.date_col=time"))
    written = pd.read_csv(tmp_path / "b.csv")
    assert list(written.columns)[0] == "time" and written["time"].iloc[0] == "2018-06-26 20:00:00"
    assert len(result["forecast"]) == H
    with pytest.raises(ConfigError, match="data.duplicates='all' is not a duplicates policy"):
        predict(predict_cfg(path, tmp_path / "c.csv", "data.date_col=time", "data.duplicates=all"))


def _predict_py(args, cwd, store):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": store["uri"]}
    return subprocess.run([sys.executable, str(REPO / "predict.py"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_predict_py_without_a_model_uri_says_so_in_one_line(store, tmp_path):
    proc = _predict_py([f"data.path={ETTH1}"], tmp_path, store)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == ("error: model_uri is not set. Fix: give it on the command line, e.g. python predict.py "
                                   "model_uri=models:/etth1-dlinear@champion data.path=history.csv.")
    assert list(tmp_path.iterdir()) == []


def test_predict_py_writes_under_outputs_by_default_and_no_artifact(store, tmp_path):
    """From a clean folder: the forecast lands in outputs/predict/<date>/<time>/, nothing in the
    folder itself, nothing in the run's artifacts; a refused file exits 1 with one line."""
    before = snapshot(store["artifacts"])
    proc = _predict_py([f"model_uri={MODEL}", f"data.path={ETTH1}"], tmp_path, store)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert [p.name for p in written] == ["forecast.csv", "forecast.png"]
    assert all(re.fullmatch(r"outputs/predict/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d", str(p.parent)) for p in written)
    assert snapshot(store["artifacts"]) == before

    path = tmp_path / "inf.csv"
    _set(50, "OT", np.inf)(history()).to_csv(path, index=False)
    refused = _predict_py([f"model_uri={MODEL}", f"data.path={path}", "output=refused/f.csv"], tmp_path, store)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.strip() == (f"error: {path}: column 'OT' has infinite values at line 52. Fix: replace them "
                                      "with numbers, or empty those cells and set data.fill=ffill|interpolate.")
    assert not (tmp_path / "refused").exists() and snapshot(store["artifacts"]) == before


# ------------------------------------------------------------------ prediction intervals
def _band_names(outputs, levels):
    return [f"{c}-{side}-{level}" for c in outputs for level in levels for side in ("lo", "hi")]


def test_the_served_model_returns_interval_columns_over_http(store, served):
    """The default run calibrates conformal_error intervals at 80 and 95 on its validation
    windows: every channel gets -lo-/-hi- columns around its forecast, the same as in process."""
    frame = history()
    response = post(served, body(frame))
    assert response.status_code == 200, response.text[:500]
    answer = pd.DataFrame(response.json()["predictions"])
    channels = list(frame.columns.drop("date"))
    assert list(answer.columns) == ["date", *channels, *_band_names(channels, (80, 95))]
    for c in channels:
        lo95, lo80, point, hi80, hi95 = (answer[k].to_numpy() for k in (f"{c}-lo-95", f"{c}-lo-80", c, f"{c}-hi-80", f"{c}-hi-95"))
        assert (lo95 <= lo80).all() and (lo80 < point).all() and (point < hi80).all() and (hi80 <= hi95).all()
    in_process = load_model(MODEL)[0].predict(frame)
    np.testing.assert_array_equal(answer.drop(columns="date").to_numpy(), in_process.drop(columns="date").to_numpy())
    other = post(served, json.dumps({**json.loads(body(frame)), "params": {"levels": [50]}}))
    assert other.status_code == 200, other.text[:500]
    assert list(pd.DataFrame(other.json()["predictions"]).columns) == ["date", *channels, *_band_names(channels, [50])]


@pytest.mark.parametrize("levels", [[0], [100], [150]])
def test_bad_levels_over_http_are_400_with_the_fix(store, served, levels):
    response = post(served, json.dumps({**json.loads(body(history())), "params": {"levels": levels}}))
    assert response.status_code == 400
    assert "params.levels" in response.json()["message"] and "Fix:" in response.json()["message"]


def test_bands_round_trip_through_mlflow(store, tmp_path):
    """The bands a loaded model serves are the stored scores' finite-sample quantiles, worked
    out here from the logged intervals.npz with numpy alone."""
    model, impl = load_model(MODEL)
    assert model.metadata.metadata["intervals"]["method"] == "conformal_error"
    assert model.metadata.metadata["intervals"]["levels"] == [80, 95]
    folder = mlflow.artifacts.download_artifacts(artifact_uri=MODEL, dst_path=str(tmp_path))  # into tmp, not the store
    scores = np.load(Path(folder) / "artifacts" / "intervals.npz")["scores"].astype(np.float64)  # [N, H, C] |y - ŷ|
    n = scores.shape[0]
    answer = model.predict(history())
    outputs = impl.spec.outputs
    for level in (80, 95):
        k = -(-(n + 1) * level // 100)                                       # ⌈(n + 1)·level / 100⌉
        q = np.sort(scores, axis=0)[k - 1]                                   # [H, C]
        for j, c in enumerate(outputs):
            np.testing.assert_allclose(answer[f"{c}-hi-{level}"] - answer[c], q[:, j], rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose(answer[c] - answer[f"{c}-lo-{level}"], q[:, j], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("levels", ["[0]", "[100]", "[150]", "[abc]"])
def test_predict_py_refuses_bad_levels(store, tmp_path, levels):
    from forecast.pipelines.predict import run as predict

    path = tmp_path / "history.csv"
    history().to_csv(path, index=False)
    with pytest.raises(ConfigError, match="levels.*Fix"):
        predict(predict_cfg(path, tmp_path / "out.csv", f"levels={levels}"))
    assert not (tmp_path / "out.csv").exists()


def test_predict_py_writes_interval_columns(store, tmp_path):
    from forecast.pipelines.predict import run as predict

    path = tmp_path / "history.csv"
    history().to_csv(path, index=False)
    out = predict(predict_cfg(path, tmp_path / "out.csv", "levels=[90]"))
    written = pd.read_csv(out["output"])
    channels = list(history().columns.drop("date"))
    assert list(written.columns) == ["date", *channels, *_band_names(channels, [90])]
    assert out["figure"].is_file()


def test_predict_py_adapts_the_levels_on_the_historys_latest_windows(store, tmp_path):
    """aci.windows=3: the last three 24-step windows of a 200-row history are forecast and
    scored; each level's band is then the calibration's at the adapted miscoverage."""
    from forecast.pipelines.predict import run as predict

    path = tmp_path / "history.csv"
    history(200).to_csv(path, index=False)
    plain = predict(predict_cfg(path, tmp_path / "plain.csv"))
    adapted = predict(predict_cfg(path, tmp_path / "aci.csv", "aci.windows=3", "aci.gamma=0.05"))
    assert plain["alphas"] is None and sorted(adapted["alphas"]) == [80, 95]
    for level, alpha in adapted["alphas"].items():
        assert alpha != pytest.approx(1 - level / 100)  # three windows moved it
        width = {k: (r["forecast"]["OT-hi-" + str(level)] - r["forecast"]["OT-lo-" + str(level)]).to_numpy()
                 for k, r in (("plain", plain), ("aci", adapted))}
        if alpha < 1 - level / 100:
            assert (width["aci"] >= width["plain"] - 1e-9).all()
        else:
            assert (width["aci"] <= width["plain"] + 1e-9).all()
