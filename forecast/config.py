"""Config schemas, registered in Hydra's ConfigStore so a misspelt key fails at compose time.

The run-level schema is written out below. The schemas of the nodes that Hydra instantiates
(data module, networks, trainer, logger) are derived from the constructor signatures of the
classes themselves, so they can never drift from the code: a key that is not a constructor
argument is rejected when the config is composed, and a value of the wrong type (``seq_len=abc``)
too. Every network class in ``forecast.models`` gets one, stored as
``schema/model/<classname lower-case>``; a ``conf/model/*.yaml`` file starts from it with
``defaults: [/schema/model/<name>@_here_, _self_]``.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from torch import nn

_SIMPLE = (int, float, bool, str)


@dataclass
class ModuleConfig:
    """What the ForecastModule is built with besides the network (Hydra nodes)."""

    loss: Any = None
    eval_loss: Any = None
    optimizer: Any = None
    scheduler: Any = None
    scheduler_interval: str = "epoch"


@dataclass
class PaperQuirks:
    """What ``paper_compat`` changes besides the dropped test batch; a model file sets the
    quirks of its reference code."""

    test_last_epoch: bool = False  # test the last epoch's weights, not the best validation checkpoint


@dataclass
class TrainConfig:
    """Run-level keys of ``conf/train.yaml``."""

    data: Any = MISSING
    model: Any = MISSING
    trainer: Any = MISSING
    logger: Any = None
    module: ModuleConfig = field(default_factory=ModuleConfig)
    callbacks: Dict[str, Any] = field(default_factory=dict)
    data_dir: str = "data"
    seed: int = 2021
    num_threads: Optional[int] = None
    train: bool = True
    test: bool = True
    ckpt_path: Optional[str] = None
    init_from: Optional[str] = None
    paper_compat: bool = False
    paper_quirks: PaperQuirks = field(default_factory=PaperQuirks)
    plot_windows: int = 3
    record: Optional[str] = None
    tags: Dict[str, str] = field(default_factory=dict)
    log_model: bool = True
    register: bool = False
    register_name: Optional[str] = None
    alias: Optional[str] = None


@dataclass
class PredictData:
    """The history file of ``predict.py`` and the repairs it may ask for (see ``conf/predict.yaml``)."""

    path: str = MISSING
    date_col: Optional[str] = None
    fill: Optional[str] = None
    duplicates: Optional[str] = None
    regularize: bool = False


@dataclass
class PredictConfig:
    """Keys of ``conf/predict.yaml`` (``python predict.py``)."""

    model_uri: str = MISSING
    data: PredictData = field(default_factory=PredictData)
    output: str = "forecast.csv"
    tracking_uri: Optional[str] = None


@dataclass
class CompareConfig:
    """Keys of ``conf/compare.yaml`` (``python scripts/compare.py``); ``data`` is the data group."""

    data: Any = None
    history: Optional[str] = None
    retrain_experiment: str = "retrain"
    pred_len: Optional[int] = None
    paper_compat: Optional[bool] = False
    published: Optional[str] = None
    out_dir: str = "leaderboard"
    experiment_name: str = "leaderboard"
    log: bool = True
    tracking_uri: Optional[str] = None


@dataclass
class RegisterConfig:
    """Keys of ``conf/register.yaml`` (``python scripts/register.py``); ``data`` is the data group."""

    data: Any = None
    run_id: Optional[str] = None
    best: Optional[str] = None
    pred_len: Optional[int] = None
    name: Optional[str] = None
    alias: Optional[str] = "champion"
    tracking_uri: Optional[str] = None


@dataclass
class RetrainConfig:
    """Keys of ``conf/retrain.yaml`` (``python scripts/retrain.py``)."""

    name: str = MISSING
    source: str = MISSING
    pattern: str = "*"
    train: List[str] = field(default_factory=list)
    use_champion_config: bool = True
    overrides: List[str] = field(default_factory=list)
    warm_start: bool = False
    eval_windows: int = 4
    split_sizes: List[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    metric: str = "mse"
    min_improvement: float = 0.0
    alias: str = "champion"
    force: bool = False
    work_dir: str = MISSING
    experiment_name: str = "retrain"
    tracking_uri: Optional[str] = None


@dataclass
class ScheduleJob:
    """One scheduled job: when (``cron`` or every ``interval_seconds``) and what (``retrain``
    arguments, or any ``command``)."""

    cron: Optional[str] = None
    interval_seconds: Optional[float] = None
    retrain: List[str] = field(default_factory=list)
    command: List[str] = field(default_factory=list)


@dataclass
class ScheduleConfig:
    """Keys of ``conf/retrain_schedule.yaml`` (``python scripts/schedule.py``)."""

    jobs: Dict[str, Any] = field(default_factory=dict)  # each checked against ScheduleJob when scheduled (Hydra cannot add typed entries from the command line)
    timezone: Optional[str] = None
    max_runs: Optional[int] = None
    log_dir: str = "retrain/logs"


@dataclass
class BenchmarkConfig:
    """Keys of ``conf/benchmark.yaml`` (``python scripts/benchmark.py``)."""

    mode: str = "speed"
    models: List[str] = field(default_factory=lambda: ["dlinear", "autoformer", "etsformer", "dpad", "karma"])
    datasets: List[str] = field(default_factory=lambda: ["etth1"])
    horizons: List[int] = field(default_factory=lambda: [96])
    overrides: List[str] = field(default_factory=list)
    threads: int = 1
    warmup: int = 3
    iters: int = 20
    seeds: List[int] = field(default_factory=lambda: [2021])
    speed_csv: str = "benchmarks/speed.csv"
    accuracy_csv: str = "benchmarks/accuracy.csv"
    render: bool = True
    dry_run: bool = False


def _field_type(annotation: Any) -> Any:
    """The OmegaConf-checkable type of an annotation: simple types and Optional of them."""
    if annotation in _SIMPLE:
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and args[0] in _SIMPLE:
            return Optional[args[0]]
    return Any


def signature_schema(cls: type, exclude: tuple[str, ...] = ()) -> type:
    """A dataclass with one field per constructor argument of ``cls`` plus ``_target_``."""
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # unresolvable forward references in third-party signatures
        hints = {}
    fields = [("_target_", str, field(default=f"{cls.__module__}.{cls.__qualname__}"))]
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or name in exclude or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = param.default
        ftype = _field_type(hints.get(name, Any))
        if default is inspect.Parameter.empty:
            spec = field(default=MISSING)
        elif isinstance(default, (list, tuple)):
            spec, ftype = field(default_factory=lambda d=default: list(d)), Any
        elif default is None or isinstance(default, _SIMPLE):
            spec = field(default=default)
            if default is None and ftype in _SIMPLE:
                ftype = Optional[ftype]
        else:  # an object default (an enum, a callable): leave it to the class
            spec, ftype = field(default=None), Any
        fields.append((name, ftype, spec))
    return dataclasses.make_dataclass(f"{cls.__name__}Schema", fields)


def network_classes() -> dict[str, type]:
    """Every network of ``forecast.models`` by lower-case class name: the public ``nn.Module``
    classes that declare the network contract (``uses_time_features``), not their sub-blocks."""
    import forecast.models

    found = {}
    for info in pkgutil.iter_modules(forecast.models.__path__):
        module = importlib.import_module(f"forecast.models.{info.name}")
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, nn.Module) and obj.__module__ == module.__name__
                    and not name.startswith("_") and hasattr(obj, "uses_time_features")):
                found[name.lower()] = obj
    return found


CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def compose_train(overrides: list[str]) -> DictConfig:
    """The config ``python train.py <overrides>`` would run, composed from another program (a
    retrain, a benchmark); its ``${hydra:...}`` keys resolve only inside a Hydra app."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    if GlobalHydra.instance().is_initialized():  # inside a Hydra app of this project: its conf/
        return compose("train", overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def register_configs() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent) and the config resolvers."""
    from pytorch_lightning import Trainer
    from pytorch_lightning.loggers import MLFlowLogger

    from forecast.data.datamodule import ForecastDataModule

    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="predict_schema", node=PredictConfig)
    cs.store(name="compare_schema", node=CompareConfig)
    cs.store(name="register_schema", node=RegisterConfig)
    cs.store(name="retrain_schema", node=RetrainConfig)
    cs.store(name="retrain_schedule_schema", node=ScheduleConfig)
    cs.store(name="benchmark_schema", node=BenchmarkConfig)
    cs.store(group="schema/data", name="default", node=signature_schema(ForecastDataModule))
    cs.store(group="schema/trainer", name="default", node=signature_schema(Trainer, exclude=("callbacks", "logger")))
    cs.store(group="schema/logger", name="mlflow", node=signature_schema(MLFlowLogger))
    for name, cls in network_classes().items():
        cs.store(group="schema/model", name=name, node=signature_schema(cls))
    if not OmegaConf.has_resolver("stem"):
        OmegaConf.register_new_resolver("stem", lambda path: Path(str(path)).stem)
    if not OmegaConf.has_resolver("mixed_precision"):
        OmegaConf.register_new_resolver("mixed_precision", mixed_precision)


def mixed_precision() -> str:
    """``${mixed_precision:}`` (``conf/trainer/gpu.yaml``): ``bf16-mixed`` where bf16 is native
    (CUDA compute capability 8.0 and up; on a machine without CUDA, CPU autocast), else
    ``32-true``: fp16 autocast would need loss scaling and is not validated for these models."""
    import torch

    if torch.cuda.is_available() and torch.cuda.get_device_capability() < (8, 0):
        return "32-true"
    return "bf16-mixed"
