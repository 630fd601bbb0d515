"""Rolling-origin backtest: ``python backtest.py [model=karma] [data=etth1] backtest.windows=12 [backtest.refit=4]``,
or several models on the same cutoffs: ``python backtest.py models=[dlinear,karma_etth1_96,ets,seasonalnaive]``.

See ``conf/backtest.yaml`` for the settings and ``docs/backtesting.md`` for what a cutoff is, the
refit cadences and the output table.
"""

import hydra
from omegaconf import DictConfig

from forecast.config import register_configs
from forecast.errors import config_errors, exit_on_error

register_configs()


@hydra.main(config_path="conf", config_name="backtest", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from forecast.pipelines.backtest import run

    with exit_on_error():  # bad input: the message says what and how to fix it; nothing logged
        table = run(cfg)
    overall = table.attrs["metrics"].query("level == 'overall'")
    return float(overall["mse"].iloc[0])  # a multirun's sweeper (e.g. Optuna) minimises the first model's


if __name__ == "__main__":
    with exit_on_error(), config_errors():  # a misspelt key or a bad setting: one line with the fix
        main()
