"""The MLflow pyfunc model of a finished run: history in, forecast out, on the original scale.

What a logged model carries (artifacts, next to MLflow's ``MLmodel``):

* ``network.pt``: the weights (``state_dict``) of a trained network; for a network without
  trainable parameters (the classical baselines) the whole fitted network object, because what
  ``fit_training`` estimated (periods, ``refit: once`` parameters, the training split for the
  decomposition) lives in plain attributes, not in a ``state_dict``;
* ``config.yaml``: the resolved run config (the network is rebuilt from ``model``);
* ``scaler.json``: the input channels in order (target last), and the per-channel ``mean`` and
  ``std`` of the z-score fitted on the training split;
* ``data.json``: the lineage of the training data (file, SHA-256, rows, split borders) and
  its frequency.

Input: a DataFrame with the date column and the channels of the training file (at least
``seq_len`` rows, regularly spaced at the training frequency; the last ``seq_len`` are used).
It is validated with the data layer's own checks (:mod:`forecast.data.sources`), so a bad
request fails with the same message a bad training file gets. Output: a DataFrame with the
``pred_len`` future timestamps and one column per forecast channel (all channels in M mode, the
target in S/MS), in the data's units.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from omegaconf import DictConfig, OmegaConf
from pandas.tseries.frequencies import to_offset

from forecast.data import sources
from forecast.data.scaling import StandardScaler
from forecast.data.sources import TimeSeriesTable
from forecast.data.timefeatures import time_features
from forecast.errors import DataError

ARTIFACTS = ("network", "config", "scaler", "data")
MODEL_NAME = "model"  # the name of the logged model inside its run
PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


class RequestError(DataError, MlflowException):
    """A history the model cannot use: the data layer's message, raised as an MlflowException
    so that ``mlflow models serve`` answers HTTP 400 with it instead of a generic error."""

    def __init__(self, message: str):
        MlflowException.__init__(self, message, error_code=INVALID_PARAMETER_VALUE)


@dataclass(frozen=True)
class InputSpec:
    """What the model expects of its input: the training file's layout and frequency."""

    columns: list[str]          # input channels in the network's order, target last
    date_col: str
    freq: str                   # pandas alias of the training data's step
    calendar_freq: str | None
    features: str               # M, S or MS
    seq_len: int
    pred_len: int
    c_out: int
    fill: str | None

    @property
    def outputs(self) -> list[str]:
        """The forecast channels: every channel in M mode, the target otherwise."""
        return self.columns[len(self.columns) - self.c_out:]

    def check_table(self, table: TimeSeriesTable, source: str) -> tuple[pd.DatetimeIndex, np.ndarray]:
        """The last ``seq_len`` rows of a validated table, as ``(dates, values [seq_len, C])``
        in the model's channel order; ``DataError`` if the table cannot feed this model."""
        names = list(table.columns)
        missing = [c for c in self.columns if c not in names]
        extra = [c for c in names if c not in self.columns] if self.features != "S" else []
        if missing or extra:
            found = f"it lacks {missing}" if missing else ""
            found += (" and " if missing and extra else "") + (f"it has the extra column(s) {extra}" if extra else "")
            raise DataError(
                f"{source}: the model was trained on the columns {self.columns} (and the date column "
                f"'{self.date_col}'), but {found}. Fix: give the same columns as the training file"
                + (" (drop the extra ones)." if extra and not missing else ".")
            )
        offset = to_offset(self.freq)
        if table.freq != offset:
            raise DataError(
                f"{source}: the rows are spaced by '{table.freq.freqstr}', but the model was trained on "
                f"'{offset.freqstr}' data. Fix: resample the file to '{offset.freqstr}', or use a model "
                "trained at this frequency."
            )
        if table.n_rows < self.seq_len:
            raise DataError(
                f"{source}: has {table.n_rows:,} rows, but the model forecasts from the last "
                f"seq_len={self.seq_len} rows. Fix: give at least {self.seq_len} consecutive rows of history."
            )
        order = [names.index(c) for c in self.columns]
        return table.dates[-self.seq_len:], table.values[-self.seq_len:, order]

    def future_dates(self, last: pd.Timestamp) -> pd.DatetimeIndex:
        return pd.date_range(last, periods=self.pred_len + 1, freq=to_offset(self.freq))[1:]


