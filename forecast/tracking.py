"""MLflow: run names, tags, the resolved config, figures and checkpoints of a run.

Metrics go through Lightning's ``MLFlowLogger``; this module adds what a run needs to be found
and reproduced: its name ``<model>-<dataset>-<seq_len>-<pred_len>``, searchable tags (the same
keys on every run, deep or classical), the flattened resolved config as params and as a YAML
artifact, the training data as an MLflow dataset input, the forecast figure, the best
checkpoint, and the pyfunc model (``forecast.serving``) with its registry entry. The jobs of a
Hydra multirun become child runs of one parent run per sweep. Only rank 0 writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities import rank_zero_only

from forecast.data.sources import REPAIRS

SWEEP_ENV = "FORECAST_SWEEP_ID"      # set by SweepCallback for the jobs of one multirun
SWEEP_NAME_ENV = "FORECAST_SWEEP_NAME"


def hydra_choice(group: str) -> str | None:
    """The option chosen for a config group (``model=karma`` -> ``karma``) when run by Hydra."""
    if HydraConfig.initialized():
        return HydraConfig.get().runtime.choices.get(group)
    return None


def model_name(cfg: DictConfig) -> str:
    return hydra_choice("model") or cfg.model._target_.rsplit(".", 1)[-1].lower()


_SHELL_SAFE = re.compile(r"[\w@%+=:,./-]+", re.ASCII)   # words a POSIX shell (and zsh) reads as they are


def shell_join(args) -> str:
    """``args`` as one line that pastes into bash or zsh and gives the program the same argv:
    plain words stay bare, others go in double quotes (Hydra's own style,
    ``"ckpt_path='…/epoch=6-step=7504.ckpt'"``), or ``shlex.quote`` where double quotes would
    still expand something."""
    out = []
    for arg in map(str, args):
        if _SHELL_SAFE.fullmatch(arg):
            out.append(arg)
        elif not re.search(r'["$`\\!]', arg):
            out.append(f'"{arg}"')
        else:
            out.append(shlex.quote(arg))
    return " ".join(out)


def command_line() -> str:
    """The command that reproduces this run (``python train.py`` plus its overrides), quoted
    so that it pastes into a shell."""
    if not HydraConfig.initialized():
        return ""
    hc = HydraConfig.get()
    return shell_join(["python", f"{hc.job.name}.py", *hc.overrides.task])


def run_name(cfg: DictConfig) -> str:
    return f"{model_name(cfg)}-{cfg.data.name}-{cfg.data.seq_len}-{cfg.data.pred_len}"


def git_commit(path: Path | None = None) -> tuple[str, bool]:
    """``(commit, dirty)`` of the repository holding ``path`` (the package), or ``("unknown", False)``."""
    where = path or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where, capture_output=True, text=True, timeout=10).stdout
        return commit, bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


def code_tags() -> dict[str, str]:
    """``git_commit`` and ``git_dirty`` of the code that runs: every run this project writes has them."""
    commit, dirty = git_commit()
    return {"git_commit": commit, "git_dirty": str(dirty).lower()}


_STORES_READY: set[str] = set()


def open_store(tracking_uri: str) -> None:
    """Create (and migrate) a SQLite tracking store once, under a lock, before any run writes to it.

    MLflow creates a SQLite store's tables on its first connection; processes started together
    on a new file (a parallel sweep, several terminals, parallel trials) race on that and die
    with "duplicate column name" or an alembic_version mismatch. The first to take the lock on
    the store's folder creates the tables; the others wait, then find them. Servers and other
    stores need nothing. Quiet: no "Creating initial MLflow database tables" chatter."""
    if tracking_uri in _STORES_READY or not tracking_uri.startswith("sqlite:///"):
        return
    import logging

    from mlflow import MlflowClient

    for name in ("mlflow.store.db.utils", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    folder = Path(tracking_uri[len("sqlite:///"):]).resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; stores there are created by one process at a time
        fcntl = None
    fd = os.open(folder, os.O_RDONLY)
    try:
        if fcntl:
            fcntl.flock(fd, fcntl.LOCK_EX)
        MlflowClient(tracking_uri).search_experiments(max_results=1)  # creates or migrates the tables
    finally:
        os.close(fd)  # releases the lock
    _STORES_READY.add(tracking_uri)


def client(tracking_uri: str):
    """An ``MlflowClient`` on ``tracking_uri``, its store created safely first (:func:`open_store`)."""
    from mlflow import MlflowClient

    open_store(tracking_uri)
    return MlflowClient(tracking_uri)


def experiment_id(client, name: str) -> str:
    """The id of the experiment ``name``, created when it does not exist yet."""
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment else client.create_experiment(name)


# Trainer settings that can cut a run short of its protocol (a smoke run: trainer=debug).
_LIMITS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "max_steps", "fast_dev_run", "overfit_batches")


def _limited(key: str, value) -> bool:
    """Whether a trainer setting (a config value, or its text as a logged param) cuts a run short."""
    text = str(value).strip().lower()
    if value is None or text in ("", "none", "null", "false"):
        return False
    if key.startswith("limit_"):  # an int counts batches; a float is a fraction of them (1.0: all)
        return not ("." in text and float(text) >= 1.0)
    if key == "max_steps":
        return float(text) >= 0
    return text not in ("0", "0.0")  # fast_dev_run, overfit_batches


def debug_reasons(cfg: DictConfig) -> list[str]:
    """The settings that make a run a smoke/debug run (``trainer=debug``: two batches), e.g.
    ``["trainer.max_steps=2", "trainer.limit_train_batches=2"]``; empty for a real run."""
    trainer = cfg.get("trainer") or {}
    return [f"trainer.{k}={trainer.get(k)}" for k in _LIMITS if _limited(k, trainer.get(k))]


def command_debug_reasons(command: str) -> list[str]:
    """:func:`debug_reasons` of a recorded ``python train.py …`` line, read from its overrides
    (``trainer=debug`` or a trainer limit): the training behind a checkpoint that a row tests."""
    reasons = []
    for arg in shlex.split(command)[2:]:
        key, _, value = arg.lstrip("+~").partition("=")
        if (key, value) == ("trainer", "debug"):
            reasons.append(arg)
        elif key.startswith("trainer.") and key[len("trainer."):] in _LIMITS and _limited(key[len("trainer."):], value):
            reasons.append(arg)
    return reasons


def run_is_debug(run) -> bool:
    """Whether an MLflow run was a smoke/debug run: its ``debug`` tag, or for runs logged before
    that tag existed, the trainer limits among its params."""
    tag = run.data.tags.get("debug")
    if tag is not None:
        return tag == "true"
    params = run.data.params
    return any(_limited(k, params[f"trainer.{k}"]) for k in _LIMITS if f"trainer.{k}" in params)


def mark_debug(cfg: DictConfig) -> list[str]:
    """For a debug run: its logger writes to ``<experiment>-debug`` instead of the experiment of
    results, and one line says so. Returns :func:`debug_reasons`."""
    reasons = debug_reasons(cfg)
    if reasons and cfg.get("logger") and "experiment_name" in cfg.logger and not str(cfg.logger.experiment_name).endswith("-debug"):
        cfg.logger.experiment_name = f"{cfg.logger.experiment_name}-debug"
    return reasons


def run_tags(cfg: DictConfig, lineage: dict) -> dict[str, str]:
    """Searchable tags: what ran (model, data, shapes, seed, protocol), from which code and data."""
    code = code_tags()
    tags = {
        "model": model_name(cfg),
        "dataset": str(cfg.data.name),
        "features": str(cfg.data.features),
        "seq_len": str(cfg.data.seq_len),
        "horizon": str(cfg.data.pred_len),
        "seed": str(cfg.seed),
        "paper_compat": str(bool(cfg.paper_compat)).lower(),
        **code,
        "mlflow.source.git.commit": code["git_commit"],
        "data_path": lineage["path"],
        "data_sha256": lineage["sha256"],
        "data_rows": str(lineage["rows"]),
    }
    # what the opt-in data repairs changed (data_duplicates_dropped, data_rows_inserted, data_values_filled;
    # 0 on a clean run), so that a repaired run is never mistaken for a clean one
    tags.update({f"data_{k}": str(v) for k, v in lineage.get("repairs", {}).items() if k in REPAIRS})
    # every run carries every key, so the UI's columns and Compare view line all models up:
    # "none" where a key does not apply (refit: the estimation protocol of the classical
    # baselines, window or once; experiment: a paper setting of conf/experiment)
    tags["refit"] = str(cfg.model.get("refit") or "none")
    tags["experiment"] = hydra_choice("experiment") or "none"
    tags["command"] = command_line()
    tags["debug"] = str(bool(debug_reasons(cfg))).lower()  # a smoke run: never ranked, registered or recorded
    tags.update({str(k): str(v) for k, v in cfg.tags.items()})
    return tags


def flatten(cfg: DictConfig) -> dict[str, object]:
    """The resolved config as ``{"data.seq_len": 96, "module.optimizer.lr": 1e-4, ...}``."""
    out: dict[str, object] = {}

    def walk(node, prefix):
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            out[prefix[:-1]] = node

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out


def create_logger(cfg: DictConfig, lineage: dict, name: str | None = None, run_id: str | None = None) -> MLFlowLogger | None:
    """The configured logger with this run's name (``name``, default :func:`run_name`) and tags;
    ``None`` for ``logger=none``. A job of a Hydra multirun is created as a child of its sweep's
    parent run. ``run_id``: log to that existing run instead (a resumed backtest)."""
    if not cfg.get("logger") or "_target_" not in cfg.logger:
        return None
    open_store(str(cfg.logger.tracking_uri))
    if run_id is not None:
        return instantiate(cfg.logger, run_id=run_id)
    tags = run_tags(cfg, lineage)
    sweep = sweep_id()
    if sweep and rank_zero_only.rank == 0 and "mlflow.parentRunId" not in tags:  # an explicit parent (a retrain) wins
        tags["mlflow.parentRunId"] = sweep_parent(str(cfg.logger.tracking_uri), str(cfg.logger.experiment_name), sweep)
    return instantiate(cfg.logger, run_name=name or run_name(cfg), tags=tags)


# ------------------------------------------------------------------ multirun sweeps
def sweep_id() -> str | None:
    """The id of the Hydra multirun this job belongs to (None outside a multirun): the one
    :class:`SweepCallback` set, else a digest of the sweep folder."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return os.environ.get(SWEEP_ENV) or hashlib.sha1(str(Path(HydraConfig.get().sweep.dir).resolve()).encode()).hexdigest()[:16]


