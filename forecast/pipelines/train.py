"""The program behind ``python train.py``: data -> network -> fit -> test -> MLflow."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

from forecast import intervals, quantiles, tracking
from forecast.config import Recommendation, model_recommendations
from forecast.data.datamodule import ForecastDataModule
from forecast.errors import ConfigError, DataError, config_error
from forecast.memory import keep_freed_memory
from forecast.models.base import Network
from forecast.module import ForecastModule
from forecast.plots import decomposition_figure, forecast_figure, shown_channels
from forecast.records import record_accuracy, saved_overrides, training_command

log = logging.getLogger(__name__)

# Noise from the pinned stack that says nothing about the user's run.
warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
# ForecastModule logs torchmetrics results, already reduced over the DDP processes: sync_dist would add nothing
warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")
logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(lambda record: "litlogger" not in record.getMessage())  # an advert
logging.getLogger("mlflow.pyfunc").setLevel(logging.WARNING)  # "Validating input example against model signature"


def build_data(cfg: DictConfig, table=None) -> ForecastDataModule:
    """Instantiate and load the data (every data error surfaces here); fill in the shape keys
    (``data.enc_in``, ``data.mark_dim``) that the model config interpolates. ``table``: the file
    as :func:`forecast.data.sources.load_table` read it with these settings (a backtest's refits
    read it once).

    ``paper_compat`` turns on the data quirks of the reference code (the test loader dropping
    its last incomplete batch), written into the config so the logged config says so."""
    if cfg.paper_compat:
        cfg.data.drop_last_test = True
    try:
        datamodule: ForecastDataModule = instantiate(cfg.data)
    except InstantiationException as error:
        raise config_error(error) from None
    datamodule.source = table
    datamodule.load()
    cfg.data.enc_in = datamodule.enc_in
    cfg.data.mark_dim = datamodule.mark_dim
    return datamodule


def build_module(cfg: DictConfig, datamodule: ForecastDataModule) -> ForecastModule:
    """The system around ``cfg.model`` (wrapped to forecast quantiles with ``module.loss=quantile``,
    whose grid is written into ``module.quantiles`` so the logged config says it)."""
    try:
        network = instantiate(cfg.model)
    except InstantiationException as error:  # a network's own check, or a key it does not take: one line with the fix
        raise config_error(error) from None
    grid = quantiles.trained_grid(cfg)
    if grid is not None:
        cfg.module.quantiles = grid
    return ForecastModule(
        quantiles.wrap(network, cfg),
        loss=quantiles.build_loss(cfg),
        eval_loss=instantiate(cfg.module.eval_loss) if cfg.module.get("eval_loss") else None,
        optimizer=instantiate(cfg.module.optimizer) if cfg.module.optimizer else None,
        scheduler=instantiate(cfg.module.scheduler) if cfg.module.scheduler else None,
        scheduler_interval=cfg.module.scheduler_interval,
        c_out=datamodule.c_out,
        target_mean=datamodule.target_scaler.mean,
        target_std=datamodule.target_scaler.std,
        mase_scale=datamodule.mase_scale,
    )


def load_initial_weights(module: ForecastModule, path: str) -> None:
    """Start from the network weights in ``path``: a Lightning checkpoint of this system, or a
    ``state_dict`` of the network (``network.pt`` of a logged model). Unlike ``ckpt_path``, the
    optimiser, schedule and epoch count start afresh."""
    source = Path(path)
    if not source.is_file():
        raise ConfigError(f"init_from={path}: no such file. Fix: give a .ckpt of a run, or the network.pt of a logged model.")
    state = torch.load(source, map_location="cpu", weights_only=False)
    if isinstance(state, dict) and "state_dict" in state:  # a Lightning checkpoint: the network's part
        state = {k[len("network."):]: v for k, v in state["state_dict"].items() if k.startswith("network.")}
    if not isinstance(state, dict) or not state:
        raise ConfigError(f"init_from={path}: holds no network weights (a {type(state).__name__}). Fix: networks "
                          "without trainable parameters (the classical baselines) are not warm-started.")
    try:
        module.network.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise ConfigError(f"init_from={path}: the weights do not fit this network ({first}). Fix: start from a "
                          "model with the same model.* settings, seq_len, pred_len and channels.") from None


def check_checkpoint(module: ForecastModule, path: str) -> None:
    """Refuse a ``ckpt_path`` whose weights do not fit the network this configuration builds
    (another calendar, window, channel count or ``model.*`` setting), naming the first difference
    and the options of the run that wrote it, before anything is logged or trained."""
    if path in ("last", "best", "hpc", "registry"):  # Lightning's own names, resolved by the Trainer
        return
    source = Path(path)
    if not source.is_file():
        raise ConfigError(f"ckpt_path={path}: no such file. Fix: the .ckpt of a run (its checkpoints/ folder).")
    if not module.trainable:
        return
    state = torch.load(source, map_location="cpu", weights_only=False, mmap=True).get("state_dict", {})  # shapes only
    ours = module.state_dict()
    differences = [f"{k} is {list(v.shape)} there, {list(ours[k].shape)} here" for k, v in state.items()
                   if k in ours and hasattr(v, "shape") and tuple(v.shape) != tuple(getattr(ours[k], "shape", ()))]
    differences += [f"{k} is in it, not in this network" for k in state if k not in ours]
    differences += [f"{k} is missing from it" for k in ours if k not in state]
    if not differences:
        return
    saved, trained = saved_overrides(source)
    options = [o for o in trained or [] if not o.startswith(("hydra.", "ckpt_path=", "train=", "record="))]
    hint = (f"the options of the run that wrote it ({saved}): {' '.join(options)}" if options
            else "the model, data and window options of the run that wrote it")
    more = f" (and {len(differences) - 1} more)" if len(differences) > 1 else ""
    raise ConfigError(f"ckpt_path={path}: its weights do not fit the network these options build: "
                      f"{differences[0]}{more}. Fix: give {hint}.")


def build_callbacks(cfg: DictConfig, trainable: bool, logged: bool) -> list[pl.Callback]:
    """The configured callbacks, less those with nothing to do: early stopping and checkpoints
    for a network that is not trained, the learning-rate monitor for a run with no logger."""
    callbacks = [instantiate(node) for node in cfg.callbacks.values() if node and "_target_" in node]
    useless = ()
    if not trainable:
        useless += (EarlyStopping, ModelCheckpoint, LearningRateMonitor)
    if not logged:
        useless += (LearningRateMonitor,)
    return [c for c in callbacks if not isinstance(c, useless)]


def reduce_diagnostics(trainer: pl.Trainer, values: dict[str, float]) -> dict[str, float]:
    """A network's test diagnostics as ``test/<key>``, over every DDP process (each saw its share
    of the test windows): counts summed, ``*seconds`` those of the slowest process."""
    if trainer.world_size > 1:  # a collective: every process calls it
        local = torch.tensor([float(v) for v in values.values()], dtype=torch.float64, device=trainer.strategy.root_device)
        gathered = trainer.strategy.all_gather(local).reshape(trainer.world_size, -1).cpu()
        values = {k: (column.max() if k.endswith("seconds") else column.sum()).item() for k, column in zip(values, gathered.T)}
    return {f"test/{k}": float(v) for k, v in values.items()}


def best_checkpoint(trainer: pl.Trainer) -> str:
    """The best validation checkpoint: the path kept by the first checkpoint callback that
    monitors a metric (``last_checkpoint`` monitors none), or "" when there is none."""
    for callback in trainer.checkpoint_callbacks:
        if callback.monitor is not None:
            return callback.best_model_path
    return ""


def split_forecasts(module: ForecastModule, datamodule: ForecastDataModule, split: str,
                    quantile: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(pred, actual)`` ``[N, H, C]`` in the data's units: the module's forecasts of every window
    of ``split`` (in order, in this process alone) and the values that followed. ``quantile``:
    ``pred`` is the quantile forecasts ``[N, H, C, Q]`` of a quantile-trained module."""
    datamodule.setup()
    dataset = datamodule.datasets[split]
    size = int(datamodule.eval_batch_size)
    preds, targets = [], []
    module.eval()
    with torch.no_grad():
        for start in range(0, len(dataset), size):
            batch = dataset.__getitems__(list(range(start, min(start + size, len(dataset)))))
            inputs = (batch[k].to(module.device) for k in ("x", "x_mark", "y_mark"))
            preds.append((module.quantile_forecast(*inputs) if quantile else module(*inputs)).double().cpu())
            targets.append(batch["y"].double())
    pred = torch.cat(preds)
    pred = quantiles.unscale(datamodule.target_scaler, pred.numpy()) if quantile else unscaled(datamodule, pred)
    return pred, unscaled(datamodule, torch.cat(targets))


