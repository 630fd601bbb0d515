"""The leaderboard of a dataset from MLflow: ``python scripts/compare.py data=etth1 [pred_len=96]``;
the retrain history of a registered model: ``python scripts/compare.py history=etth1-dlinear``.

Prints the best run per model and horizon by ``test/mse`` (with MAE, the published value where
one exists, and run ids), writes it as Markdown and CSV with a PNG chart under ``out_dir``, and
logs the three files to a run of the ``leaderboard`` experiment. See ``conf/compare.yaml``.
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from forecast.config import register_configs
from forecast.errors import ConfigError, exit_on_error

register_configs()
REPO = Path(__file__).resolve().parents[1]


def retrain_history(cfg: DictConfig) -> dict:
    """Every retrain of ``cfg.history`` (oldest first) as Markdown/CSV, with a PNG of the
    champion's and challengers' scores over time, written under ``out_dir``."""
    import matplotlib.pyplot as plt
    from mlflow import MlflowClient

    from forecast.pipelines.retrain import history, history_figure, history_markdown

    table = history(MlflowClient(cfg.tracking_uri), str(cfg.history), cfg.retrain_experiment)
    if table.empty:
        raise ConfigError(f"history={cfg.history}: no retrain runs in experiment '{cfg.retrain_experiment}' at "
                          f"{cfg.tracking_uri}. Fix: run scripts/retrain.py name={cfg.history} ..., or point "
                          "MLFLOW_TRACKING_URI at the server it logs to.")
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"retrain-history-{cfg.history}"
    paths = {"md": out / f"{stem}.md", "csv": out / f"{stem}.csv", "png": out / f"{stem}.png"}
    markdown = history_markdown(table, str(cfg.history))
    paths["md"].write_text(markdown)
    table.to_csv(paths["csv"], index=False)
    figure = history_figure(table, str(cfg.history))
    figure.savefig(paths["png"], dpi=110)
    plt.close(figure)
    print(markdown)
    return {"table": table, "paths": paths}


def compare(cfg: DictConfig) -> dict:
    import matplotlib.pyplot as plt
    import mlflow
    from mlflow import MlflowClient

    from forecast import leaderboard

    client = MlflowClient(cfg.tracking_uri)
    published = Path(cfg.published) if cfg.published else REPO / "benchmarks" / "published.csv"
    dataset, features = str(cfg.data.name), str(cfg.data.features)
    runs = leaderboard.search(client, dataset, features, cfg.pred_len, cfg.paper_compat)
    table = leaderboard.best_per_cell(runs, dataset, features, published)
    stem = f"leaderboard-{dataset}" + (f"-{cfg.pred_len}" if cfg.pred_len else "")
    title = f"{dataset} ({features}" + (f", H={cfg.pred_len}" if cfg.pred_len else "") + \
        (", paper_compat" if cfg.paper_compat else "") + f"): best of {len(runs)} runs"
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / f"{stem}.md", "csv": out / f"{stem}.csv", "png": out / f"{stem}.png"}
    markdown = leaderboard.to_markdown(table, title)
    paths["md"].write_text(markdown)
    table.to_csv(paths["csv"], index=False)
    figure = leaderboard.figure(table, title)
    figure.savefig(paths["png"], dpi=110)
    plt.close(figure)
    print(markdown)
    run_id = None
    if cfg.log:
        mlflow.set_tracking_uri(cfg.tracking_uri)
        mlflow.set_experiment(cfg.experiment_name)
        tags = {"kind": "leaderboard", "dataset": dataset, "features": features,
                "horizon": str(cfg.pred_len or "all"), "paper_compat": str(cfg.paper_compat).lower()}
        with mlflow.start_run(run_name=stem, tags=tags) as run:
            mlflow.log_param("runs_compared", len(runs))
            mlflow.log_metrics({f"{r.model}/{r.horizon}/test_mse": float(r.mse) for r in table.itertuples()})
            for path in paths.values():
                mlflow.log_artifact(str(path))
            run_id = run.info.run_id
        print(f"logged to run {run_id} of experiment '{cfg.experiment_name}'")
    return {"table": table, "paths": paths, "run_id": run_id}


@hydra.main(config_path="../conf", config_name="compare", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_error():
        if cfg.history:
            retrain_history(cfg)
        elif not cfg.data:
            raise ConfigError("give data=<dataset> for its leaderboard, or history=<registered model> for its retrains.")
        else:
            compare(cfg)


if __name__ == "__main__":
    main()
