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
import functools
import importlib
import inspect
import pkgutil
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf, open_dict
from forecast.errors import ConfigError

_SIMPLE = (int, float, bool, str)


@dataclass
class ModuleConfig:
    """What the ForecastModule is built with besides the network (Hydra nodes)."""

    loss: Any = None                   # a node with _target_, or "quantile" (forecast.quantiles)
    eval_loss: Any = None
    quantiles: Optional[List[float]] = None  # module.loss=quantile's grid; null: 0.1 … 0.9 and those of intervals.levels
    optimizer: Any = None
    scheduler: Any = None
    scheduler_interval: str = "epoch"


@dataclass
class PaperQuirks:
    """What ``paper_compat`` changes besides the dropped test batch; a model file sets the
    quirks of its reference code."""

    test_last_epoch: bool = False  # test the last epoch's weights, not the best validation checkpoint


@dataclass
class IntervalsConfig:
    """Prediction intervals (``intervals:``; see ``docs/intervals.md``)."""

    method: Optional[str] = "conformal_error"  # conformal_error | conformal_quantile | cqr | native | null (none)
    levels: List[Any] = field(default_factory=lambda: [80, 95])  # coverage levels in percent, integers 1-99
    calibration: str = "val"                   # the calibration windows: val (the validation split's) | backtest
    windows: int = 200                         # calibration=backtest: cutoffs of the calibration backtest
    step: int = 1                              #   rows between them
    refit: Any = False                         #   its refits (false: one training before the first cutoff)
    aci_gamma: float = 0.005                   # adaptive conformal inference's step (predict.py with actuals)


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
    malloc_keep_mb: int = 256
    train: bool = True
    test: bool = True
    validate: bool = False
    ckpt_path: Optional[str] = None
    init_from: Optional[str] = None
    paper_compat: bool = False
    paper_quirks: PaperQuirks = field(default_factory=PaperQuirks)
    intervals: IntervalsConfig = field(default_factory=IntervalsConfig)
    recommends: Dict[str, str] = field(default_factory=dict)  # set by the model file: see model_recommendations()
    plot_windows: int = 3
    record: Optional[str] = None
    tags: Dict[str, str] = field(default_factory=dict)
    log_model: bool = True
    register: bool = False
    register_name: Optional[str] = None
    alias: Optional[str] = None


@dataclass
class BacktestSettings:
    """The ``backtest:`` node of ``conf/backtest.yaml`` (``python backtest.py``): where the cutoffs
    lie and how often the models are retrained (see ``docs/backtesting.md``)."""

    windows: int = 4               # number of cutoffs (forecast windows)
    step: Optional[int] = None     # rows between cutoffs; null: the horizon (windows do not overlap)
    refit: Any = False             # false: train once before the first cutoff; k: every k cutoffs; true: every cutoff
    warm_start: bool = False       # a refit starts from the previous refit's weights
    start: Any = None              # the first cutoff: test (the test split's border), a timestamp or a row
    end: Any = None                # where the windows must end: test (the test split's end), a timestamp or a row
    plot_cutoffs: int = 3          # cutoffs drawn in the forecasts-against-actuals figure


@dataclass
class EnsembleSettings:
    """The ``ensemble:`` node of ``conf/backtest.yaml``: the models of ``models=[…]`` combined
    into one more column (see ``docs/backtesting.md#ensembles``, :mod:`forecast.ensemble`)."""

    method: Optional[str] = None   # mean | median | inverse_error | stacking | null (no ensemble)
    top_k: Optional[int] = None    # only the k members with the lowest validation MSE; null: all


def _backtest_config() -> type:
    """``conf/backtest.yaml``'s schema: every key of :class:`TrainConfig` (``backtest.yaml``
    includes ``train.yaml``) plus ``backtest``, ``models``, ``ensemble`` and ``resume``. The inherited fields
    default to MISSING so that merging this schema after ``train.yaml`` keeps its values."""
    hints = typing.get_type_hints(TrainConfig)
    inherited = [(f.name, hints[f.name], field(default=MISSING)) for f in dataclasses.fields(TrainConfig)]
    own = [("backtest", BacktestSettings, field(default_factory=BacktestSettings)),
           ("models", List[str], field(default_factory=list)),
           ("ensemble", EnsembleSettings, field(default_factory=EnsembleSettings)),
           ("resume", bool, field(default=False))]
    cls = dataclasses.make_dataclass("BacktestConfig", inherited + own, bases=(TrainConfig,))
    cls.__module__ = __name__
    cls.__doc__ = "Keys of ``conf/backtest.yaml``: those of ``train.yaml``, ``backtest:``, ``models``, ``ensemble`` and ``resume``."
    return cls