def unscaled(datamodule: ForecastDataModule, scaled: torch.Tensor) -> np.ndarray:
    return datamodule.target_scaler.inverse_transform(scaled.double().numpy())


def calibrate(settings: dict, module: ForecastModule, datamodule: ForecastDataModule, cfg: DictConfig | None = None,
              forecasts=None):
    """The conformal calibration of the module's current weights on every validation window
    (which training only used for early stopping, never for gradients or estimation); with
    ``calibration: backtest`` (and the run's ``cfg``), on a rolling-origin backtest before the
    test split instead (:func:`backtest_calibration`). ``forecasts``: the validation windows'
    ``(pred, actual)`` when already made (:func:`split_forecasts`; for ``cqr`` the quantile
    forecasts). ``cqr``: the CQR scores of its quantile forecasts of the validation windows
    (:func:`forecast.intervals.calibrate_quantiles`)."""
    if settings["method"] == intervals.CQR:
        quantile_forecasts, actual = forecasts if forecasts is not None else \
            split_forecasts(module, datamodule, "val", quantile=True)
        calibration = intervals.calibrate_quantiles(quantile_forecasts, actual, module.quantile_grid, settings["levels"],
                                                    settings["calibration"])
        log.info("intervals: cqr calibrated on %d validation windows (per horizon step and channel), levels %s",
                 calibration.n, settings["levels"])
        return calibration
    if settings["calibration"] == "backtest" and cfg is not None:
        return backtest_calibration(settings, cfg, datamodule)
    pred, actual = forecasts if forecasts is not None else split_forecasts(module, datamodule, "val")
    calibration = intervals.calibrate(pred, actual, settings["method"], settings["levels"], settings["calibration"])
    log.info("intervals: %s calibrated on %d validation windows (per horizon step and channel), levels %s",
             settings["method"], calibration.n, settings["levels"])
    return calibration


