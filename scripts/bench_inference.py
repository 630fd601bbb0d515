"""Inference throughput per model family: forecasts per second of the plain PyTorch forward, of the
logged MLflow model (the pyfunc a server runs, called in-process) and of ``predict.py``.

    python scripts/bench_inference.py [--models dlinear,autoformer,etsformer,dpad,karma,seasonalnaive]
                                      [--threads 1] [--windows 256] [--csv benchmarks/inference.csv] [--out DIR]

Each model is trained for one epoch (``trainer.max_epochs=1``: inference time does not depend on
how well the weights forecast, and a debug run's weights are never a benchmark) on the bundled ETTh1 at its model file's look-back and
horizon, and logged to a fresh SQLite store of its own under ``--out``; its logged model
(``runs:/<run id>/model``) is what is loaded. The windows are the last
``--windows`` input windows of ETTh1 (one step apart). Per model, in one process, ``--threads``
torch threads, after one untimed call of each kind:

* ``forward, batch 1``: the network alone on one window (tensors made beforehand, ``no_grad``),
  once per window; ``forward, batch N``: one call on all ``N`` windows;
* ``pyfunc, batch 1``: ``mlflow.pyfunc`` ``predict`` of one window's history (a pandas table of
  ``seq_len`` rows, as a request carries it): validation, scaling, calendar features, the
  forward pass, the inverse scaling and the output table; once per window. The pyfunc takes one
  history per call, so batch 1 is what it serves; ``overhead`` is the plain batch-1 forward's rate
  over the pyfunc's (the cost of pyfunc and pandas around the same forward pass);
* ``predict.py``: ``--cli-runs`` runs of the command line (``python predict.py model_uri=...``,
  a new process each: start-up, loading the model, reading the CSV, the forecast, the CSV and
  PNG it writes): one forecast per run.

``--before REV`` times the pyfunc of this checkout against the same pyfunc code at git revision
``REV`` (a temporary worktree), loading the same logged model: ``--rounds`` rounds, each a fresh
process per side, the two sides alternating (before, after, after, before, ...), each timing
``pyfunc, batch 1`` over the windows and then, one after another, its parts (validating the
request; the forecast: calendar features, scaling, forward pass, output table; the bands); it
prints both figures per round and their ratio, checks that the two forecasts agree (to float32
rounding: the network's code may differ too), and writes no rows (a before/after comparison of
our own code).

The served model over HTTP adds the scoring server and JSON to the pyfunc's figure:
``scripts/bench_serving.py`` measures that. Rows go to ``--csv`` (the rows of the measured models
replaced), with threads, load average before and after, machine, date and command.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
ETTH1 = REPO / "data" / "ETT-small" / "ETTh1.csv"
CSV_FIELDS = ["date", "model", "seq_len", "pred_len", "path", "windows_per_call", "calls", "forecasts_per_s",
              "ms_per_call", "overhead", "threads", "load_before", "load_after", "parameters", "machine", "command"]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="dlinear,autoformer,etsformer,dpad,karma,seasonalnaive")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--windows", type=int, default=256, help="windows forecast (the batch of the batched forward)")
    parser.add_argument("--cli-runs", type=int, default=2, help="predict.py runs per model")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--skip-train", action="store_true", help="reuse the models already registered in --out")
    parser.add_argument("--csv", type=Path, default=None, help="write the rows here, e.g. benchmarks/inference.csv")
    parser.add_argument("--before", default=None, help="a git revision: time its pyfunc against this checkout's")
    parser.add_argument("--rounds", type=int, default=4, help="--before rounds (each side once per round)")
    parser.add_argument("--pyfunc-only", default=None, help=argparse.SUPPRESS)  # a --before side: the model URI
    return parser.parse_args()


def load() -> float:
    return os.getloadavg()[0]


def store(root: Path, model: str) -> str:
    return f"sqlite:///{root}/{model}/mlflow.db"


def train(model: str, root: Path, env: dict) -> None:
    (root / model).mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([PY, str(REPO / "train.py"), f"model={model}", "trainer.max_epochs=1", "num_threads=1",
                           "trainer.enable_progress_bar=false", f"hydra.run.dir={root}/{model}/train"], cwd=root / model,
                          env={**env, "MLFLOW_TRACKING_URI": store(root, model)}, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"training {model} failed:\n{proc.stderr[-3000:]}")


def model_uri(root: Path, model: str) -> str:
    """The logged model of the one run in this model's store."""
    import mlflow

    runs = mlflow.MlflowClient(store(root, model)).search_runs(
        [e.experiment_id for e in mlflow.MlflowClient(store(root, model)).search_experiments()], order_by=["start_time DESC"])
    return f"runs:/{runs[0].info.run_id}/model"