def table_from_frame(frame: pd.DataFrame, spec: InputSpec, source: str = "the model input") -> TimeSeriesTable:
    """Validate an in-memory history as :func:`forecast.data.sources.load_table` validates a
    file (dates parseable, unique and increasing, values numeric, regular spacing, missing
    values filled only as the training data was)."""
    if not isinstance(frame, pd.DataFrame) or frame.empty:
        raise DataError(f"{source}: expected a table with a '{spec.date_col}' column and the channels {spec.columns}; "
                        "got no rows. Fix: send at least seq_len rows of history.")
    frame = frame.reset_index(drop=True)
    frame.columns = [str(c) for c in frame.columns]
    if spec.date_col not in frame.columns:
        raise DataError(f"{source}: no date column '{spec.date_col}'; the columns are {list(frame.columns)}. "
                        f"Fix: add the timestamps as a column named '{spec.date_col}'.")
    dates = sources._parse_dates(frame[spec.date_col], source, spec.date_col)
    channels = frame.drop(columns=[spec.date_col])
    target = spec.columns[-1]
    if target in channels.columns:
        channels = channels[[c for c in channels.columns if c != target] + [target]]
    channels = sources._to_numeric(channels, source)
    freq = sources._infer_freq(dates, source) if len(dates) >= 3 else to_offset(spec.freq)
    sources._check_spacing(dates, freq, source, declared=False)
    channels = sources._fill_missing(channels, dates, source, spec.fill)
    return TimeSeriesTable(path=Path(source), dates=dates, values=channels.to_numpy(dtype=np.float64),
                           columns=list(channels.columns), target=target, freq=freq, sha256="")


class ForecastModel(mlflow.pyfunc.PythonModel):
    """The pyfunc: loads the network, config, scaler and input spec from the artifacts."""

    def load_context(self, context) -> None:
        self.load(context.artifacts)

    def load(self, artifacts: dict[str, str]) -> "ForecastModel":
        cfg = OmegaConf.load(artifacts["config"])
        scaler = json.loads(Path(artifacts["scaler"]).read_text())
        data = json.loads(Path(artifacts["data"]).read_text())
        self.cfg: DictConfig = cfg
        self.scaler = StandardScaler(mean=np.asarray(scaler["mean"], dtype=np.float64),
                                     std=np.asarray(scaler["std"], dtype=np.float64))
        self.spec = InputSpec(
            columns=list(scaler["columns"]), date_col=str(cfg.data.get("date_col", "date")), freq=data["freq"],
            calendar_freq=cfg.data.get("calendar_freq"), features=str(cfg.data.features),
            seq_len=int(cfg.data.seq_len), pred_len=int(cfg.data.pred_len), c_out=int(scaler["c_out"]),
            fill=cfg.data.get("fill"),
        )
        self.lineage = data
        self.network = load_network(artifacts["network"], cfg)
        return self

    def forecast(self, dates: pd.DatetimeIndex, values: np.ndarray) -> pd.DataFrame:
        """Forecast from exactly ``seq_len`` rows ``values [L, C]`` (data units, model order)."""
        spec = self.spec
        future = spec.future_dates(dates[-1])
        cal = spec.calendar_freq or spec.freq
        # as the data module does: scale in float64, then float32 tensors
        x = torch.from_numpy(self.scaler.transform(values).astype(np.float32))[None]
        x_mark = torch.from_numpy(time_features(dates, cal))[None]
        y_mark = torch.from_numpy(time_features(future, cal))[None]
        with torch.no_grad():
            out = self.network(x, x_mark, y_mark)[..., -spec.c_out:]
        target = self.scaler.select(slice(len(spec.columns) - spec.c_out, None))
        pred = target.inverse_transform(out[0].double().numpy())
        result = pd.DataFrame(pred, columns=spec.outputs)
        result.insert(0, spec.date_col, future.as_unit("ns"))
        return result

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        try:
            table = table_from_frame(model_input, self.spec)
            dates, values = self.spec.check_table(table, "the model input")
        except DataError as error:
            raise RequestError(str(error)) from None
        return self.forecast(dates, values)


def load_network(path: str, cfg: DictConfig) -> torch.nn.Module:
    """Rebuild the network from ``cfg.model`` and its weights, or unpickle a fitted classical one."""
    obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, torch.nn.Module):
        network = obj
        if hasattr(network, "workers"):  # one window per request: a process pool costs more than it saves
            network.workers = 1
        if hasattr(network, "progress"):
            network.progress = False
    else:
        from hydra.utils import instantiate

        network = instantiate(cfg.model)
        network.load_state_dict(obj)
    return network.eval()