def backtest_calibration(settings: dict, cfg: DictConfig, datamodule: ForecastDataModule):
    """The conformal calibration on the forecasts of a rolling-origin backtest of this run's
    config (the backtest code: :mod:`forecast.pipelines.backtest`): ``settings["windows"]``
    cutoffs ``settings["step"]`` rows apart, the last window ending where the test split's
    first forecast starts, each forecast by a model trained (or fitted) only on the rows before
    its cutoff (``settings["refit"]``: how often it is retrained; ``false``: once, before the
    first). Unlike the validation windows, no calibration forecast comes from weights that early
    stopping chose on those same windows. Costs that backtest's training(s) on top of the run's."""
    import copy

    from omegaconf import open_dict

    from forecast.pipelines import backtest

    inner = copy.deepcopy(cfg)
    with open_dict(inner):
        inner.intervals.method = None          # calibrating the calibration would recurse
        inner.logger = None                    # its forecasts are what is kept, not runs
        inner.record, inner.register, inner.alias, inner.log_model = None, False, None, False
        inner.ckpt_path = None
        inner.backtest = {"windows": settings["windows"], "step": settings["step"], "refit": settings["refit"],
                          "warm_start": False, "start": None, "plot_cutoffs": 0,
                          "end": int(datamodule.splits["test"].border)}  # the last window ends where the test's first starts
        inner.models, inner.resume = [], False
    entry = backtest.Entry(tracking.model_name(cfg), inner, {})
    try:
        plan = backtest.make_plan(inner, [entry])
    except DataError as error:
        raise DataError(f"intervals.calibration=backtest: {error} (the calibration cutoffs: intervals.windows, "
                        "intervals.step)") from None
    log.info("intervals: calibration backtest of %d cutoffs %d rows apart before the test split (%s), %d training(s)",
             len(plan.cutoffs), plan.step, plan.describe(), len(plan.groups))
    result = backtest.backtest_model(entry, plan, None)
    calibration = intervals.calibrate(result.pred, plan.actuals(), settings["method"], settings["levels"], "backtest")
    log.info("intervals: %s calibrated on %d backtest windows (per horizon step and channel), levels %s",
             settings["method"], calibration.n, settings["levels"])
    return calibration


