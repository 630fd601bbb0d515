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
   windows; with ``candidates``, train each candidate (any model family, on the champion's data
   settings) there instead, cheapest first within ``max_minutes``, score each on the evaluation
   windows of step 5, and take the best by ``metric`` as the challenger (a candidate that fails
   or runs out of time is logged and skipped; none left: the retrain fails); with ``ensemble.method``,
   the ensemble of the candidates that finished is one more contender, its members and weights
   chosen on windows before the evaluation windows (:func:`ensemble_contender`);
5. forecast the evaluation windows, the last ``eval_windows`` horizons of the data (rolling
   origin), with both models, and score them on the original scale and z-scored
   (:mod:`forecast.evaluation`);
6. register the challenger as a new version; point the ``champion`` alias at it only if it is
   better by at least ``min_improvement`` (relative), else tag it ``rejected``
   (:mod:`forecast.registry`);
7. log the ``retrain`` run: both scores, the decision, the data lineage and the versions (with
   ``candidates``: every candidate's scores, rank, status and seconds, ``candidates.csv`` and a
   figure of their errors per window).

Moving the alias is the last write, so a failure anywhere before it leaves the champion serving.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import math
import os
import re
import shutil
import signal
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from forecast import ensemble, evaluation, intervals, plots, registry, tracking  # plots sets the Agg backend before pyplot is used
from forecast.config import compose_train
from forecast.data.datamodule import naive_scale
from forecast.data.snapshot import snapshot, write_rows
from forecast.data.sources import TimeSeriesTable, load_table
from forecast.errors import ConfigError, DataError, ForecastError
from forecast.registry import DECIDED, decide

import matplotlib.pyplot as plt  # noqa: E402  isort: skip

log = logging.getLogger(__name__)

EXIT_BUSY = 75            # EX_TEMPFAIL: another retrain of the same name holds the lock; try later
METRICS = evaluation.METRICS
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


class OutOfTime(ForecastError):
    """A candidate's training ran into the end of the retrain's ``max_minutes``."""

    label = "out of time"


class StopAtDeadline(StopOnRequest):
    """:class:`StopOnRequest` that also ends a training or testing at the next batch past
    ``deadline`` (a ``time.monotonic()`` value: the end of ``max_minutes``), with :class:`OutOfTime`."""

    def __init__(self, deadline: float):
        super().__init__()
        self.deadline = deadline

    def check(self) -> None:
        check_stop()
        if time.monotonic() > self.deadline:
            raise OutOfTime("the retrain's max_minutes ran out during this training. Fix: raise max_minutes, or "
                            "shorten the candidate (e.g. trainer.max_epochs).")

    def on_fit_start(self, trainer, pl_module):
        self.check()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.check()

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.check()

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.check()


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


# ------------------------------------------------------------------ models
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
    return with_overrides(cfg, train_cfg)


def with_overrides(cfg: DictConfig, train_cfg: DictConfig) -> DictConfig:
    """``train_cfg`` with the retrain's ``overrides`` set on it, checked for what a registered
    model may not be (a debug run, no MLflow logger)."""
    OmegaConf.set_struct(train_cfg, False)
    if not sys.stdout.isatty():  # cron, systemd and log files: no progress bars
        train_cfg.trainer.enable_progress_bar = False
    for item in cfg.overrides:
        key, sep, value = str(item).partition("=")
        if not sep:
            raise ConfigError(f"overrides: '{item}' is not key=value. Fix: write e.g. trainer.max_epochs=5.")
        OmegaConf.update(train_cfg, key.strip(), OmegaConf.from_dotlist([f"v={value}"]).v, force_add=True)
    smoke = tracking.debug_reasons(train_cfg)
    if smoke:
        raise ConfigError(f"the challenger's config limits its training ({', '.join(smoke)}): a debug run is never "
                          "registered, so it cannot become the champion. Fix: drop trainer=debug and the trainer's "
                          "batch/step limits from train/overrides (trainer.max_epochs shortens a retrain).")
    if not train_cfg.get("logger") or "_target_" not in train_cfg.logger:
        raise ConfigError("the challenger's config has no MLflow logger (logger=none), so its model could not be "
                          "registered. Fix: drop logger=none from train/overrides.")
    return train_cfg


# ------------------------------------------------------------------ the steps
@dataclass
class Prepared:
    """What a retrain knows before it trains: the champion, the challenger's config and the
    validated snapshot of the data with its evaluation cutoffs."""

    serving: str | None       # the champion's version, None before the first
    champion: object          # its ForecastModel, or None
    train_cfg: DictConfig
    source: Path
    table: TimeSeriesTable
    cutoffs: list[int]
    lineage: dict


def prepare(cfg: DictConfig, client, folder: Path, lineage: dict) -> Prepared:
    """Load the champion, compose the challenger's config, snapshot and validate the data, and
    place the evaluation cutoffs. Fills ``lineage`` as it learns about the data."""
    from forecast.pipelines.predict import load_model

    current = registry.champion_version(client, cfg.name, cfg.alias)
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
    lineage["sha256"] = table.sha256
    cutoffs = evaluation.rolling_origins(table.n_rows, int(cfg.eval_windows), int(data.pred_len), start=int(data.seq_len),
                                         setting="eval_windows")
    lineage.update({"source": str(cfg.source), "files": files, "sha256": table.sha256, "rows": table.n_rows,
                    "first_timestamp": str(table.dates[0]), "last_timestamp": str(table.dates[-1]),
                    "train_rows": cutoffs[0], "eval_from": str(table.dates[cutoffs[0]])})
    return Prepared(serving, champion, train_cfg, source, table, cutoffs, lineage)


