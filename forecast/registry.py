"""The MLflow model registry: which runs may be registered, which version serves, the
champion/challenger rule, and the history of those decisions.

* :func:`check_registrable` is the one place that decides whether a run's model may enter the
  registry (``scripts/register.py`` and the retrain both pass through it);
* :func:`register_run` registers a given run or the best run of a model (``scripts/register.py``);
* :func:`champion_version`, :func:`decide`, :func:`decision_tags`, :func:`register_version`,
  :func:`promote`: the retrain's decision and its writes, the alias move last;
* :func:`history`, :func:`history_markdown`, :func:`retrain_history`: every retrain of a name
  (``scripts/compare.py history=<name>``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from forecast import tracking
from forecast.errors import ConfigError

DECIDED = ("first", "promoted", "rejected")


# ------------------------------------------------------------------ registering a run
def check_registrable(run) -> str:
    """The ``model_uri`` of ``run`` (an MLflow ``Run``), or ``ConfigError`` saying why its model
    may not be registered. Every path into the registry calls this first."""
    if tracking.run_is_debug(run):
        raise ConfigError(f"run {run.info.run_id} is a debug run (its trainer limited batches or steps: a smoke test, "
                          "not a result); it is never registered. Fix: register a run trained without trainer=debug "
                          "and without trainer.limit_*_batches/max_steps.")
    model_uri = run.data.tags.get("model_uri")
    if not model_uri:
        raise ConfigError(f"run {run.info.run_id} has no logged model (it ran with log_model=false or did not test). "
                          "Fix: rerun it with log_model=true.")
    return model_uri


def best_run(client, dataset: str, model: str, pred_len: int | None, features: str):
    """The finished run of ``model`` on ``dataset`` with the lowest ``test/mse`` and a logged model."""
    filters = ["attributes.status = 'FINISHED'", f"tags.dataset = '{dataset}'", f"tags.model = '{model}'",
               f"tags.features = '{features}'", "tags.paper_compat = 'false'"]
    if pred_len:
        filters.append(f"tags.horizon = '{int(pred_len)}'")
    experiments = [e.experiment_id for e in client.search_experiments()]
    debug = 0
    for run in client.search_runs(experiments, " and ".join(filters), order_by=["metrics.`test/mse` ASC"], max_results=200):
        if tracking.run_is_debug(run):  # a smoke run's score is noise, however low
            debug += 1
        elif "test/mse" in run.data.metrics and "model_uri" in run.data.tags:
            return run
    skipped = f" ({debug} debug run(s) left out: smoke tests are never registered)" if debug else ""
    raise ConfigError(f"no finished run of model '{model}' on '{dataset}' (features {features}"
                      + (f", horizon {pred_len}" if pred_len else "") + f") has a test/mse and a logged model{skipped}. "
                      "Fix: train one (python train.py model=... data=...), or give run_id=.")


def register_run(cfg: DictConfig):
    """``scripts/register.py``: register ``cfg.run_id``'s model, or that of the best run of
    ``cfg.best`` on ``cfg.data``, as ``cfg.name`` (default ``<dataset>-<model>``) and point
    ``cfg.alias`` at the new version. Returns the ``ModelVersion``."""
    from mlflow.exceptions import MlflowException

    client = tracking.client(cfg.tracking_uri)
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
    model_uri = check_registrable(run)
    name = cfg.name or f"{run.data.tags['dataset']}-{run.data.tags['model']}"
    version = tracking.register(client, run.info.run_id, model_uri, name, cfg.alias)
    print(f"registered {model_uri} (run {run.info.run_id}, test/mse {run.data.metrics.get('test/mse', float('nan')):.4f}) "
          f"as {name} version {version.version}" + (f", alias {cfg.alias}: models:/{name}@{cfg.alias}" if cfg.alias else ""))
    return version


# ------------------------------------------------------------------ champion and challenger
def champion_version(client, name: str, alias: str):
    """The model version ``alias`` points at, or None when ``name`` has no such alias yet."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def decide(champion: dict | None, challenger: dict, metric: str, min_improvement: float) -> tuple[str, float]:
    """``("first" | "promoted" | "rejected", relative improvement of the challenger)`` from the
    two models' scores (``{metric: value}``; lower is better)."""
    if champion is None:
        return "first", float("nan")
    old, new = champion[metric], challenger[metric]
    if not np.isfinite(new):
        return "rejected", float("-inf")
    improvement = (old - new) / old if old > 0 else (0.0 if new == old else float("-inf"))
    # strictly better, and by at least min_improvement: a tie (a deterministic baseline refitted on
    # the same data) keeps the champion rather than churning the alias
    better = improvement > 0 and improvement >= min_improvement
    return ("promoted" if better else "rejected"), float(improvement)


