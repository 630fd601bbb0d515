"""Our classical baselines against statsforecast on the same ETTh1 test windows, accuracy and time.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/yardstick/yardstick.py --windows 100 \
        --yardstick-python /work/scratch-yardstick/bin/python --out benchmarks/yardstick/etth1_96.csv

statsforecast is a yardstick, never a dependency of this project: it runs in a separate virtual
environment (``python -m venv /work/scratch-yardstick && /work/scratch-yardstick/bin/pip install
statsforecast==2.1.1 pandas numpy``), in a worker process this script starts with that
environment's Python and feeds over a pipe (this same file, ``--worker``). Our side runs here,
through the model files (``conf/model/<name>.yaml``) as ``python train.py model=<name>`` would
build them.

Protocol: ETTh1, features M (7 channels), horizon 96, the literature's split and z-scoring with
the training rows (our datamodule builds the windows; the worker gets the same arrays);
``--windows`` evenly spaced test windows (``np.linspace(0, 2784, n).round()``, the same for every
pair), each channel of each window one univariate series. statsforecast models are fitted on
each window's look-back (its protocol: refit per window). Ours use their configured protocol
(``refit: once`` models estimate on the training split first; that time is counted in theirs).

Timing: one thread each (``OMP_NUM_THREADS=1``, statsforecast called per series, no
``n_jobs``), interleaved: for every chunk of windows ours then the yardstick's, each timed with
``time.perf_counter`` in its own process around the forecast calls only (the pipe transfer is
not counted). statsforecast compiles nothing at run time in 2.1.1, but the first call of each
model is made on one series before timing starts, for both sides alike (ours: a warm-up forward).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import pickle
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HORIZON = 96
PERIOD = 24


# ------------------------------------------------------------------ the worker (yardstick venv)
def _yardstick_model(name: str):
    from statsforecast import models as sf

    return {
        "SeasonalNaive": lambda: sf.SeasonalNaive(season_length=PERIOD),
        "HoltWinters": lambda: sf.HoltWinters(season_length=PERIOD),
        "AutoETS": lambda: sf.AutoETS(season_length=PERIOD),
        "AutoARIMA": lambda: sf.AutoARIMA(season_length=PERIOD, approximation=True),
        "DynamicOptimizedTheta": lambda: sf.DynamicOptimizedTheta(season_length=PERIOD),
    }[name]


def _send(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _receive(stream):
    head = stream.read(8)
    if len(head) < 8:
        return None
    return pickle.loads(stream.read(struct.unpack("<Q", head)[0]))


def worker() -> None:
    """Answer ``(model name, series [N, L])`` with ``(forecast [N, H], seconds)`` until EOF."""
    import statsforecast

    _send(sys.stdout.buffer, {"statsforecast": statsforecast.__version__})
    while (request := _receive(sys.stdin.buffer)) is not None:
        name, series = request
        make = _yardstick_model(name)
        out = np.empty((len(series), HORIZON))
        start = time.perf_counter()
        for i, y in enumerate(series):
            out[i] = make().forecast(y=y, h=HORIZON)["mean"]
        _send(sys.stdout.buffer, (out, time.perf_counter() - start))


# ------------------------------------------------------------------ the driver (project venv)
# (our model file, its look-back) against (statsforecast model, its look-back)
PAIRS = {
    "seasonalnaive": ("seasonalnaive", 96, "SeasonalNaive", 336),
    "holtwinters": ("holtwinters", 336, "HoltWinters", 336),
    "holtwinters-720": ("holtwinters", 720, "HoltWinters", 720),
    "ets": ("ets", 336, "AutoETS", 336),
    "arima": ("arima", 336, "AutoARIMA", 336),
    "theta": ("theta", 336, "DynamicOptimizedTheta", 336),
}


class Yardstick:
    def __init__(self, python: str):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([python, str(Path(__file__).resolve()), "--worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env)
        self.version = _receive(self.proc.stdout)["statsforecast"]

    def forecast(self, name: str, series: np.ndarray) -> tuple[np.ndarray, float]:
        _send(self.proc.stdin, (name, np.ascontiguousarray(series, dtype=np.float64)))
        return _receive(self.proc.stdout)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def ours(model: str, seq_len: int):
    """Our network as ``python train.py model=<model> data.seq_len=<seq_len>`` builds it (one
    worker: no process pool), its training split estimation done, and the data."""
    import torch

    from forecast.config import compose_train
    from forecast.pipelines.train import build_data, build_module

    cfg = compose_train([f"model={model}", "logger=none", f"data.seq_len={seq_len}", f"data.pred_len={HORIZON}"])
    if "workers" in cfg.model:  # in this process, one thread: no pool
        cfg.model.workers, cfg.model.progress = 1, False
    datamodule = build_data(cfg)
    datamodule.setup("test")
    network = build_module(cfg, datamodule).network
    train = datamodule.splits["train"]
    start = time.perf_counter()
    network.fit_training(datamodule.values[train.start : train.end], freq=datamodule.table.freq, scaler=datamodule.scaler)
    fit_seconds = time.perf_counter() - start
    return network, datamodule.datasets["test"], fit_seconds, torch


def run_pair(key: str, windows: int, chunk: int, yardstick: Yardstick) -> dict:
    model, seq_len, yard_name, yard_len = PAIRS[key]
    network, dataset, fit_seconds, torch = ours(model, seq_len)
    picks = np.unique(np.linspace(0, len(dataset) - 1, windows).round().astype(int))
    _, yard_set, _, _ = ours("seasonalnaive", yard_len) if yard_len != seq_len else (None, dataset, None, None)
    warm = dataset.__getitems__([int(picks[0])])
    with torch.no_grad():
        network(warm["x"])  # warm-up, untimed
    yardstick.forecast(yard_name, yard_set.__getitems__([int(picks[0])])["x"][0, :, :1].numpy().T.astype(np.float64))
    ours_seconds = yard_seconds = 0.0
    err = {"ours": [], "yard": []}
    for start in range(0, len(picks), chunk):
        idx = picks[start : start + chunk].tolist()
        batch = dataset.__getitems__(idx)
        t0 = time.perf_counter()
        with torch.no_grad():
            pred = network(batch["x"]).double().numpy()  # [B, H, C]
        ours_seconds += time.perf_counter() - t0
        y = batch["y"].double().numpy()
        x_yard = yard_set.__getitems__(idx)["x"].double().numpy()  # [B, L, C]
        assert np.array_equal(yard_set.__getitems__(idx)["y"].double().numpy(), y)  # the same targets
        b, length, c = x_yard.shape
        out, seconds = yardstick.forecast(yard_name, x_yard.transpose(0, 2, 1).reshape(b * c, length))
        yard_seconds += seconds
        yard_pred = out.reshape(b, c, HORIZON).transpose(0, 2, 1)
        err["ours"].append(pred - y)
        err["yard"].append(yard_pred - y)
    ours_err, yard_err = np.concatenate(err["ours"]), np.concatenate(err["yard"])
    diagnostics = network.diagnostics()
    return {
        "pair": key, "ours": f"{model} (seq_len {seq_len}, refit {getattr(network, 'refit', '-')}"
                             f"{', objective ' + network.objective if hasattr(network, 'objective') else ''})",
        "yardstick": f"statsforecast {yardstick.version} {yard_name} (seq_len {yard_len}, refit per window)",
        "windows": len(picks), "series": int(ours_err.shape[0] * ours_err.shape[2]),
        "ours_mse": f"{np.mean(ours_err ** 2):.4f}", "ours_mae": f"{np.mean(np.abs(ours_err)):.4f}",
        "yard_mse": f"{np.mean(yard_err ** 2):.4f}", "yard_mae": f"{np.mean(np.abs(yard_err)):.4f}",
        "ours_fit_s": f"{fit_seconds:.2f}", "ours_forecast_s": f"{ours_seconds:.2f}", "yard_s": f"{yard_seconds:.2f}",
        "time_ratio": f"{(fit_seconds + ours_seconds) / yard_seconds:.3g}",
        "ours_fallbacks": int(diagnostics.get("fallbacks", 0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=100)
    parser.add_argument("--chunk", type=int, default=10, help="windows per interleaved step")
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--yardstick-python", default="/work/scratch-yardstick/bin/python")
    parser.add_argument("--out", type=Path, default=None, help="append one CSV row per pair")
    args = parser.parse_args()
    os.environ.setdefault("FORECAST_DATA_DIR", str(Path(__file__).resolve().parents[2].parent / "shared" / "data"))
    import torch

    from forecast.records import machine
    from forecast.tracking import shell_join

    torch.set_num_threads(1)
    yardstick = Yardstick(args.yardstick_python)
    command = shell_join(["OMP_NUM_THREADS=1", "python", "benchmarks/yardstick/yardstick.py", *sys.argv[1:]])
    try:
        for key in args.pairs:
            load = os.getloadavg()[0]
            row = run_pair(key, args.windows, args.chunk, yardstick)
            row.update(load_1min=f"{load:.2f}", machine=machine(), date=dt.date.today().isoformat(), command=command)
            print(row, flush=True)
            if args.out:
                new = not args.out.exists()
                with open(args.out, "a", newline="") as fh:
                    writer = csv.DictWriter(fh, fieldnames=list(row), lineterminator="\n")
                    if new:
                        writer.writeheader()
                    writer.writerow(row)
    finally:
        yardstick.close()


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        worker()
    else:
        main()