def challenger_config(cfg: DictConfig, prep: Prepared, folder: Path, retrain_id: str, train_cfg: DictConfig | None = None,
                      label: str | None = None) -> tuple[DictConfig, bool]:
    """The challenger's config (``train_cfg``, default ``prep.train_cfg``), pointed at the rows
    before the first cutoff (written once under ``folder``), this retrain's tracking store and
    checkpoints (a folder per candidate ``label``), and (``warm_start``, a challenger of the
    champion's network) the champion's weights. Returns it and whether it is warm-started."""
    train_cfg = prep.train_cfg if train_cfg is None else train_cfg
    date_col = str(train_cfg.data.get("date_col", "date"))
    train_file = folder / "train" / f"{prep.source.stem}.csv"
    if not train_file.exists():  # one file for every candidate: the same rows
        train_file.parent.mkdir(parents=True, exist_ok=True)
        train_file = write_rows(prep.table, prep.cutoffs[0], train_file, date_col)
    checkpoints = folder / "checkpoints" / label if label else folder / "checkpoints"
    with open_dict(train_cfg):
        train_cfg.data.path = str(train_file)
        train_cfg.data.split_by = "ratio"
        train_cfg.data.split_sizes = list(cfg.split_sizes)
        train_cfg.logger.tracking_uri = cfg.tracking_uri
        train_cfg.logger.experiment_name = cfg.experiment_name
        for callback in train_cfg.callbacks.values():
            if callback and "dirpath" in callback:
                callback.dirpath = str(checkpoints)
        train_cfg.update(train=True, test=True, ckpt_path=None, init_from=None, paper_compat=False, record=None,
                         log_model=True, register=False, alias=None)
        train_cfg.tags = {**train_cfg.get("tags", {}), "retrain_id": retrain_id, "mlflow.parentRunId": retrain_id,
                          "retrain_of": cfg.name, **({"candidate": label} if label else {})}
    champion = prep.champion
    warm = bool(cfg.warm_start and champion is not None and any(p.requires_grad for p in champion.network.parameters())
                and str(champion.cfg.model.get("_target_")) == str(train_cfg.model.get("_target_")))
    if warm:
        weights = folder / "champion.pt"
        torch.save(champion.network.state_dict(), weights)
        train_cfg.init_from = str(weights)
    elif cfg.warm_start:
        log.info("warm_start: %s; training %s from scratch", "no champion yet" if champion is None else
                 "the champion has no trained weights or another network", label or "the challenger")
    return train_cfg, warm