def native_bands(module: ForecastModule, datamodule: ForecastDataModule, split: str, levels: list[int]):
    """``(pred, actual, {level: (lo, hi)})`` ``[N, H, C]`` in the data's units: the network's own
    intervals (``intervals.method=native``) of every window of ``split``."""
    datamodule.setup()
    dataset = datamodule.datasets[split]
    size = int(datamodule.eval_batch_size)
    preds, targets, bounds = [], [], {level: ([], []) for level in levels}
    module.eval()
    c_out = datamodule.c_out
    with torch.no_grad():
        for start in range(0, len(dataset), size):
            batch = dataset.__getitems__(list(range(start, min(start + size, len(dataset)))))
            x, x_mark, y_mark = (batch[k].to(module.device) for k in ("x", "x_mark", "y_mark"))
            preds.append(module(x, x_mark, y_mark).double().cpu())
            targets.append(batch["y"].double())
            native = module.network.native_intervals(x, levels)
            if native is None:
                raise ConfigError(f"intervals.method=native: {type(module.network).__name__} with these settings has no "
                                  "intervals of its own (ETS: only with refit=once). Fix: intervals.method=conformal_error.")
            for level, (lo, hi) in native.items():
                bounds[level][0].append(lo[..., -c_out:].double().cpu())
                bounds[level][1].append(hi[..., -c_out:].double().cpu())
    bands = {level: (unscaled(datamodule, torch.cat(lo)), unscaled(datamodule, torch.cat(hi)))
             for level, (lo, hi) in bounds.items()}
    return unscaled(datamodule, torch.cat(preds)), unscaled(datamodule, torch.cat(targets)), bands


def interval_step(settings: dict, module: ForecastModule, datamodule: ForecastDataModule, trainer: pl.Trainer,
                  cfg: DictConfig | None = None) -> dict[str, float]:
    """Calibrate the tested weights (``module.calibration``, stored with the logged model) and
    score their intervals on the test windows: ``test/coverage_<L>``, ``test/width_<L>``,
    ``test/winkler_<L>``, ``test/msis_<L>``, ``test/wql``. ``native``: the network's own
    intervals instead (``wql`` over the same quantile grid, from its bands at levels 20, 40, 60
    and 80 and the point forecast as the median)."""
    if settings["method"] == intervals.NATIVE:
        module.test_outputs = []
        # the levels 20, 40, 60 and 80 besides the asked ones give the quantiles 0.1 … 0.9 of the wQL grid
        grid = sorted(set(settings["levels"]) | set(intervals.WQL_LEVELS))
        pred, actual, every = native_bands(module, datamodule, "test", grid)
        bands = {level: every[level] for level in settings["levels"]}
        quantiles = intervals.band_quantiles(pred, {level: every[level] for level in intervals.WQL_LEVELS})
        scores = intervals.interval_metrics(actual, bands, datamodule.mase_scale, quantiles)
        scores["windows"] = float(len(pred))
        return {f"test/{k}": v for k, v in scores.items()}
    if settings["method"] == intervals.CQR:  # the validation windows' quantile forecasts: calibration and its error
        validation = split_forecasts(module, datamodule, "val", quantile=True)
        module.calibration = calibrate(settings, module, datamodule, cfg, forecasts=validation)
        return {f"test/{k}": v for k, v in cqr_scores(module, datamodule, validation).items()}
    module.calibration = calibrate(settings, module, datamodule, cfg)
    if module.test_outputs and trainer.world_size == 1:
        pred = unscaled(datamodule, torch.cat([p for p, _ in module.test_outputs]))
        actual = unscaled(datamodule, torch.cat([t for _, t in module.test_outputs]))
    else:  # DDP: each process tested its share of the windows; score them all here
        pred, actual = split_forecasts(module, datamodule, "test")
    module.test_outputs = []
    scores = intervals.evaluate(module.calibration, pred, actual, datamodule.mase_scale)
    # the calibration windows' own error beside the test's (mae_orig): where they differ, the
    # coverage on the test windows drifts from nominal
    calibration_mae = float(np.abs(module.calibration.scores).mean())
    scores.update(windows=float(len(pred)), calibration_windows=float(module.calibration.n),
                  calibration_mae_orig=calibration_mae)
    return {f"test/{k}": v for k, v in scores.items()}


