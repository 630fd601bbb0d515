"""Retrain a registered model on the newest data, champion/challenger:
``python scripts/retrain.py name=etth1-dlinear source=data/ETT-small/ETTh1.csv [warm_start=true]``.

Exit status: 0 when the retrain finished (promoted, rejected, or nothing new to train on), 1
when it failed (the reason is logged to a FAILED ``retrain`` run; the champion is unchanged),
75 when another retrain of the same name is running, 143 when SIGTERM stopped it. See
``conf/retrain.yaml`` and :mod:`forecast.pipelines.retrain`.
"""

import os
import signal

import hydra
from omegaconf import DictConfig

from forecast.config import register_configs
from forecast.errors import config_errors, exit_on_error

register_configs()
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # log files, not terminals


@hydra.main(config_path="../conf", config_name="retrain", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from forecast.pipelines.retrain import request_stop, retrain

    # SIGTERM (kill, systemd, Kubernetes) stops the retrain at its next safe point: the retrain
    # run is marked FAILED, the lock released, the champion untouched; exit status 143
    signal.signal(signal.SIGTERM, request_stop)
    with exit_on_error():  # a busy lock exits 75 ("busy: ..."), any other refusal 1
        result = retrain(cfg)
    print(f"{cfg.name}: {result['decision']}; {cfg.alias} is version {result['champion_version']}")


if __name__ == "__main__":
    with exit_on_error(), config_errors():  # a misspelt key or a bad setting: one line with the fix
        main()
