"""The program behind ``python scripts/retrain.py``: retrain a registered model on the newest data
and let it serve only if it beats the model serving now (champion/challenger).

One retrain of the registered model ``name`` from ``source``:

1. take the lock of ``name`` (an OS file lock, released by the kernel when the process ends,
   however it ends, so a crash never leaves it held);
2. snapshot the source (a file that grows, or a directory of dated files joined in name order)
   and validate it with the data layer; a failure logs a FAILED ``retrain`` run with the reason,
   exits non-zero and changes nothing else;
3. stop, successfully, when the data is the same as at the last finished retrain (unless
   ``force``);
4. train a challenger with the champion's logged config (or the ``train`` overrides), from
   scratch or from the champion's weights (``warm_start``), on every row before the evaluation
   windows;
5. forecast the evaluation windows, the last ``eval_windows`` horizons of the data (rolling
   origin), with both models, and score them on the original scale and z-scored;
6. register the challenger as a new version; point the ``champion`` alias at it only if it is
   better by at least ``min_improvement`` (relative), else tag it ``rejected``;
7. log the ``retrain`` run: both scores, the decision, the data lineage and the versions.

Moving the alias is the last write, so a failure anywhere before it leaves the champion serving.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import logging
import os
import shutil
import signal
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from forecast import plots, tracking  # plots sets the Agg backend before pyplot is used
from forecast.config import compose_train
from forecast.data.sources import TimeSeriesTable, _read_frame, file_sha256, load_table
from forecast.errors import ConfigError, DataError, ForecastError
from forecast.metrics import ForecastMetrics

import matplotlib.pyplot as plt  # noqa: E402  isort: skip

log = logging.getLogger(__name__)

EXIT_BUSY = 75            # EX_TEMPFAIL: another retrain of the same name holds the lock; try later
METRICS = ("mse", "mae", "mae_orig", "rmse_orig")
DECIDED = ("first", "promoted", "rejected")
KEEP_FOLDERS = 3          # working folders (snapshot, training file, checkpoints) kept per name


class RetrainBusy(ForecastError):
    """Another retrain of the same model name holds its lock."""

    label = "busy"
    exit_code = EXIT_BUSY


# ------------------------------------------------------------------ termination
_stop_signal: int | None = None


def request_stop(signum: int, frame=None) -> None:
    """The SIGTERM handler of ``scripts/retrain.py``: remember the signal and return.

    The retrain stops at its next safe point (:func:`check_stop`: between its steps, between
    batches while the challenger trains). An exception raised from the handler itself would land
    wherever the main thread happens to be, in the middle of a tracking-store write included,
    which leaves the SQL session unusable and the retrain run RUNNING forever."""
    global _stop_signal
    _stop_signal = signum
    log.warning("%s received: the retrain stops at its next safe point", signal.Signals(signum).name)


def check_stop() -> None:
    """Raise ``SystemExit(128 + signal)`` if a stop was requested (the shell's status for a
    process ended by that signal)."""
    if _stop_signal is not None:
        raise SystemExit(128 + _stop_signal)


class StopOnRequest(pl.Callback):
    """Ends the challenger's training or testing at the next batch once a stop is requested
    (Lightning marks the training run FAILED on the way out)."""

    def on_fit_start(self, trainer, pl_module):
        check_stop()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        check_stop()

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        check_stop()

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        check_stop()


# ------------------------------------------------------------------ lock
@contextmanager
def retrain_lock(path: Path, name: str):
    """Hold the lock of ``name`` for the block, or raise :class:`RetrainBusy` at once.

    ``flock`` locks belong to the open file: the kernel drops them when the holder exits or is
    killed, so a crashed retrain cannot block the next one. The file says who holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "holder unknown"
        handle.close()
        raise RetrainBusy(f"another retrain of '{name}' is running ({holder}; lock {path}). Fix: let it finish; "
                          "this run changed nothing. The lock is released when that process ends, even by a crash.") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {dt.datetime.now().isoformat(timespec='seconds')}")
        handle.flush()
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


