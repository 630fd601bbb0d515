"""The cost of a classical backtest against statsforecast's ``cross_validation`` on the same cutoffs.

    PYTHONPATH=. OMP_NUM_THREADS=1 python scripts/yardstick_backtest.py \
        --yardstick-python <venv with statsforecast>/bin/python --csv benchmarks/backtest_yardstick.csv

statsforecast is a yardstick, never a dependency of this project: it runs in a separate virtual
environment (``python -m venv <dir> && <dir>/bin/pip install statsforecast==2.1.1 pandas numpy``),
in a worker process this script starts with that environment's Python (this same file,
``--worker``) and feeds over a pipe.

Protocol: ETTh1, features M (7 channels), horizon 96, 12 cutoffs 96 rows apart from the test
split's border (rows 11520, 11616, …, 12576; neuralforecast's ``cutoff`` 2017-10-23 23:00, …),
each channel a univariate series. Ours: ``forecast.backtest`` (the program of ``backtest.py``,
``logger=none``: no MLflow) of the model file, with ``model.workers=1``. statsforecast:
``StatsForecast(models=[…], freq="h", n_jobs=1).cross_validation(h=96, step_size=96, n_windows=12,
refit=…)`` on the rows up to the last window's end, so that its cutoffs are ours (checked).
Pairs, with the same refit cadence on both sides (``refit=false`` ↔ ``refit=False``: parameters
once on the rows before the first cutoff, later cutoffs filtered forward; ``refit=4`` ↔
``refit=4``):

* ``seasonalnaive`` ↔ ``SeasonalNaive(season_length=24)``;
* ``ets`` (additive damped trend and season, parameters for the 96-step error of training
  windows, look-back 336) ↔ ``AutoETS(season_length=24, model="AAA", damped=True)`` (maximum
  likelihood on every row before the cutoff).

Timing: one thread each (``OMP_NUM_THREADS=1``), wall time of the whole call on each side (ours
includes composing the config, reading and validating the file, and the estimations; theirs the
``cross_validation`` call on a DataFrame already built), interleaved per pair (ours first in
odd rounds, theirs first in even ones). Accuracy: MSE of both on the same rows, z-scored with
the per-channel standard deviation of the training split (rows before 8640): for ``refit=false``
this is our ``backtest/mse``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import pickle
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
HORIZON, STEP, WINDOWS, FIRST, TRAIN_END = 96, 96, 12, 11520, 8640
PAIRS = {"seasonalnaive": "SeasonalNaive", "ets": "AutoETS"}
COLUMNS = ["model", "yardstick", "refit", "windows", "ours_seconds", "yardstick_seconds", "ratio", "ours_mse",
           "yardstick_mse", "round", "threads", "load_1min", "command", "machine", "date"]


# ------------------------------------------------------------------ the worker (yardstick venv)
def _send(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _receive(stream):
    head = stream.read(8)
    if not head:
        return None
    return pickle.loads(stream.read(struct.unpack("<Q", head)[0]))


def worker() -> None:
    import pandas as pd
    from statsforecast import StatsForecast
    from statsforecast import models as sf

    make = {"SeasonalNaive": lambda: sf.SeasonalNaive(season_length=24),
            "AutoETS": lambda: sf.AutoETS(season_length=24, model="AAA", damped=True)}
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while (job := _receive(stdin)) is not None:
        frame = pd.DataFrame({"unique_id": job["ids"], "ds": pd.to_datetime(job["ds"]), "y": job["y"]})
        started = time.perf_counter()
        model = StatsForecast(models=[make[job["model"]]()], freq="h", n_jobs=1)
        cv = model.cross_validation(df=frame, h=HORIZON, step_size=STEP, n_windows=WINDOWS, refit=job["refit"])
        seconds = time.perf_counter() - started
        cv = cv.sort_values(["unique_id", "cutoff", "ds"])
        _send(stdout, {"seconds": seconds, "unique_id": cv["unique_id"].astype(str).to_numpy(),
                       "ds": cv["ds"].to_numpy(), "cutoff": cv["cutoff"].to_numpy(),
                       "pred": cv[job["model"]].to_numpy(dtype=np.float64)})


# ------------------------------------------------------------------ ours and the comparison
def ours(model: str, refit) -> tuple[float, "pd.DataFrame"]:
    from forecast import api

    overrides = [f"model={model}", "data=etth1", "logger=none", "num_threads=1", "trainer.enable_progress_bar=false"]
    if model == "ets":
        overrides += ["model.workers=1", "model.progress=false"]
    started = time.perf_counter()
    table = api.backtest(*overrides, windows=WINDOWS, refit=refit, start="test")
    return time.perf_counter() - started, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--yardstick-python", required=True)
    parser.add_argument("--csv", default=str(REPO / "benchmarks" / "backtest_yardstick.csv"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--models", default="seasonalnaive,ets")
    parser.add_argument("--refits", default="false,4")
    args = parser.parse_args()

    import pandas as pd
    import torch

    from forecast import records, tracking
    from forecast.data.sources import load_table

    torch.set_num_threads(1)
    os.environ.setdefault("FORECAST_DATA_DIR", str(REPO / "data"))
    table = load_table(Path(os.environ["FORECAST_DATA_DIR"]) / "ETT-small" / "ETTh1.csv", target="OT", freq="h")
    end = FIRST + (WINDOWS - 1) * STEP + HORIZON
    values = table.values[:end]
    std = pd.Series(table.values[:TRAIN_END].std(axis=0), index=table.columns)
    ids = np.repeat(np.asarray(table.columns, dtype=object), end)
    ds = np.tile(table.dates[:end].values, len(table.columns))
    y = values.T.reshape(-1)

    proc = subprocess.Popen([args.yardstick_python, __file__, "--worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    command = tracking.shell_join(["python", "scripts/yardstick_backtest.py", *sys.argv[1:]])
    for model in args.models.split(","):
        for refit_text in args.refits.split(","):
            refit = False if refit_text == "false" else int(refit_text)
            for round_ in range(1, args.rounds + 1):
                load = os.getloadavg()[0]
                timings = {}
                for side in (("ours", "theirs") if round_ % 2 else ("theirs", "ours")):
                    if side == "ours":
                        timings["ours"], mine = ours(model, refit)
                    else:
                        _send(proc.stdin, {"model": PAIRS[model], "refit": refit, "ids": ids, "ds": ds, "y": y})
                        theirs = _receive(proc.stdout)
                        timings["theirs"] = theirs["seconds"]
                frame = pd.DataFrame({"series": theirs["unique_id"], "ds": theirs["ds"], "cutoff": theirs["cutoff"],
                                      "theirs": theirs["pred"]})
                both = mine.merge(frame, on=["series", "ds", "cutoff"], how="outer", indicator=True)
                if not (both["_merge"] == "both").all() or len(both) != len(mine):
                    raise SystemExit(f"{model}: the cutoffs or steps differ between the two sides")
                scale = both["series"].map(std).to_numpy()
                mse = {k: float(np.mean(((both[c] - both["y"]) / scale) ** 2)) for k, c in (("ours", model), ("theirs", "theirs"))}
                row = {"model": model, "yardstick": PAIRS[model], "refit": refit_text, "windows": WINDOWS,
                       "ours_seconds": f"{timings['ours']:.2f}", "yardstick_seconds": f"{timings['theirs']:.2f}",
                       "ratio": f"{timings['ours'] / timings['theirs']:.3f}", "ours_mse": f"{mse['ours']:.4f}",
                       "yardstick_mse": f"{mse['theirs']:.4f}", "round": round_, "threads": 1,
                       "load_1min": f"{load:.1f}-{os.getloadavg()[0]:.1f}", "command": command,
                       "machine": records.machine(), "date": dt.date.today().isoformat()}
                records.append_row(Path(args.csv), COLUMNS, row)
                print(f"{model} refit={refit_text} round {round_}: ours {timings['ours']:.1f} s (MSE {mse['ours']:.4f}), "
                      f"statsforecast {PAIRS[model]} {timings['theirs']:.1f} s (MSE {mse['theirs']:.4f}): "
                      f"ratio {timings['ours'] / timings['theirs']:.2f}", flush=True)
    proc.stdin.close()
    proc.wait()


if __name__ == "__main__":
    if "--worker" in sys.argv:
        worker()
    else:
        main()