def decision_tags(decision: str, scores: dict[str, dict], metric: str, improvement: float, min_improvement: float,
                  serving: str | None) -> dict[str, str]:
    """The tags of a challenger's version that record the decision: the scores on ``metric``
    and, against a champion, the improvement and (when rejected) the reason."""
    tags = {"retrain_decision": decision, "eval_metric": metric,
            **{f"{who}_{metric}": f"{s[metric]:.6g}" for who, s in scores.items()}}
    if "champion" in scores:
        tags["improvement"] = f"{improvement:.6g}"
        tags["champion_version"] = str(serving)
    if decision == "rejected":
        tags["rejected"] = (f"{metric} {scores['challenger'][metric]:.6g} vs champion {scores['champion'][metric]:.6g} "
                            f"(v{serving}): improvement {improvement:+.2%} < min_improvement {min_improvement:.2%}")
    return tags


def register_version(client, run, name: str, tags: dict[str, str]) -> str:
    """Register ``run``'s model as a new version of ``name`` (no alias) with ``tags``; returns it."""
    version = str(tracking.register(client, run.info.run_id, check_registrable(run), name).version)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))
    return version


def promote(client, name: str, alias: str, version: str) -> None:
    """Point ``alias`` at ``version``: the one write that changes what serves."""
    client.set_registered_model_alias(name, alias, version)


# ------------------------------------------------------------------ history
def history(client, name: str, experiment_name: str = "retrain") -> pd.DataFrame:
    """Every retrain of ``name``, oldest first: when, decision, versions, their models (the
    network family: ``challenger_model``; ``champion_model``, the one serving after the retrain),
    the chosen candidate, scores, data."""
    experiment = client.get_experiment_by_name(experiment_name)
    runs = client.search_runs([experiment.experiment_id], f"tags.retrain_of = '{name}' and tags.kind = 'retrain'",
                              order_by=["attributes.start_time ASC"], max_results=5000) if experiment else []
    rows = []
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        metric = run.data.params.get("metric", "mse")
        rows.append({
            "started": pd.Timestamp(run.info.start_time, unit="ms").floor("s"),
            "status": run.info.status, "decision": tags.get("decision", "running"),
            "champion_before": tags.get("champion_before", ""), "challenger": tags.get("challenger_version", ""),
            "champion_after": tags.get("champion_after", ""),
            "challenger_model": tags.get("challenger_model", ""),
            "champion_model": tags.get("champion_model_after", tags.get("champion_model_before", "")),
            "candidate": tags.get("chosen_candidate", ""), "metric": metric,
            "champion_score": metrics.get(f"champion/{metric}", np.nan),
            "challenger_score": metrics.get(f"challenger/{metric}", np.nan),
            "last_timestamp": tags.get("last_timestamp", ""), "rows": tags.get("data_rows", ""),
            "train_seconds": metrics.get("train_seconds", np.nan), "error": tags.get("error", "")[:120],
            "run_id": run.info.run_id,
        })
    return pd.DataFrame(rows)


def history_markdown(table: pd.DataFrame, name: str) -> str:
    """The history as a Markdown table, one line per retrain."""
    lines = [f"# {name}: {len(table)} retrains", "",
             "| started | decision | champion before → after | serving model | challenger | challenger model | champion score | challenger score | data up to | rows | train s | run id |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def number(value, digits=4):
        return "" if pd.isna(value) else f"{value:.{digits}f}"

    for r in table.itertuples():
        decision = r.decision + (f" ({r.error})" if r.error else "")
        lines.append(f"| {r.started} | {decision} | {r.champion_before or '-'} → {r.champion_after or '-'} | "
                     f"{r.champion_model or '-'} | {r.challenger or '-'} | {r.challenger_model or '-'} | "
                     f"{number(r.champion_score)} | {number(r.challenger_score)} | "
                     f"{r.last_timestamp} | {r.rows} | {number(r.train_seconds, 1)} | `{r.run_id}` |")
    return "\n".join(lines + [""])


def retrain_history(cfg: DictConfig) -> dict:
    """``scripts/compare.py history=<name>``: every retrain of ``cfg.history`` (oldest first) as
    Markdown/CSV, with a PNG of the champion's and challengers' scores over time, written under
    ``cfg.out_dir``. Returns ``{"table", "paths"}``."""
    from forecast.leaderboard import write_report
    from forecast.plots import retrain_history_figure

    table = history(tracking.client(cfg.tracking_uri), str(cfg.history), cfg.retrain_experiment)
    if table.empty:
        raise ConfigError(f"history={cfg.history}: no retrain runs in experiment '{cfg.retrain_experiment}' at "
                          f"{cfg.tracking_uri}. Fix: run scripts/retrain.py name={cfg.history} ..., or point "
                          "MLFLOW_TRACKING_URI at the server it logs to.")
    markdown = history_markdown(table, str(cfg.history))
    paths = write_report(Path(cfg.out_dir), f"retrain-history-{cfg.history}", table, markdown,
                         retrain_history_figure(table, str(cfg.history), DECIDED))
    print(markdown)
    return {"table": table, "paths": paths}
