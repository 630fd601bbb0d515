"""The program behind ``python predict.py``: a registered MLflow model + a history file -> forecast.

Everything that can reject the input (the output name, the model URI, the file, its columns,
frequency and length) is checked before anything is written.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from forecast import plots  # also sets the Agg backend before pyplot is used
from forecast.data.sources import load_table
from forecast.errors import ConfigError
from forecast.serving import ForecastModel

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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = mlflow.pyfunc.load_model(model_uri)
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


def output_path(output: str) -> Path:
    path = Path(output)
    if path.suffix.lower() not in FORMATS:
        raise ConfigError(f"output={output}: unknown format '{path.suffix}'. Fix: end the name in .csv or .parquet.")
    return path


def prediction_figure(history: pd.DataFrame, forecast: pd.DataFrame, date_col: str, title: str):
    """History (grey) and forecast (blue) of the target and, in M mode, up to two more channels."""
    channels = list(forecast.columns.drop(date_col))
    shown = plots.shown_channels(len(channels))
    fig, axes = plt.subplots(1, len(shown), figsize=(4.8 * len(shown), 2.8), squeeze=False)
    for ax, c in zip(axes[0], shown):
        name = channels[c]
        ax.plot(history[date_col], history[name], color="0.55", lw=1.0, label="history")
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


def run(cfg: DictConfig) -> dict:
    """Forecast the ``pred_len`` steps after the last row of ``cfg.data.path``; write
    ``cfg.output`` (CSV or Parquet) and a PNG beside it. Returns the paths and the forecast."""
    output = output_path(str(cfg.output))
    model, impl = load_model(str(cfg.model_uri), cfg.get("tracking_uri"))
    spec = impl.spec
    source = Path(str(cfg.data.path))
    # the data layer's reading and validation (target=None: the columns are checked against
    # the model's below, with a message that names them; the step is inferred, then compared)
    table = load_table(source, target=None, date_col=spec.date_col, freq=None, fill=spec.fill)
    dates, values = spec.check_table(table, str(source))
    frame = pd.DataFrame(values, columns=spec.columns)
    frame.insert(0, spec.date_col, dates.as_unit("ns"))
    forecast = model.predict(frame)

    keep = min(table.n_rows, max(spec.seq_len, 2 * spec.pred_len))
    order = [table.columns.index(c) for c in spec.columns]
    history = pd.DataFrame(table.values[-keep:][:, order], columns=spec.columns)
    history.insert(0, spec.date_col, table.dates[-keep:])
    title = f"{cfg.model_uri}: {spec.pred_len} steps after {dates[-1]}"
    figure = prediction_figure(history, forecast, spec.date_col, title)

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
    return {"output": output, "figure": picture, "forecast": forecast, "values": np.asarray(values)}
