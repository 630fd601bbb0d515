"""Time a backtest and record one row per model in ``benchmarks/backtest.csv``.

    PYTHONPATH=. python scripts/bench_backtest.py [--csv benchmarks/backtest.csv] -- \
        'models=[dlinear_etth1_96,seasonalnaive]' backtest.windows=12 backtest.refit=4

Runs ``python backtest.py <overrides> num_threads=1`` (``OMP_NUM_THREADS=1``; the MLflow store of
``MLFLOW_TRACKING_URI``, default ``sqlite:///mlflow.db`` in the working directory), samples the
1-minute load average every 30 s while it runs, and appends, for each model's backtest run that
the command made (tag ``kind=backtest``): its backtest scores, its wall time (``backtest/seconds``:
every refit's training and forecasts, from the model's first refit to its scores), the epochs each
refit trained, the command, the machine, the load and the date. ``--notes`` goes into every row.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

COLUMNS = ["model", "experiment", "dataset", "features", "seq_len", "pred_len", "windows", "step", "refit", "cutoffs",
           "mse", "mae", "mae_orig", "rmse_orig", "refits", "epochs_run", "seconds", "threads", "load_1min",
           "notes", "command", "machine", "date"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", default=str(REPO / "benchmarks" / "backtest.csv"))
    parser.add_argument("--notes", default="")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    import torch

    from forecast import records, tracking

    torch.set_num_threads(1)  # records.machine() says the threads the backtest runs with

    uri = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": uri,
           "PYTHONPATH": str(REPO)}
    command = ["python", "backtest.py", *args.overrides, "num_threads=1", "trainer.enable_progress_bar=false"]
    loads, done = [os.getloadavg()[0]], threading.Event()

    def sample():
        while not done.wait(30):
            loads.append(os.getloadavg()[0])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started_ms = int(time.time() * 1000)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, str(REPO / "backtest.py"), *command[2:]], env=env)
    wall = time.perf_counter() - started
    done.set()
    if result.returncode:
        sys.exit(f"the backtest failed (exit status {result.returncode}); nothing recorded")

    client = tracking.client(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, f"tags.kind = 'backtest' and attributes.start_time >= {started_ms}")
    load = f"{min(loads):.1f}-{max(loads):.1f} (mean {sum(loads) / len(loads):.1f})"
    for run in sorted(runs, key=lambda r: r.info.start_time):
        tags, metrics = run.data.tags, run.data.metrics
        children = client.search_runs([run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
        epochs = [str(int(c.data.metrics["epoch"]) + 1) if "epoch" in c.data.metrics else "0"
                  for c in sorted(children, key=lambda c: int(c.data.tags.get("refit_index", 0)))]
        records.append_row(Path(args.csv), COLUMNS, {
            "model": tags["model"], "experiment": tags.get("experiment", "none"), "dataset": tags["dataset"],
            "features": tags["features"], "seq_len": tags["seq_len"], "pred_len": tags["horizon"],
            "windows": tags["windows"], "step": tags["step"], "refit": tags["backtest_refit"], "cutoffs": tags["cutoffs"],
            **{k: f"{metrics[f'backtest/{k}']:.4f}" for k in ("mse", "mae", "mae_orig", "rmse_orig")},
            "refits": tags["refits"], "epochs_run": ";".join(epochs), "seconds": f"{metrics['backtest/seconds']:.1f}",
            "threads": "1", "load_1min": load, "notes": args.notes, "command": tracking.shell_join(command),
            "machine": records.machine(),
            "date": dt.date.today().isoformat(),
        })
        print(f"{tags['model']}: backtest mse {metrics['backtest/mse']:.4f} in {metrics['backtest/seconds']:.0f} s "
              f"(refits {tags['refits']}, epochs {';'.join(epochs)})")
    print(f"whole command {wall:.0f} s, load {load}; rows appended to {args.csv}")


if __name__ == "__main__":
    main()