BacktestConfig = _backtest_config()


@dataclass
class PredictData:
    """The history file of ``predict.py`` and the repairs it may ask for (see ``conf/predict.yaml``)."""

    path: str = MISSING
    date_col: Optional[str] = None
    fill: Optional[str] = None
    duplicates: Optional[str] = None
    regularize: bool = False


@dataclass
class PredictACI:
    """Adaptive conformal inference of ``predict.py`` on the history's own latest windows."""

    windows: int = 0                 # 0: off; k: adapt the levels on the last k horizon-long windows of the history
    gamma: Optional[float] = None    # the step; null: the model's intervals.aci_gamma (0.005)


@dataclass
class PredictConfig:
    """Keys of ``conf/predict.yaml`` (``python predict.py``)."""

    model_uri: str = MISSING
    data: PredictData = field(default_factory=PredictData)
    output: str = "forecast.csv"
    tracking_uri: Optional[str] = None
    levels: Optional[List[Any]] = None  # interval levels; null: the model's own (none if it has no intervals)
    aci: PredictACI = field(default_factory=lambda: PredictACI())


@dataclass
class CompareConfig:
    """Keys of ``conf/compare.yaml`` (``python scripts/compare.py``); ``data`` is the data group."""

    data: Any = None
    history: Optional[str] = None
    retrain_experiment: str = "retrain"
    pred_len: Optional[int] = None
    paper_compat: Optional[bool] = False
    published: Optional[str] = None
    source: str = "test"             # rank by train runs' test/mse (test) or backtest runs' backtest/mse (backtest)
    rank_by: str = "mse"             # the score that ranks (lower is better): mse, mae, wql, msis_<L>, winkler_<L>
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
    candidates: List[str] = field(default_factory=list)
    max_minutes: Optional[float] = None
    aci_gamma: Optional[float] = None  # ACI on the evaluation windows for the challenger's served bands; null: its own; 0: off
    ensemble: EnsembleSettings = field(default_factory=EnsembleSettings)  # the candidates' ensemble as one more contender


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
class PeerConfig:
    """``peer:`` of ``conf/benchmark.yaml``: the reference of ``mode=peer``."""

    tslib: Optional[str] = None        # path of a Time-Series-Library checkout
    dpad: Optional[str] = None         # or, for models=[dpad]: a checkout of the official D-PAD code
    revision: Optional[str] = None     # or: this repository at a git revision (before / after a change)
    reference_overrides: List[str] = field(default_factory=list)  # with revision: train.py overrides of the reference side only
    same_malloc: bool = True           # TSLib / D-PAD: the reference gets our malloc_keep_mb thresholds (glibc's environment)
    python: Optional[str] = None       # the interpreter of its environment (null: this one)
    commit: str = ""                   # the commit the pairs were written for (recorded where the checkout is no git clone)
    dpad_commit: str = ""              # the D-PAD commit the harness's arguments follow (recorded likewise)
    root_path: Optional[str] = None    # folder of the ETT files for the reference (null: data/ETT-small of this repository)
    rounds: int = 2                    # interleaved rounds: each side measured once per round
    seq_len: int = 96                  # the window and batch of both sides
    batch_size: int = 32
    pairs: Dict[str, Any] = field(default_factory=dict)  # our model -> {model: TSLib's name, args: its run.py arguments}


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
    reference_accuracy_csv: str = "benchmarks/reference_accuracy.csv"
    render: bool = True
    dry_run: bool = False
    peer: PeerConfig = field(default_factory=PeerConfig)


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
    """Every network of ``forecast.models`` (subpackages included) by lower-case class name: the
    public subclasses of :class:`forecast.models.base.Network` defined there, outside modules
    named ``base``. Each is checked against the contract (:func:`~forecast.models.base.check_network`):
    a class that misses a required part raises ``ContractError`` naming it and the part."""
    import forecast.models
    from forecast.models.base import Network, check_network

    found: dict[str, type] = {}
    for info in pkgutil.walk_packages(forecast.models.__path__, "forecast.models."):
        if info.name.rsplit(".", 1)[-1] == "base":
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, Network) and obj.__module__ == module.__name__
                    and not name.startswith("_")):
                check_network(obj)
                if name.lower() in found:
                    raise ConfigError(f"two networks are named '{name.lower()}': {found[name.lower()].__module__}.{name} "
                                      f"and {module.__name__}.{name}. Fix: rename one (the name selects conf/model/<name>.yaml).")
                found[name.lower()] = obj
    return found


CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def compose_train(overrides: list[str], choices: bool = False):
    """The config ``python train.py <overrides>`` would run, composed from another program (a
    retrain, a benchmark); its ``${hydra:...}`` keys resolve only inside a Hydra app.
    ``choices``: return ``(config, {"model": …, "experiment": …})`` too, the options chosen for
    those groups (what names and tags a run of that config; an ``experiment`` picks its model)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()

    def composed():
        cfg = compose("train", overrides=list(overrides), return_hydra_config=choices)
        if not choices:
            return cfg
        picked = {k: cfg.hydra.runtime.choices.get(k) for k in ("model", "experiment")}
        with open_dict(cfg):
            del cfg["hydra"]
        return cfg, picked

    if GlobalHydra.instance().is_initialized():  # inside a Hydra app of this project: its conf/
        return composed()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return composed()


@dataclass(frozen=True)
class Recommendation:
    """One setting outside ``model:`` that a model file recommends (see :func:`model_recommendations`)."""

    key: str          # dotted key, or "schedule" for the schedule group
    value: Any        # what the model file sets
    current: Any      # what the run uses
    why: str

    @property
    def applied(self) -> bool:
        return self.current == self.value

    def line(self, model: str) -> str:
        if self.applied:
            return f"model={model} sets {self.key}={_show(self.value)}: {self.why}"
        return f"model={model} recommends {self.key}={_show(self.value)} ({self.why}); this run keeps {_show(self.current)}"


def _show(value) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _leaves(node, prefix: str) -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_leaves(value, f"{prefix}.{key}"))
        return out
    return {prefix: node}


def model_file_settings(path: Path) -> dict[str, Any]:
    """What a ``conf/model`` file sets besides its network: ``{dotted key: value}`` of every top-level
    node but ``model``, ``defaults`` and ``recommends`` (the leaves, so partial nodes compare), and
    ``schedule`` for an ``override /schedule`` in its defaults list."""
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    settings: dict[str, Any] = {}
    for key, node in raw.items():
        if key not in ("model", "defaults", "recommends"):
            settings.update(_leaves(node, key))
    for entry in raw.get("defaults", []):
        if isinstance(entry, dict):
            for group, option in entry.items():
                if group.startswith("override /"):
                    settings[group[len("override /"):]] = option
    return settings


def model_recommendations(cfg: DictConfig, model: str, conf_dir: Path | None = None) -> list[Recommendation]:
    """The settings outside ``model:`` that ``conf/model/<model>.yaml`` makes, with why.

    A model file may set data, trainer, module, callbacks and schedule keys for its network (the
    look-back of a classical baseline, ETSformer's epochs, clipping and warm-up schedule); Hydra
    applies them after the data/trainer/schedule groups and before experiments and the command
    line, which override them. Each such key must have a reason in the file's ``recommends:``
    block (``tests/test_models.py`` checks it), so none is silent: every run reports each one, as
    applied (``sets``) or overridden (``recommends … this run keeps …``), in its log and in the MLflow
    tag ``recommends`` (the reasons are also params, ``recommends.<key>``, with the rest of the
    config). Empty when there is no such file (a network built elsewhere)."""
    path = (conf_dir or CONF_DIR) / "model" / f"{model}.yaml"
    if not path.is_file():
        return []
    from forecast.tracking import hydra_choice

    settings = model_file_settings(path)
    reasons = OmegaConf.load(path).get("recommends") or {}
    found = []
    for key, why in reasons.items():
        key = str(key)
        if key == "schedule":
            value = settings.get("schedule")
            current = hydra_choice("schedule") or value  # outside a Hydra app the group choice is not known
        else:
            value = {k[len(key) + 1:]: v for k, v in settings.items() if k.startswith(key + ".")} or settings.get(key)
            node = OmegaConf.select(cfg, key, default=None)
            if isinstance(value, dict):
                current = {k: OmegaConf.select(cfg, f"{key}.{k}", default=None) for k in value}
            else:
                current = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
        found.append(Recommendation(key, value, current, str(why)))
    return found


_STORED: dict[tuple[str | None, str], type] = {}


def _store_once(cs: ConfigStore, name: str, source: type, group: str | None = None, schema: bool = False,
                exclude: tuple[str, ...] = ()) -> None:
    """Store ``source`` (a dataclass, or with ``schema`` the signature schema of a class) under
    ``group/name`` unless this process stored the same class there already and it is still there:
    building a structured config is most of the cost of composing a config from Python."""
    node = cs.repo
    for part in (group.split("/") if group else []):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    if _STORED.get((group, name)) is source and isinstance(node, dict) and f"{name}.yaml" in node:
        return
    cs.store(group=group, name=name, node=signature_schema(source, exclude=exclude) if schema else source)
    _STORED[(group, name)] = source


def register_configs() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent) and the config resolvers."""
    from pytorch_lightning import Trainer
    from pytorch_lightning.loggers import MLFlowLogger

    from forecast.data.datamodule import ForecastDataModule

    cs = ConfigStore.instance()
    store = functools.partial(_store_once, cs)
    store("train_schema", TrainConfig)
    store("backtest_schema", BacktestConfig)
    store("predict_schema", PredictConfig)
    store("compare_schema", CompareConfig)
    store("register_schema", RegisterConfig)
    store("retrain_schema", RetrainConfig)
    store("retrain_schedule_schema", ScheduleConfig)
    store("benchmark_schema", BenchmarkConfig)
    store("default", ForecastDataModule, group="schema/data", schema=True)
    store("default", Trainer, group="schema/trainer", schema=True, exclude=("callbacks", "logger"))
    store("mlflow", MLFlowLogger, group="schema/logger", schema=True)
    for name, cls in network_classes().items():
        store(name, cls, group="schema/model", schema=True)
    if not OmegaConf.has_resolver("stem"):
        OmegaConf.register_new_resolver("stem", lambda path: Path(str(path)).stem)
    if not OmegaConf.has_resolver("mixed_precision"):
        OmegaConf.register_new_resolver("mixed_precision", mixed_precision)
    if not OmegaConf.has_resolver("cpu_precision"):
        OmegaConf.register_new_resolver("cpu_precision", cpu_precision)


def mixed_precision() -> str:
    """``${mixed_precision:}`` (``conf/trainer/gpu.yaml``): ``bf16-mixed`` where bf16 is native
    (CUDA compute capability 8.0 and up; on a machine without CUDA, CPU autocast), else
    ``32-true``: fp16 autocast would need loss scaling and is not validated for these models."""
    import torch

    if torch.cuda.is_available() and torch.cuda.get_device_capability() < (8, 0):
        return "32-true"
    return "bf16-mixed"


CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU multiplies bf16 natively (``/proc/cpuinfo`` flags ``avx512_bf16`` or
    ``amx_bf16``: AMD Zen 4 and later, Intel Cooper Lake / Sapphire Rapids and later). Elsewhere
    oneDNN emulates bf16 products and autocast makes training slower, not faster."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def cpu_precision() -> str:
    """``${cpu_precision:}`` (``conf/trainer/cpu_fast.yaml``): ``bf16-mixed`` on a CPU with native
    bf16 (:func:`cpu_has_native_bf16`), else ``32-true``."""
    return "bf16-mixed" if cpu_has_native_bf16() else "32-true"
