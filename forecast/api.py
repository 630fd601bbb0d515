"""The Python API: ``train``, ``backtest`` and ``predict`` with the command line's override syntax,
for notebooks and other programs::

    from forecast import backtest

    df = backtest("model=karma", "data=etth1", windows=4)   # python backtest.py model=karma data=etth1 backtest.windows=4
    df.attrs["metrics"]                                      # scores per cutoff, per horizon step and overall

Positional arguments are Hydra overrides, exactly as on the command line (``"data.pred_len=336"``,
``"models=[dlinear,ets]"``). Keyword arguments are overrides too: ``trainer__max_epochs=3`` is
``trainer.max_epochs=3`` (``__`` for each dot), and for :func:`backtest` the settings of the
``backtest:`` node go bare (``windows=12``, ``refit=4``, ``step=24``, ``start="test"``).

Each call composes the config its entry point would (``conf/train.yaml``, ``conf/backtest.yaml``,
``conf/predict.yaml``), gives it an output folder as Hydra gives a run
(``outputs/<date>/<time>``, relative to the working directory) and runs the same program
(:mod:`forecast.pipelines.train`, :mod:`forecast.pipelines.backtest`,
:mod:`forecast.pipelines.predict`), so a notebook's run and a command line's are the same run.
"""

from __future__ import annotations

import dataclasses
import re
from contextlib import contextmanager, nullcontext
from pathlib import Path

from omegaconf import open_dict


def _value(value) -> str:
    """A Python value as Hydra's override grammar reads it (quoted where it would not read it bare)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_value(v) for v in value) + "]"
    text = str(value)
    if re.fullmatch(r"[\w.\-/@+]+", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def overrides_of(args: tuple, kwargs: dict, bare: set[str] = frozenset(), prefix: str = "") -> list[str]:
    """The overrides of a call: ``args`` as given, then each keyword as ``key=value`` (``__`` for
    dots; the keys in ``bare`` under ``prefix``)."""
    out = [str(a) for a in args]
    for key, value in kwargs.items():
        name = f"{prefix}{key}" if key in bare else key.replace("__", ".")
        out.append(f"{name}={_value(value)}")
    return out


_REGISTERED = False


@contextmanager
def app(config_name: str, overrides: list[str], job_name: str):
    """The config ``python <job_name>.py <overrides>`` would run, composed from ``conf/<config_name>.yaml``
    with Hydra's runtime set as in that app (its choices, overrides and a fresh output folder), for
    the duration of the block."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    from forecast.config import CONF_DIR, register_configs
    from forecast.errors import config_errors

    global _REGISTERED
    if not _REGISTERED:  # idempotent, but it walks every network class: once per process
        register_configs()
        _REGISTERED = True
    fresh = not GlobalHydra.instance().is_initialized()
    context = initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name=job_name) if fresh else nullcontext()
    with context:  # held for the whole run: a backtest of several models composes each one's config
        with config_errors():
            cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
        folder = Path(str(cfg.hydra.run.dir))
        if str(folder) != ".":
            base, n = folder, 0
            while folder.exists():  # two calls within a second: each its own folder
                n += 1
                folder = base.with_name(f"{base.name}-{n}")
            folder.mkdir(parents=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(folder.resolve())
            cfg.hydra.job.name = job_name
            cfg.hydra.overrides.task = list(overrides)
        hydra_config = HydraConfig.instance()
        saved = hydra_config.cfg
        hydra_config.set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]
        try:
            yield cfg
        finally:
            hydra_config.cfg = saved


def train(*overrides: str, **settings) -> dict[str, float]:
    """``python train.py <overrides>`` from Python: trains and tests; returns the test metrics
    (``test/mse``, ``test/mae``, …). ``train("model=dlinear", "data=etth1", trainer__max_epochs=3)``."""
    from forecast.pipelines.train import run

    with app("train", overrides_of(overrides, settings), "train") as cfg:
        return run(cfg)


def backtest(*overrides: str, **settings):
    """``python backtest.py <overrides>`` from Python: the long table ``series, ds, cutoff, y,
    <model>…`` (a ``pandas.DataFrame``; ``cutoff`` is the last timestamp each forecast saw) with
    the scores in ``.attrs["metrics"]`` (``model, level, cutoff, step, mse, mae, …``: level
    ``overall``, ``cutoff`` or ``step``) and the MLflow run ids in ``.attrs["runs"]``.
    ``backtest("model=karma", "data=etth1", windows=4, refit=2)``; several models on the same
    cutoffs: ``backtest("models=[dlinear,ets,seasonalnaive]", windows=12)``."""
    from forecast.config import BacktestSettings
    from forecast.pipelines.backtest import run

    bare = {f.name for f in dataclasses.fields(BacktestSettings)}
    args = overrides_of(overrides, settings, bare, "backtest.")
    with app("backtest", args, "backtest") as cfg:
        return run(cfg, args)


def predict(*overrides: str, **settings):
    """``python predict.py <overrides>`` from Python: the forecast (a ``pandas.DataFrame``: the
    date column and one column per forecast channel, in the data's units) after the last row of
    ``data.path``, also written to ``output`` with its figure.
    ``predict("model_uri=models:/etth1-dlinear@champion", "data.path=history.csv")``, or
    ``predict(model_uri="models:/etth1-dlinear@champion", data__path="history.csv")``."""
    from forecast.pipelines.predict import run

    with app("predict", overrides_of(overrides, settings), "predict") as cfg:
        return run(cfg)["forecast"]

