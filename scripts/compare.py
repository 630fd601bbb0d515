"""The leaderboard of a dataset from MLflow: ``python scripts/compare.py data=etth1 [pred_len=96]``;
the retrain history of a registered model: ``python scripts/compare.py history=etth1-dlinear``.

Prints the best run per model and horizon by ``test/mse`` (with MAE, the published value where
one exists, and run ids), writes it as Markdown and CSV with a PNG chart under ``out_dir``, and
logs the three files to a run of the ``leaderboard`` experiment. See ``conf/compare.yaml``,
:func:`forecast.leaderboard.compare` and :func:`forecast.registry.retrain_history`.
"""

import hydra
from omegaconf import DictConfig

from forecast.config import register_configs
from forecast.errors import ConfigError, config_errors, exit_on_error

register_configs()


@hydra.main(config_path="../conf", config_name="compare", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from forecast.leaderboard import compare
    from forecast.registry import retrain_history

    with exit_on_error():
        if cfg.history:
            retrain_history(cfg)
        elif not cfg.data:
            raise ConfigError("give data=<dataset> for its leaderboard, or history=<registered model> for its retrains.")
        else:
            compare(cfg)


if __name__ == "__main__":
    with exit_on_error(), config_errors():  # a misspelt key or a bad setting: one line with the fix
        main()
