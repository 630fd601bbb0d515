"""Run the retrain jobs of ``conf/retrain_schedule.yaml`` on their cron expressions, in-process:
``python scripts/schedule.py [jobs.etth1-dlinear.cron='30 1 * * *']``. Stop it with Ctrl-C or
SIGTERM; running jobs finish first. See :mod:`forecast.pipelines.schedule`.
"""

import hydra
from omegaconf import DictConfig

from forecast.config import register_configs
from forecast.errors import ConfigError, config_errors, exit_on_error

register_configs()


@hydra.main(config_path="../conf", config_name="retrain_schedule", version_base="1.3")
def main(cfg: DictConfig) -> None:
    import importlib.util

    from forecast.pipelines.schedule import run

    with exit_on_error():
        if importlib.util.find_spec("apscheduler") is None:
            raise ConfigError("the scheduler needs APScheduler. Fix: pip install -e '.[schedule]' (APScheduler), "
                              "or use cron (README: Scheduled retraining).")
        runs = run(cfg)
    failed = [r for r in runs if r["returncode"] not in (0, None)]
    print(f"stopped after {len(runs)} job run(s), {len(failed)} failed")


if __name__ == "__main__":
    with exit_on_error(), config_errors():  # a misspelt key or a bad setting: one line with the fix
        main()
