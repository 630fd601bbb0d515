"""Benchmark of the served model (``mlflow models serve``, one worker, loopback): latency and
throughput with 1 and 64 requests in flight, 200 simultaneous requests that must all return the
same correct forecast, and the worker's memory before and after one large request.

    python scripts/bench_serving.py [--out DIR] [--skip-train] [--models dlinear,karma,seasonalnaive]
                                    [--csv benchmarks/serving.csv] [--predict-py]

Each model is trained for one epoch (``trainer.max_epochs=1``: serving latency does not depend on
how well the weights forecast; a debug run could not be registered) on the bundled ETTh1, look-back
96, horizon 96,
in a fresh SQLite store under ``--out``, registered as ``etth1-<model>@champion`` and served with
``OMP_NUM_THREADS=1 mlflow models serve --workers 1 --env-manager local``. The request is the
last 96 rows of ETTh1 (``docs/examples/request.json``'s rows). Per model:

* ``in flight 1``: ``--sequential`` requests one after the other;
* ``in flight 64``: ``--requests`` requests from 64 client threads;
* ``200 at once``: 200 threads released together, each with one request; every answer must be
  HTTP 200 and equal to the in-process forecast (``identical``);
* memory: the worker's resident set (VmRSS) before and after one request of ``--large-rows``
  rows, and its peak (VmHWM).

Results are printed as JSON and written to ``DIR/result.json`` and, with ``--csv``, as rows of
that CSV (rows of the same models replaced). ``--predict-py`` also times three ``predict.py``
runs per model (start-up dominated).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import requests

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
CSV_FIELDS = ["date", "model", "weights", "scenario", "in_flight", "requests", "ok", "identical", "req_per_s",
              "p50_ms", "p95_ms", "rss_before_mb", "rss_after_mb", "peak_mb", "rows", "load_before", "load_after",
              "machine", "command"]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--skip-train", action="store_true", help="reuse the models already registered in --out")
    parser.add_argument("--models", default="dlinear,karma,seasonalnaive")
    parser.add_argument("--sequential", type=int, default=100, help="requests with 1 in flight")
    parser.add_argument("--requests", type=int, default=640, help="requests with 64 in flight")
    parser.add_argument("--at-once", type=int, default=200, help="simultaneous requests of the identity check")
    parser.add_argument("--large-rows", type=int, default=100_000, help="rows of the large request")
    parser.add_argument("--csv", type=Path, default=None, help="write the rows here, e.g. benchmarks/serving.csv")
    parser.add_argument("--predict-py", action="store_true", help="also time predict.py (three runs per model)")
    return parser.parse_args()


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """The processes started by ``pid``, at any depth (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def memory_mb(pid: int) -> tuple[float, float]:
    """``(VmRSS, VmHWM)`` of ``pid`` in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def worker(pid: int) -> int:
    """The serving worker: the largest process under the ``mlflow models serve`` we started
    (the one that loaded torch and the model)."""
    return max(descendants(pid) or [pid], key=lambda p: memory_mb(p)[0])


def train(models, root: Path, env: dict) -> dict:
    times = {}
    for model in models:
        t = time.perf_counter()
        proc = subprocess.run([PY, str(REPO / "train.py"), f"model={model}", "trainer.max_epochs=1", "register=true",
                               "alias=champion", "num_threads=1", "trainer.enable_progress_bar=false",
                               f"hydra.run.dir={root}/train-{model}"], cwd=root, env=env, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"training {model} failed:\n{proc.stderr[-3000:]}")
        times[model] = round(time.perf_counter() - t, 1)
    return times


def request_body(frame: pd.DataFrame) -> bytes:
    return json.dumps({"dataframe_split": {"columns": list(frame.columns), "data": frame.to_numpy().tolist()}}).encode()


def large_history(rows: int) -> pd.DataFrame:
    """``rows`` hourly rows ending where ETTh1 ends, ETTh1's values repeated backwards from its last
    row: a valid long history whose forecast is the 96-row request's."""
    data = pd.read_csv(REPO / "data" / "ETT-small" / "ETTh1.csv")
    values = np.resize(data.drop(columns="date").to_numpy()[::-1], (rows, data.shape[1] - 1))[::-1]
    frame = pd.DataFrame(values, columns=data.columns[1:])
    end = pd.Timestamp(data["date"].iloc[-1])
    frame.insert(0, "date", pd.date_range(end=end, periods=rows, freq="h").strftime("%Y-%m-%d %H:%M:%S"))
    return frame


class Client:
    """Posts one body to the endpoint; one HTTP session per thread (keep-alive, as a client would)."""

    def __init__(self, url: str, body: bytes):
        self.url, self.body, self.local = url, body, threading.local()

    def post(self) -> tuple[float, int, bytes]:
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = requests.Session()
        t = time.perf_counter()
        r = session.post(self.url, data=self.body, headers={"Content-Type": "application/json"}, timeout=300)
        return time.perf_counter() - t, r.status_code, r.content


def timed(client: Client, in_flight: int, n: int) -> dict:
    """``n`` requests with ``in_flight`` at a time: requests/s over the wall time, latency percentiles."""
    t = time.perf_counter()
    with ThreadPoolExecutor(in_flight) as pool:
        results = list(pool.map(lambda _: client.post(), range(n)))
    wall = time.perf_counter() - t
    latency = np.array([r[0] for r in results]) * 1000
    return {"requests": n, "ok": sum(r[1] == 200 for r in results), "req_per_s": round(n / wall, 1),
            "p50_ms": round(float(np.percentile(latency, 50)), 1), "p95_ms": round(float(np.percentile(latency, 95)), 1),
            "answers": {r[2] for r in results if r[1] == 200}}


def at_once(client: Client, n: int) -> dict:
    """``n`` threads, each with its connection open, released together by a barrier."""
    barrier = threading.Barrier(n)

    def one(_):
        client.local.session = requests.Session()
        barrier.wait()
        return client.post()

    t = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    wall = time.perf_counter() - t
    latency = np.array([r[0] for r in results]) * 1000
    return {"requests": n, "ok": sum(r[1] == 200 for r in results), "req_per_s": round(n / wall, 1),
            "p50_ms": round(float(np.percentile(latency, 50)), 1), "p95_ms": round(float(np.percentile(latency, 95)), 1),
            "answers": [r[2] for r in results]}


def same_forecast(answer: bytes, expected: pd.DataFrame) -> bool:
    got = pd.DataFrame(json.loads(answer)["predictions"])
    return (list(pd.to_datetime(got["date"])) == list(expected["date"])
            and np.array_equal(got[expected.columns[1:]].to_numpy(), expected.iloc[:, 1:].to_numpy()))


def serve(model: str, root: Path, env: dict, history: pd.DataFrame, args, expected: pd.DataFrame) -> list[dict]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/invocations"
    t0 = time.perf_counter()
    with open(root / f"serve-{model}.log", "wb") as log:
        proc = subprocess.Popen([PY, "-m", "mlflow", "models", "serve", "-m", f"models:/etth1-{model}@champion",
                                 "--env-manager", "local", "--workers", "1", "-h", "127.0.0.1", "-p", str(port)],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    rows = []
    try:
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/ping", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None:
                sys.exit(f"mlflow models serve of {model} exited:\n{(root / f'serve-{model}.log').read_text()[-3000:]}")
            time.sleep(0.2)
        ready = time.perf_counter() - t0
        client = Client(url, request_body(history))
        first = client.post()
        assert first[1] == 200, first[2][:500]
        common = {"model": model, "weights": "one epoch (latency only, not an accuracy result)", "rows": len(history)}
        load = load_average()
        for in_flight, n in ((1, args.sequential), (64, args.requests)):
            result = timed(client, in_flight, n)
            answers = result.pop("answers")
            rows.append({**common, "scenario": f"in flight {in_flight}", "in_flight": in_flight, **result,
                         "identical": len(answers) == 1 and same_forecast(next(iter(answers)), expected),
                         "load_before": load, "load_after": load_average()})
            load = load_average()
        result = at_once(client, args.at_once)
        answers = result.pop("answers")
        rows.append({**common, "scenario": f"{args.at_once} at once", "in_flight": args.at_once, **result,
                     "identical": len(set(answers)) == 1 and same_forecast(answers[0], expected),
                     "load_before": load, "load_after": load_average()})

        pid = worker(proc.pid)
        before, _ = memory_mb(pid)
        big = Client(url, request_body(large_history(args.large_rows)))
        load = load_average()
        seconds, status, content = big.post()
        after, peak = memory_mb(pid)
        rows.append({**common, "scenario": "one large request", "in_flight": 1, "requests": 1, "ok": int(status == 200),
                     "identical": status == 200 and same_forecast(content, expected), "rows": args.large_rows,
                     "req_per_s": round(1 / seconds, 2), "p50_ms": round(seconds * 1000, 1), "p95_ms": "",
                     "rss_before_mb": round(before), "rss_after_mb": round(after), "peak_mb": round(peak),
                     "load_before": load, "load_after": load_average(), "body_mb": round(len(big.body) / 2**20, 1)})
        rows[0].update(server_ready_s=round(ready, 2), first_request_ms=round(first[0] * 1000, 1))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    return rows


def main():
    args = parse_args()
    models = [m for m in args.models.split(",") if m]
    root = (args.out or Path(tempfile.mkdtemp(prefix="bench-serving-"))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    # the worker imports this checkout's forecast package; one thread, as in production on a shared host
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "FORECAST_DATA_DIR": str(REPO / "data"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
           "PATH": os.pathsep.join([str(Path(PY).parent), os.environ.get("PATH", "")]),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "load_start": load_average(),
           "command": " ".join(["python", "scripts/bench_serving.py", *sys.argv[1:]])}
    if not args.skip_train:
        out["train_s"] = train(models, root, env)

    os.environ.update({k: env[k] for k in ("MLFLOW_TRACKING_URI", "OMP_NUM_THREADS")})
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(REPO))
    from forecast.pipelines.predict import load_model
    from forecast.records import replace_model_rows

    history = pd.read_csv(REPO / "data" / "ETT-small" / "ETTh1.csv").tail(96).reset_index(drop=True)
    rows = []
    for model in models:
        expected = load_model(f"models:/etth1-{model}@champion")[0].predict(history)
        rows += serve(model, root, env, history, args, expected)
        if args.predict_py:
            times = []
            for _ in range(3):
                t = time.perf_counter()
                subprocess.run([PY, str(REPO / "predict.py"), f"model_uri=models:/etth1-{model}@champion",
                                f"data.path={REPO / 'data' / 'ETT-small' / 'ETTh1.csv'}", f"output={root}/predict-{model}.csv"],
                               cwd=root, env=env, check=True, capture_output=True)
                times.append(round(time.perf_counter() - t, 2))
            out[f"predict_py_{model}_s"] = times
    for row in rows:
        row.update(date=out["date"], machine=out["machine"], command=out["command"])
    out["rows"] = rows
    out["load_end"] = load_average()
    print(json.dumps(out, indent=1))
    (root / "result.json").write_text(json.dumps(out, indent=1))
    if args.csv:
        replace_model_rows(args.csv, CSV_FIELDS, rows)


if __name__ == "__main__":
    main()
