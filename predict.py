"""Forecast from a logged or registered MLflow model:
``python predict.py model_uri=models:/etth1-karma@champion data.path=new.csv [output=forecast.csv]``.

Takes the last ``seq_len`` rows of the file, validates them with the data layer, and writes the
next ``pred_len`` steps (future timestamps, original scale) as CSV or Parquet, with a PNG of the
history and the forecast beside it. See ``conf/predict.yaml``.
"""

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from forecast.config import PredictConfig
from forecast.errors import config_errors, exit_on_error

# only this app's schema: register_configs() derives the others from Lightning's classes, whose
# import alone costs about 2 s of every forecast's start-up
ConfigStore.instance().store(name="predict_schema", node=PredictConfig)


@hydra.main(config_path="conf", config_name="predict", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from forecast.pipelines.predict import run

    with exit_on_error():  # bad input: the message says what and how to fix it; nothing written
        result = run(cfg)
    print(f"{result['output']} ({len(result['forecast'])} steps), {result['figure']}")


if __name__ == "__main__":
    with exit_on_error(), config_errors():  # a misspelt key or a bad setting: one line with the fix
        main()
