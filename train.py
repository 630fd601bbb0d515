"""Train and test a forecasting model: ``python train.py [model=dlinear] [data=etth1] [key=value ...]``.

See ``conf/train.yaml`` for the groups and run-level keys, and the README for examples.
"""

import hydra
from omegaconf import DictConfig

from forecast.config import register_configs
from forecast.errors import ConfigError, config_errors, exit_on_error

register_configs()


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from forecast.pipelines.train import run
    from forecast.tracking import hydra_choice

    with exit_on_error():  # bad input: the message says what and how to fix it; no traceback
        if hydra_choice("hparams_search"):  # a study's trials run through the sweeper, never through main()
            raise ConfigError(f"hparams_search={hydra_choice('hparams_search')} runs a study only as a multirun. "
                              "Fix: add -m (python train.py -m hparams_search=...).")
        metrics = run(cfg)
    return metrics.get("test/mse")


if __name__ == "__main__":
    with exit_on_error(), config_errors():  # a misspelt key or a bad setting: one line with the fix
        main()
