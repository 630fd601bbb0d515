"""The program behind ``python predict.py``: a registered MLflow model + a history file -> forecast.

Everything that can reject the input (the output name, the model URI, the file, its columns,
frequency and length) is checked before anything is written: the file by the same function,
with the same rules, as a request to the served model (:mod:`forecast.serving`), its problems
worded with the options this program accepts (``data.date_col``, ``data.fill``,
``data.duplicates``, ``data.regularize``). Loading the model writes nothing into the run's
artifacts (MLflow would add a ``registered_model_meta`` file to a local artifact store).
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from forecast import intervals, plots  # also sets the Agg backend before pyplot is used
from forecast.errors import ConfigError
from forecast.serving import PROGRESS_BAR, ForecastModel

import matplotlib.pyplot as plt  # noqa: E402  isort: skip

log = logging.getLogger(__name__)

FORMATS = {".csv": "CSV", ".parquet": "Parquet", ".pq": "Parquet"}


def load_model(model_uri: str, tracking_uri: str | None = None):
    """The pyfunc model at ``model_uri`` and its :class:`ForecastModel`; a clear error when the
    URI names nothing or a model that is not a forecast model."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    try:
        # into a folder of our own: without one, a models:/ URI on a local artifact store loads
        # the run's own folder and MLflow writes registered_model_meta into it. Everything the
        # model needs is read at load time, so the copy goes when loading is done.
        with warnings.catch_warnings(), tempfile.TemporaryDirectory(prefix="forecast-model-") as copy, \
                _no_progress_bar():
            warnings.simplefilter("ignore")
            model = mlflow.pyfunc.load_model(model_uri, dst_path=copy)
    except (MlflowException, OSError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(
            f"model_uri={model_uri}: cannot be loaded from the tracking server {mlflow.get_tracking_uri()} ({first}). "
            "Fix: give a registered model and alias or version (models:/etth1-karma@champion, models:/etth1-karma/3), "
            "a logged model (models:/<model id>) or a run's model (runs:/<run id>/model), and point "
            "MLFLOW_TRACKING_URI (or tracking_uri=...) at the server that holds it."
        ) from None
    impl = model.unwrap_python_model()
    if not isinstance(impl, ForecastModel):
        raise ConfigError(f"model_uri={model_uri} is a {type(impl).__name__}, not a forecast model logged by train.py.")
    return model, impl


@contextmanager
def _no_progress_bar():
    """MLflow draws a progress bar per downloaded model (of a few kB) on stderr: noise in a
    forecast's output."""
    saved = os.environ.get(PROGRESS_BAR)
    os.environ[PROGRESS_BAR] = "false"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(PROGRESS_BAR, None)
        else:
            os.environ[PROGRESS_BAR] = saved


def output_path(output: str) -> Path:
    path = Path(output)
    if path.suffix.lower() not in FORMATS:
        raise ConfigError(f"output={output}: unknown format '{path.suffix}'. Fix: end the name in .csv or .parquet.")
    return path


def prediction_figure(history: pd.DataFrame, forecast: pd.DataFrame, date_col: str, title: str,
                      channels: list[str] | None = None):
    """History (grey) and forecast (blue, its prediction intervals shaded) of the target and, in M
    mode, up to two more channels; ``channels``: the forecast channels (default: every column
    but the date and the ``-lo-``/``-hi-`` ones)."""
    if channels is None:
        channels = [c for c in forecast.columns.drop(date_col) if "-lo-" not in str(c) and "-hi-" not in str(c)]
    shown = plots.shown_channels(len(channels))
    fig, axes = plt.subplots(1, len(shown), figsize=(4.8 * len(shown), 2.8), squeeze=False)
    for ax, c in zip(axes[0], shown):
        name = channels[c]
        ax.plot(history[date_col], history[name], color="0.55", lw=1.0, label="history")
        levels = sorted({int(c.rsplit("-", 1)[1]) for c in forecast.columns if str(c).startswith(f"{name}-lo-")})
        bands = {level: (forecast[[f"{name}-lo-{level}"]].to_numpy(), forecast[[f"{name}-hi-{level}"]].to_numpy())
                 for level in levels}
        plots.draw_bands(ax, forecast[date_col], bands, 0, "tab:blue")
        ax.plot(forecast[date_col], forecast[name], color="tab:blue", lw=1.4, label="forecast")
        ax.axvline(forecast[date_col].iloc[0], color="0.8", lw=0.8, ls="--")
        ax.set_title(name, fontsize=10)
        ax.tick_params(labelsize=7)
        for label in ax.get_xticklabels():
            label.set_rotation(30)
    axes[0, -1].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def required(cfg: DictConfig) -> None:
    """``model_uri`` and ``data.path`` are given: one line with the fix instead of Hydra's traceback."""
    example = "python predict.py model_uri=models:/etth1-dlinear@champion data.path=history.csv"
    for key in ("model_uri", "data.path"):
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if node is None or leaf not in node or OmegaConf.is_missing(node, leaf):
            raise ConfigError(f"{key} is not set. Fix: give it on the command line, e.g. {example}.")


def report_repairs(table, cfg: DictConfig, fill: str | None) -> None:
    """One line per repair that changed the history, so a repaired forecast is never taken for a clean one."""
    done, source = table.repairs, cfg.data.path
    if done["duplicates_dropped"]:
        log.warning("%s: data.duplicates=%s dropped %d row(s) with a repeated timestamp", source, cfg.data.duplicates,
                    done["duplicates_dropped"])
    if done["rows_inserted"]:
        log.warning("%s: data.regularize=true inserted %d missing timestamp(s) at the step '%s'", source,
                    done["rows_inserted"], table.freq.freqstr)
    if done["values_filled"]:
        log.warning("%s: data.fill=%s filled %d missing value(s)", source, fill, done["values_filled"])


def adapted_alphas(cfg: DictConfig, impl: ForecastModel, table, levels) -> dict | None:
    """With ``aci.windows=k``: the miscoverage per level after adaptive conformal inference over
    the history's last ``k`` horizon-long windows (each forecast from the rows before it, as a
    request would be, and scored against what followed); ``None`` without."""
    from forecast import evaluation

    windows = int(cfg.get("aci", {}).get("windows") or 0)
    if not windows:
        return None
    if impl.calibration is None:
        raise ConfigError(f"aci.windows={windows}: {cfg.model_uri} was logged without intervals. Fix: drop aci.windows, "
                          "or forecast with a model trained with intervals.method=conformal_error.")
    if isinstance(impl.calibration, intervals.QuantileCalibration):
        raise ConfigError(f"aci.windows={windows}: {cfg.model_uri} has CQR intervals (intervals.method=cqr), which "
                          "adaptive conformal inference does not adapt yet. Fix: drop aci.windows, or forecast with a model "
                          "trained with intervals.method=conformal_error.")
    spec = impl.spec
    gamma = cfg.aci.get("gamma")
    if gamma is None:
        gamma = float(OmegaConf.select(impl.cfg, "intervals.aci_gamma", default=0.005))
    cutoffs = evaluation.rolling_origins(table.n_rows, windows, spec.pred_len, start=spec.seq_len, setting="aci.windows")
    pred = evaluation.forecasts_from(impl, table, cutoffs, spec.outputs)
    actual = evaluation.actuals_at(table, cutoffs, spec.pred_len, spec.outputs)
    levels = levels or impl.levels
    alphas = intervals.adapt_alphas(impl.calibration, pred, actual, levels, gamma)
    log.info("aci: over the last %d windows the bands of levels %s forecast with miscoverage %s (nominal %s)", windows,
             levels, {k: round(v, 4) for k, v in alphas.items()}, {k: round(1 - k / 100, 4) for k in levels})
    return alphas


def run(cfg: DictConfig) -> dict:
    """Forecast the ``pred_len`` steps after the last row of ``cfg.data.path``; write
    ``cfg.output`` (CSV or Parquet) and a PNG beside it. Returns the paths and the forecast."""
    required(cfg)
    output = output_path(str(cfg.output))
    levels = intervals.check_levels(cfg.get("levels"), "levels") or None
    model, impl = load_model(str(cfg.model_uri), cfg.get("tracking_uri"))
    spec = impl.spec
    source = Path(str(cfg.data.path))
    data = cfg.data
    date_col = data.get("date_col") or spec.date_col
    fill = data.get("fill") or spec.fill
    table = spec.read_file(source, date_col=date_col, fill=fill, duplicates=data.get("duplicates"),
                           regularize=bool(data.get("regularize", False)))
    report_repairs(table, cfg, fill)
    if levels and impl.calibration is None:
        raise ConfigError(f"levels={levels}: {cfg.model_uri} was logged without intervals (no calibration). Fix: drop "
                          "levels=, or forecast with a model trained with intervals.method=conformal_error.")
    alphas = adapted_alphas(cfg, impl, table, levels)
    forecast = impl.forecast_table(table, str(source), levels, alphas)
    # the history's own name for its timestamps
    forecast = forecast.rename(columns={spec.date_col: date_col})

    keep = min(table.n_rows, max(spec.seq_len, 2 * spec.pred_len))
    history = pd.DataFrame(table.values[-keep:], columns=spec.columns)
    history.insert(0, date_col, table.dates[-keep:])
    title = f"{cfg.model_uri}: {spec.pred_len} steps after {table.dates[-1]}"
    figure = prediction_figure(history, forecast, date_col, title, list(spec.outputs))

    output.parent.mkdir(parents=True, exist_ok=True)
    if FORMATS[output.suffix.lower()] == "CSV":
        forecast.to_csv(output, index=False)
    else:
        forecast.to_parquet(output, index=False)
    picture = output.with_suffix(".png")
    figure.savefig(picture, dpi=110)
    plt.close(figure)
    log.info("forecast of %s (%d steps, %s) from %s -> %s, %s", cfg.model_uri, spec.pred_len,
             ", ".join(spec.outputs), source, output, picture)
    return {"output": output, "figure": picture, "forecast": forecast, "alphas": alphas,
            "values": np.asarray(table.values[-spec.seq_len:]), "repairs": dict(table.repairs)}