def train_challenger(cfg: DictConfig, client, record: "RetrainRun", train_cfg: DictConfig, label: str | None = None,
                     deadline: float | None = None):
    """Run the train pipeline on the challenger's config (stoppable at each batch; by
    ``deadline``, a ``time.monotonic()`` value, too); returns its MLflow run, its served model
    and the training seconds. ``label``: the candidate it is."""
    from forecast.pipelines import train as train_pipeline
    from forecast.pipelines.predict import load_model

    started = time.perf_counter()
    train_pipeline.run(train_cfg, callbacks=[StopOnRequest() if deadline is None else StopAtDeadline(deadline)])
    seconds = time.perf_counter() - started
    query = f"tags.retrain_id = '{record.run_id}'" + (f" and tags.candidate = '{label}'" if label else "")
    runs = client.search_runs([record.experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1)
    if not runs or "model_uri" not in runs[0].data.tags:
        raise ForecastError("the challenger's training run logged no model; see its run in the MLflow UI.")
    return runs[0], load_model(runs[0].data.tags["model_uri"], cfg.tracking_uri)[1], seconds


def check_metric(metric: str) -> None:
    """The decision metrics: those of :data:`METRICS`, and ``wql`` / ``msis_<level>`` of models
    with intervals."""
    if metric not in METRICS and metric != "wql" and not re.fullmatch(r"msis_[1-9][0-9]?", str(metric)):
        raise ConfigError(f"metric={metric} is not one of {METRICS}, wql or msis_<level> (e.g. msis_80). "
                          "Fix: metric=mse, or wql for models with intervals.")


@dataclass
class Windows:
    """The evaluation windows every model of a retrain is scored on: ``actual [W, H, C]`` of the
    ``outputs`` and the scales of the rows before the first (``std``: z-scoring; ``mase_scale``:
    the seasonal-naive MAE of MSIS), the same for every model."""

    outputs: list[str]
    actual: np.ndarray
    std: np.ndarray
    mase_scale: np.ndarray


def evaluation_windows(prep: Prepared, outputs: list[str]) -> Windows:
    data, end = prep.train_cfg.data, prep.cutoffs[0]
    index = [prep.table.columns.index(c) for c in outputs]
    return Windows(list(outputs), evaluation.actuals_at(prep.table, prep.cutoffs, int(data.pred_len), outputs),
                   evaluation.channel_scale(prep.table, end, outputs),
                   naive_scale(prep.table.values[:end, index], int(data.get("season_length") or 1)))


def forecast_and_score(prep: Prepared, windows: Windows, model, who: str, metric: str = "mse") -> tuple[np.ndarray, dict]:
    """``model``'s forecasts ``[W, H, C]`` from every cutoff and their scores: the point metrics
    of :func:`forecast.evaluation.score` and, for a model logged with intervals, those of
    :func:`forecast.intervals.evaluate` (``coverage_<L>``, ``msis_<L>``, ``wql``…). ``metric``
    is always among the keys (NaN where the model has no intervals)."""
    missing = [c for c in windows.outputs if c not in model.spec.outputs]
    if missing:
        raise ConfigError(f"the {who} does not forecast {missing}, which the champion does. Fix: keep "
                          "data.features and the target of the champion's config.")
    pred = evaluation.forecasts_from(model, prep.table, prep.cutoffs, windows.outputs)
    scores = evaluation.score(pred, windows.actual, windows.std)
    calibration = getattr(model, "calibration", None)
    # CQR bands need each cutoff's quantile forecasts, which forecasts_from does not make: such a
    # model is scored on its points (NaN interval metrics) like a model without intervals
    if isinstance(calibration, intervals.Calibration) and list(model.spec.outputs) == windows.outputs:
        levels = sorted({*calibration.levels, *([int(metric[5:])] if metric.startswith("msis_") else [])})
        scores.update(intervals.evaluate(calibration, pred, windows.actual, windows.mase_scale, levels))
    scores.setdefault(metric, float("nan"))
    return pred, scores


def adapt_intervals(cfg: DictConfig, client, run, model, prep: Prepared, outputs: list[str], pred: np.ndarray):
    """Adaptive conformal inference for the challenger's served bands: each level's miscoverage
    moved over the evaluation windows, oldest first (the newest outcomes, which it did not train
    on), from where its calibration left it (:func:`forecast.intervals.adapt_alphas`); the run's
    model is re-logged with those levels (:func:`forecast.serving.log_adapted`), so the version
    registered next serves them. ``cfg.aci_gamma``: the step (null: the model's
    ``intervals.aci_gamma``; 0: off). Returns ``(run, {level: α})``; nothing for a model without
    intervals or one that forecasts other channels than the evaluated ones."""
    from forecast import serving

    calibration = getattr(model, "calibration", None)
    if calibration is None or not isinstance(calibration, intervals.Calibration) \
            or list(model.spec.outputs) != list(outputs):
        return run, {}
    gamma = cfg.get("aci_gamma")
    if gamma is None:
        gamma = OmegaConf.select(model.cfg, "intervals.aci_gamma", default=0.005)
    if not gamma:
        return run, {}
    actual = evaluation_windows(prep, outputs).actual
    alphas = intervals.adapt_alphas(calibration, pred, actual, calibration.levels, float(gamma))
    serving.log_adapted(client, run.info.run_id, calibration.with_alphas(alphas), type(model)())
    log.info("aci: over the %d evaluation windows the challenger's bands of levels %s move to miscoverage %s (γ %s)",
             len(pred), calibration.levels, {k: round(v, 4) for k, v in alphas.items()}, gamma)
    return client.get_run(run.info.run_id), alphas


def evaluate(prep: Prepared, challenger, metric: str = "mse") -> tuple[list[str], dict[str, np.ndarray], dict[str, dict]]:
    """Both models' forecasts from every cutoff and their scores on the champion's outputs:
    ``(outputs, {who: [W, H, C]}, {who: scores})``."""
    champion = prep.champion
    windows = evaluation_windows(prep, (champion if champion is not None else challenger).spec.outputs)
    predictions, scores = {}, {}
    for who, model in (("challenger", challenger), ("champion", champion)):
        if model is not None:
            predictions[who], scores[who] = forecast_and_score(prep, windows, model, who, metric)
    return windows.outputs, predictions, scores


# ------------------------------------------------------------------ candidates
@dataclass
class Candidate:
    """One entry of ``candidates`` and what became of it: ``status`` ``pending``, ``ok``,
    ``failed`` (``reason``) or ``skipped`` (the budget; ``reason``)."""

    label: str
    text: str                           # the entry as given
    overrides: list[str] = field(default_factory=list)
    cfg: DictConfig | None = None
    family: str = ""                    # the network, e.g. dlinear, seasonalnaive
    choices: dict = field(default_factory=dict)  # its Hydra choices of model and experiment
    deep: bool = True                   # trained by gradient descent (classical ones are fitted)
    estimate: float | None = None       # seconds it took at the last retrain that ran it
    status: str = "pending"
    reason: str = ""
    seconds: float = float("nan")
    scores: dict = field(default_factory=dict)
    pred: np.ndarray | None = None
    run: object = None
    model: object = None
    warm: bool = False
    rank: int | None = None


def _label(overrides: list[str], text: str) -> str:
    named = [o.split("=", 1)[1] for o in overrides if o.startswith(("model=", "experiment="))]
    return re.sub(r"[^\w.-]+", "_", named[-1] if named else text).strip("_") or "candidate"


def compose_candidate(cfg: DictConfig, prep: Prepared, overrides: list[str], base: DictConfig) -> tuple[DictConfig, dict]:
    """A candidate's config: ``python train.py <train> <its overrides>``, on the data of the
    champion's config (or ``train``'s): the settings every model of a backtest shares
    (:data:`forecast.pipelines.backtest.SHARED_DATA`: file, channels, horizon, splits) are the
    champion's, the ones its own model file or overrides change (a look-back) its own;
    ``base``: ``train`` composed alone, to tell which those are. Returns the config and its
    Hydra choices of ``model`` and ``experiment`` (its family and its runs' names)."""
    from forecast.pipelines.backtest import SHARED_DATA

    own, choices = compose_train([*cfg.train, *overrides], choices=True)
    data = OmegaConf.create(OmegaConf.to_container(prep.train_cfg.data))  # the path is still ??? before the first model
    theirs, ours = OmegaConf.to_container(base.data), OmegaConf.to_container(own.data)
    for key, value in ours.items():
        if key not in SHARED_DATA and (key not in theirs or theirs[key] != value):
            data[key] = value
    OmegaConf.set_struct(own, False)
    own.data = data
    return with_overrides(cfg, own), choices


def plan_candidates(cfg: DictConfig, prep: Prepared, last_runs: list) -> list[Candidate]:
    """The candidates in the order they run: classical (fitted, seconds) before deep ones, then
    by the seconds each took at the last retrain that ran it (``candidate/<label>/seconds`` of
    ``last_runs``, newest first).
    An entry that names no model or does not compose is ``failed`` here, with the reason."""
    from hydra.utils import get_class

    from forecast.models.classical.base import Classical
    from forecast.pipelines.backtest import entry_overrides

    base = compose_train(list(cfg.train))
    out: list[Candidate] = []
    for item in cfg.candidates:
        text = str(item).strip()
        candidate = Candidate(label=_label(text.split(), text), text=text)
        try:
            candidate.overrides = entry_overrides(text)
            candidate.label = _label(candidate.overrides, text)
            candidate.cfg, candidate.choices = compose_candidate(cfg, prep, candidate.overrides, base)
            # the candidate's own model choice, not one a Hydra app in this process made earlier
            candidate.family = candidate.choices.get("model") or candidate.cfg.model._target_.rsplit(".", 1)[-1].lower()
            candidate.deep = not issubclass(get_class(str(candidate.cfg.model._target_)), Classical)
        except Exception as error:  # noqa: BLE001 - a bad entry is that candidate's failure, not the retrain's
            from forecast.errors import config_error

            reason = error if isinstance(error, ForecastError) else config_error(error)
            candidate.status, candidate.reason = "failed", str(reason).replace("models: ", "candidates: ", 1)
        taken = {c.label for c in out}
        label, n = candidate.label, 2
        while candidate.label in taken:
            candidate.label, n = f"{label}-{n}", n + 1
        seconds = [r.data.metrics[f"candidate/{candidate.label}/seconds"] for r in last_runs
                   if f"candidate/{candidate.label}/seconds" in r.data.metrics]
        candidate.estimate = float(seconds[0]) if seconds else None
        out.append(candidate)
    return order_candidates(out)


def order_candidates(candidates: list[Candidate]) -> list[Candidate]:
    """Cheapest first: classical before deep, then by the last retrain's seconds (unknown last
    within each kind), then as given."""
    return sorted(candidates, key=lambda c: (c.deep, c.estimate is None, c.estimate or 0.0))


def last_with_candidates(client, experiment_name: str, name: str, count: int = 10) -> list:
    """The newest ``count`` retrains of ``name`` that ran candidates, newest first."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], f"tags.retrain_of = '{name}' and tags.candidates != ''",
                              order_by=["attributes.start_time DESC"], max_results=count)


def compete(cfg: DictConfig, client, record: "RetrainRun", prep: Prepared, folder: Path, deadline: float | None):
    """Train, forecast and score every candidate on the evaluation windows (cheapest first;
    one that fails or cannot finish by ``deadline`` is recorded and skipped); returns
    ``(candidates, windows, the champion's forecasts and scores)``. The best by ``metric``
    (ties: the earlier) has ``rank`` 1."""
    from forecast.pipelines.backtest import Entry, choices_of

    candidates = plan_candidates(cfg, prep, last_with_candidates(client, cfg.experiment_name, cfg.name))
    champion = prep.champion
    windows = evaluation_windows(prep, champion.spec.outputs) if champion is not None else None
    champion_pred = champion_scores = None
    if champion is not None:
        champion_pred, champion_scores = forecast_and_score(prep, windows, champion, "champion", cfg.metric)
    log.info("candidates of '%s', in this order: %s", cfg.name,
             ", ".join(f"{c.label}{'' if c.status == 'pending' else ' (' + c.status + ')'}" for c in candidates))
    for candidate in candidates:
        if candidate.status != "pending":
            log.warning("candidate %s failed: %s", candidate.label, candidate.reason)
            continue
        check_stop()
        left = deadline - time.monotonic() if deadline is not None else math.inf
        if left <= 0 or (candidate.estimate is not None and candidate.estimate > left):
            candidate.status = "skipped"
            candidate.reason = (f"max_minutes={cfg.max_minutes}: {max(left, 0):.0f} s left"
                                + (f", it took {candidate.estimate:.0f} s at the last retrain" if candidate.estimate else ""))
            log.warning("candidate %s skipped: %s", candidate.label, candidate.reason)
            continue
        started = time.perf_counter()
        try:
            # its runs named and tagged as `train.py <its overrides>` would name them
            with choices_of(Entry(candidate.label, candidate.cfg, candidate.choices)):
                train_cfg, candidate.warm = challenger_config(cfg, prep, folder, record.run_id, candidate.cfg,
                                                              candidate.label)
                log.info("candidate %s (%s): training on %s rows", candidate.label, " ".join(candidate.overrides),
                         f"{prep.cutoffs[0]:,}")
                candidate.run, candidate.model, _ = train_challenger(cfg, client, record, train_cfg, candidate.label,
                                                                     deadline)
            if windows is None:  # no champion: the first candidate that trains sets the channels
                windows = evaluation_windows(prep, candidate.model.spec.outputs)
            candidate.pred, candidate.scores = forecast_and_score(prep, windows, candidate.model,
                                                                  f"candidate {candidate.label}", cfg.metric)
            candidate.status = "ok"
        except OutOfTime as error:
            candidate.status, candidate.reason = "skipped", str(error)
        except Exception as error:  # noqa: BLE001 - one candidate's failure; SIGTERM's SystemExit passes
            candidate.status, candidate.reason = "failed", (str(error).strip() or type(error).__name__)
            log.debug("candidate %s", candidate.label, exc_info=True)
        candidate.seconds = time.perf_counter() - started
        if candidate.status == "ok":
            log.info("candidate %s: %s %.4f (%.1f s)", candidate.label, cfg.metric, candidate.scores[cfg.metric],
                     candidate.seconds)
        else:
            log.warning("candidate %s %s after %.1f s: %s", candidate.label, candidate.status, candidate.seconds,
                        candidate.reason)
    rank(candidates, cfg.metric)
    return candidates, windows, champion_pred, champion_scores


def rank(candidates: list[Candidate], metric: str) -> None:
    """``rank`` 1, 2, … of the candidates that finished, by ``metric`` on the evaluation windows
    (ties: the earlier; a NaN score last)."""
    ranked = sorted((c for c in candidates if c.status == "ok"),
                    key=lambda c: (not np.isfinite(c.scores[metric]), c.scores[metric]))
    for position, candidate in enumerate(ranked, start=1):
        candidate.rank = position


# ------------------------------------------------------------------ the candidates' ensemble
def ensemble_settings(cfg: DictConfig) -> dict:
    """The retrain's ``ensemble:`` node checked (:func:`forecast.ensemble.check_settings`) against
    its ``candidates``; ``{}``: no ensemble. ``ConfigError`` before anything trains."""
    node = cfg.get("ensemble")
    if node is None or node.get("method") is None and node.get("top_k") is None:
        return {}
    if not cfg.get("candidates"):
        raise ConfigError(f"ensemble.method={node.get('method')} without candidates: the ensemble combines the "
                          "candidates that finished. Fix: list two or more, e.g. candidates='[model=ets,model=seasonalnaive]', "
                          "or ensemble.method=null.")
    return ensemble.check_settings(node, [str(c) for c in cfg.candidates], where="this retrain's candidates=[…]",
                                   listed="candidates")


def selection_cutoffs(cfg: DictConfig, prep: Prepared) -> list[int]:
    """The ensemble's selection windows: back-to-back horizons ending where the evaluation
    windows begin (``prep.cutoffs[0]``), inside the rows after the candidates' training split
    (their validation and test rows, ``split_sizes``: no candidate fitted on them), at most
    ``eval_windows`` of them. The members and weights are chosen there, never on the evaluation
    windows that decide."""
    horizon, end = int(prep.train_cfg.data.pred_len), prep.cutoffs[0]
    trained = int(end * float(cfg.split_sizes[0]))  # the training split's end (forecast.data.splits.split_rows)
    count = min(int(cfg.eval_windows), (end - trained) // horizon)
    if count < 1:
        raise DataError(f"the {end - trained} rows after the candidates' training split hold no window of "
                        f"{horizon} rows to choose the ensemble's weights on. Fix: a larger validation/test share "
                        "in split_sizes, or ensemble.method=null.")
    return evaluation.rolling_origins(end, count, horizon, start=trained, setting="eval_windows")


def ensemble_contender(cfg: DictConfig, client, record: "RetrainRun", prep: Prepared, candidates: list[Candidate],
                       windows: Windows | None, settings: dict) -> Candidate | None:
    """One more contender: the ensemble (:mod:`forecast.ensemble`) of the candidates that
    finished. Its members (``top_k``), weights and conformal calibration are fitted by
    :func:`forecast.ensemble.fit` on each candidate's forecasts of the selection windows
    (:func:`selection_cutoffs`), rows before the evaluation windows; the ensemble is logged with
    :func:`forecast.ensemble.log_ensemble` to a child run of the retrain (tagged like a
    candidate's training run, with its ``model_uri``) and scored on the evaluation windows from
    that logged model by :func:`forecast_and_score`, as every candidate. Appended to
    ``candidates`` (``failed`` with the reason when it cannot be built); ``None`` with fewer than
    two finished candidates."""
    from forecast.pipelines.predict import load_model

    finished = [c for c in candidates if c.status == "ok"]
    name = ensemble.label(settings)
    if len(finished) < 2:
        log.warning("%s: %d candidate(s) finished, an ensemble needs two or more; no ensemble this time", name,
                    len(finished))
        record.tag(ensemble=f"none: {len(finished)} candidate(s) finished")
        return None
    check_stop()
    contender = Candidate(label=name, text=f"ensemble.method={settings['method']}"
                          + (f" ensemble.top_k={settings['top_k']}" if settings["top_k"] else ""),
                          family="ensemble", deep=False)
    started = time.perf_counter()
    try:
        outputs, horizon = windows.outputs, int(prep.train_cfg.data.pred_len)
        cutoffs = selection_cutoffs(cfg, prep)
        preds = np.stack([evaluation.forecasts_from(c.model, prep.table, cutoffs, outputs) for c in finished])
        actual = evaluation.actuals_at(prep.table, cutoffs, horizon, outputs)
        scale = evaluation.channel_scale(prep.table, cutoffs[0], outputs)
        mse = ensemble.selection_mse(preds, actual, scale)
        best = finished[int(np.argmin(mse))]  # its intervals' settings are the ensemble's
        interval = intervals.check_settings(best.cfg.get("intervals"))
        interval = {"method": interval["method"], "levels": interval["levels"]} \
            if interval.get("method") in intervals.METHODS else {}
        weights, calibration = ensemble.fit(settings["method"], preds, actual, settings["top_k"], scale, interval)
        keep = np.flatnonzero(weights > 0)
        members = [finished[i] for i in keep]
        selection = {"windows": [str(prep.table.dates[c]) for c in cutoffs],
                     "mse": {c.label: float(e) for c, e in zip(finished, mse)},
                     "weights": {c.label: float(w) for c, w in zip(finished, weights)}}
        log.info("%s: members %s, weights %s (selection mse %s on %d windows from %s, before the evaluation windows)",
                 name, [m.label for m in members], [round(float(w), 4) for w in weights[keep]],
                 {k: round(v, 4) for k, v in selection["mse"].items()}, len(cutoffs), selection["windows"][0])
        contender.run = log_contender(cfg, client, record, name, settings, members, weights[keep], calibration, selection)
        contender.model = load_model(contender.run.data.tags["model_uri"], cfg.tracking_uri)[1]
        contender.pred, contender.scores = forecast_and_score(prep, windows, contender.model, f"candidate {name}",
                                                              cfg.metric)
        contender.status = "ok"
        client.log_dict(record.run_id, {**settings, "label": name, "members": [m.label for m in members], **selection},
                        "ensemble.json")
        record.tag(ensemble=name)
    except Exception as error:  # noqa: BLE001 - the ensemble's failure is a contender's, not the retrain's
        contender.status, contender.reason = "failed", (str(error).strip() or type(error).__name__)
        log.warning("%s failed: %s", name, contender.reason)
        log.debug("%s", name, exc_info=True)
        record.tag(ensemble=f"failed: {contender.reason[:200]}")
    contender.seconds = time.perf_counter() - started
    candidates.append(contender)
    return contender


def log_contender(cfg: DictConfig, client, record: "RetrainRun", name: str, settings: dict, members: list[Candidate],
                  weights: np.ndarray, calibration, selection: dict):
    """The ensemble's child run of the retrain run: tagged as a candidate's training run
    (``retrain_id``, ``mlflow.parentRunId``, ``candidate``, ``model=ensemble``), its model logged
    by :func:`forecast.ensemble.log_ensemble` from the members' logged models and its
    ``model_uri`` tag set, which registering reads. Returns the finished run."""
    import mlflow

    tags = {"retrain_id": record.run_id, "mlflow.parentRunId": record.run_id, "retrain_of": cfg.name,
            "candidate": name, "model": "ensemble", "debug": "false",
            "mlflow.runName": f"{name} of {', '.join(m.label for m in members)}"}
    run_id = client.create_run(record.experiment_id, tags=tags).info.run_id
    try:
        for key, value in {"ensemble.method": settings["method"], "ensemble.top_k": settings["top_k"],
                           "ensemble.members": ",".join(m.label for m in members),
                           "ensemble.weights": ",".join(f"{w:.6g}" for w in weights)}.items():
            client.log_param(run_id, key, value)
        for label, value in selection["mse"].items():
            client.log_metric(run_id, f"selection/{label}/mse", value)
        mlflow.set_tracking_uri(cfg.tracking_uri)
        with mlflow.start_run(run_id=run_id):
            info = ensemble.log_ensemble([m.run.data.tags["model_uri"] for m in members], settings["method"], weights,
                                         calibration, metadata={"selection": selection})
        client.set_tag(run_id, "model_uri", info.model_uri)
        client.set_terminated(run_id, "FINISHED")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    return client.get_run(run_id)


def candidates_table(candidates: list[Candidate], metric: str) -> pd.DataFrame:
    """One row per candidate in the order they ran: label, family, rank, status, reason,
    seconds, the overrides and every score (``metric`` first)."""
    rows = []
    for c in candidates:
        scores = {metric: c.scores.get(metric, np.nan), **c.scores}
        rows.append({"candidate": c.label, "family": c.family, "rank": c.rank, "status": c.status,
                     "seconds": c.seconds, **scores, "overrides": c.text, "run_id": c.run.info.run_id if c.run else "",
                     "reason": c.reason})
    frame = pd.DataFrame(rows)
    frame["rank"] = frame["rank"].astype("Int64")
    return frame


def log_candidates(client, record: "RetrainRun", prep: Prepared, candidates: list[Candidate], windows: Windows | None,
                   champion_pred, metric: str) -> None:
    """``candidate/<label>/<score>``, ``…/seconds`` and ``…/rank`` metrics, ``candidates.csv``
    and ``plots/candidates_by_window.png`` (each candidate's and the champion's ``metric`` per
    evaluation window, :func:`forecast.plots.errors_figure`) of the retrain run."""
    from mlflow.entities import Metric

    now, batch = int(time.time() * 1000), []
    for c in candidates:
        values = {**c.scores, "seconds": c.seconds, **({"rank": c.rank} if c.rank else {})}
        batch += [Metric(f"candidate/{c.label}/{k}", float(v), now, 0) for k, v in values.items() if np.isfinite(v)]
    if batch:
        client.log_batch(record.run_id, metrics=batch)
    table = candidates_table(candidates, metric)
    client.log_text(record.run_id, table.to_csv(index=False), "candidates.csv")
    scored = [c for c in candidates if c.status == "ok"]
    if windows is None or not scored:
        return
    shown = metric if metric in METRICS else "mse"  # interval scores of one window are too noisy to draw
    per_window = {label: np.array([s[shown] for s in evaluation.score_per_cutoff(pred, windows.actual, windows.std)])
                  for label, pred in [("champion", champion_pred)] * (champion_pred is not None)
                  + [(c.label, c.pred) for c in scored]}
    dates = prep.table.dates[np.asarray(prep.cutoffs)]
    figure = plots.errors_figure(dates, per_window, "evaluation window (first forecast step)", f"{shown} per window",
                                 f"{record.name}: candidates on the evaluation windows")
    client.log_figure(record.run_id, figure, "plots/candidates_by_window.png")
    plt.close(figure)


def log_evaluation(client, record: "RetrainRun", prep: Prepared, outputs, predictions, scores, decision: str,
                   extra: dict, title: str) -> None:
    """The scores as metrics (with ``extra``), ``scores.json`` and ``plots/evaluation.png`` of the retrain run."""
    metrics = {f"{who}/{k}": v for who, s in scores.items() for k, v in s.items()} | extra
    for key, value in metrics.items():
        if np.isfinite(value):
            client.log_metric(record.run_id, key, value)
    client.log_dict(record.run_id, {"scores": scores, "decision": decision,
                                    "origins": [str(prep.table.dates[c]) for c in prep.cutoffs]}, "scores.json")
    data = prep.train_cfg.data
    figure = plots.cutoffs_figure(prep.table, prep.cutoffs, outputs, predictions, int(data.seq_len), int(data.pred_len), title)
    client.log_figure(record.run_id, figure, "plots/evaluation.png")
    plt.close(figure)


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
    check_metric(cfg.metric)
    combined = ensemble_settings(cfg)  # refused settings fail here, before the lock and any training
    if cfg.get("max_minutes") is not None and not float(cfg.max_minutes) > 0:
        raise ConfigError(f"max_minutes={cfg.max_minutes} must be a positive number of minutes. Fix: e.g. "
                          "max_minutes=60, or max_minutes=null for no budget.")
    client = tracking.client(cfg.tracking_uri)
    work = Path(cfg.work_dir)
    with retrain_lock(work / "retrain.lock", cfg.name):
        return _retrain(cfg, client, work, combined)


def _retrain(cfg: DictConfig, client, work: Path, combined: dict) -> dict:
    """:func:`retrain` under its lock; ``combined``: the checked ``ensemble:`` settings ({}: none)."""
    began = time.perf_counter()
    minutes = cfg.get("max_minutes")
    deadline = time.monotonic() + 60 * float(minutes) if minutes is not None else None
    folder = work / "runs" / dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    params = {"name": cfg.name, "source": str(cfg.source), "warm_start": cfg.warm_start, "eval_windows": cfg.eval_windows,
              "metric": cfg.metric, "min_improvement": cfg.min_improvement, "force": cfg.force,
              **({"candidates": " | ".join(map(str, cfg.candidates))} if cfg.get("candidates") else {}),
              **({"ensemble": ensemble.label(combined)} if combined else {}),
              **({"max_minutes": minutes} if minutes is not None else {})}
    record = RetrainRun(client, cfg.experiment_name, cfg.name, params)
    lineage: dict = {"source": str(cfg.source)}
    try:
        prep = prepare(cfg, client, folder, lineage)
    except ForecastError as error:
        record.fail(error, {"data_sha256": lineage.get("sha256", ""), "source": str(cfg.source)})
        log.error("retrain of '%s' failed before training; nothing changed (the reason is logged to its retrain run)", cfg.name)
        raise
    table, cutoffs, serving = prep.table, prep.cutoffs, prep.serving

    last = last_decided(client, cfg.experiment_name, cfg.name)
    if last is not None and not cfg.force and last.data.tags.get("data_sha256") == table.sha256:
        shutil.rmtree(folder, ignore_errors=True)
        log.info("no new data for '%s' since the retrain of %s (%s rows up to %s); nothing to do. "
                 "Use force=true to retrain anyway.", cfg.name,
                 dt.datetime.fromtimestamp(last.info.start_time / 1000).isoformat(timespec="seconds"),
                 f"{table.n_rows:,}", table.dates[-1])
        return {"decision": "skipped", "retrain_run_id": last.info.run_id, "champion_version": serving}

    champion_model = tracking.model_name(prep.champion.cfg) if prep.champion is not None else "none"
    record.start({"data_sha256": table.sha256, "data_rows": table.n_rows, "last_timestamp": table.dates[-1],
                  "source": str(cfg.source), "champion_before": serving or "none", "champion_model_before": champion_model,
                  **({"candidates": ",".join(map(str, cfg.candidates))} if cfg.get("candidates") else {})})
    try:
        client.log_dict(record.run_id, lineage, "data.json")
        check_stop()  # safe points: here, each batch of training and testing, and before registering
        chosen = None
        if cfg.get("candidates"):
            log.info("choosing the challenger of '%s' among %d candidates trained on %s rows up to %s; evaluating on %d "
                     "windows from %s%s", cfg.name, len(cfg.candidates), f"{cutoffs[0]:,}", table.dates[cutoffs[0] - 1],
                     len(cutoffs), table.dates[cutoffs[0]], f"; budget {minutes} min" if minutes is not None else "")
            candidates, windows, champion_pred, champion_scores = compete(cfg, client, record, prep, folder, deadline)
            if combined and ensemble_contender(cfg, client, record, prep, candidates, windows, combined) is not None:
                rank(candidates, cfg.metric)
            log_candidates(client, record, prep, candidates, windows, champion_pred, cfg.metric)
            ranked = sorted((c for c in candidates if c.rank), key=lambda c: c.rank)
            record.tag(candidates_ranking=",".join(c.label for c in ranked) or "none",
                       candidates_failed=",".join(c.label for c in candidates if c.status == "failed") or "none",
                       candidates_skipped=",".join(c.label for c in candidates if c.status == "skipped") or "none")
            if not ranked:
                reasons = "; ".join(f"{c.label} {c.status}: {c.reason}" for c in candidates)
                raise ForecastError(f"no candidate could be evaluated ({reasons}); the champion keeps serving. Fix: see "
                                    "candidates.csv of this retrain run; correct the candidates, or raise max_minutes.")
            chosen = ranked[0]
            log.info("candidates of '%s' by %s: %s; the challenger is %s", cfg.name, cfg.metric,
                     ", ".join(f"{c.label} {c.scores[cfg.metric]:.4f}" for c in ranked), chosen.label)
            challenger_run, warm, train_seconds = chosen.run, chosen.warm, chosen.seconds
            challenger = chosen.model
            outputs = windows.outputs
            predictions = {"challenger": chosen.pred, **({"champion": champion_pred} if champion_pred is not None else {})}
            scores = {"challenger": chosen.scores, **({"champion": champion_scores} if champion_scores is not None else {})}
        else:
            train_cfg, warm = challenger_config(cfg, prep, folder, record.run_id)
            log.info("training the challenger of '%s' on %s rows up to %s (%s); evaluating on %d windows from %s",
                     cfg.name, f"{cutoffs[0]:,}", table.dates[cutoffs[0] - 1], "warm-started" if warm else "from scratch",
                     len(cutoffs), table.dates[cutoffs[0]])
            challenger_run, challenger, train_seconds = train_challenger(cfg, client, record, train_cfg, deadline=deadline)
            outputs, predictions, scores = evaluate(prep, challenger, cfg.metric)
        decision, improvement = decide(scores.get("champion"), scores["challenger"], cfg.metric, float(cfg.min_improvement))
        challenger_run, alphas = adapt_intervals(cfg, client, challenger_run, challenger, prep, outputs,
                                                 predictions["challenger"])

        check_stop()  # the last safe point: from registration on, the retrain finishes (about a second)
        challenger_model = challenger_run.data.tags.get("model", "")
        tags = {"retrain_run_id": record.run_id, "eval_windows": str(len(cutoffs)), "eval_from": str(table.dates[cutoffs[0]]),
                "warm_start": str(warm).lower(), "model": challenger_model,
                **({"candidate": chosen.label} if chosen else {}),
                **registry.decision_tags(decision, scores, cfg.metric, improvement, float(cfg.min_improvement), serving)}
        new = registry.register_version(client, challenger_run, cfg.name, tags)
        extra = {"train_seconds": train_seconds, **({"improvement": improvement} if prep.champion is not None else {}),
                 **{f"challenger/aci_alpha_{level}": a for level, a in alphas.items()}}
        log_evaluation(client, record, prep, outputs, predictions, scores, decision, extra, f"{cfg.name}: {decision} (v{new})")

        promote = decision in ("first", "promoted")
        after = new if promote else (serving or "none")
        record.tag(decision=decision, challenger_version=new, champion_after=after,
                   challenger_run_id=challenger_run.info.run_id, challenger_model=challenger_model,
                   champion_model_after=challenger_model if promote else champion_model,
                   **({"chosen_candidate": chosen.label} if chosen else {}))
        client.log_metric(record.run_id, "total_seconds", time.perf_counter() - began)
        if promote:  # the one write that changes what serves: last, after everything else succeeded
            registry.promote(client, cfg.name, cfg.alias, new)
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
            "train_seconds": train_seconds, "lineage": lineage, "challenger_model": challenger_model,
            **({"chosen_candidate": chosen.label, "candidates": candidates} if chosen else {})}
