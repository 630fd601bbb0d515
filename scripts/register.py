"""Register a run's logged model and set an alias:
``python scripts/register.py run_id=<id> [alias=champion]`` or, for the best finished run of a
dataset and model by ``test/mse``, ``python scripts/register.py data=etth1 best=karma [pred_len=96]``.
The name is ``<dataset>-<model>`` unless ``name=`` says otherwise. See ``conf/register.yaml``
and :func:`forecast.registry.register_run`.
"""

import hydra
from omegaconf import DictConfig

from forecast.config import register_configs
from forecast.errors import config_errors, exit_on_error

register_configs()


@hydra.main(config_path="../conf", config_name="register", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from forecast.registry import register_run

    with exit_on_error():
        register_run(cfg)


if __name__ == "__main__":
    with exit_on_error(), config_errors():  # a misspelt key or a bad setting: one line with the fix
        main()