def cqr_scores(module: ForecastModule, datamodule: ForecastDataModule, validation: tuple) -> dict[str, float]:
    """The interval metrics of the CQR bands on every test window and the calibration windows'
    median error (``calibration_mae_orig``). ``wql`` is over the grid 0.1 … 0.9 of every other
    method (the conformalised bounds of the levels 20 … 80), so runs compare; a model trained
    on a grid without those quantiles (``module.quantiles``) logs ``wql_trained`` instead, over
    its bands' own bounds. ``validation``: the calibration windows' ``(quantile forecasts, actual)``."""
    module.test_outputs = []
    calibration = module.calibration
    forecasts, actual = split_forecasts(module, datamodule, "test", quantile=True)
    pred = calibration.point(forecasts)
    bands = calibration.bands(forecasts)
    scores = intervals.interval_metrics(actual, bands, datamodule.mase_scale)
    if set(intervals.WQL_LEVELS) <= set(calibration.score_levels):
        scores["wql"] = intervals.wql(actual, {tau: calibration.quantile(forecasts, tau) for tau in intervals.WQL_QUANTILES})
    else:
        scores["wql_trained"] = intervals.wql(actual, intervals.band_quantiles(pred, bands))
    val_forecasts, val_actual = validation
    scores.update(windows=float(len(pred)), calibration_windows=float(calibration.n),
                  calibration_mae_orig=float(np.abs(val_actual - calibration.point(val_forecasts)).mean()))
    return scores


def plot_decomposition(network: Network, datamodule: ForecastDataModule, title: str):
    """Trend/seasonal/residual figure of the training split, for a network that decomposes it
    (``network.training_decomposition(channels)``, e.g. the classical baselines); else None."""
    first = datamodule.enc_in - datamodule.c_out  # input position of the first target channel
    channels = [first + c for c in shown_channels(datamodule.c_out)]
    parts = network.training_decomposition(channels)
    if not parts:
        return None
    dates = datamodule.table.dates[datamodule.splits["train"].start : datamodule.splits["train"].end]
    return decomposition_figure(dates, parts, [datamodule.columns[c] for c in channels], f"{title}: training split")


def plot_windows(module: ForecastModule, datamodule: ForecastDataModule, n: int, title: str):
    """Forecast-vs-actual figure (original scale) of ``n`` evenly spaced test windows: the
    target and, in M mode, up to two other channels, after the last ``max(2·H, 96)`` inputs."""
    dataset = datamodule.datasets["test"]
    picks = np.unique(np.linspace(0, len(dataset) - 1, n).round().astype(int)).tolist()
    batch = dataset.__getitems__(picks)
    module.eval()
    inputs = [batch[k].to(module.device) for k in ("x", "x_mark", "y_mark")]
    with torch.no_grad():
        pred = module(*inputs).cpu()
        cqr = isinstance(module.calibration, intervals.QuantileCalibration)
        band_input = quantiles.unscale(datamodule.target_scaler, module.quantile_forecast(*inputs).double().cpu().numpy()) \
            if cqr else None
    c_out = datamodule.c_out
    shown = shown_channels(c_out)  # channel positions within the target block
    names = datamodule.columns[datamodule.enc_in - c_out :]
    # enough history for context without squeezing the horizon into a corner of the panel
    keep = min(datamodule.seq_len, max(2 * datamodule.pred_len, 96))
    history = datamodule.scaler.inverse_transform(batch["x"][:, -keep:].numpy())[..., datamodule.enc_in - c_out :]
    actual = datamodule.target_scaler.inverse_transform(batch["y"].numpy())
    forecast = datamodule.target_scaler.inverse_transform(pred.numpy())
    bands = module.calibration.bands(forecast if band_input is None else band_input) if module.calibration is not None else {}
    windows = []
    for i, pick in enumerate(picks):
        history_dates, dates = datamodule.window_dates("test", pick)
        windows.append({
            "history_dates": history_dates[-keep:], "history": history[i][:, shown],
            "dates": dates, "actual": actual[i][:, shown], "forecast": forecast[i][:, shown],
            "bands": {level: (lo[i][:, shown], hi[i][:, shown]) for level, (lo, hi) in bands.items()},
        })
    return forecast_figure(windows, [names[c] for c in shown], title)


def report_recommendations(cfg: DictConfig) -> list[Recommendation]:
    """Log one line per setting the model file makes outside ``model:`` (the run's look-back,
    epochs, schedule…), applied or overridden, with its reason (:func:`forecast.config.model_recommendations`)."""
    model = tracking.model_name(cfg)
    found = model_recommendations(cfg, model)
    for item in found:
        log.info(item.line(model))
    return found


