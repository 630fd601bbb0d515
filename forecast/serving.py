"""The MLflow pyfunc model of a finished run: history in, forecast out, on the original scale.

What a logged model carries (artifacts, next to MLflow's ``MLmodel``):

* ``network.pt``: the weights (``state_dict``) of a trained network; for a network without
  trainable parameters (the classical baselines) the whole fitted network object, because what
  ``fit_training`` estimated (periods, ``refit: once`` parameters, the training split for the
  decomposition) lives in plain attributes, not in a ``state_dict``;
* ``config.yaml``: the resolved run config (the network is rebuilt from ``model``);
* ``scaler.json``: the input channels in order (target last), and the per-channel ``mean`` and
  ``std`` of the z-score fitted on the training split;
* ``data.json``: the lineage of the training data (file, SHA-256, rows, split borders, repairs)
  and its frequency;
* ``intervals.npz`` (when the run calibrated intervals): the raw conformal scores per
  validation window, horizon step and channel, with the method and default levels
  (:class:`forecast.intervals.Calibration`), so that any level is served without recomputing
  anything; a model logged without it forecasts points only.

**The input contract** (the same for ``predict.py`` and a served model, checked by the same
function, :func:`forecast.data.sources.validate_frame`): a table with the date column and
exactly the model's input channels, in any order (a column the model does not read is refused,
not dropped); timestamps as text or datetimes (numbers such as epoch seconds are refused, not
guessed at), unique, increasing and spaced by the training step; finite numbers (no infinities,
no booleans, nothing that overflows the network's float32 once scaled); missing values only
where the training run filled them (its ``data.fill``); at least ``seq_len`` rows, of which the
last ``seq_len`` are used. Every problem of a request is reported at once, worded for the
request body (rows counted from 0). The model is logged with an output signature only, so that
MLflow's schema enforcement (which drops extra columns and casts booleans) does not run before
this contract; the contract itself is in the model's metadata (``input_contract``).

Output: a DataFrame with the ``pred_len`` future timestamps and one column per forecast channel
(all channels in M mode, the target in S/MS), in the data's units, followed (for a model with
intervals) by ``<channel>-lo-<level>`` and ``<channel>-hi-<level>`` for each channel and level
(neuralforecast's naming; the levels of the model's metadata, or ``params={"levels": [...]}``). A forecast that is not finite
is never returned: the request fails with :class:`ForecastFailed`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE
from omegaconf import DictConfig, OmegaConf
from pandas.tseries.frequencies import to_offset

from forecast.data import problems
from forecast.data.scaling import StandardScaler
from forecast.data.sources import Expectation, TimeSeriesTable, load_table, validate_frame
from forecast.data.timefeatures import time_features
from forecast import intervals
from forecast.errors import ConfigError, DataError, ForecastError
from forecast.quantiles import QuantileNetwork, unscale, wrap

ARTIFACTS = ("network", "config", "scaler", "data")
MODEL_NAME = "model"  # the name of the logged model inside its run
PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
SERVING_ENV = "_MLFLOW_IS_IN_SERVING_ENVIRONMENT"  # set by MLflow's scoring server


class _KeepsItsMessage:
    """MLflow's scoring server rewrites the message of an MlflowException raised by ``predict``
    as "Failed to predict data '<the request as a table>'. Error: <message>": pandas' repr of the
    request (kilobytes of numbers) before what the client has to read. The message given when
    the error is raised is the one answered."""

    @property
    def message(self) -> str:
        return self._own_message

    @message.setter
    def message(self, value: str) -> None:
        if not hasattr(self, "_own_message"):
            self._own_message = value


class RequestError(_KeepsItsMessage, DataError, MlflowException):
    """A history the model cannot use: the data layer's message, raised as an MlflowException
    so that ``mlflow models serve`` answers HTTP 400 with it instead of a generic error."""

    def __init__(self, message: str):
        MlflowException.__init__(self, message, error_code=INVALID_PARAMETER_VALUE)


class ForecastFailed(_KeepsItsMessage, ForecastError, MlflowException):
    """The network produced a forecast that is not finite from a history that passed the input
    contract; nothing is returned (HTTP 500: the model, not the request, is at fault)."""

    def __init__(self, message: str):
        MlflowException.__init__(self, message, error_code=INTERNAL_ERROR)


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
    mean: tuple = ()            # the training scaler per input channel: values that overflow
    std: tuple = ()             # float32 once scaled are refused

    @property
    def outputs(self) -> list[str]:
        """The forecast channels: every channel in M mode, the target otherwise."""
        return self.columns[len(self.columns) - self.c_out:]

    def expectation(self) -> Expectation:
        return Expectation(columns=list(self.columns), freq=self.freq, min_rows=self.seq_len,
                           mean=np.asarray(self.mean, dtype=np.float64) if self.mean else None,
                           std=np.asarray(self.std, dtype=np.float64) if self.std else None)

    def contract(self) -> dict:
        """The input contract as plain data (the logged model's metadata, the docs)."""
        return {"date_column": self.date_col, "columns": list(self.columns), "extra_columns": "refused",
                "timestamps": "ISO 8601 text or datetimes; numbers (epoch seconds) are refused",
                "step": to_offset(self.freq).freqstr, "min_rows": self.seq_len, "rows_used": self.seq_len,
                "missing_values": f"filled by {self.fill}" if self.fill else "refused",
                "values": "finite numbers; booleans and infinities are refused",
                "horizon": self.pred_len, "outputs": self.outputs}

    def read_frame(self, frame, wording: problems.Wording) -> TimeSeriesTable:
        """A request's history, validated against this model (every problem in one error)."""
        if isinstance(frame, dict):
            try:
                frame = pd.DataFrame(frame)
            except ValueError as error:
                raise wording.error([problems.Problem("empty", f"is not a table ({error})", {"min_rows": self.seq_len})]) from None
        if not isinstance(frame, pd.DataFrame):
            raise DataError(f"{wording.source}: expected a table with named columns, got a {type(frame).__name__}. Fix: send "
                            '{"dataframe_split": {"columns": [...], "data": [[...], ...]}}, dataframe_records, or a CSV body '
                            "with a header.")
        return validate_frame(frame, wording, date_col=self.date_col, fill=self.fill, expect=self.expectation())

    def read_file(self, path: Path, date_col: str | None = None, fill: str | None = None, duplicates: str | None = None,
                  regularize: bool = False) -> TimeSeriesTable:
        """A history file given to ``predict.py``, validated against this model, with the repairs
        its options ask for (``fill`` defaults to the training run's)."""
        table = load_table(path, target=None, date_col=date_col or self.date_col, fill=fill or self.fill,
                           duplicates=duplicates, regularize=regularize, expect=self.expectation(),
                           wording=problems.predict_file(path))
        return table

    def check_table(self, table: TimeSeriesTable, source: str) -> tuple[pd.DatetimeIndex, np.ndarray]:
        """The last ``seq_len`` rows of an already validated table, as ``(dates, values
        [seq_len, C])`` in the model's channel order; ``DataError`` if the table cannot feed this
        model (the same checks as a request's)."""
        frame = pd.DataFrame(table.values, columns=list(table.columns))
        frame.insert(0, self.date_col, table.dates)
        wording = replace(problems.predict_file(source), numbering="date")  # the table's rows need not be file lines
        checked = validate_frame(frame, wording, date_col=self.date_col, expect=self.expectation())
        return checked.dates[-self.seq_len:], checked.values[-self.seq_len:]

    def future_dates(self, last: pd.Timestamp) -> pd.DatetimeIndex:
        return pd.date_range(last, periods=self.pred_len + 1, freq=to_offset(self.freq))[1:]


def input_source() -> str:
    """How a message names the data: the request body when MLflow's scoring server runs us."""
    return "the request" if os.environ.get(SERVING_ENV, "").lower() == "true" else "the model input"


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
            fill=cfg.data.get("fill"), mean=tuple(scaler["mean"]), std=tuple(scaler["std"]),
        )
        self.lineage = data
        self.network = load_network(artifacts["network"], cfg)
        # models logged before intervals existed (or without them) carry no calibration
        self.calibration = intervals.Calibration.load(artifacts["intervals"]) if artifacts.get("intervals") else None
        return self

    @property
    def levels(self) -> list[int]:
        """The levels a forecast carries by default (none without a calibration)."""
        return list(self.calibration.levels) if self.calibration is not None else []

    def with_bands(self, result: pd.DataFrame, levels=None, alphas: dict | None = None,
                   quantiles: np.ndarray | None = None) -> pd.DataFrame:
        """``result`` with the ``<channel>-lo-<level>``/``-hi-<level>`` columns of the stored
        calibration (``levels``: these instead of the model's default ones). A ``cqr``
        calibration bands the network's quantile forecasts ``quantiles [H, C, Q]`` (data units)."""
        if self.calibration is None:
            if levels:
                raise RequestError(f"levels={list(levels)}: this model was logged without intervals (no calibration). "
                                   "Fix: drop levels, or retrain with intervals.method=conformal_error.")
            return result
        outputs = self.spec.outputs
        pred = result[outputs].to_numpy(dtype=np.float64)
        if isinstance(self.calibration, intervals.QuantileCalibration):
            if quantiles is None:
                raise ForecastFailed("this model's intervals are CQR bands of its quantile forecasts, which were not "
                                     "given. Fix: forecast with ForecastModel.forecast_table, which computes them.")
            if alphas:
                raise RequestError("adaptive conformal inference is not available for CQR intervals. Fix: drop aci.windows, "
                                   "or forecast with a model trained with intervals.method=conformal_error.")
            pred = quantiles
        try:
            bands = self.calibration.bands(pred, levels if levels else None, alphas)
        except ConfigError as error:
            raise RequestError(str(error)) from None
        names, blocks = [], []
        for j, name in enumerate(outputs):
            for level, (lo, hi) in bands.items():
                names += [f"{name}-lo-{level}", f"{name}-hi-{level}"]
                blocks += [lo[:, j], hi[:, j]]
        # one float block, not a column per band: a pandas frame built column by column costs
        # more than the forward pass of a small network
        return pd.concat([result, pd.DataFrame(np.stack(blocks, axis=1), columns=names, index=result.index)], axis=1)

    def forecast(self, dates: pd.DatetimeIndex, values: np.ndarray) -> pd.DataFrame:
        """Forecast from exactly ``seq_len`` rows ``values [L, C]`` (data units, model order)."""
        return self.forecast_with_quantiles(dates, values)[0]

    def forecast_with_quantiles(self, dates: pd.DatetimeIndex, values: np.ndarray) -> tuple[pd.DataFrame, np.ndarray | None]:
        """:meth:`forecast` and, for a quantile-trained network, its quantile forecasts
        ``[H, C, Q]`` in the data's units (else ``None``)."""
        spec = self.spec
        future = spec.future_dates(dates[-1])
        cal = spec.calendar_freq or spec.freq
        # as the data module does: scale in float64, then float32 tensors
        x = torch.from_numpy(self.scaler.transform(values).astype(np.float32))[None]
        x_mark = torch.from_numpy(time_features(dates, cal))[None]
        y_mark = torch.from_numpy(time_features(future, cal))[None]
        quantile = isinstance(self.network, QuantileNetwork)
        with torch.no_grad():
            out = self.network(x, x_mark, y_mark)[..., -spec.c_out:]
            grid = self.network.quantiles(x, x_mark, y_mark)[..., -spec.c_out:, :] if quantile else None
        target = self.scaler.select(slice(len(spec.columns) - spec.c_out, None))
        pred = target.inverse_transform(out[0].double().numpy())
        result = pd.DataFrame(pred, columns=spec.outputs)
        result.insert(0, spec.date_col, future.as_unit("ns"))
        return result, (unscale(target, grid[0].double().numpy()) if quantile else None)

    def forecast_table(self, table: TimeSeriesTable, source: str, levels=None, alphas: dict | None = None) -> pd.DataFrame:
        """The forecast after a validated table's last ``seq_len`` rows, with its intervals
        (:meth:`with_bands`); :class:`ForecastFailed` rather than a forecast with NaN or infinite
        values."""
        result, quantiles = self.forecast_with_quantiles(table.dates[-self.spec.seq_len:], table.values[-self.spec.seq_len:])
        values = result[self.spec.outputs].to_numpy()
        bad = ~np.isfinite(values)
        if bad.any():
            cols = [c for j, c in enumerate(self.spec.outputs) if bad[:, j].any()]
            steps = np.flatnonzero(bad.any(axis=1)) + 1
            raise ForecastFailed(
                f"{source}: the model's forecast is not finite (NaN or infinite) in {cols} at horizon step(s) "
                f"{', '.join(map(str, steps[:5]))}{' …' if len(steps) > 5 else ''}, so no forecast is returned. The history "
                "passed every input check, so the network itself produced it. Fix: look for extreme values in the "
                "history's last rows; if there are none, the model is broken: forecast with another version.")
        return self.with_bands(result, levels, alphas, quantiles)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        source = input_source()
        levels = None
        if params and params.get("levels") is not None:
            try:
                levels = intervals.check_levels(params["levels"], "params.levels")
            except ConfigError as error:
                raise RequestError(str(error)) from None
        try:
            table = self.spec.read_frame(model_input, problems.request(source))
        except DataError as error:
            raise RequestError(str(error)) from None
        return self.forecast_table(table, source, levels)


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

        network = wrap(instantiate(cfg.model), cfg)  # the quantile head of module.loss=quantile
        network.load_state_dict(obj)
    return network.eval()