def rate(fn, calls: int, windows: int) -> tuple[float, float]:
    """``(forecasts per second, ms per call)`` of ``calls`` calls of ``fn`` after one untimed call."""
    fn(0)
    start = time.perf_counter()
    for i in range(calls):
        fn(i)
    seconds = time.perf_counter() - start
    return calls * windows / seconds, seconds / calls * 1000


def measure(model: str, root: Path, env: dict, args) -> list[dict]:
    import torch

    from forecast.data.timefeatures import time_features
    from forecast.pipelines.predict import load_model

    uri = model_uri(root, model)
    pyfunc, impl = load_model(uri, store(root, model))
    spec, network = impl.spec, impl.network
    network.eval()
    data = pd.read_csv(ETTH1)
    dates = pd.to_datetime(data[spec.date_col])
    n, L = args.windows, spec.seq_len
    ends = range(len(data) - n + 1, len(data) + 1)  # each window's end (exclusive)
    histories = request_tables(data, L, n)
    cal = spec.calendar_freq or spec.freq
    values = data[spec.columns].to_numpy()
    x = torch.from_numpy(np.stack([impl.scaler.transform(values[e - L:e]) for e in ends]).astype(np.float32))
    x_mark = torch.from_numpy(np.stack([time_features(pd.DatetimeIndex(dates[e - L:e]), cal) for e in ends]))
    y_mark = torch.from_numpy(np.stack([time_features(spec.future_dates(dates[e - 1]), cal) for e in ends]))
    # the pyfunc's answer for a window is the plain forward's, scaled back
    check = pyfunc.predict(histories[-1])[spec.outputs].to_numpy()
    with torch.no_grad():
        plain = network(x[-1:], x_mark[-1:], y_mark[-1:])[0, :, -spec.c_out:].double().numpy()
    target = impl.scaler.select(slice(len(spec.columns) - spec.c_out, None))
    np.testing.assert_allclose(check, target.inverse_transform(plain), rtol=1e-5, atol=1e-5)

    common = {"model": model, "seq_len": L, "pred_len": spec.pred_len, "threads": args.threads,
              "parameters": sum(p.numel() for p in network.parameters())}
    rows = []

    def row(path, windows, calls, fn):
        before = load()
        with torch.no_grad():
            per_s, ms = rate(fn, calls, windows)
        rows.append({**common, "path": path, "windows_per_call": windows, "calls": calls,
                     "forecasts_per_s": f"{per_s:.4g}", "ms_per_call": f"{ms:.4g}", "load_before": f"{before:.2f}",
                     "load_after": f"{load():.2f}"})
        return per_s

    forward_1 = row("forward", 1, n, lambda i: network(x[i:i + 1], x_mark[i:i + 1], y_mark[i:i + 1]))
    row("forward", n, max(3, min(20, int(2000 / n))), lambda i: network(x, x_mark, y_mark))
    pyfunc_1 = row("pyfunc", 1, n, lambda i: pyfunc.predict(histories[i]))
    rows[-1]["overhead"] = f"{forward_1 / pyfunc_1:.2f}"
    times, before = [], load()
    for _ in range(args.cli_runs):
        start = time.perf_counter()
        subprocess.run([PY, str(REPO / "predict.py"), f"model_uri={uri}", f"data.path={ETTH1}",
                        f"output={root}/predict-{model}.csv"], cwd=root, env={**env, "MLFLOW_TRACKING_URI": store(root, model)},
                       check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    seconds = sum(times) / len(times)
    rows.append({**common, "path": "predict.py", "windows_per_call": 1, "calls": len(times),
                 "forecasts_per_s": f"{1 / seconds:.4g}", "ms_per_call": f"{seconds * 1000:.4g}",
                 "overhead": f"{forward_1 * seconds:.0f}", "load_before": f"{before:.2f}", "load_after": f"{load():.2f}"})
    return rows


def request_tables(data: pd.DataFrame, seq_len: int, count: int) -> list[pd.DataFrame]:
    """The last ``count`` input windows of ``data`` (ETTh1) as the tables a request carries."""
    return [data.iloc[e - seq_len:e].reset_index(drop=True) for e in range(len(data) - count + 1, len(data) + 1)]


def pyfunc_side(uri: str, tracking: str, windows: int) -> None:
    """One ``--before`` side, in its own process: ms per pyfunc call and the last forecast (JSON)."""
    import torch

    from forecast.data import problems
    from forecast.pipelines.predict import load_model
    from forecast.serving import input_source

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    pyfunc, impl = load_model(uri, tracking)
    spec, L = impl.spec, impl.spec.seq_len
    tables = request_tables(pd.read_csv(ETTH1), L, windows)
    _, ms = rate(lambda i: pyfunc.predict(tables[i]), len(tables), 1)
    # the pyfunc's parts, one after another on the same windows: validating the request, the
    # forecast (calendar features, scaling, the forward pass, the output table), the bands
    read = [spec.read_frame(t, problems.request(input_source())) for t in tables]
    parts = {"validation": lambda i: spec.read_frame(tables[i], problems.request(input_source())),
             "forecast": lambda i: impl.forecast_with_quantiles(read[i].dates[-L:], read[i].values[-L:])}
    made = [impl.forecast_with_quantiles(r.dates[-L:], r.values[-L:]) for r in read]
    parts["bands"] = lambda i: impl.with_bands(made[i][0], None, None, made[i][1])
    with torch.no_grad():
        split = {name: rate(fn, len(tables), 1)[1] for name, fn in parts.items()}
    last = pyfunc.predict(tables[-1]).drop(columns=[spec.date_col])
    print(json.dumps({"ms": ms, "parts": split, "forecast": last.to_numpy().tolist(), "columns": list(last.columns)}))


def before_after(model: str, root: Path, env: dict, args) -> None:
    """``--before``: the pyfunc at ``args.before`` against this checkout's, alternating processes."""
    from forecast.pipelines.peer import revision_checkout

    uri = model_uri(root, model)
    with revision_checkout(REPO, args.before) as (folder, commit):
        sides = {f"before ({commit[:7]})": folder, "after (this checkout)": REPO}
        times = {name: [] for name in sides}
        answers = {}
        order = list(sides)
        for r in range(args.rounds):
            for name in (order if r % 2 == 0 else order[::-1]):
                side_env = {**env, "PYTHONPATH": os.pathsep.join([str(sides[name]), os.environ.get("PYTHONPATH", "")])}
                proc = subprocess.run([PY, str(Path(__file__).resolve()), "--pyfunc-only", uri, "--windows", str(args.windows)],
                                      cwd=root, env={**side_env, "MLFLOW_TRACKING_URI": store(root, model)},
                                      capture_output=True, text=True)
                if proc.returncode:
                    sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
                got = json.loads(proc.stdout.strip().splitlines()[-1])
                times[name].append(got["ms"])
                answers[name] = got
                split = ", ".join(f"{k} {v:.3f}" for k, v in got["parts"].items())
                print(f"round {r + 1} {name}: {got['ms']:.3f} ms per forecast ({split} ms; load {load():.2f})", flush=True)
    (b, before), (a, after) = times.items()
    if answers[b]["columns"] != answers[a]["columns"]:
        sys.exit(f"the forecasts differ in their columns: {answers[b]['columns']} against {answers[a]['columns']}")
    # float32 networks: a change of the network's code may move the forecast by rounding
    got, want = np.asarray(answers[a]["forecast"]), np.asarray(answers[b]["forecast"])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())
    differ = np.abs(got - want).max() / np.abs(want).max()
    ratios = [x / y for x, y in zip(before, after)]
    print(f"{model}: {b} {np.median(before):.3f} ms, {a} {np.median(after):.3f} ms per forecast (medians of "
          f"{args.rounds}); before/after {np.median(before) / np.median(after):.2f}x (per round "
          f"{', '.join(f'{x:.2f}x' for x in ratios)}); the forecasts agree to {differ:.1e} of their largest value",
          flush=True)


def main():
    args = parse_args()
    if args.pyfunc_only:  # PYTHONPATH puts the side's checkout first
        return pyfunc_side(args.pyfunc_only, os.environ["MLFLOW_TRACKING_URI"], args.windows)
    models = [m for m in args.models.split(",") if m]
    root = (args.out or Path(tempfile.mkdtemp(prefix="bench-inference-"))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "FORECAST_DATA_DIR": str(REPO / "data"),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    os.environ.update({k: env[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO))
    from forecast.records import machine, replace_model_rows

    command = " ".join(["python", "scripts/bench_inference.py", *sys.argv[1:]])
    rows = []
    for model in models:
        if not args.skip_train:
            train(model, root, env)
        if args.before:
            before_after(model, root, env, args)
            continue
        got = measure(model, root, env, args)
        for r in got:
            r.update(date=dt.date.today().isoformat(), machine=machine(), command=command)
            print(json.dumps({k: r[k] for k in ("model", "path", "windows_per_call", "forecasts_per_s", "ms_per_call",
                                                "overhead", "load_before", "load_after") if k in r}), flush=True)
        rows += got
    if args.csv:
        replace_model_rows(args.csv, CSV_FIELDS, rows)


if __name__ == "__main__":
    main()