def tag_recommendations(logger, found: list[Recommendation], model: str) -> None:
    """The ``recommends`` tag: the report's lines (``none`` when the model file makes no setting
    outside ``model:``), on every run so that the runs' tag columns line up."""
    lines = "\n".join(item.line(model) for item in found) or "none"
    logger.experiment.set_tag(logger.run_id, "recommends", lines[:5000])


def prepare(cfg: DictConfig) -> list[str]:
    """The start of every run (a training, each refit of a backtest): torch threads, malloc's
    thresholds (:func:`forecast.memory.keep_freed_memory`), the seed,
    and the debug checks (a debug run refuses ``record``/``register`` and logs to
    ``<experiment>-debug``). Returns :func:`forecast.tracking.debug_reasons`."""
    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    keep_freed_memory(int(cfg.get("malloc_keep_mb") or 0))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    debug = tracking.mark_debug(cfg)
    if debug:
        for key in ("record", "register"):
            if cfg.get(key):
                raise ConfigError(f"{key}={cfg[key]} refuses a debug run ({', '.join(debug)}: a smoke test, not a result). "
                                  f"Fix: drop {key}=, or train without trainer=debug and the trainer's batch/step limits.")
    return debug


def build_trainer(cfg: DictConfig, module: ForecastModule, logger, callbacks: Sequence[pl.Callback] = ()) -> pl.Trainer:
    """The configured trainer with the configured callbacks (less those with nothing to do) and
    ``callbacks`` added; ``logger`` ``None``: no logger."""
    callbacks = build_callbacks(cfg, module.trainable, logged=logger is not None) + list(callbacks)
    return instantiate(cfg.trainer, callbacks=callbacks, logger=logger or False)


def fit(cfg: DictConfig, trainer: pl.Trainer, module: ForecastModule, datamodule: ForecastDataModule) -> tuple[bool, str]:
    """Fit a network that trains (``cfg.train``; from ``cfg.ckpt_path`` when given); returns
    ``(fitted, best)``: whether it was fitted and its best validation checkpoint ("" if none)."""
    fitted = bool(cfg.train and module.trainable)
    if fitted:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    return fitted, best_checkpoint(trainer) if fitted else ""


def evaluated_checkpoint(cfg: DictConfig, fitted: bool, best: str) -> str | None:
    """The weights a run is tested (or a backtest forecasts) with: the best validation checkpoint
    after fitting (the weights as they stand when ``paper_compat`` reproduces a reference that
    tested its last epoch); else the given checkpoint, if any."""
    last_epoch = cfg.paper_compat and cfg.paper_quirks.test_last_epoch
    return (best if best and not last_epoch else None) if fitted else cfg.ckpt_path


def fit_training(module: ForecastModule, datamodule: ForecastDataModule) -> None:
    """What a network estimates on the training split outside fit (classical baselines: ``refit:
    once``, default periods from the frequency, the scaler for multiplicative models); a no-op
    for most."""
    train = datamodule.splits["train"]
    module.network.fit_training(datamodule.values[train.start : train.end], freq=datamodule.table.freq,
                                scaler=datamodule.scaler)