# ------------------------------------------------------------------ data
def snapshot(source: Path, pattern: str, folder: Path) -> tuple[Path, list[dict]]:
    """Freeze the source into ``folder`` (a writer may append while we train): a copy of the file,
    or the dated files of a directory joined in name order. Returns the snapshot and the source
    files with their SHA-256."""
    folder.mkdir(parents=True, exist_ok=True)
    if not source.exists():
        raise DataError(f"source={source}: no such file or directory (resolved to {source.resolve()}). "
                        "Fix: point source at the growing data file or at the directory of dated files.")
    if source.is_file():
        target = folder / source.name
        shutil.copyfile(source, target)
        return target, [{"path": str(source), "sha256": file_sha256(target)}]
    files = sorted(p for p in source.glob(pattern) if p.is_file())
    if not files:
        raise DataError(f"source={source}: no files match '{pattern}'. Fix: put the dated files "
                        "(e.g. 2026-11-27.csv) there, or set pattern.")
    frames = []
    for path in files:
        frame = _read_frame(path)
        if frames and list(frame.columns) != list(frames[0].columns):
            raise DataError(f"{path}: its columns {list(frame.columns)} differ from those of {files[0]} "
                            f"{list(frames[0].columns)}. Fix: give every dated file the same columns in the same order.")
        frames.append(frame)
    target = folder / f"{source.name}.csv"
    pd.concat(frames, ignore_index=True).to_csv(target, index=False)
    return target, [{"path": str(p), "sha256": file_sha256(p)} for p in files]


def rolling_origins(n_rows: int, seq_len: int, pred_len: int, windows: int) -> list[int]:
    """The first rows of the last ``windows`` horizons of the series (the evaluation windows);
    the challenger trains on the rows before the first of them."""
    if windows < 1:
        raise ConfigError(f"eval_windows={windows} must be at least 1.")
    cut = n_rows - windows * pred_len
    if cut < seq_len:
        raise DataError(f"the data has {n_rows:,} rows; {windows} evaluation windows of {pred_len} rows after a "
                        f"look-back of {seq_len} need at least {seq_len + windows * pred_len:,}. Fix: wait for more "
                        "data, or lower eval_windows.")
    return [cut + k * pred_len for k in range(windows)]


def write_rows(table: TimeSeriesTable, end: int, path: Path, date_col: str) -> Path:
    """The validated rows ``[0, end)`` as a wide CSV (the challenger's training file)."""
    frame = pd.DataFrame(table.values[:end], columns=table.columns)
    frame.insert(0, date_col, table.dates[:end])
    frame.to_csv(path, index=False)
    return path