def sweep_parent(tracking_uri: str, experiment_name: str, sweep: str) -> str:
    """The run id of the sweep's parent run in this experiment, created by the first job.

    Found by its ``sweep`` tag, so jobs in several processes (a parallel launcher) share it; a
    sweep over datasets gets one parent per dataset experiment (MLflow nests runs only within
    an experiment)."""
    store = client(tracking_uri)
    experiment = experiment_id(store, experiment_name)
    found = store.search_runs([experiment], filter_string=f"tags.sweep = '{sweep}'", max_results=1)
    if found:
        return found[0].info.run_id
    hc = HydraConfig.get() if HydraConfig.initialized() else None
    name = os.environ.get(SWEEP_NAME_ENV) or f"sweep {Path(hc.sweep.dir).as_posix() if hc else sweep}"
    tags = {"sweep": sweep, "kind": "sweep", **code_tags(),
            "command": shell_join(["python", Path(sys.argv[0]).name, *sys.argv[1:]]),
            "mlflow.runName": name}
    if hc:
        tags["sweep_dir"] = str(hc.sweep.dir)
    return store.create_run(experiment, tags=tags).info.run_id


class SweepCallback(Callback):
    """Hydra callback (``hydra.callbacks`` in ``conf/train.yaml``): gives a multirun one sweep
    id and name for its jobs, and marks the parent runs finished when every job has returned."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        os.environ[SWEEP_ENV] = uuid.uuid4().hex[:16]
        overrides = list(config.hydra.overrides.task) if "hydra" in config else []
        os.environ[SWEEP_NAME_ENV] = "sweep " + " ".join(overrides) if overrides else "sweep"

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep = os.environ.pop(SWEEP_ENV, None)
        os.environ.pop(SWEEP_NAME_ENV, None)
        logger = config.get("logger")
        if not sweep or not logger or "tracking_uri" not in logger:
            return
        store = client(str(logger.tracking_uri))
        experiments = [e.experiment_id for e in store.search_experiments()]
        for parent in store.search_runs(experiments, filter_string=f"tags.sweep = '{sweep}'"):
            children = store.search_runs([parent.info.experiment_id],
                                         filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
            store.set_tag(parent.info.run_id, "jobs", str(len(children)))
            failed = any(c.info.status == "FAILED" for c in children)
            store.set_terminated(parent.info.run_id, "FAILED" if failed else "FINISHED")


@rank_zero_only
def log_config(logger: MLFlowLogger, cfg: DictConfig, lineage: dict) -> None:
    """Params (the flattened resolved config, less the run's own output folders, which differ
    between any two runs and would crowd the UI's "Show diff only" view), ``config.yaml`` (all of
    it) and ``data.json`` (file, digest, rows and split borders of the data the run saw)."""
    logger.log_hyperparams({k: v for k, v in flatten(cfg).items() if not k.endswith(".dirpath")})
    logger.experiment.log_text(logger.run_id, OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
    logger.experiment.log_dict(logger.run_id, lineage, "data.json")


@rank_zero_only
def log_dataset(logger: MLFlowLogger, datamodule, lineage: dict) -> None:
    """The training file as an MLflow dataset input (the UI's Dataset column and lineage):
    name, source path, digest (the first 32 hex digits of the file's SHA-256; MLflow keeps 36),
    schema and row count, with the split borders and window counts as input tags."""
    import mlflow.data
    import pandas as pd
    from mlflow.entities import DatasetInput, InputTag

    table = datamodule.table
    frame = pd.DataFrame(table.values, columns=table.columns)
    frame.insert(0, datamodule.date_col, table.dates)
    with warnings.catch_warnings():  # a local path matches MLflow's local-artifact source twice; either is right
        warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways.*")
        dataset = mlflow.data.from_pandas(frame, source=str(Path(lineage["path"]).resolve()), name=lineage["name"],
                                          targets=table.target, digest=lineage["sha256"][:32])
    tags = {"mlflow.data.context": "training", **{k: str(v) for k, v in lineage.items() if k.endswith(("_rows", "_windows"))},
            "freq": lineage["freq"], "features": str(datamodule.features), "sha256": lineage["sha256"]}
    logger.experiment.log_inputs(logger.run_id, datasets=[
        DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(k, v) for k, v in tags.items()])])


# The experiment view the UI opens with ?viewStateShareKey=forecast-compare: the runs sorted by
# test/mse with the comparison columns shown. It is stored as an experiment tag in the format of
# the MLflow 3 UI's shared views (an envelope whose `state` holds the view state); a UI that reads
# it differently shows its default table and a notice, nothing else.
VIEW_KEY = "forecast-compare"
VIEW_COLUMNS = ["attributes.`Dataset`", "attributes.`Models`", "metrics.`test/mse`", "metrics.`test/mae`",
                "tags.`model`", "tags.`horizon`", "tags.`seq_len`", "tags.`features`",
                "tags.`seed`", "tags.`paper_compat`", "tags.`refit`", "tags.`git_commit`"]


def comparison_view_url(tracking_uri: str, experiment_id: str) -> str:
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW_KEY}"


@rank_zero_only
def log_comparison_view(logger: MLFlowLogger) -> None:
    """Store the comparison view on the run's experiment (once; idempotent)."""
    state = {"orderByKey": "metrics.`test/mse`", "orderByAsc": True, "selectedColumns": VIEW_COLUMNS}
    value = json.dumps({"name": "forecast: compare models", "createdAt": 0, "updatedAt": 0, "state": json.dumps(state)})
    client, key = logger.experiment, f"mlflow.sharedViewState.{VIEW_KEY}"
    if client.get_experiment(logger.experiment_id).tags.get(key) != value:
        client.set_experiment_tag(logger.experiment_id, key, value)


@rank_zero_only
def log_figure(logger: MLFlowLogger, figure, artifact_file: str) -> None:
    logger.experiment.log_figure(logger.run_id, figure, artifact_file)


@rank_zero_only
def log_artifact(logger: MLFlowLogger, path: str | Path, artifact_path: str) -> None:
    logger.experiment.log_artifact(logger.run_id, str(path), artifact_path)


@rank_zero_only
def mark_failed(logger: MLFlowLogger) -> None:
    """The run, and the parent run of its sweep (a failed job ends a Hydra multirun), FAILED."""
    logger.experiment.set_terminated(logger.run_id, "FAILED")
    parent = (logger.tags or {}).get("mlflow.parentRunId")
    if parent:
        logger.experiment.set_terminated(parent, "FAILED")


# ------------------------------------------------------------------ model and registry
def registered_name(cfg: DictConfig) -> str:
    """The registry name of a run's model: ``cfg.register_name`` or ``<dataset>-<model>``."""
    return str(cfg.get("register_name") or f"{cfg.data.name}-{model_name(cfg)}")


@rank_zero_only
def log_model(logger: MLFlowLogger, cfg: DictConfig, module, datamodule, lineage: dict) -> dict:
    """Log the run's pyfunc model (weights, resolved config, fitted scaler, signature, input
    example) and, with ``cfg.register``, register it under :func:`registered_name`, pointing
    ``cfg.alias`` (e.g. ``champion``) at the new version. Returns ``{"model_uri", "name",
    "version"}`` (the last two only when registered)."""
    import mlflow

    from forecast import serving

    client = logger.experiment  # also points the fluent API at the logger's tracking URI
    tags = {k: str(logger.tags[k]) for k in COMPARISON_TAGS if k in (logger.tags or {})}
    # the fluent API refuses to resume a run of another experiment than its active one (left
    # over from earlier work in the same process): make the run's experiment the active one
    mlflow.set_experiment(experiment_id=logger.experiment_id)
    with mlflow.start_run(run_id=logger.run_id):
        info = serving.log_model(cfg, module, datamodule, lineage, tags=tags)
    out = {"model_uri": info.model_uri}
    client.set_tag(logger.run_id, "model_uri", info.model_uri)
    if cfg.get("register"):
        version = register(client, logger.run_id, info.model_uri, registered_name(cfg), cfg.get("alias"))
        out.update(name=version.name, version=version.version)
    return out


def register(client, run_id: str, model_uri: str, name: str, alias: str | None = None):
    """Register ``model_uri`` (the model of run ``run_id``) as a new version of ``name``, tagged
    with the run's comparison tags and test metrics; point ``alias`` at it. Returns the version."""
    import mlflow

    run = client.get_run(run_id)
    tags = {k: run.data.tags[k] for k in COMPARISON_TAGS if k in run.data.tags}
    tags.update({k.replace("/", "_"): f"{v:.6g}" for k, v in run.data.metrics.items() if k in ("test/mse", "test/mae")})
    tags["run_id"] = run_id
    mlflow.set_tracking_uri(client.tracking_uri)
    version = mlflow.register_model(model_uri, name, tags=tags)
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    client.set_tag(run_id, "registered_model", f"{name}/{version.version}" + (f"@{alias}" if alias else ""))
    return version


# the tags every run carries (besides "command" and MLflow's own), in the order of the UI columns
COMPARISON_TAGS = ("model", "dataset", "features", "seq_len", "horizon", "seed", "paper_compat", "refit",
                   "experiment", "git_commit", "data_sha256", "data_rows")