def write_artifacts(folder: Path, network: torch.nn.Module, trainable: bool, cfg: DictConfig, datamodule,
                    lineage: dict, calibration=None) -> dict[str, str]:
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
    if calibration is not None:
        paths["intervals"] = calibration.save(folder / intervals.FILE)
    return {name: str(p) for name, p in paths.items()}


def input_example(datamodule) -> pd.DataFrame:
    """The last ``seq_len`` rows of the training split, in the data's units: a valid request."""
    end = datamodule.splits["train"].end
    rows = slice(end - datamodule.seq_len, end)
    values = datamodule.scaler.inverse_transform(datamodule.values[rows].double().numpy())
    frame = pd.DataFrame(values, columns=list(datamodule.columns))
    date_col = getattr(datamodule, "date_col", "date")
    # timestamps as text, as a client sends them (JSON has no datetime type)
    frame.insert(0, date_col, datamodule.table.dates[rows].strftime("%Y-%m-%d %H:%M:%S"))
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


def signature(output: pd.DataFrame):
    """The model signature: its output only. With an input schema MLflow would enforce it before
    the model sees a request (dropping extra columns, casting booleans to numbers, refusing a
    CSV body's text timestamps with a stack trace); the input contract is checked by the model
    itself, the same way as ``predict.py`` checks a file, and stated in the metadata. One
    parameter, ``levels`` (a list of integers), asks for other interval levels than the model's."""
    from mlflow.models import infer_signature
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec

    # params={"levels": [50, 90]}: other interval levels than the model's ([]: the model's own)
    params = ParamSchema([ParamSpec("levels", "long", [], (-1,))])
    return ModelSignature(inputs=None, outputs=infer_signature(output).inputs, params=params)