def write_artifacts(folder: Path, network: torch.nn.Module, trainable: bool, cfg: DictConfig, datamodule,
                    lineage: dict) -> dict[str, str]:
    """The files of the pyfunc model (see the module docstring); returns ``{name: path}``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / f"{name}{ext}" for name, ext in zip(ARTIFACTS, (".pt", ".yaml", ".json", ".json"))}
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()} if trainable else network
    torch.save(state, paths["network"])
    paths["config"].write_text(OmegaConf.to_yaml(cfg, resolve=True))
    paths["scaler"].write_text(json.dumps({
        "columns": list(datamodule.columns), "c_out": int(datamodule.c_out),
        "mean": np.asarray(datamodule.scaler.mean, dtype=np.float64).tolist(),
        "std": np.asarray(datamodule.scaler.std, dtype=np.float64).tolist(),
    }, indent=1))
    paths["data"].write_text(json.dumps(lineage, indent=1))
    return {name: str(p) for name, p in paths.items()}


def input_example(datamodule) -> pd.DataFrame:
    """The last ``seq_len`` rows of the training split, in the data's units: a valid request."""
    end = datamodule.splits["train"].end
    rows = slice(end - datamodule.seq_len, end)
    values = datamodule.scaler.inverse_transform(datamodule.values[rows].double().numpy())
    frame = pd.DataFrame(values, columns=list(datamodule.columns))
    date_col = getattr(datamodule, "date_col", "date")
    frame.insert(0, date_col, datamodule.table.dates[rows].as_unit("ns"))
    return frame


def requirements() -> list[str]:
    """pip requirements of the served model: what this environment runs (``--env-manager local``
    uses it as it is; other env managers need the ``forecast`` package installable as well)."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in ("torch", "numpy", "pandas", "omegaconf", "hydra-core", "mlflow", "statsmodels"):
        try:
            out.append(f"{name}=={version(name).split('+')[0]}")
        except PackageNotFoundError:
            pass
    return out


def signature(example: pd.DataFrame, output: pd.DataFrame, date_col: str):
    """The model signature, with the input's date column of any type: timestamps arrive as text
    over HTTP and from CSV files (pandas 3 reads them as ``str``, which MLflow will not cast), as
    datetimes from Parquet; the data layer parses and checks them either way."""
    from mlflow.models import infer_signature
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    inferred = infer_signature(example, output)
    inputs = [ColSpec(AnyType(), date_col) if c.name == date_col else c for c in inferred.inputs.inputs]
    return ModelSignature(inputs=Schema(inputs), outputs=inferred.outputs)


def log_model(cfg: DictConfig, module, datamodule, lineage: dict, tags: dict | None = None):
    """Log the pyfunc model of a tested ``ForecastModule`` to the active run, with a signature
    and an input example (checked by MLflow against the model); returns MLflow's ``ModelInfo``."""
    network = module.network
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = write_artifacts(Path(tmp), network, module.trainable, cfg, datamodule, lineage)
        model = ForecastModel().load(artifacts)
        example = input_example(datamodule)
        output = model.predict(None, example)
        quiet = _DropAdvice()
        mlflow_log = logging.getLogger("mlflow.pyfunc")
        mlflow_log.addFilter(quiet)
        # MLflow re-downloads the model to check the input example, with a progress bar per
        # file of a few kB: noise in every run's log
        bar = os.environ.get(PROGRESS_BAR)
        os.environ[PROGRESS_BAR] = "false"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # MLflow's advice to use type hints; we give a signature
                return mlflow.pyfunc.log_model(
                    name=MODEL_NAME, python_model=ForecastModel(), artifacts=artifacts,
                    signature=signature(example, output, model.spec.date_col), input_example=example,
                    pip_requirements=requirements(), tags=tags,
                )
        finally:
            mlflow_log.removeFilter(quiet)
            if bar is None:
                os.environ.pop(PROGRESS_BAR, None)
            else:
                os.environ[PROGRESS_BAR] = bar


class _DropAdvice(logging.Filter):
    """MLflow warns that a pyfunc object is pickled; ours is pickled by reference to
    ``forecast.serving.ForecastModel`` (the package must be importable where it is loaded)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Passing a Python object as `python_model`" not in record.getMessage()