# ------------------------------------------------------------------ models
def champion_version(client, name: str, alias: str):
    """The model version ``alias`` points at, or None when ``name`` has no such alias yet."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def training_config(cfg: DictConfig, champion) -> DictConfig:
    """The challenger's config: the champion's logged one (``use_champion_config``) or the one
    ``train`` composes, with ``overrides`` on top."""
    if champion is not None and cfg.use_champion_config:
        train_cfg = OmegaConf.create(OmegaConf.to_container(champion.cfg, resolve=True))
    elif cfg.train:
        train_cfg = compose_train(list(cfg.train))  # its ${hydra:} checkpoint folder is replaced below
    else:
        raise ConfigError(f"'{cfg.name}' has no '{cfg.alias}' yet, so there is no config to retrain with. Fix: give "
                          "the first model's train.py overrides, e.g. train='[model=dlinear,data=csv,data.target=OT]'.")
    OmegaConf.set_struct(train_cfg, False)
    if not sys.stdout.isatty():  # cron, systemd and log files: no progress bars
        train_cfg.trainer.enable_progress_bar = False
    for item in cfg.overrides:
        key, sep, value = str(item).partition("=")
        if not sep:
            raise ConfigError(f"overrides: '{item}' is not key=value. Fix: write e.g. trainer.max_epochs=5.")
        OmegaConf.update(train_cfg, key.strip(), OmegaConf.from_dotlist([f"v={value}"]).v, force_add=True)
    if not train_cfg.get("logger") or "_target_" not in train_cfg.logger:
        raise ConfigError("the challenger's config has no MLflow logger (logger=none), so its model could not be "
                          "registered. Fix: drop logger=none from train/overrides.")
    return train_cfg


def forecast_windows(model, table: TimeSeriesTable, origins: list[int], outputs: list[str]) -> np.ndarray:
    """``[W, H, len(outputs)]``: the model's forecasts from each origin, in the data's units."""
    preds = []
    for origin in origins:
        history = dataclasses.replace(table, dates=table.dates[:origin], values=table.values[:origin])
        dates, values = model.spec.check_table(history, f"{table.path} (rows before {table.dates[origin]})")
        preds.append(model.forecast(dates, values)[outputs].to_numpy(dtype=np.float64))
    return np.stack(preds)


def score(pred: np.ndarray, actual: np.ndarray, std: np.ndarray) -> dict[str, float]:
    """The test metrics of ``ForecastMetrics`` over every window, step and channel: z-scored
    (``mse``, ``mae``, with the same per-channel ``std`` for every model) and in the data's units
    (``mae_orig``, ``rmse_orig``)."""
    metric = ForecastMetrics(std=std, c_out=len(std))  # mean 0: the errors do not depend on it
    metric.update(torch.from_numpy(pred / std), torch.from_numpy(actual / std))
    return {k: float(v) for k, v in metric.compute().items() if k in METRICS}


def decide(champion: dict | None, challenger: dict, metric: str, min_improvement: float) -> tuple[str, float]:
    """``("first" | "promoted" | "rejected", relative improvement of the challenger)``."""
    if champion is None:
        return "first", float("nan")
    old, new = champion[metric], challenger[metric]
    if not np.isfinite(new):
        return "rejected", float("-inf")
    improvement = (old - new) / old if old > 0 else (0.0 if new == old else float("-inf"))
    # strictly better, and by at least min_improvement: a tie (a deterministic baseline refitted on
    # the same data) keeps the champion rather than churning the alias
    better = improvement > 0 and improvement >= min_improvement
    return ("promoted" if better else "rejected"), float(improvement)


# ------------------------------------------------------------------ the retrain run
class RetrainRun:
    """The ``retrain`` run of one attempt, created when there is something to record."""

    def __init__(self, client, experiment_name: str, name: str, params: dict):
        self.client, self.name, self.params = client, name, params
        self.experiment_id = tracking.experiment_id(client, experiment_name)
        self.run_id: str | None = None

    def start(self, tags: dict) -> str:
        tags = {"kind": "retrain", "retrain_of": self.name, **tracking.code_tags(),
                "mlflow.runName": f"retrain {self.name}", **{k: str(v) for k, v in tags.items()}}
        self.run_id = self.client.create_run(self.experiment_id, tags=tags).info.run_id
        for key, value in self.params.items():
            self.client.log_param(self.run_id, key, value)
        return self.run_id

    def tag(self, **tags) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value))

    def fail(self, error: BaseException, tags: dict | None = None) -> None:
        """Record the failure (creating the run if none exists yet) with its reason."""
        if self.run_id is None:
            self.start(tags or {})
        reason = str(error).strip() or type(error).__name__
        if _stop_signal is not None:
            reason = f"interrupted ({signal.Signals(_stop_signal).name})"
        elif isinstance(error, (KeyboardInterrupt, SystemExit)):
            reason = f"interrupted ({type(error).__name__}{': ' + str(error) if str(error) else ''})"
        self.tag(decision="failed", error=reason[:4900])
        self.client.set_terminated(self.run_id, "FAILED")


def last_decided(client, experiment_name: str, name: str):
    """The newest finished retrain of ``name`` that reached a decision, or None."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id],
                              f"tags.retrain_of = '{name}' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=20)
    return next((r for r in runs if r.data.tags.get("decision") in DECIDED), None)


def prune(folder: Path, keep: int) -> None:
    runs = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.exists() else []
    for old in runs[:-keep] if keep > 0 else runs:
        shutil.rmtree(old, ignore_errors=True)


def retrain(cfg: DictConfig) -> dict:
    """One retrain of ``cfg.name`` (see the module docstring). Returns what happened:
    ``decision`` (``first``, ``promoted``, ``rejected`` or ``skipped``), the scores, versions and
    run ids. Raises :class:`RetrainBusy` when another retrain of the name runs, and the data
    layer's error when the data is bad."""
    from mlflow import MlflowClient

    if cfg.metric not in METRICS:
        raise ConfigError(f"metric={cfg.metric} is not one of {METRICS}.")
    client = MlflowClient(cfg.tracking_uri)
    work = Path(cfg.work_dir)
    with retrain_lock(work / "retrain.lock", cfg.name):
        return _retrain(cfg, client, work)