def log_model(cfg: DictConfig, module, datamodule, lineage: dict, tags: dict | None = None):
    """Log the pyfunc model of a tested ``ForecastModule`` to the active run, with a signature
    and an input example (checked by MLflow against the model); returns MLflow's ``ModelInfo``."""
    network = module.network
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = write_artifacts(Path(tmp), network, module.trainable, cfg, datamodule, lineage, module.calibration)
        model = ForecastModel().load(artifacts)
        example = input_example(datamodule)
        output = model.predict(None, example)
        with quiet_mlflow():
            return mlflow.pyfunc.log_model(
                name=MODEL_NAME, python_model=ForecastModel(), artifacts=artifacts,
                signature=signature(output), input_example=example, pip_requirements=requirements(), tags=tags,
                metadata={"input_contract": model.spec.contract(),
                          **({"intervals": module.calibration.metadata()} if module.calibration is not None else {})},
            )


@contextmanager
def quiet_mlflow():
    """MLflow's noise left out of a run's log while logging or loading a model: its advice on
    pickled models and type hints, and the progress bar it draws per downloaded file of a few kB
    (it re-downloads a model to check the input example)."""
    quiet = _DropAdvice()
    mlflow_log = logging.getLogger("mlflow.pyfunc")
    mlflow_log.addFilter(quiet)
    bar = os.environ.get(PROGRESS_BAR)
    os.environ[PROGRESS_BAR] = "false"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MLflow's advice to use type hints; we give a signature
            yield
    finally:
        mlflow_log.removeFilter(quiet)
        if bar is None:
            os.environ.pop(PROGRESS_BAR, None)
        else:
            os.environ[PROGRESS_BAR] = bar


