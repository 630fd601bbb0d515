"""Register a run's logged model and set an alias:
``python scripts/register.py run_id=<id> [alias=champion]`` or, for the best finished run of a
dataset and model by ``test/mse``, ``python scripts/register.py data=etth1 best=karma [pred_len=96]``.
The name is ``<dataset>-<model>`` unless ``name=`` says otherwise. See ``conf/register.yaml``.
"""

import hydra
from omegaconf import DictConfig

from forecast.config import register_configs
from forecast.errors import ConfigError, exit_on_error

register_configs()


def best_run(client, dataset: str, model: str, pred_len: int | None, features: str):
    filters = ["attributes.status = 'FINISHED'", f"tags.dataset = '{dataset}'", f"tags.model = '{model}'",
               f"tags.features = '{features}'", "tags.paper_compat = 'false'"]
    if pred_len:
        filters.append(f"tags.horizon = '{int(pred_len)}'")
    experiments = [e.experiment_id for e in client.search_experiments()]
    for run in client.search_runs(experiments, " and ".join(filters), order_by=["metrics.`test/mse` ASC"], max_results=50):
        if "test/mse" in run.data.metrics and "model_uri" in run.data.tags:
            return run
    raise ConfigError(f"no finished run of model '{model}' on '{dataset}' (features {features}"
                      + (f", horizon {pred_len}" if pred_len else "") + ") has a test/mse and a logged model. "
                      "Fix: train one (python train.py model=... data=...), or give run_id=.")


def register(cfg: DictConfig):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from forecast import tracking

    client = MlflowClient(cfg.tracking_uri)
    if cfg.run_id:
        try:
            run = client.get_run(cfg.run_id)
        except MlflowException:
            raise ConfigError(f"run_id={cfg.run_id}: no such run at {cfg.tracking_uri}. Fix: copy the id from the "
                              "MLflow UI, and point MLFLOW_TRACKING_URI at the server that holds it.") from None
    elif cfg.data and cfg.best:
        run = best_run(client, str(cfg.data.name), str(cfg.best), cfg.pred_len, str(cfg.data.features))
    else:
        raise ConfigError("give run_id=<run id>, or data=<dataset> best=<model> to register the best run of that model.")
    model_uri = run.data.tags.get("model_uri")
    if not model_uri:
        raise ConfigError(f"run {run.info.run_id} has no logged model (it ran with log_model=false or did not test). "
                          "Fix: rerun it with log_model=true.")
    name = cfg.name or f"{run.data.tags['dataset']}-{run.data.tags['model']}"
    version = tracking.register(client, run.info.run_id, model_uri, name, cfg.alias)
    print(f"registered {model_uri} (run {run.info.run_id}, test/mse {run.data.metrics.get('test/mse', float('nan')):.4f}) "
          f"as {name} version {version.version}" + (f", alias {cfg.alias}: models:/{name}@{cfg.alias}" if cfg.alias else ""))
    return version


@hydra.main(config_path="../conf", config_name="register", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_error():
        register(cfg)


if __name__ == "__main__":
    main()
