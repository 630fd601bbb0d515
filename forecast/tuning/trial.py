"""One trial of a study, as a Hydra job: the training pipeline scored on the validation split,
its per-epoch objective reported to Optuna, stopped early when the pruner says so.

The sweeper (``forecast.tuning.study``) asks Optuna for a trial, turns its parameters into
overrides and hands the job to Hydra's launcher (in this process, or a SLURM job); the job finds
its trial through the environment (``hydra.job.env_set``) and the shared storage, so it runs the
same way wherever the launcher puts it. The job never tells Optuna the outcome: it returns it,
and the sweeper tells (one writer of trial states).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, open_dict

from forecast.errors import ConfigError, ForecastError

TRIAL_ENV = "FORECAST_TRIAL"  # "trial:<storage trial id>:<trial number>" or "best:<trial number>"


class ObjectiveError(ConfigError):
    """The objective is not a metric the trial logs: every trial would fail, so the study stops."""


def storage(url: str, heartbeat: int | None = None):
    """An Optuna ``RDBStorage`` on ``url``; SQLite waits up to a minute for a lock held by a
    parallel worker instead of failing at once."""
    import optuna

    kwargs = {"engine_kwargs": {"connect_args": {"timeout": 60}}} if url.startswith("sqlite") else {}
    if heartbeat:
        kwargs.update(heartbeat_interval=int(heartbeat), grace_period=3 * int(heartbeat))
    with warnings.catch_warnings():  # the heartbeat arguments are "experimental" (since Optuna 2.9)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, **kwargs)


class TrialCallback(pl.Callback):
    """Reports the objective (a ``val/`` metric) after every validation of a fit to the trial,
    stops the fit when the pruner prunes it, and remembers what the sweeper needs: the values,
    the best checkpoint and the MLflow run. Without a trial it only remembers."""

    def __init__(self, trial=None, objective: str = "val/mse", direction: str = "minimize"):
        self.trial, self.objective, self.direction = trial, objective, direction
        self.values: list[float] = []
        self.pruned = False
        self.trained = False
        self.run_id: str | None = None
        self.checkpoint = ""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.run_id = getattr(trainer.logger, "run_id", None)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.trial is None:
            return
        value = trainer.callback_metrics.get(self.objective)
        if value is None:
            logged = sorted(k for k in trainer.callback_metrics if k.startswith("val/"))
            raise ObjectiveError(f"the objective {self.objective} is not logged by this run (it logs {', '.join(logged)}). "
                                 "Fix: set hydra.sweeper.objective to one of them.")
        value = float(value)
        self.values.append(value)
        if trainer.state.fn != "fit":  # trainer.validate of a network that is not trained: one score, nothing to prune
            return
        self.trained = True
        if not math.isfinite(value):  # diverged: later epochs cannot bring it back
            trainer.should_stop = True
            return
        self.trial.report(value, step=trainer.current_epoch)
        if self.trial.should_prune():
            self.pruned = True
            trainer.should_stop = True  # ends the fit after this epoch, as early stopping does

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from forecast.pipelines.train import best_checkpoint

        self.checkpoint = best_checkpoint(trainer)

    def result(self) -> dict[str, Any]:
        """What the sweeper tells Optuna: the state, the best value over the epochs (the value of
        a pruned trial is its last report, as Optuna keeps it), the epochs run and where things are."""
        out = {"run_id": self.run_id, "checkpoint": self.checkpoint, "epochs": len(self.values), "trained": self.trained,
               "values": list(self.values)}
        if not self.values:
            return {**out, "state": "FAIL", "error": f"no validation ran, so there is no {self.objective}"}
        if not all(math.isfinite(v) for v in self.values):
            return {**out, "state": "FAIL", "error": f"{self.objective} is {self.values[-1]} after epoch {len(self.values)} (diverged)"}
        if self.pruned:
            return {**out, "state": "PRUNED", "value": self.values[-1]}
        best = min(self.values) if self.direction == "minimize" else max(self.values)
        return {**out, "state": "COMPLETE", "value": best}


@dataclass
class TrialTask:
    """The task function the sweeper gives Hydra's launcher (picklable: a SLURM job runs it)."""

    storage_url: str
    study_name: str
    objective: str
    direction: str
    pruner: Any = None        # a Hydra node of the pruner (``_target_``…), built in the job
    tags: dict | None = None  # tags every run of the study carries

    def __call__(self, cfg: DictConfig) -> dict[str, Any]:
        role, _, rest = os.environ.get(TRIAL_ENV, "").partition(":")
        if role == "trial":
            trial_id, _, number = rest.partition(":")
            return self.trial(cfg, int(trial_id), int(number))
        if role == "best":
            return self.test_best(cfg, int(rest))
        raise ConfigError(f"a study job started without {TRIAL_ENV}. Fix: start studies with python train.py -m hparams_search=<model>.")

    def trial(self, cfg: DictConfig, trial_id: int, number: int) -> dict[str, Any]:
        """Train one trial's configuration, scored on the validation split only: the test split
        is never read (``test=false``), and no model is logged, registered or recorded."""
        import optuna
        from hydra.utils import instantiate

        from forecast.pipelines.train import run

        pruner = instantiate(self.pruner) if self.pruner else optuna.pruners.NopPruner()
        # a sampler that samples nothing when the trial is built (the parameters came as overrides)
        study = optuna.load_study(study_name=self.study_name, storage=storage(self.storage_url), pruner=pruner,
                                  sampler=optuna.samplers.RandomSampler())
        callback = TrialCallback(optuna.trial.Trial(study, trial_id), self.objective, self.direction)
        with open_dict(cfg):
            cfg.train, cfg.test, cfg.validate = True, False, True
            cfg.register, cfg.log_model, cfg.record = False, False, None
            cfg.tags.update({**(self.tags or {}), "kind": "trial", "trial": str(number)})
        try:
            run(cfg, callbacks=[callback])
        except ObjectiveError:
            raise
        except ForecastError as error:  # this trial's settings (a network's own check): it fails, the study goes on
            return {**callback.result(), "state": "FAIL", "error": str(error)}
        return callback.result()

    def test_best(self, cfg: DictConfig, number: int) -> dict[str, Any]:
        """Test the best trial's checkpoint on the test split: the study's one look at it."""
        from forecast.pipelines.train import run

        callback = TrialCallback()
        with open_dict(cfg):
            cfg.test = True
            cfg.tags.update({**(self.tags or {}), "kind": "study-best", "trial": str(number),
                             "selected_on": f"{self.objective} ({self.direction})"})
        metrics = run(cfg, callbacks=[callback])
        return {"state": "TESTED", "metrics": metrics, "run_id": callback.run_id}