def _retrain(cfg: DictConfig, client, work: Path) -> dict:
    from forecast.pipelines import train as train_pipeline
    from forecast.pipelines.predict import load_model

    began = time.perf_counter()
    folder = work / "runs" / dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    params = {"name": cfg.name, "source": str(cfg.source), "warm_start": cfg.warm_start, "eval_windows": cfg.eval_windows,
              "metric": cfg.metric, "min_improvement": cfg.min_improvement, "force": cfg.force}
    record = RetrainRun(client, cfg.experiment_name, cfg.name, params)
    lineage: dict = {"source": str(cfg.source)}
    try:
        current = champion_version(client, cfg.name, cfg.alias)
        serving = str(current.version) if current else None
        champion = load_model(f"models:/{cfg.name}/{serving}", cfg.tracking_uri)[1] if serving else None
        train_cfg = training_config(cfg, champion)
        data = train_cfg.data
        source = Path(str(cfg.source))
        snap, files = snapshot(source, cfg.pattern, folder)
        try:
            table = load_table(snap, target=data.get("target"), date_col=data.get("date_col", "date"),
                               freq=data.get("freq"), fill=data.get("fill"))
            if champion is not None:  # the champion must be able to read the new data (same columns, step)
                champion.spec.check_table(table, str(snap))
        except DataError as error:  # name the user's file; a copy's line numbers are the file's own
            if source.is_file():
                raise DataError(str(error).replace(str(snap), str(source)) + f" (checked in its snapshot {snap})") from None
            raise DataError(f"{error} (the files of {source} joined in name order: {[Path(f['path']).name for f in files]})") from None
        seq_len, pred_len = int(data.seq_len), int(data.pred_len)
        origins = rolling_origins(table.n_rows, seq_len, pred_len, int(cfg.eval_windows))
        lineage = {"source": str(cfg.source), "files": files, "sha256": table.sha256, "rows": table.n_rows,
                   "first_timestamp": str(table.dates[0]), "last_timestamp": str(table.dates[-1]),
                   "train_rows": origins[0], "eval_from": str(table.dates[origins[0]])}
    except ForecastError as error:
        record.fail(error, {"data_sha256": lineage.get("sha256", ""), "source": str(cfg.source)})
        log.error("retrain of '%s' failed before training; nothing changed (the reason is logged to its retrain run)", cfg.name)
        raise

    last = last_decided(client, cfg.experiment_name, cfg.name)
    if last is not None and not cfg.force and last.data.tags.get("data_sha256") == table.sha256:
        shutil.rmtree(folder, ignore_errors=True)
        log.info("no new data for '%s' since the retrain of %s (%s rows up to %s); nothing to do. "
                 "Use force=true to retrain anyway.", cfg.name,
                 dt.datetime.fromtimestamp(last.info.start_time / 1000).isoformat(timespec="seconds"),
                 f"{table.n_rows:,}", table.dates[-1])
        return {"decision": "skipped", "retrain_run_id": last.info.run_id, "champion_version": serving}

    tags = {"data_sha256": table.sha256, "data_rows": table.n_rows, "last_timestamp": table.dates[-1],
            "source": str(cfg.source), "champion_before": serving or "none"}
    record.start(tags)
    try:
        client.log_dict(record.run_id, lineage, "data.json")
        retrain_id = record.run_id
        date_col = str(train_cfg.data.get("date_col", "date"))
        (folder / "train").mkdir()
        train_file = write_rows(table, origins[0], folder / "train" / f"{source.stem}.csv", date_col)
        with open_dict(train_cfg):
            train_cfg.data.path = str(train_file)
            train_cfg.data.split_by = "ratio"
            train_cfg.data.split_sizes = list(cfg.split_sizes)
            train_cfg.logger.tracking_uri = cfg.tracking_uri
            train_cfg.logger.experiment_name = cfg.experiment_name
            for callback in train_cfg.callbacks.values():
                if callback and "dirpath" in callback:
                    callback.dirpath = str(folder / "checkpoints")
            train_cfg.update(train=True, test=True, ckpt_path=None, init_from=None, paper_compat=False, record=None,
                             log_model=True, register=False, alias=None)
            train_cfg.tags = {**train_cfg.get("tags", {}), "retrain_id": retrain_id, "mlflow.parentRunId": retrain_id,
                              "retrain_of": cfg.name}
        warm = bool(cfg.warm_start and champion is not None and
                    any(p.requires_grad for p in champion.network.parameters()))
        if warm:
            weights = folder / "champion.pt"
            torch.save(champion.network.state_dict(), weights)
            train_cfg.init_from = str(weights)
        elif cfg.warm_start:
            log.info("warm_start: %s; training from scratch", "no champion yet" if champion is None else
                     "the champion has no trained weights")
        log.info("training the challenger of '%s' on %s rows up to %s (%s); evaluating on %d windows from %s",
                 cfg.name, f"{origins[0]:,}", table.dates[origins[0] - 1], "warm-started" if warm else "from scratch",
                 len(origins), table.dates[origins[0]])
        check_stop()  # safe points: here, each batch of training and testing, and before registering
        started = time.perf_counter()
        train_pipeline.run(train_cfg, callbacks=[StopOnRequest()])
        train_seconds = time.perf_counter() - started

        runs = client.search_runs([record.experiment_id], f"tags.retrain_id = '{retrain_id}'", max_results=1)
        if not runs or "model_uri" not in runs[0].data.tags:
            raise ForecastError("the challenger's training run logged no model; see its run in the MLflow UI.")
        challenger_run = runs[0]
        model_uri = challenger_run.data.tags["model_uri"]
        challenger = load_model(model_uri, cfg.tracking_uri)[1]

        outputs = champion.spec.outputs if champion is not None else challenger.spec.outputs
        missing = [c for c in outputs if c not in challenger.spec.outputs]
        if missing:
            raise ConfigError(f"the challenger does not forecast {missing}, which the champion does. Fix: keep "
                              "data.features and the target of the champion's config.")
        index = [table.columns.index(c) for c in outputs]
        actual = np.stack([table.values[o:o + pred_len, index] for o in origins])
        std = table.values[:origins[0], index].std(axis=0)
        std = np.where(std > 0, std, 1.0)
        predictions = {"challenger": forecast_windows(challenger, table, origins, outputs)}
        if champion is not None:
            predictions["champion"] = forecast_windows(champion, table, origins, outputs)
        scores = {who: score(pred, actual, std) for who, pred in predictions.items()}
        decision, improvement = decide(scores.get("champion"), scores["challenger"], cfg.metric, float(cfg.min_improvement))

        check_stop()  # the last safe point: from registration on, the retrain finishes (about a second)
        new = str(tracking.register(client, challenger_run.info.run_id, model_uri, cfg.name).version)
        figures = {f"{who}_{cfg.metric}": f"{s[cfg.metric]:.6g}" for who, s in scores.items()}
        version_tags = {"retrain_run_id": retrain_id, "retrain_decision": decision, "eval_metric": cfg.metric,
                        "eval_windows": str(len(origins)), "eval_from": str(table.dates[origins[0]]),
                        "warm_start": str(warm).lower(), **figures}
        if champion is not None:
            version_tags["improvement"] = f"{improvement:.6g}"
            version_tags["champion_version"] = serving
        if decision == "rejected":
            version_tags["rejected"] = (f"{cfg.metric} {scores['challenger'][cfg.metric]:.6g} vs champion "
                                        f"{scores['champion'][cfg.metric]:.6g} (v{serving}): improvement "
                                        f"{improvement:+.2%} < min_improvement {float(cfg.min_improvement):.2%}")
        for key, value in version_tags.items():
            client.set_model_version_tag(cfg.name, new, key, value)

        metrics = {f"{who}/{k}": v for who, s in scores.items() for k, v in s.items()}
        metrics["train_seconds"] = train_seconds
        if champion is not None:
            metrics["improvement"] = improvement
        for key, value in metrics.items():
            if np.isfinite(value):
                client.log_metric(record.run_id, key, value)
        client.log_dict(record.run_id, {"scores": scores, "decision": decision,
                                        "origins": [str(table.dates[o]) for o in origins]}, "scores.json")
        figure = evaluation_figure(table, origins, outputs, predictions, seq_len, pred_len, f"{cfg.name}: {decision} (v{new})")
        client.log_figure(record.run_id, figure, "plots/evaluation.png")
        plt.close(figure)

        promote = decision in ("first", "promoted")
        after = new if promote else (serving or "none")
        record.tag(decision=decision, challenger_version=new, champion_after=after,
                   challenger_run_id=challenger_run.info.run_id)
        client.log_metric(record.run_id, "total_seconds", time.perf_counter() - began)
        if promote:  # the one write that changes what serves: last, after everything else succeeded
            client.set_registered_model_alias(cfg.name, cfg.alias, new)
        client.set_terminated(record.run_id, "FINISHED")
    except BaseException as error:
        record.fail(error)
        check_stop()  # Lightning ends a training on SIGTERM with a SystemExit of status 0; exit 128 + signal
        raise
    prune(work / "runs", KEEP_FOLDERS)
    summary = ", ".join(f"{who} {cfg.metric} {s[cfg.metric]:.4f}" for who, s in scores.items())
    log.info("'%s' %s: version %s (%s); '%s' -> version %s", cfg.name, decision, new, summary, cfg.alias, after)
    return {"decision": decision, "scores": scores, "improvement": improvement, "challenger_version": new,
            "champion_version": after, "champion_before": serving,
            "retrain_run_id": record.run_id, "challenger_run_id": challenger_run.info.run_id,
            "train_seconds": train_seconds, "lineage": lineage}