def log_adapted(client, run_id: str, calibration, python_model: "ForecastModel | None" = None) -> str:
    """Log a copy of run ``run_id``'s model (its ``model_uri`` tag) whose intervals are
    ``calibration`` (e.g. with the miscoverage adapted by ACI on the newest windows) to the same
    run, as model ``model-aci``; the run's ``model_uri`` tag then points at the copy (the
    original's stays in ``model_uri_unadapted``), so registering the run registers the copy.
    Everything else (network, config, scaler, lineage, signature) is the original's. Returns the
    copy's URI. ``python_model``: an instance of the original's class (default
    :class:`ForecastModel`; e.g. :class:`forecast.ensemble.EnsembleModel` for an ensemble)."""
    import mlflow.artifacts
    from mlflow.models import Model

    run = client.get_run(run_id)
    uri = run.data.tags["model_uri"]
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(Path(tmp) / "original"),
                                                         tracking_uri=client.tracking_uri))
        original = Model.load(str(local))
        artifacts = {name: str(local / entry["path"])
                     for name, entry in original.flavors["python_function"]["artifacts"].items()}
        (Path(tmp) / "adapted").mkdir()
        artifacts["intervals"] = str(calibration.save(Path(tmp) / "adapted" / intervals.FILE))
        metadata = {**(original.metadata or {}), "intervals": calibration.metadata()}
        mlflow.set_tracking_uri(client.tracking_uri)
        mlflow.set_experiment(experiment_id=run.info.experiment_id)
        with mlflow.start_run(run_id=run_id), quiet_mlflow():
            info = mlflow.pyfunc.log_model(name=f"{MODEL_NAME}-aci", python_model=python_model or ForecastModel(),
                                           artifacts=artifacts, signature=original.signature,
                                           pip_requirements=requirements(), metadata=metadata)
    client.set_tag(run_id, "model_uri_unadapted", uri)
    client.set_tag(run_id, "model_uri", info.model_uri)
    return info.model_uri


class _DropAdvice(logging.Filter):
    """MLflow warns that a pyfunc object is pickled; ours is pickled by reference to
    ``forecast.serving.ForecastModel`` (the package must be importable where it is loaded)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Passing a Python object as `python_model`" not in record.getMessage()
