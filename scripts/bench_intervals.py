"""Measure the prediction intervals of one training run and record a row in ``benchmarks/intervals.csv``.

    PYTHONPATH=. python scripts/bench_intervals.py [--csv benchmarks/intervals.csv] [--notes ...] -- \
        experiment=dlinear_etth1_96 intervals.levels=[80,95]

Runs ``python train.py <overrides> num_threads=1 trainer.enable_progress_bar=false log_model=false``
(``OMP_NUM_THREADS=1``; the MLflow store of ``MLFLOW_TRACKING_URI``, default ``sqlite:///mlflow.db``
in the working directory), samples the 1-minute load average every 30 s while it runs, and
appends the run's interval metrics on every test window (coverage, width, Winkler and MSIS per
level, wQL), its point MSE, the calibration windows, the wall time, the command, the machine,
the load and the date. ``--notes`` goes into the row.
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

LEVELS = (80, 95)
COLUMNS = ["model", "dataset", "features", "seq_len", "pred_len", "method", "calibration", "calibration_windows", "test_windows",
           *[f"{k}_{level}" for level in LEVELS for k in ("coverage", "width", "winkler", "msis")], "wql", "mse", "mae",
           "mae_orig", "calibration_mae_orig", "seconds", "threads", "load_1min", "notes", "command", "machine", "date"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", default=str(REPO / "benchmarks" / "intervals.csv"))
    parser.add_argument("--notes", default="")
    parser.add_argument("--render", action="store_true", help="print the CSV's rows as the markdown table of docs/intervals.md")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.render:
        print(render(Path(args.csv)))
        return

    import torch

    from forecast import records, tracking

    torch.set_num_threads(1)  # records.machine() says the threads the run uses

    uri = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": uri,
           "PYTHONPATH": str(REPO)}
    tail = ["num_threads=1", "trainer.enable_progress_bar=false", "log_model=false"]
    command = ["python", "train.py", *args.overrides, *tail]
    loads, done = [os.getloadavg()[0]], threading.Event()

    def sample():
        while not done.wait(30):
            loads.append(os.getloadavg()[0])

    threading.Thread(target=sample, daemon=True).start()
    started_ms = int(time.time() * 1000)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, str(REPO / "train.py"), *args.overrides, *tail], env=env)
    wall = time.perf_counter() - started
    done.set()
    if result.returncode:
        sys.exit(f"the run failed (exit status {result.returncode}); nothing recorded")

    client = tracking.client(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, f"attributes.start_time >= {started_ms}",
                              order_by=["attributes.start_time DESC"], max_results=1)
    run = runs[0]
    tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
    load = f"{min(loads):.1f}-{max(loads):.1f} (mean {sum(loads) / len(loads):.1f})"

    def metric(key, digits=4):
        value = metrics.get(f"test/{key}")
        return "" if value is None else f"{value:.{digits}f}"

    row = {"model": tags["model"], "dataset": tags["dataset"], "features": tags["features"], "seq_len": tags["seq_len"],
           "pred_len": tags["horizon"], "method": params.get("intervals/method", params.get("intervals.method", "")),
           "calibration": "" if params.get("intervals/method") == "native" else params.get("intervals/calibration", "val"),
           "calibration_windows": metric("calibration_windows", 0), "test_windows": metric("windows", 0),
           **{f"{k}_{level}": metric(f"{k}_{level}") for level in LEVELS for k in ("coverage", "width", "winkler", "msis")},
           "wql": metric("wql"), "mse": metric("mse"), "mae": metric("mae"), "mae_orig": metric("mae_orig"),
           "calibration_mae_orig": metric("calibration_mae_orig"), "seconds": f"{wall:.0f}", "threads": "1",
           "load_1min": load, "notes": args.notes, "command": tracking.shell_join(command), "machine": records.machine(),
           "date": dt.date.today().isoformat()}
    records.append_row(Path(args.csv), COLUMNS, row)
    print({k: row[k] for k in ("model", "pred_len", "method", "coverage_80", "coverage_95", "msis_95", "wql", "seconds")})


def render(path: Path) -> str:
    """The rows of ``path`` as a markdown table: coverage in percent, widths and MSIS as recorded."""
    import pandas as pd

    rows = pd.read_csv(path)
    lines = ["| model | features | pred_len | method | calibration | coverage 80 | width 80 | MSIS 80 | coverage 95 | width 95 "
             "| MSIS 95 | wQL | test MAE | calibration MAE | load |", "|" + "---|" * 15]
    for r in rows.itertuples():
        cal = "" if pd.isna(r.calibration_mae_orig) else f"{r.calibration_mae_orig:.3f}"
        mae = "" if pd.isna(r.mae_orig) else f"{r.mae_orig:.3f}"
        wql = "" if pd.isna(r.wql) else f"{r.wql:.4f}"
        calibration = "" if pd.isna(r.calibration) else f"{r.calibration} ({r.calibration_windows:.0f})"
        lines.append(f"| {r.model} | {r.features} | {r.pred_len} | {r.method} | {calibration} | {100 * r.coverage_80:.1f} % | {r.width_80:.2f} "
                     f"| {r.msis_80:.2f} | {100 * r.coverage_95:.1f} % | {r.width_95:.2f} | {r.msis_95:.2f} | {wql} "
                     f"| {mae} | {cal} | {r.load_1min.split(' ')[0]} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
