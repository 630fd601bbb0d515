"""The program behind ``python backtest.py``: rolling-origin backtests of one or more models on
the same cutoffs.

For each model (``model=…``, or every entry of ``models=[…]``):

1. the cutoffs (:func:`forecast.evaluation.backtest_cutoffs`, identical for every model) are
   split into refit groups (:func:`forecast.evaluation.refit_groups`: ``refit=false`` one,
   ``refit=k`` one per ``k`` cutoffs, ``refit=true`` one per cutoff);
2. each group is one run of the train pipeline's steps (:mod:`forecast.pipelines.train`) on a
   data module that may see only the rows before the group's first cutoff (``data.cutoff``:
   validation = the last rows before it, the scaler and anything a classical model estimates
   fit on the training part), logged as a child MLflow run, followed by one batched forecast
   of every window of the group (``trainer.predict``);
3. the forecasts are scored per cutoff, per horizon step and overall, z-scored with the scaler
   of each window's own training rows and in the data's units (:func:`forecast.evaluation.score`),
   and logged to the model's backtest run (``kind=backtest``) with the long table and figures.

Several models get one more run above theirs (``kind=backtest-comparison``) with the table of
every model and the comparison figures. Everything that can reject the input (settings, data,
each model's config, the rows before the first cutoff) is checked before the first MLflow
write. ``resume=true`` continues the newest backtest run of the same config and data: a refit
whose child run finished and logged its forecasts is read back, not redone.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from forecast import ensemble, evaluation, intervals, plots, tracking  # plots sets the Agg backend before pyplot is used
from forecast.config import CONF_DIR
from forecast.data.datamodule import ForecastDataModule
from forecast.errors import ConfigError, DataError
from forecast.pipelines import train as steps

import matplotlib.pyplot as plt  # noqa: E402  isort: skip

log = logging.getLogger(__name__)
# Lightning's advert, printed by every refit's trainer
logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(lambda record: "litmodels" not in record.getMessage())

KIND, GROUP_KIND, REFIT_KIND = "backtest", "backtest-comparison", "refit"
# data settings every model of one backtest shares: the same rows, channels, horizon and splits
SHARED_DATA = ("name", "path", "target", "features", "pred_len", "freq", "date_col", "fill", "duplicates", "regularize",
               "split_by", "split_sizes")
# settings that do not change a backtest's forecasts (left out of its id, so a resumed run finds it)
NOT_IN_ID = ("resume", "models", "ensemble", "tags", "backtest.plot_cutoffs", "plot_windows", "log_model", "logger",
             "trainer.enable_progress_bar", "trainer.enable_model_summary", "num_threads")


# ------------------------------------------------------------------ models and plan
@dataclass
class Entry:
    """One model of a backtest: its column in the table, its config and its config-group choices
    (``model``, ``experiment``: its runs' names and tags)."""

    label: str
    cfg: DictConfig
    choices: dict


@dataclass
class Plan:
    """What every model of a backtest shares: the data, the cutoffs and their refit groups."""

    datamodule: ForecastDataModule   # the data config's own splits (the first model's settings)
    cutoffs: list[int]
    groups: list[list[int]]
    horizon: int
    step: int
    refit: object
    outputs: list[str]               # the forecast channels (target last)
    out_dir: Path
    lineage: dict = field(default_factory=dict)

    @property
    def dates(self) -> pd.DatetimeIndex:
        return self.datamodule.table.dates

    def actuals(self) -> np.ndarray:
        """``[W, H, C]``: the values of each window, data units."""
        return evaluation.actuals_at(self.datamodule.table, self.cutoffs, self.horizon, self.outputs)

    def describe(self) -> str:
        """The cutoff set, e.g. ``2017-06-25 00:00:00 + 12x96``: equal strings, identical cutoffs."""
        return f"{self.dates[self.cutoffs[0]]} + {len(self.cutoffs)}x{self.step}"


def entry_overrides(entry: str) -> list[str]:
    """The overrides of one entry of ``models=[…]``: a model (``conf/model``), an experiment
    (``conf/experiment``), or overrides of its own (``"model=karma model.d_model=64"``)."""
    entry = str(entry).strip()
    if "=" in entry:
        overrides = entry.split()
        if not any(o.startswith(("model=", "experiment=")) for o in overrides):
            raise ConfigError(f"models: the entry '{entry}' names no model. Fix: start it with model=<name> or "
                              "experiment=<name>.")
        return overrides
    if (CONF_DIR / "experiment" / f"{entry}.yaml").is_file():
        return [f"experiment={entry}"]
    if (CONF_DIR / "model" / f"{entry}.yaml").is_file():
        return [f"model={entry}"]
    known = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
    raise ConfigError(f"models: '{entry}' is neither a model (conf/model) nor an experiment (conf/experiment). "
                      f"Fix: use one of {', '.join(known)}, an experiment such as karma_etth1_96, or quoted overrides "
                      "\"model=karma model.d_model=64\".")


def task_overrides() -> list[str]:
    """The command line's overrides of this backtest (``python backtest.py <overrides>``)."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def model_entries(cfg: DictConfig, overrides: list[str] | None = None) -> list[Entry]:
    """The models of a backtest: the config itself (``models=[]``), or one config per entry of
    ``models``, each composed like ``python backtest.py <the other overrides> <its model>``."""
    if not cfg.get("models"):
        choices = {k: tracking.hydra_choice(k) for k in ("model", "experiment")}
        return [Entry(tracking.model_name(cfg), cfg, choices)]
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = task_overrides() if overrides is None else list(overrides)
    picked = [o for o in overrides if o.lstrip("+~").startswith(("model=", "experiment="))]
    if picked:
        raise ConfigError(f"{' '.join(picked)} with models=[…]: each entry of models names its own model. Fix: put it "
                          "in models, e.g. models=[dlinear,karma_etth1_96].")
    rest = [o for o in overrides if not o.lstrip("+~").startswith("models=")]
    entries = []
    for item in cfg.models:
        own = entry_overrides(item)
        try:
            if GlobalHydra.instance().is_initialized():
                composed = compose("backtest", overrides=[*rest, *own, "models=[]"], return_hydra_config=True)
            else:
                with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                    composed = compose("backtest", overrides=[*rest, *own, "models=[]"], return_hydra_config=True)
        except Exception as error:  # noqa: BLE001 - a Hydra composition error: one line with the fix
            from forecast.errors import config_error

            raise config_error(error) from None
        choices = {k: composed.hydra.runtime.choices.get(k) for k in ("model", "experiment")}
        with open_dict(composed):
            del composed["hydra"]
        label = choices["model"] or tracking.model_name(composed)
        entries.append(Entry(label, composed, choices))
    labels = [e.label for e in entries]
    twice = sorted({x for x in labels if labels.count(x) > 1})
    if twice:
        raise ConfigError(f"models: {twice} appear more than once; the table has one column per model. Fix: backtest "
                          "the variants of one model in separate runs (a Hydra multirun), which share the cutoffs too.")
    return entries


@contextmanager
def choices_of(entry: Entry):
    """Within the block, the Hydra choices of ``model`` and ``experiment`` are the entry's, so
    its runs are named and tagged as a ``train.py`` run of that model would be."""
    if not HydraConfig.initialized():
        yield
        return
    node = HydraConfig.get().runtime.choices
    saved = {k: node.get(k) for k in entry.choices}
    with read_write(node), open_dict(node):
        node.update(entry.choices)
    try:
        yield
    finally:
        with read_write(node), open_dict(node):
            node.update(saved)


def check_settings(cfg: DictConfig) -> None:
    """The settings a backtest refuses, with the fix (before anything is loaded)."""
    for key, why in (("record", "appends a test-split row to the accuracy benchmark"),
                     ("register", "registers a trained model"), ("alias", "points a registry alias")):
        if cfg.get(key):
            raise ConfigError(f"{key}={cfg[key]}: a backtest logs its own runs; {key} {why}, which a backtest does not "
                              f"make. Fix: drop {key}= (train.py does it).")
    if cfg.data.get("cutoff") is not None:
        raise ConfigError(f"data.cutoff={cfg.data.cutoff}: a backtest sets it for each refit. Fix: drop it; place the "
                          "cutoffs with backtest.start / backtest.end.")
    if cfg.data.get("fill") == "interpolate":
        raise ConfigError("data.fill=interpolate fills a gap from the rows on both sides, so a row before a cutoff could "
                          "take a value from after it. Fix: data.fill=ffill (earlier rows only) or repair the file.")
    if cfg.train and cfg.get("ckpt_path"):
        raise ConfigError(f"ckpt_path={cfg.ckpt_path} with train=true would resume one training; a backtest trains each "
                          "refit afresh. Fix: train=false ckpt_path=… to forecast every cutoff with those weights "
                          "(backtest.refit=false), or init_from=… to start each refit from them.")
    evaluation.refit_groups([0], cfg.backtest.refit)  # the refit setting's own check
    if cfg.resume and not (cfg.get("logger") and "_target_" in cfg.logger):
        raise ConfigError("resume=true finds the finished refits in MLflow, but logger=none. Fix: drop logger=none.")


def check_model(entry: Entry, plan: Plan, datamodule: ForecastDataModule, module) -> None:
    """What a model of this backtest must be: the same data as the others, and a config that can
    forecast every cutoff (weights to forecast with when nothing is trained)."""
    cfg, first = entry.cfg, plan.datamodule
    for key in SHARED_DATA:
        ours, theirs = getattr(datamodule, key, None), getattr(first, key, None)
        if key == "path":
            ours, theirs = str(ours), str(theirs)
        if ours != theirs:
            raise ConfigError(f"{entry.label} forecasts with data.{key}={ours}, the backtest's first model with {theirs}: "
                              "the models of one backtest share the data and the horizon. Fix: set data.{key} the same "
                              "for every model (or backtest them separately).")
    if module.trainable and not cfg.train:
        if plan.refit is not False:
            raise ConfigError(f"train=false with backtest.refit={plan.refit}: nothing would be retrained. Fix: "
                              "backtest.refit=false to forecast every cutoff with ckpt_path's weights, or train=true.")
        if not cfg.get("ckpt_path"):
            raise ConfigError(f"train=false: {entry.label} would forecast with untrained weights. Fix: give the weights "
                              "(ckpt_path=…/checkpoints/<best>.ckpt) or train=true.")


@contextmanager
def cutoff_at(cfg: DictConfig, cutoff: int):
    """``cfg`` with ``data.cutoff`` set for the block (no copy: copying a config costs more than
    what the block does with it)."""
    with open_dict(cfg):
        cfg.data.cutoff = cutoff
    try:
        yield cfg
    finally:
        with open_dict(cfg):
            cfg.data.cutoff = None


SOURCE_KEYS = ("path", "target", "date_col", "freq", "fill", "duplicates", "regularize")


def source_table(cfg: DictConfig, plan: "Plan"):
    """The file as the plan read it, when ``cfg`` reads it with the same settings (else None:
    its data module reads it itself)."""
    first = plan.datamodule
    same = all(str(cfg.data.get(k)) == str(getattr(first, k)) for k in SOURCE_KEYS)
    return first.table if same else None


def make_plan(cfg: DictConfig, entries: list[Entry]) -> Plan:
    """Load and check everything before MLflow sees anything: the data (the first model's
    settings), the cutoffs, and for each model the data before the first cutoff and its network.
    Returns the plan; raises ``ConfigError``/``DataError`` with the fix."""
    settings = cfg.backtest
    datamodule = steps.build_data(entries[0].cfg)  # the data config's own splits (data.cutoff is null)
    horizon = datamodule.pred_len
    history = 0
    for entry in entries:
        history = max(history, int(entry.cfg.data.seq_len))
    cutoffs = evaluation.backtest_cutoffs(datamodule.table.dates, int(settings.windows), horizon, settings.step,
                                          settings.start, settings.end, datamodule.splits["test"], history=history)
    step = int(settings.step) if settings.step is not None else horizon
    groups = evaluation.refit_groups(cutoffs, settings.refit)
    out_dir = Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else Path.cwd()
    plan = Plan(datamodule, cutoffs, groups, horizon, step, settings.refit,
                list(datamodule.columns[datamodule.enc_in - datamodule.c_out:]), out_dir, datamodule.lineage())
    for entry in entries:
        check_settings(entry.cfg)
        with choices_of(entry), cutoff_at(entry.cfg, cutoffs[0]) as probe:
            dm = steps.build_data(probe, source_table(probe, plan))  # the rows before the first cutoff: early stopping's too
            module = steps.build_module(probe, dm)
            check_model(entry, plan, dm, module)
            trainer = steps.build_trainer(probe, module, logger=None)
            if trainer.world_size > 1:
                raise ConfigError(f"a backtest forecasts in one process; the trainer runs {trainer.world_size}. "
                                  "Fix: trainer=cpu or trainer=gpu (one device).")
    return plan


# ------------------------------------------------------------------ ids and MLflow
def backtest_id(entry: Entry, plan: Plan) -> str:
    """A digest of what decides a model's backtest forecasts: its resolved config (less the
    settings of :data:`NOT_IN_ID` and output folders), the data's digest and the cutoffs."""
    flat = {k: v for k, v in tracking.flatten(entry.cfg).items()
            if not k.endswith(".dirpath") and not any(k == n or k.startswith(n + ".") for n in NOT_IN_ID)}
    text = json.dumps({"label": entry.label, "config": flat, "data": plan.lineage["sha256"], "cutoffs": plan.cutoffs,
                       "groups": [g[0] for g in plan.groups]}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


VALIDATION = "validation.npz"  # a refit's validation forecasts and actuals, kept for an ensemble (resume)


def ensemble_on(cfg: DictConfig) -> bool:
    """Whether the backtest combines its models (``ensemble.method`` set)."""
    node = cfg.get("ensemble")
    return bool(node is not None and node.get("method"))


def logging_on(cfg: DictConfig) -> bool:
    return bool(cfg.get("logger")) and "_target_" in cfg.logger


def find_run(cfg: DictConfig, **tags) -> str | None:
    """The newest run of this config's experiment with these tags, or None."""
    client = tracking.client(str(cfg.logger.tracking_uri))
    experiment = client.get_experiment_by_name(str(cfg.logger.experiment_name))
    if experiment is None:
        return None
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    found = client.search_runs([experiment.experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1)
    return found[0].info.run_id if found else None


def finished_refits(cfg: DictConfig, run_id: str) -> dict[int, object]:
    """The refits of backtest run ``run_id`` that finished and logged their forecasts, by index."""
    client = tracking.client(str(cfg.logger.tracking_uri))
    run = client.get_run(run_id)
    children = client.search_runs([run.info.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{run_id}' and tags.predictions = 'logged'")
    return {int(c.data.tags["refit_index"]): c for c in children if c.info.status == "FINISHED"}


def backtest_tags(entry: Entry, plan: Plan, ident: str, parent: str | None) -> dict[str, str]:
    """The tags a model's backtest run adds to those of a train run (``model``, ``dataset``…)."""
    refit = plan.refit
    tags = {"kind": KIND, "backtest_id": ident, "windows": str(len(plan.cutoffs)), "step": str(plan.step),
            "backtest_refit": str(refit).lower(), "warm_start": str(bool(entry.cfg.backtest.warm_start)).lower(),
            "refits": str(len(plan.groups)), "cutoffs": plan.describe(),
            "first_cutoff": str(plan.dates[plan.cutoffs[0] - 1]), "last_cutoff": str(plan.dates[plan.cutoffs[-1] - 1])}
    if parent:
        tags["mlflow.parentRunId"] = parent
    return tags


def _with_tags(cfg: DictConfig, tags: dict) -> DictConfig:
    out = copy.deepcopy(cfg)
    with open_dict(out):
        own = out.get("tags")
        out.tags = {**(OmegaConf.to_container(own) if own is not None else {}), **tags}
    return out


def _artifact(client, run_id: str, path: str, folder: Path) -> Path:
    from forecast.pipelines.predict import _no_progress_bar

    folder.mkdir(parents=True, exist_ok=True)
    with _no_progress_bar():  # a bar per file of a few kB
        return Path(client.download_artifacts(run_id, path, str(folder)))


# ------------------------------------------------------------------ one refit
@dataclass
class Refit:
    """What one refit gives: forecasts ``[W_g, H, C]`` (data units) of its cutoffs, the scale of
    its training rows (``std``, ``mase_scale``, per output channel) and, for a warm start, the
    file of its weights."""

    pred: np.ndarray
    std: np.ndarray
    mase_scale: np.ndarray
    weights: str | None = None
    run_id: str | None = None
    diagnostics: dict = field(default_factory=dict)
    calibration: intervals.Calibration | None = None  # conformal scores of its validation windows
    validation: tuple | None = None  # (pred, actual) [N, H, C] of its validation windows: an ensemble's selection


def interval_settings(cfg: DictConfig) -> dict:
    """A model's ``intervals:`` settings (``{}``: none); ``native`` ones are not backtested."""
    settings = intervals.check_settings(cfg.get("intervals"))
    if settings.get("calibration") == "backtest":  # a backtest inside each refit: each calibrates on its validation rows
        raise ConfigError("intervals.calibration=backtest in a backtest: each refit calibrates on its own validation "
                          "windows, the rows just before its cutoff. Fix: drop intervals.calibration (val).")
    return settings if settings.get("method") in intervals.METHODS else {}


def long_table(plan: Plan, cutoffs: list[int], predictions: dict[str, np.ndarray],
               bands: dict[str, dict] | None = None) -> pd.DataFrame:
    """``series, ds, cutoff, y, <model>…``: one row per forecast channel, cutoff and horizon step
    (series, then cutoff, then ``ds`` in order). ``cutoff`` is the last timestamp the models saw
    (neuralforecast's convention: every ``ds`` is after it); ``y`` and the forecasts are in the
    data's units. ``bands``: ``{model: {level: (lo, hi)}}`` adds ``<model>-lo-<level>`` and
    ``<model>-hi-<level>`` after each model's column."""
    dates, h, c = plan.dates, plan.horizon, len(plan.outputs)
    rows = np.asarray(cutoffs)[:, None] + np.arange(h)                         # [W, H] forecast rows
    w = len(cutoffs)
    index = [plan.datamodule.table.columns.index(name) for name in plan.outputs]
    actual = plan.datamodule.table.values[rows][..., index]                   # [W, H, C]
    frame = pd.DataFrame({
        "series": np.repeat(np.asarray(plan.outputs, dtype=object), w * h),
        "ds": np.tile(dates[rows.reshape(-1)].values, c),
        "cutoff": np.tile(np.repeat(dates[np.asarray(cutoffs) - 1].values, h), c),
        "y": actual.transpose(2, 0, 1).reshape(-1),
    })
    def flat(values):
        return np.asarray(values, dtype=np.float64).transpose(2, 0, 1).reshape(-1)

    for label, pred in predictions.items():
        frame[label] = flat(pred)
        for level, (lo, hi) in sorted(((bands or {}).get(label) or {}).items()):
            frame[f"{label}-lo-{level}"], frame[f"{label}-hi-{level}"] = flat(lo), flat(hi)
    return frame


def from_long(frame: pd.DataFrame, label: str, n_cutoffs: int, horizon: int, channels: int) -> np.ndarray:
    """The ``[W, H, C]`` forecasts of ``label`` back from a :func:`long_table`."""
    return frame[label].to_numpy(dtype=np.float64).reshape(channels, n_cutoffs, horizon).transpose(1, 2, 0)


def refit(entry: Entry, plan: Plan, cfg: DictConfig, index: int, group: list[int], parent: str | None, ident: str,
          init_from: str | None) -> Refit:
    """Train (or only prepare, for a network without trainable parameters) on the rows before
    ``group[0]`` and forecast every cutoff of ``group`` in batched forward passes; logged as a
    child run of ``parent`` (tags ``backtest_id``, ``refit_index``, ``cutoff``) with its
    forecasts, so that a resumed backtest can skip it. ``cfg``: a copy of the model's config that
    each refit sets (its cutoff, tags, starting weights and checkpoint folder)."""
    dates = plan.dates
    tags = {"kind": REFIT_KIND, "backtest_id": ident, "refit_index": str(index), "cutoff": str(dates[group[0] - 1]),
            "cutoff_row": str(group[0]), "windows": str(len(group))}
    if parent:
        tags["mlflow.parentRunId"] = parent
    own = entry.cfg.get("tags")
    folder = plan.out_dir / "refits" / entry.label / f"refit-{index}"
    with open_dict(cfg):
        cfg.data.cutoff = group[0]
        cfg.tags = {**(OmegaConf.to_container(own) if own is not None else {}), **tags}
        cfg.init_from = init_from
        for callback in cfg.callbacks.values():  # this refit's own checkpoint folder
            if callback and "dirpath" in callback:
                callback.dirpath = str(folder / "checkpoints")
    steps.prepare(cfg)
    datamodule = steps.build_data(cfg, source_table(cfg, plan))
    datamodule.origins = list(group)
    module = steps.build_module(cfg, datamodule)
    if cfg.get("init_from") and module.trainable:
        steps.load_initial_weights(module, cfg.init_from)
    lineage = datamodule.lineage()
    name = f"{entry.label} refit {index + 1}/{len(plan.groups)} (cutoff {dates[group[0] - 1]})"
    logger = tracking.create_logger(cfg, lineage, name=name)
    trainer = steps.build_trainer(cfg, module, logger)
    if logger is not None:
        tracking.log_config(logger, cfg, lineage)
    try:
        fitted, best = steps.fit(cfg, trainer, module, datamodule)
        steps.fit_training(module, datamodule)
        batches = trainer.predict(module, datamodule=datamodule, ckpt_path=steps.evaluated_checkpoint(cfg, fitted, best))
        scaled = torch.cat([b.detach().cpu() for b in batches]).double().numpy()
        pred = datamodule.target_scaler.inverse_transform(scaled)
        result = Refit(pred, np.asarray(datamodule.target_scaler.std, dtype=np.float64),
                       np.asarray(datamodule.mase_scale, dtype=np.float64), diagnostics=module.network.diagnostics())
        settings = interval_settings(cfg)
        validation = None
        if settings or ensemble_on(cfg):  # this refit's own validation windows: rows before its cutoff
            validation = steps.split_forecasts(module, datamodule, "val")
        if settings:
            result.calibration = steps.calibrate(settings, module, datamodule, forecasts=validation)
        if ensemble_on(cfg):
            result.validation = validation
        if entry.cfg.backtest.warm_start and module.trainable:
            folder.mkdir(parents=True, exist_ok=True)
            result.weights = str(folder / "network.pt")
            torch.save(module.network.state_dict(), result.weights)
        if logger is not None:
            result.run_id = logger.run_id
            log_refit(logger, plan, entry.label, group, result)
    except BaseException:
        if logger is not None:
            tracking.mark_failed(logger)
        raise
    return result


def log_refit(logger, plan: Plan, label: str, group: list[int], result: Refit) -> None:
    """A refit's forecasts (``predictions.parquet``), scale (``scale.json``), weights (warm start)
    and scores on its own cutoffs; tagged ``predictions=logged`` last, so that only a complete
    refit counts as done."""
    client, run_id = logger.experiment, logger.run_id
    actual = evaluation.actuals_at(plan.datamodule.table, group, plan.horizon, plan.outputs)
    scores = evaluation.score(result.pred, actual, result.std, result.mase_scale, evaluation.ALL_METRICS)
    if result.calibration is not None:
        scores.update(intervals.evaluate(result.calibration, result.pred, actual, result.mase_scale))
    for key, value in scores.items():
        if np.isfinite(value):
            client.log_metric(run_id, f"backtest/{key}", value)
    for key, value in result.diagnostics.items():
        client.log_metric(run_id, f"backtest/{key}", float(value))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "predictions.parquet"
        bands = {label: result.calibration.bands(result.pred)} if result.calibration is not None else None
        long_table(plan, group, {label: result.pred}, bands).to_parquet(path, index=False)
        client.log_artifact(run_id, str(path))
        if result.calibration is not None:
            client.log_artifact(run_id, str(result.calibration.save(Path(tmp) / intervals.FILE)))
        if result.weights:
            client.log_artifact(run_id, result.weights)
        if result.validation is not None:
            np.savez_compressed(Path(tmp) / VALIDATION, pred=result.validation[0], actual=result.validation[1])
            client.log_artifact(run_id, str(Path(tmp) / VALIDATION))
    client.log_dict(run_id, {"std": result.std.tolist(), "mase_scale": result.mase_scale.tolist(),
                             "outputs": plan.outputs}, "scale.json")
    client.set_tag(run_id, "predictions", "logged")
    client.set_terminated(run_id, "FINISHED")


def read_refit(cfg: DictConfig, run, plan: Plan, label: str, group: list[int], folder: Path) -> Refit:
    """A finished refit read back from its child run (``resume=true``)."""
    client = tracking.client(str(cfg.logger.tracking_uri))
    if run.data.tags.get("cutoff_row") != str(group[0]):
        raise DataError(f"refit {run.data.tags.get('refit_index')} of the resumed backtest forecast from row "
                        f"{run.data.tags.get('cutoff_row')}, this one from row {group[0]}. Fix: resume=false.")
    frame = pd.read_parquet(_artifact(client, run.info.run_id, "predictions.parquet", folder))
    scale = json.loads(_artifact(client, run.info.run_id, "scale.json", folder).read_text())
    pred = from_long(frame, label, len(group), plan.horizon, len(plan.outputs))
    weights = None
    logged = [a.path for a in client.list_artifacts(run.info.run_id)]
    if cfg.backtest.warm_start and "network.pt" in logged:
        weights = str(_artifact(client, run.info.run_id, "network.pt", folder))
    calibration = None
    if intervals.FILE in logged and interval_settings(cfg):
        calibration = intervals.Calibration.load(_artifact(client, run.info.run_id, intervals.FILE, folder))
    validation = None
    if ensemble_on(cfg):
        if VALIDATION not in logged:
            raise DataError(f"{label}: refit {run.data.tags.get('refit_index')} of the resumed backtest kept no "
                            "validation forecasts (logged without ensemble.method), which an ensemble's weights "
                            "need. Fix: resume=false.")
        with np.load(_artifact(client, run.info.run_id, VALIDATION, folder)) as data:
            validation = (data["pred"], data["actual"])
    return Refit(pred, np.asarray(scale["std"]), np.asarray(scale["mase_scale"]), weights, run.info.run_id,
                 calibration=calibration, validation=validation)


# ------------------------------------------------------------------ one model
@dataclass
class ModelResult:
    label: str
    pred: np.ndarray          # [W, H, C] data units
    std: np.ndarray           # [W, C] the z-scoring of each window: the scaler of its training rows
    mase_scale: np.ndarray    # [W, C]
    run_id: str | None
    refits_run: int           # refits trained (or prepared) by this call
    refits_read: int          # refits read back from a resumed run
    seconds: float
    bands: dict = field(default_factory=dict)      # {level: (lo, hi)} [W, H, C], each refit's own calibration
    quantiles: dict = field(default_factory=dict)  # {tau: [W, H, C]}: the wQL grid
    validation: list = field(default_factory=list)  # per refit group: (pred, actual) of its validation windows
    weights: list = field(default_factory=list)     # an ensemble's, per refit group (ensemble_result)


def fill_intervals(bands: dict, quantiles: dict, span: slice, calibration, pred: np.ndarray, levels) -> None:
    """Write ``calibration``'s bands of ``levels`` and its wQL quantiles around ``pred`` (the
    windows ``span`` of a refit group) into the ``[W, H, C]`` arrays of ``bands`` and ``quantiles``."""
    for level, (lo, hi) in calibration.bands(pred, levels).items():
        bands[level][0][span], bands[level][1][span] = lo, hi
    for tau in quantiles:
        quantiles[tau][span] = calibration.quantile(pred, tau)


def backtest_model(entry: Entry, plan: Plan, parent: str | None) -> ModelResult:
    """Every refit of one model (skipping those a resumed run finished), its scores, table and
    figures logged to its backtest run."""
    from tqdm.auto import tqdm

    cfg, label = entry.cfg, entry.label
    started = time.perf_counter()
    w, c = len(plan.cutoffs), len(plan.outputs)
    pred = np.full((w, plan.horizon, c), np.nan)
    std, scale = np.ones((w, c)), np.ones((w, c))
    settings = interval_settings(cfg)
    bands = {level: (np.full_like(pred, np.nan), np.full_like(pred, np.nan)) for level in settings.get("levels", [])}
    quantiles = {tau: np.full_like(pred, np.nan) for tau in (intervals.WQL_QUANTILES if settings else ())}
    ident = backtest_id(entry, plan)
    logger, done = None, {}
    if logging_on(cfg):
        found = find_run(cfg, backtest_id=ident, kind=KIND) if cfg.resume else None
        if found:
            done = finished_refits(cfg, found)
            log.info("%s: resuming backtest run %s: %d of %d refits done", label, found, len(done), len(plan.groups))
            logger = tracking.create_logger(cfg, plan.lineage, run_id=found)
            tracking.client(str(cfg.logger.tracking_uri)).update_run(found, status="RUNNING")
        else:
            tagged = _with_tags(cfg, backtest_tags(entry, plan, ident, parent))
            logger = tracking.create_logger(tagged, plan.lineage, name=f"backtest {tracking.run_name(cfg)} "
                                            f"{w}x{plan.step} refit={str(plan.refit).lower()}")
            tracking.log_config(logger, cfg, plan.lineage)
            tracking.log_dataset(logger, plan.datamodule, plan.lineage)
            steps.tag_recommendations(logger, steps.report_recommendations(cfg), label)
    run_id = logger.run_id if logger is not None else None
    trained = read = 0
    weights = cfg.get("init_from")
    validation = []
    template = copy.deepcopy(cfg)  # each refit sets its cutoff, tags, weights and folder in it
    quiet = cfg.trainer.get("enable_progress_bar") is False  # else shown where the output is a terminal
    bar = tqdm(total=w, desc=f"{label} backtest", unit="cutoff", disable=True if quiet else None, file=sys.stderr)
    position = 0
    try:
        with tempfile.TemporaryDirectory(prefix="forecast-resume-") as tmp:
            for index, group in enumerate(plan.groups):
                if index in done:
                    result = read_refit(cfg, done[index], plan, label, group, Path(tmp) / str(index))
                    read += 1
                else:
                    start_from = weights if cfg.backtest.warm_start else cfg.get("init_from")
                    result = refit(entry, plan, template, index, group, run_id, ident, start_from)
                    trained += 1
                span = slice(position, position + len(group))
                pred[span], std[span], scale[span] = result.pred, result.std, result.mase_scale
                if settings and result.calibration is None:
                    raise DataError(f"{label}: refit {index} of the resumed backtest has no interval calibration "
                                    "(logged before intervals were on). Fix: resume=false.")
                if settings:
                    fill_intervals(bands, quantiles, span, result.calibration, result.pred, settings["levels"])
                weights = result.weights or weights
                validation.append(result.validation)
                position += len(group)
                bar.update(len(group))
                bar.set_postfix(refit=f"{index + 1}/{len(plan.groups)}")
        bar.close()
        result = ModelResult(label, pred, std, scale, run_id, trained, read, time.perf_counter() - started, bands,
                             quantiles, validation if ensemble_on(cfg) else [])
        if logger is not None:
            log_backtest(logger.experiment, run_id, plan, [result], cfg)
            logger.experiment.set_terminated(run_id, "FINISHED")
    except BaseException:
        bar.close()
        if logger is not None:
            tracking.mark_failed(logger)
        raise
    return result


# ------------------------------------------------------------------ the ensemble
def ensemble_result(plan: Plan, results: list[ModelResult], settings: dict, interval: dict) -> ModelResult:
    """The ensemble of ``results`` (:mod:`forecast.ensemble`) as one more model, from the
    members' backtest forecasts (nothing is retrained). For each refit group the weights (and
    ``top_k``'s choice) are fitted on the members' forecasts of that refit's **validation
    windows**, rows before the group's first cutoff, and the ensemble's intervals (``interval``:
    the backtest's ``intervals:`` settings) are conformal on the ensemble's own errors on those
    windows. ``result.weights`` holds, per group, ``{"weights": {member: w}, "mse": {member:
    validation MSE}}``."""
    started = time.perf_counter()
    name = ensemble.label(settings)
    members = [r.label for r in results]
    pred = np.full_like(results[0].pred, np.nan)
    bands = {level: (np.full_like(pred, np.nan), np.full_like(pred, np.nan)) for level in interval.get("levels", [])}
    quantiles = {tau: np.full_like(pred, np.nan) for tau in (intervals.WQL_QUANTILES if interval else ())}
    chosen, position = [], 0
    for g, group in enumerate(plan.groups):
        span = slice(position, position + len(group))
        position += len(group)
        actual = results[0].validation[g][1]
        for r in results[1:]:
            theirs = r.validation[g][1]
            if theirs.shape != actual.shape or not np.allclose(theirs, actual, rtol=0, atol=1e-9, equal_nan=True):
                raise DataError(f"{name}: {r.label} and {results[0].label} were validated on different windows before "
                                f"the cutoff {plan.dates[group[0] - 1]} ({theirs.shape} and {actual.shape}). Fix: give "
                                "every member the same data.split_sizes.")
        val = np.stack([r.validation[g][0] for r in results])             # [M, N, H, C]
        scale = results[0].std[span.start]                                 # the z-scoring of the group's training rows
        weights, calibration = ensemble.fit(settings["method"], val, actual, settings["top_k"], scale, interval)
        pred[span] = ensemble.combine(np.stack([r.pred[span] for r in results]), weights, settings["method"])
        if calibration is not None:
            fill_intervals(bands, quantiles, span, calibration, pred[span], interval["levels"])
        mse = ensemble.selection_mse(val, actual, scale)
        chosen.append({"cutoff": str(plan.dates[group[0] - 1]), "weights": dict(zip(members, weights.round(6).tolist())),
                       "mse": dict(zip(members, mse.round(6).tolist()))})
        log.info("%s, refit %d: weights %s (validation mse %s)", name, g + 1,
                 ", ".join(f"{m} {w:.3f}" for m, w in zip(members, weights)),
                 ", ".join(f"{m} {e:.4f}" for m, e in zip(members, mse)))
    return ModelResult(name, pred, results[0].std, results[0].mase_scale, None, 0, 0, time.perf_counter() - started,
                       bands, quantiles, weights=chosen)


# ------------------------------------------------------------------ scores, figures, logging
def metrics_table(plan: Plan, results: list[ModelResult]) -> pd.DataFrame:
    """Scores of every model: ``level`` ``overall``, ``cutoff`` (one row per cutoff, its
    timestamp in ``cutoff``) and ``step`` (one row per horizon step, 1 first), with every test
    metric (``mse``/``mae`` z-scored with the scaler of each window's training rows, the others
    in the data's units) and, for a model with intervals, ``coverage_<L>``, ``width_<L>``,
    ``winkler_<L>``, ``msis_<L>`` and ``wql`` (:func:`forecast.intervals.interval_metrics`)."""
    actual = plan.actuals()
    cutoff_dates = plan.dates[np.asarray(plan.cutoffs) - 1]
    rows = []
    for r in results:
        args = (r.pred, actual, r.std, r.mase_scale, evaluation.ALL_METRICS)

        def interval_scores(windows, steps=slice(None)):
            if not r.bands:
                return {}
            bands = {level: (lo[windows, steps], hi[windows, steps]) for level, (lo, hi) in r.bands.items()}
            quantiles = {tau: q[windows, steps] for tau, q in r.quantiles.items()}
            return intervals.interval_metrics(actual[windows, steps], bands, r.mase_scale[windows], quantiles)

        everything = slice(None)
        rows.append({"model": r.label, "level": "overall", "cutoff": pd.NaT, "step": np.nan,
                     **evaluation.score(*args), **interval_scores(everything)})
        for i, (when, s) in enumerate(zip(cutoff_dates, evaluation.score_per_cutoff(*args))):
            rows.append({"model": r.label, "level": "cutoff", "cutoff": when, "step": np.nan, **s,
                         **interval_scores(slice(i, i + 1))})
        for h, s in enumerate(evaluation.score_per_step(*args), start=1):
            rows.append({"model": r.label, "level": "step", "cutoff": pd.NaT, "step": h, **s,
                         **interval_scores(everything, slice(h - 1, h))})
    frame = pd.DataFrame(rows)
    frame["step"] = frame["step"].astype("Int64")
    return frame


def metric_names(metrics: pd.DataFrame) -> list[str]:
    """The metric columns of a :func:`metrics_table`: the test metrics, then the interval ones."""
    return [c for c in metrics.columns if c not in ("model", "level", "cutoff", "step")]


def figures(plan: Plan, results: list[ModelResult], metrics: pd.DataFrame, title: str, picks: int, seq_len: int):
    """``{artifact name: figure}``: MSE by cutoff, MSE by horizon step, and forecasts against
    actuals at ``picks`` evenly spaced cutoffs."""
    def mse(label: str, level: str) -> np.ndarray:
        return metrics.loc[(metrics["model"] == label) & (metrics["level"] == level), "mse"].to_numpy()

    # in the order (and so the colours) of the forecasts figure
    labels = sorted((r.label for r in results), reverse=True)
    by_cutoff = {label: mse(label, "cutoff") for label in labels}
    by_step = {label: mse(label, "step") for label in labels}
    cutoff_dates = plan.dates[np.asarray(plan.cutoffs) - 1]
    shown = np.unique(np.linspace(0, len(plan.cutoffs) - 1, max(1, min(picks, len(plan.cutoffs)))).round().astype(int))
    return {
        "plots/error_by_cutoff.png": plots.errors_figure(cutoff_dates, by_cutoff, "cutoff (last timestamp seen)",
                                                         "MSE (z-scored)", f"{title}: error by cutoff"),
        "plots/error_by_step.png": plots.errors_figure(np.arange(1, plan.horizon + 1), by_step, "horizon step",
                                                       "MSE (z-scored)", f"{title}: error by horizon step"),
        "plots/forecasts.png": plots.cutoffs_figure(plan.datamodule.table, [plan.cutoffs[i] for i in shown], plan.outputs,
                                                    {r.label: r.pred[shown] for r in results}, seq_len, plan.horizon,
                                                    f"{title}: forecasts at {len(shown)} cutoffs"),
    }


def log_backtest(client, run_id: str, plan: Plan, results: list[ModelResult], cfg: DictConfig) -> pd.DataFrame:
    """Scores (overall ``backtest/<metric>``; ``backtest/by_cutoff/<metric>`` and
    ``backtest/by_step/<metric>`` with the cutoff's or step's index as the MLflow step; with
    several models each key is prefixed by the model), ``backtest.parquet``, ``metrics.csv``
    and the figures of ``results`` to run ``run_id``."""
    from mlflow.entities import Metric

    metrics = metrics_table(plan, results)
    now = int(time.time() * 1000)
    batch = []
    for r in results:
        prefix = f"{r.label}/" if len(results) > 1 else ""
        own = metrics[metrics["model"] == r.label]
        for level, key in (("overall", "backtest"), ("cutoff", "backtest/by_cutoff"), ("step", "backtest/by_step")):
            for i, row in enumerate(own[own["level"] == level].itertuples()):
                step = 0 if level == "overall" else (i if level == "cutoff" else int(row.step))
                for name in metric_names(metrics):
                    value = float(getattr(row, name))
                    if np.isfinite(value):
                        batch.append(Metric(f"{prefix}{key}/{name}", value, now, step))
        if len(results) == 1:
            batch.append(Metric("backtest/seconds", r.seconds, now, 0))
    for i in range(0, len(batch), 900):
        client.log_batch(run_id, metrics=batch[i : i + 900])
    table = long_table(plan, plan.cutoffs, {r.label: r.pred for r in results}, {r.label: r.bands for r in results})
    with tempfile.TemporaryDirectory() as tmp:
        table.to_parquet(Path(tmp) / "backtest.parquet", index=False)
        metrics.to_csv(Path(tmp) / "metrics.csv", index=False)
        client.log_artifact(run_id, str(Path(tmp) / "backtest.parquet"))
        client.log_artifact(run_id, str(Path(tmp) / "metrics.csv"))
    title = f"{plan.lineage['name']} {len(plan.cutoffs)}x{plan.step} refit={str(plan.refit).lower()}"
    seq_len = min(int(cfg.data.seq_len), 336)
    for name, figure in figures(plan, results, metrics, title, int(cfg.backtest.plot_cutoffs), seq_len).items():
        client.log_figure(run_id, figure, name)
        plt.close(figure)
    return metrics


# ------------------------------------------------------------------ the program
def run(cfg: DictConfig, overrides: list[str] | None = None) -> pd.DataFrame:
    """Backtest the model of ``cfg`` (or each of ``cfg.models``) on the cutoffs of
    ``cfg.backtest``; returns the long table ``series, ds, cutoff, y, <model>…`` with the scores
    in ``table.attrs["metrics"]`` (:func:`metrics_table`) and the MLflow run ids in
    ``table.attrs["runs"]``. Writes ``backtest.parquet`` and ``metrics.csv`` into the run's
    output folder. ``overrides``: the command line's (default: Hydra's), from which the configs
    of ``models=[…]`` are composed."""
    check_settings(cfg)
    entries = model_entries(cfg, overrides)
    combined = ensemble.check_settings(cfg.get("ensemble"), [e.label for e in entries])
    for entry in entries:
        with choices_of(entry):
            debug = steps.prepare(entry.cfg)  # record/register refused; a debug run logs to <experiment>-debug
            if debug:
                log.info("debug backtest of %s (%s): logged to experiment '%s' with tag debug=true; never ranked",
                         entry.label, ", ".join(debug), entry.cfg.logger.experiment_name if logging_on(entry.cfg) else "none")
    plan = make_plan(cfg, entries)  # every check; nothing is logged before it returns
    log.info("backtest of %s on %d cutoffs from %s, %d rows apart, horizon %d; %d training(s) per model",
             ", ".join(e.label for e in entries), len(plan.cutoffs), plan.dates[plan.cutoffs[0]], plan.step,
             plan.horizon, len(plan.groups))
    group_run = None
    if len(entries) > 1 and logging_on(entries[0].cfg):
        group_run = comparison_run(cfg, entries, plan)
    results = []
    try:
        for entry in entries:
            with choices_of(entry):
                results.append(backtest_model(entry, plan, group_run))
        if combined:
            results.append(ensemble_result(plan, results, combined, interval_settings(cfg)))
        metrics = metrics_table(plan, results)
        if group_run:
            client = tracking.client(str(entries[0].cfg.logger.tracking_uri))
            log_backtest(client, group_run, plan, results, entries[0].cfg)
            if combined:
                client.log_dict(group_run, {**combined, "label": results[-1].label, "groups": results[-1].weights},
                                ensemble.FILE)
            client.set_terminated(group_run, "FINISHED")
    except BaseException:
        if group_run:
            tracking.client(str(entries[0].cfg.logger.tracking_uri)).set_terminated(group_run, "FAILED")
        raise
    table = long_table(plan, plan.cutoffs, {r.label: r.pred for r in results}, {r.label: r.bands for r in results})
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    table.to_parquet(plan.out_dir / "backtest.parquet", index=False)
    metrics.to_csv(plan.out_dir / "metrics.csv", index=False)
    overall = metrics[metrics["level"] == "overall"].set_index("model")
    for r in results:
        log.info("%s: backtest mse %.4f, mae %.4f (z-scored), mae_orig %.4f over %d cutoffs; %d refit(s) trained, %d "
                 "resumed, %.1f s", r.label, overall.loc[r.label, "mse"], overall.loc[r.label, "mae"],
                 overall.loc[r.label, "mae_orig"], len(plan.cutoffs), r.refits_run, r.refits_read, r.seconds)
    log.info("table: %s (%d rows); scores: %s", plan.out_dir / "backtest.parquet", len(table), plan.out_dir / "metrics.csv")
    table.attrs["metrics"] = metrics
    if combined:  # per refit group: the weights and the validation MSE they came from
        table.attrs["ensemble"] = {**combined, "label": results[-1].label, "groups": results[-1].weights}
    table.attrs["runs"] = {r.label: r.run_id for r in results} | ({"comparison": group_run} if group_run else {})
    table.attrs["refits"] = {r.label: {"trained": r.refits_run, "resumed": r.refits_read} for r in results}
    return table


def comparison_run(cfg: DictConfig, entries: list[Entry], plan: Plan) -> str:
    """The run above the models' backtest runs (created, or found again with ``resume``)."""
    first = entries[0].cfg
    ident = hashlib.sha256("".join(backtest_id(e, plan) for e in entries).encode()).hexdigest()[:16]
    if cfg.resume:
        found = find_run(first, backtest_id=ident, kind=GROUP_KIND)
        if found:
            tracking.client(str(first.logger.tracking_uri)).update_run(found, status="RUNNING")
            return found
    client = tracking.client(str(first.logger.tracking_uri))
    experiment = tracking.experiment_id(client, str(first.logger.experiment_name))
    labels = [e.label for e in entries]
    tags = {**backtest_tags(entries[0], plan, ident, None), "kind": GROUP_KIND, "models": ",".join(labels),
            "dataset": str(first.data.name), "features": str(first.data.features), "horizon": str(plan.horizon),
            "debug": str(bool(tracking.debug_reasons(first))).lower(), "data_sha256": plan.lineage["sha256"],
            "command": tracking.command_line(), **tracking.code_tags(),
            "mlflow.runName": f"backtest {'+'.join(labels)} {plan.lineage['name']} {len(plan.cutoffs)}x{plan.step} "
                              f"refit={str(plan.refit).lower()}"}
    sweep = tracking.sweep_id()
    if sweep:
        tags["mlflow.parentRunId"] = tracking.sweep_parent(str(first.logger.tracking_uri),
                                                           str(first.logger.experiment_name), sweep)
    run_id = client.create_run(experiment, tags=tags).info.run_id
    client.log_dict(run_id, plan.lineage, "data.json")
    return run_id