def evaluation_figure(table: TimeSeriesTable, origins, outputs, predictions: dict, seq_len: int, pred_len: int, title: str):
    """The evaluation windows: the last look-back, the actual values and both models' forecasts."""
    shown = plots.shown_channels(len(outputs))
    index = [table.columns.index(outputs[c]) for c in shown]
    keep = min(seq_len, max(2 * pred_len, 96))
    windows = []
    for w, origin in enumerate(origins):
        windows.append({
            "history_dates": table.dates[origin - keep:origin], "history": table.values[origin - keep:origin][:, index],
            "dates": table.dates[origin:origin + pred_len], "actual": table.values[origin:origin + pred_len][:, index],
            "forecast": {who: pred[w][:, shown] for who, pred in sorted(predictions.items(), reverse=True)},
        })
    return plots.forecast_figure(windows, [outputs[c] for c in shown], title)


# ------------------------------------------------------------------ history
def history(client, name: str, experiment_name: str = "retrain") -> pd.DataFrame:
    """Every retrain of ``name``, oldest first: when, decision, versions, scores, data."""
    experiment = client.get_experiment_by_name(experiment_name)
    runs = client.search_runs([experiment.experiment_id], f"tags.retrain_of = '{name}' and tags.kind = 'retrain'",
                              order_by=["attributes.start_time ASC"], max_results=5000) if experiment else []
    rows = []
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        metric = run.data.params.get("metric", "mse")
        rows.append({
            "started": pd.Timestamp(run.info.start_time, unit="ms").floor("s"),
            "status": run.info.status, "decision": tags.get("decision", "running"),
            "champion_before": tags.get("champion_before", ""), "challenger": tags.get("challenger_version", ""),
            "champion_after": tags.get("champion_after", ""), "metric": metric,
            "champion_score": metrics.get(f"champion/{metric}", np.nan),
            "challenger_score": metrics.get(f"challenger/{metric}", np.nan),
            "last_timestamp": tags.get("last_timestamp", ""), "rows": tags.get("data_rows", ""),
            "train_seconds": metrics.get("train_seconds", np.nan), "error": tags.get("error", "")[:120],
            "run_id": run.info.run_id,
        })
    return pd.DataFrame(rows)