def run(cfg: DictConfig, callbacks: Sequence[pl.Callback] = ()) -> dict[str, float]:
    """Train and/or test one configuration; returns the test metrics (``test/mse``, …).
    ``callbacks`` are added to the configured ones (a program's own, not part of the config)."""
    # Everything that can reject the input happens before the logger exists, so a run that
    # fails validation leaves no trace in MLflow.
    debug = prepare(cfg)
    interval_settings = intervals.check_settings(cfg.get("intervals"))
    quantiles.check_intervals(interval_settings, cfg)
    if debug:
        log.info("debug run (%s): logged to experiment '%s' with tag debug=true; never ranked, registered or recorded",
                 ", ".join(debug), cfg.logger.experiment_name if cfg.get("logger") else "none")
    recommendations = report_recommendations(cfg)
    datamodule = build_data(cfg)
    module = build_module(cfg, datamodule)
    if interval_settings.get("method") == intervals.NATIVE and not intervals.has_native(module.network):
        raise ConfigError(f"intervals.method=native: {tracking.model_name(cfg)} has no prediction intervals of its own "
                          "(statsmodels gives them for arima and ets). Fix: intervals.method=conformal_error, which "
                          "calibrates any model on its validation windows.")
    if interval_settings.get("calibration") == "backtest" and not cfg.train and module.trainable:
        raise ConfigError("intervals.calibration=backtest trains the model again before its calibration cutoffs, but "
                          "train=false. Fix: intervals.calibration=val to calibrate the tested weights on the "
                          "validation windows, or train=true.")
    if cfg.get("init_from"):
        load_initial_weights(module, cfg.init_from)
    if cfg.ckpt_path:
        check_checkpoint(module, str(cfg.ckpt_path))
    # the command that trained the tested weights, found before anything runs (a row must say it)
    train_command = training_command(cfg, trains=bool(cfg.train and module.trainable)) if cfg.record else ""
    smoke = tracking.command_debug_reasons(train_command) if train_command else []
    if smoke:
        raise ConfigError(f"record={cfg.record} refuses weights trained by a debug run ({' '.join(smoke)}: a smoke test, "
                          f"not a result): {train_command}. Fix: test a checkpoint of a full training run.")
    lineage = datamodule.lineage()
    logger = tracking.create_logger(cfg, lineage)
    trainer = build_trainer(cfg, module, logger, callbacks)
    if logger is not None:
        tracking.log_config(logger, cfg, lineage)
        tracking.log_dataset(logger, datamodule, lineage)
        tracking.log_comparison_view(logger)
        if trainer.is_global_zero:
            tag_recommendations(logger, recommendations, tracking.model_name(cfg))

    try:
        fitted, best = fit(cfg, trainer, module, datamodule)
        estimated = not fitted and cfg.validate
        if estimated:  # a network that is not trained, validated once (a study's objective) after its training-split estimates
            fit_training(module, datamodule)
            trainer.validate(module, datamodule=datamodule)
        metrics: dict[str, float] = {}
        if cfg.test:
            if not estimated:
                fit_training(module, datamodule)
            module.keep_test = bool(interval_settings) and trainer.world_size == 1
            trainer.test(module, datamodule=datamodule, ckpt_path=evaluated_checkpoint(cfg, fitted, best))
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
            # e.g. fallbacks and warnings of statsmodels fits, of the test forecasts only (read before
            # the intervals' calibration forecasts the validation windows with the same network)
            diagnostics = module.network.diagnostics()
            if interval_settings:
                extra = interval_step(interval_settings, module, datamodule, trainer, cfg)
                metrics.update(extra)
                if logger is not None and trainer.is_global_zero:
                    logger.log_metrics(extra)
            if diagnostics:
                extra = reduce_diagnostics(trainer, diagnostics)
                metrics.update(extra)
                if logger is not None:
                    logger.log_metrics(extra)
            if logger is not None and trainer.is_global_zero:
                figure = plot_windows(module, datamodule, cfg.plot_windows, tracking.run_name(cfg))
                tracking.log_figure(logger, figure, "plots/forecast.png")
                plt.close(figure)
                figure = plot_decomposition(module.network, datamodule, tracking.run_name(cfg))
                if figure is not None:
                    tracking.log_figure(logger, figure, "plots/decomposition.png")
                    plt.close(figure)
                if best:
                    tracking.log_artifact(logger, best, "checkpoints")
                if cfg.log_model or cfg.register:  # the tested weights, config and scaler as a servable pyfunc
                    logged = tracking.log_model(logger, cfg, module, datamodule, lineage)
                    log.info("MLflow model %s%s", logged["model_uri"],
                             f" registered as {logged['name']} version {logged['version']}" if "name" in logged else "")
        if cfg.record and metrics and trainer.is_global_zero:
            record_accuracy(cfg, metrics, train_command, best=best, epochs_run=trainer.current_epoch if fitted else None)
        if logger is not None and trainer.is_global_zero:
            uri = str(cfg.logger.tracking_uri)
            where = tracking.comparison_view_url(uri, logger.experiment_id) if uri.startswith("http") \
                else f"`mlflow ui --backend-store-uri {uri}`"
            log.info("MLflow run '%s' (%s) in experiment '%s'; browse it at %s",
                     tracking.run_name(cfg), logger.run_id, cfg.logger.experiment_name, where)
        if best:
            log.info("best checkpoint: %s", best)
    except BaseException:
        if logger is not None:
            tracking.mark_failed(logger)
        raise
    return metrics
