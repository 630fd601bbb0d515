"""Benchmark: cold-start latency of ``predict.py`` and of HTTP forecast requests
(``mlflow models serve``) for ETTh1 DLinear and KARMA, and the largest difference of both
against the in-process pyfunc prediction.

    python scripts/bench_serving.py [--out DIR] [--skip-train]

Trains a ``trainer=debug`` DLinear and KARMA (latency does not depend on training quality) in a
fresh SQLite store under ``--out`` (default: a temporary folder), registers each as
``etth1-<model>@champion``, runs ``predict.py`` three times per model, starts one
``mlflow models serve --env-manager local`` per model (time to ``/ping``, the first request, the
median of 20 more), and prints a JSON object (also written to ``DIR/result.json``).
"""
import argparse, json, os, signal, socket, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import requests

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--out", type=Path, default=None)
parser.add_argument("--skip-train", action="store_true", help="reuse the models already registered in --out")
args = parser.parse_args()
ROOT = (args.out or Path(tempfile.mkdtemp(prefix="bench-serving-"))).resolve(); ROOT.mkdir(parents=True, exist_ok=True)
REPO = Path(__file__).resolve().parents[1]; PY = sys.executable
DATA_DIR = Path(os.environ.get("FORECAST_DATA_DIR", REPO / "data")).resolve()
DATA = str(DATA_DIR / "ETT-small" / "ETTh1.csv")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "FORECAST_DATA_DIR": str(DATA_DIR),
       "MLFLOW_TRACKING_URI": f"sqlite:///{ROOT}/mlflow.db"}
out = {"date": time.strftime("%Y-%m-%d %H:%M"), "uptime_start": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}

def sh(args, **kw):
    t = time.perf_counter(); p = subprocess.run(args, env=ENV, capture_output=True, text=True, **kw); dt = time.perf_counter() - t
    assert p.returncode == 0, p.stderr[-3000:]
    return dt, p

if not args.skip_train:
    for model in ("dlinear", "karma"):
        dt, _ = sh([PY, str(REPO / "train.py"), f"model={model}", "trainer=debug", "register=true", "alias=champion",
                    "num_threads=1", "trainer.enable_progress_bar=false", f"hydra.run.dir={ROOT}/train-{model}"], cwd=ROOT)
        out[f"train_{model}_s"] = round(dt, 1)

for model in ("dlinear", "karma"):
    times = []
    for i in range(3):
        dt, _ = sh([PY, str(REPO / "predict.py"), f"model_uri=models:/etth1-{model}@champion", f"data.path={DATA}",
                    f"output={ROOT}/predict-{model}.csv"], cwd=ROOT)
        times.append(dt)
    out[f"predict_py_{model}_s"] = [round(t, 2) for t in times]

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

import pandas as pd
history = pd.read_csv(DATA).tail(96)
body = {"dataframe_split": {"columns": list(history.columns), "data": history.to_numpy().tolist()}}
for model in ("dlinear", "karma"):
    port = free_port()
    t0 = time.perf_counter()
    with open(ROOT / f"serve-{model}.log", "wb") as fh:
        proc = subprocess.Popen([PY, "-m", "mlflow", "models", "serve", "-m", f"models:/etth1-{model}@champion", "--env-manager",
                                 "local", "-h", "127.0.0.1", "-p", str(port)], env=ENV, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/ping", timeout=1).status_code == 200: break
            except requests.RequestException: pass
            assert proc.poll() is None; time.sleep(0.1)
        ready = time.perf_counter() - t0
        t = time.perf_counter(); r = requests.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=60); first = time.perf_counter() - t
        assert r.status_code == 200, r.text[:500]
        served = pd.DataFrame(r.json()["predictions"])
        warm = []
        for _ in range(20):
            t = time.perf_counter(); requests.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=60); warm.append(time.perf_counter() - t)
        out[f"serve_{model}"] = {"server_ready_s": round(ready, 2), "first_request_ms": round(first * 1000, 1),
                                 "warm_request_median_ms": round(statistics.median(warm) * 1000, 1)}
        served.to_csv(ROOT / f"served-{model}.csv", index=False)
    finally:
        proc.send_signal(signal.SIGTERM); proc.wait(30)

# numbers: predict.py output and HTTP answer against the in-process pyfunc
import mlflow, numpy as np, torch
torch.set_num_threads(1)
mlflow.set_tracking_uri(ENV["MLFLOW_TRACKING_URI"])
for model in ("dlinear", "karma"):
    inproc = mlflow.pyfunc.load_model(f"models:/etth1-{model}@champion").predict(history)
    cols = [c for c in inproc.columns if c != "date"]
    a = pd.read_csv(ROOT / f"predict-{model}.csv"); b = pd.read_csv(ROOT / f"served-{model}.csv")
    out[f"max_abs_diff_{model}"] = {"predict_py": float(np.abs(a[cols].to_numpy() - inproc[cols].to_numpy()).max()),
                                    "http": float(np.abs(b[cols].to_numpy() - inproc[cols].to_numpy()).max())}
out["uptime_end"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
print(json.dumps(out, indent=1))
(ROOT / "result.json").write_text(json.dumps(out, indent=1))
