"""MLflow: run names, tags, the resolved config, figures and checkpoints of a run.

Metrics go through Lightning's ``MLFlowLogger``; this module adds what a run needs to be found
and reproduced: its name ``<model>-<dataset>-<seq_len>-<pred_len>``, searchable tags, the
flattened resolved config as params and as a YAML artifact, the forecast figure and the best
checkpoint. Only rank 0 writes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities import rank_zero_only


def hydra_choice(group: str) -> str | None:
    """The option chosen for a config group (``model=karma`` -> ``karma``) when run by Hydra."""
    if HydraConfig.initialized():
        return HydraConfig.get().runtime.choices.get(group)
    return None


def model_name(cfg: DictConfig) -> str:
    return hydra_choice("model") or cfg.model._target_.rsplit(".", 1)[-1].lower()


def command_line() -> str:
    """The command that reproduces this run (``python train.py`` plus its overrides)."""
    if not HydraConfig.initialized():
        return ""
    hc = HydraConfig.get()
    return " ".join(["python", f"{hc.job.name}.py", *hc.overrides.task])


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


def run_tags(cfg: DictConfig, lineage: dict) -> dict[str, str]:
    """Searchable tags: what ran (model, data, shapes, seed, protocol), from which code and data."""
    commit, dirty = git_commit()
    tags = {
        "model": model_name(cfg),
        "dataset": str(cfg.data.name),
        "features": str(cfg.data.features),
        "seq_len": str(cfg.data.seq_len),
        "horizon": str(cfg.data.pred_len),
        "seed": str(cfg.seed),
        "paper_compat": str(bool(cfg.paper_compat)).lower(),
        "git_commit": commit,
        "git_dirty": str(dirty).lower(),
        "mlflow.source.git.commit": commit,
        "data_path": lineage["path"],
        "data_sha256": lineage["sha256"],
        "data_rows": str(lineage["rows"]),
    }
    if cfg.model.get("refit"):  # estimation protocol of the classical baselines: window or once
        tags["refit"] = str(cfg.model.refit)
    experiment, command = hydra_choice("experiment"), command_line()
    if experiment:
        tags["experiment"] = experiment
    if command:
        tags["command"] = command
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


def create_logger(cfg: DictConfig, lineage: dict) -> MLFlowLogger | None:
    """The configured logger with this run's name and tags; ``None`` for ``logger=none``."""
    if not cfg.get("logger") or "_target_" not in cfg.logger:
        return None
    return instantiate(cfg.logger, run_name=run_name(cfg), tags=run_tags(cfg, lineage))


@rank_zero_only
def log_config(logger: MLFlowLogger, cfg: DictConfig, lineage: dict) -> None:
    """Params (the flattened resolved config), ``config.yaml`` and ``data.json`` (file, digest,
    rows and split borders of the data the run saw)."""
    logger.log_hyperparams(flatten(cfg))
    logger.experiment.log_text(logger.run_id, OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
    logger.experiment.log_dict(logger.run_id, lineage, "data.json")


@rank_zero_only
def log_figure(logger: MLFlowLogger, figure, artifact_file: str) -> None:
    logger.experiment.log_figure(logger.run_id, figure, artifact_file)


@rank_zero_only
def log_artifact(logger: MLFlowLogger, path: str | Path, artifact_path: str) -> None:
    logger.experiment.log_artifact(logger.run_id, str(path), artifact_path)


@rank_zero_only
def mark_failed(logger: MLFlowLogger) -> None:
    logger.experiment.set_terminated(logger.run_id, "FAILED")