def history_markdown(table: pd.DataFrame, name: str) -> str:
    """The history as a Markdown table, one line per retrain."""
    lines = [f"# {name}: {len(table)} retrains", "",
             "| started | decision | champion before → after | challenger | champion score | challenger score | data up to | rows | train s | run id |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def number(value, digits=4):
        return "" if pd.isna(value) else f"{value:.{digits}f}"

    for r in table.itertuples():
        decision = r.decision + (f" ({r.error})" if r.error else "")
        lines.append(f"| {r.started} | {decision} | {r.champion_before or '-'} → {r.champion_after or '-'} | "
                     f"{r.challenger or '-'} | {number(r.champion_score)} | {number(r.challenger_score)} | "
                     f"{r.last_timestamp} | {r.rows} | {number(r.train_seconds, 1)} | `{r.run_id}` |")
    return "\n".join(lines + [""])


def history_figure(table: pd.DataFrame, name: str):
    """The decision metric of champion and challenger per retrain; promotions marked."""
    fig, ax = plt.subplots(figsize=(8, 3.2))
    done = table[table["decision"].isin(DECIDED)]
    ax.plot(done["started"], done["champion_score"], "o-", color="0.4", label="champion")
    ax.plot(done["started"], done["challenger_score"], "s--", color="tab:blue", label="challenger")
    for decision, marker in (("promoted", "^"), ("first", "*")):
        rows = done[done["decision"] == decision]
        ax.scatter(rows["started"], rows["challenger_score"], marker=marker, s=90, color="tab:green", zorder=3, label=decision)
    failed = table[table["decision"] == "failed"]
    for when in failed["started"]:
        ax.axvline(when, color="tab:red", lw=0.8, ls=":")
    ax.set_ylabel(table["metric"].iloc[0] if len(table) else "")
    ax.set_title(f"{name}: retrains (red lines: failed)", fontsize=10)
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig

