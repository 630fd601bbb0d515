"""``hydra/sweeper=optuna``: a Hydra sweeper that runs an Optuna study through its ask-and-tell
interface (``forecast.tuning.study``), each trial a job of the configured launcher.

Why a sweeper of our own rather than the released ``hydra-optuna-sweeper``: its 1.3.0 release
needs ``optuna<3`` and fails on SQLAlchemy 2 storages, and its 1.4 line needs a pre-release of
hydra-core. Ask-and-tell is Optuna's stable public interface since 2.x, so this plugin works with
Optuna 4 and later and keeps the search-space grammar of ``hydra-optuna-sweeper``.
"""

# no `from __future__ import annotations`: Hydra executes plugin modules outside sys.modules, where
# dataclasses cannot resolve string annotations
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


@dataclass
class OptunaSweeperConf:
    """The keys of ``hydra.sweeper`` (``conf/hydra/sweeper/optuna.yaml`` documents each)."""

    _target_: str = "hydra_plugins.forecast_sweeper.optuna_sweeper.OptunaSweeper"
    _recursive_: bool = False  # the sampler and pruner nodes are built per trial, not once here
    storage: Optional[str] = "sqlite:///optuna.db"
    study_name: Optional[str] = None
    n_trials: int = 20
    timeout: Optional[float] = None
    objective: str = "val/mse"
    direction: str = "minimize"
    n_jobs: int = 1
    test_best: bool = True
    heartbeat: Optional[int] = 60
    sampler: Any = None
    pruner: Any = None
    params: Dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="optuna_schema", node=OptunaSweeperConf, provider="forecast")


class OptunaSweeper(Sweeper):
    """An Optuna study over ``params`` (see ``forecast.tuning.study.Study``)."""

    def __init__(self, **settings: Any) -> None:
        self.settings = {k: OmegaConf.to_container(v, resolve=True) if isinstance(v, DictConfig) else v
                         for k, v in settings.items()}
        self.study = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        from forecast.tuning.study import Study

        self.hydra_context, self.config = hydra_context, config
        self.study = Study(self.settings, config)  # checks the settings and the search space: no trial, no I/O yet
        # the launcher runs the study's own task (a trial scored on validation), not the app's main()
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=self.study.task(), config=config)

    def sweep(self, arguments: List[str]) -> Any:
        return self.study.run(list(arguments), self.launcher, self.validate_batch_is_legal)
