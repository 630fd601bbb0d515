"""The leaderboard: the best MLflow run per model and horizon of one dataset
(``python scripts/compare.py data=<dataset>``, :func:`compare`).

Runs are found by their tags (``dataset``, ``features``, ``paper_compat``, ``horizon``: the
tags every training run carries), so runs in any experiment count; only finished runs with a
``test/mse`` do. Each cell (model × horizon) keeps its run with the lowest ``test/mse``; the
published value of the same model, dataset, features, look-back and horizon comes from
``benchmarks/published.csv`` when there is one.

``rank_by`` chooses the score that ranks (lower is better): ``mse`` (default), ``mae``, or a
probabilistic score of the prediction intervals, ``wql`` (mean weighted quantile loss),
``msis_<L>`` or ``winkler_<L>`` (level ``L``); only runs that logged it count, and the table
gains a ``score`` column beside the MSE and MAE.

``source=backtest`` ranks backtest runs (``python backtest.py``, tag ``kind=backtest``) by their
``backtest/mse`` instead: only runs on identical cutoffs are comparable, so each horizon keeps
the cutoff set (tag ``cutoffs``) that the most models were backtested on, and a model backtested
with refits is its own row (``karma refit=4``). Debug runs never count.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from forecast import tracking
from forecast.records import published

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ["horizon", "rank", "model", "seq_len", "mse", "mae", "paper_mse", "paper_mae", "delta_mse", "run_id",
           "run_name", "experiment_id", "runs"]


SOURCES = ("test", "backtest")
RANK_BY = ("mse", "mae", "wql", "msis_<L>", "winkler_<L>")  # lower is better; <L>: an interval level


def check_rank_by(rank_by: str | None) -> str:
    """``rank_by`` as a metric name (``mse`` when unset); ``ConfigError`` for a score where lower
    is not better (coverage, width) or an unknown one."""
    from forecast.errors import ConfigError

    name = str(rank_by or "mse")
    if name in ("mse", "mae", "wql"):
        return name
    match = re.fullmatch(r"(msis|winkler)_(\d+)", name)
    if match and 1 <= int(match.group(2)) <= 99:
        return name
    raise ConfigError(f"rank_by={name} is not a score to rank by (lower is better): one of {list(RANK_BY)}. "
                      "Fix: e.g. rank_by=wql or rank_by=msis_95 (coverage and width alone do not rank intervals).")


def search(client, dataset: str, features: str = "M", pred_len: int | None = None,
           paper_compat: bool | None = False, source: str = "test", rank_by: str = "mse") -> pd.DataFrame:
    """Every finished run of ``dataset`` with a ``test/mse`` and a ``test/<rank_by>``
    (``source=backtest``: every backtest run with a ``backtest/mse``…), best first by
    ``rank_by`` (one row per run, its value in ``score``): the one place that decides which runs
    a leaderboard compares."""
    if source not in SOURCES:
        from forecast.errors import ConfigError

        raise ConfigError(f"source={source} is not one of {SOURCES}. Fix: source=test (train runs) or source=backtest.")
    rank_by = check_rank_by(rank_by)
    key, score = f"{source}/mse", f"{source}/{rank_by}"
    filters = ["attributes.status = 'FINISHED'", f"tags.dataset = '{dataset}'", f"tags.features = '{features}'"]
    if source == "backtest":
        filters.append("tags.kind = 'backtest'")
    if pred_len is not None:
        filters.append(f"tags.horizon = '{int(pred_len)}'")
    if paper_compat is not None:
        filters.append(f"tags.paper_compat = '{str(bool(paper_compat)).lower()}'")
    experiments = [e.experiment_id for e in client.search_experiments()]
    rows, token = [], None
    while experiments:
        page = client.search_runs(experiments, filter_string=" and ".join(filters), order_by=[f"metrics.`{score}` ASC"],
                                  max_results=1000, page_token=token)
        for run in page:
            metrics, tags = run.data.metrics, run.data.tags
            if any(k not in metrics or not np.isfinite(metrics[k]) for k in (key, score)) or tracking.run_is_debug(run):
                continue  # debug runs (trainer=debug, batch/step limits) are smoke tests, never results
            model = tags.get("model", "")
            if source == "backtest" and tags.get("backtest_refit", "false") != "false":
                model = f"{model} refit={tags['backtest_refit']}"  # another protocol than one training: its own row
            rows.append({
                "model": model, "horizon": int(tags["horizon"]), "seq_len": int(tags.get("seq_len", 0)),
                "mse": metrics[key], "mae": metrics.get(f"{source}/mae", np.nan), "score": metrics[score],
                "run_id": run.info.run_id,
                "run_name": run.info.run_name, "experiment_id": run.info.experiment_id, "start_time": run.info.start_time,
                "cutoffs": tags.get("cutoffs", ""),
            })
        token = page.token
        if not token:
            break
    return pd.DataFrame(rows, columns=["model", "horizon", "seq_len", "mse", "mae", "score", "run_id", "run_name",
                                       "experiment_id", "start_time", "cutoffs"])


def common_cutoffs(runs: pd.DataFrame) -> tuple[pd.DataFrame, dict[int, str]]:
    """The backtest runs of each horizon's most shared cutoff set (the most models; then the
    newest run), and that set per horizon: runs on other cutoffs are not comparable."""
    if runs.empty:
        return runs, {}
    chosen = {}
    for horizon, rows in runs.groupby("horizon"):
        sets = rows.groupby("cutoffs").agg(models=("model", "nunique"), newest=("start_time", "max"))
        chosen[int(horizon)] = sets.sort_values(["models", "newest"], ascending=False).index[0]
    keep = runs[[chosen[int(h)] == c for h, c in zip(runs["horizon"], runs["cutoffs"])]]
    return keep.reset_index(drop=True), chosen


def best_per_cell(runs: pd.DataFrame, dataset: str, features: str = "M", published_csv: Path | None = None) -> pd.DataFrame:
    """One row per (horizon, model): the run with the lowest ``score`` (the MSE where ``runs``
    has no ``score`` column; the earliest on a tie), ranked within its horizon, beside the
    published value where one exists. The ``score`` column is kept where ``runs`` has one."""
    columns = COLUMNS[:4] + ["score"] + COLUMNS[4:] if "score" in runs else COLUMNS
    if runs.empty:
        return pd.DataFrame(columns=columns)
    by = "score" if "score" in runs else "mse"
    counts = runs.groupby(["horizon", "model"]).size().rename("runs")
    ordered = runs.sort_values(["horizon", by, "start_time"], kind="stable")
    best = ordered.groupby(["horizon", "model"], sort=False).head(1).join(counts, on=["horizon", "model"])
    best["rank"] = best.groupby("horizon").cumcount() + 1
    papers = [published(published_csv, m, dataset, features, s, h) if published_csv else ("", "")
              for m, s, h in zip(best["model"], best["seq_len"], best["horizon"])]
    best["paper_mse"] = [float(p[0]) if p[0] else np.nan for p in papers]
    best["paper_mae"] = [float(p[1]) if p[1] else np.nan for p in papers]
    best["delta_mse"] = best["mse"] / best["paper_mse"] - 1
    return best[columns].reset_index(drop=True)


def _number(value: float, digits: int = 4) -> str:
    return "" if pd.isna(value) else f"{value:.{digits}f}"


def to_markdown(table: pd.DataFrame, title: str, source: str = "test", cutoffs: dict | None = None,
                rank_by: str = "mse") -> str:
    """The MSE grid (model × horizon, best run per cell) and the ranked rows under it; ranked by
    ``rank_by``, whose value leads each cell when it is not the MSE."""
    lines = [f"# {title}", ""]
    scored = rank_by != "mse" and "score" in table
    if table.empty:
        need = f"`{source}/mse`" + (f" and a `{source}/{rank_by}`" if rank_by != "mse" else "")
        return "\n".join(lines + [f"No finished run with a {need} matches.", ""])
    horizons = sorted(table["horizon"].unique())
    models = table.sort_values(["horizon", "rank"]).drop_duplicates("model")["model"].tolist()
    cell = {(r.model, r.horizon): r for r in table.itertuples()}
    if source == "backtest":
        on = "; ".join(f"H={h}: {c}" for h, c in sorted((cutoffs or {}).items()))
        intro = (f"Backtest MSE / MAE (z-scored with the scaler of each cutoff's training rows) of the best backtest run "
                 f"per cell, on the same cutoffs per horizon ({on}: first forecast + windows x step).")
    else:
        intro = "Test MSE / MAE (z-scored, every test window) of the best run per cell; published in brackets."
    if scored:
        intro = (f"Ranked by `{source}/{rank_by}` (lower is better; data units or scaled as its definition says), "
                 f"shown first in each cell: {rank_by} · " + intro[0].lower() + intro[1:])
    lines += [intro, "",
              "| model | " + " | ".join(f"H={h}" for h in horizons) + " |", "|---|" + "---|" * len(horizons)]
    for model in models:
        cells = []
        for h in horizons:
            r = cell.get((model, h))
            if r is None:
                cells.append("")
                continue
            paper = f" ({_number(r.paper_mse, 3)} / {_number(r.paper_mae, 3)})" if not pd.isna(r.paper_mse) else ""
            lead = f"{_number(r.score)} · " if scored else ""
            cells.append(f"{lead}{_number(r.mse)} / {_number(r.mae)}{paper}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines += ["", "| horizon | rank | model | seq_len | " + (f"{rank_by} | " if scored else "") +
              "mse | mae | published mse | published mae | Δ mse | runs | run id |",
              "|---|---|---|---|" + ("---|" if scored else "") + "---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        delta = "" if pd.isna(r.delta_mse) else f"{r.delta_mse * 100:+.1f}%"
        lead = f"{_number(r.score)} | " if scored else ""
        lines.append(f"| {r.horizon} | {r.rank} | {r.model} | {r.seq_len} | {lead}{_number(r.mse)} | {_number(r.mae)} | "
                     f"{_number(r.paper_mse, 3)} | {_number(r.paper_mae, 3)} | {delta} | {r.runs} | `{r.run_id}` |")
    return "\n".join(lines + [""])


def figure(table: pd.DataFrame, title: str, ylabel: str = "test MSE (z-scored)", value: str = "mse"):
    """Grouped bars of the best run's ``value`` (the test MSE) per model for each horizon, centred on the horizon's
    label whichever models it has; published values as black ticks; the legend outside the axes
    so that it never covers a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    horizons = sorted(table["horizon"].unique()) if not table.empty else []
    models = table.sort_values(["horizon", "rank"]).drop_duplicates("model")["model"].tolist() if not table.empty else []
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(models)}
    most = max((table["horizon"] == h).sum() for h in horizons) if horizons else 1
    width = 0.8 / max(most, 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 2.6 + 0.45 * most * max(len(horizons), 1)), 3.6))
    for j, h in enumerate(horizons):
        rows = table[table["horizon"] == h].set_index("model")
        present = [m for m in models if m in rows.index]
        for k, model in enumerate(present):
            x = j + (k - (len(present) - 1) / 2) * width
            ax.bar(x, rows.loc[model, value], width=width * 0.95, color=colours[model])
            if value == "mse" and not pd.isna(rows.loc[model, "paper_mse"]):
                ax.scatter([x], [rows.loc[model, "paper_mse"]], marker="_", s=200, color="black", zorder=3)
    ax.set_xticks(range(len(horizons)), [f"H={h}" for h in horizons])
    ax.set_xlim(-0.5, max(len(horizons), 1) - 0.5)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    if models:
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        handles = [Patch(color=colours[m], label=m) for m in models]
        handles.append(Line2D([], [], marker="_", markersize=14, color="black", linestyle="", label="published"))
        ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(axis="y", color="0.9")
    ax.set_axisbelow(True)
    fig.tight_layout()
    return fig


def write_report(out_dir: Path, stem: str, table: pd.DataFrame, markdown: str, figure) -> dict[str, Path]:
    """``<stem>.md``, ``<stem>.csv`` and ``<stem>.png`` under ``out_dir`` (created); closes the figure."""
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / f"{stem}.md", "csv": out_dir / f"{stem}.csv", "png": out_dir / f"{stem}.png"}
    paths["md"].write_text(markdown)
    table.to_csv(paths["csv"], index=False)
    figure.savefig(paths["png"], dpi=110)
    plt.close(figure)
    return paths


def compare(cfg) -> dict:
    """``scripts/compare.py data=<dataset>``: the leaderboard of ``cfg.data`` (every horizon, or
    ``cfg.pred_len``) from the runs at ``cfg.tracking_uri``, printed, written as Markdown, CSV and
    PNG under ``cfg.out_dir`` and (``cfg.log``) logged to a run of ``cfg.experiment_name``.
    Returns ``{"table", "paths", "run_id"}``. Which runs count is decided by :func:`search`."""
    import mlflow

    client = tracking.client(cfg.tracking_uri)
    published_csv = Path(cfg.published) if cfg.published else REPO / "benchmarks" / "published.csv"
    dataset, features = str(cfg.data.name), str(cfg.data.features)
    source = str(cfg.get("source") or "test")
    rank_by = check_rank_by(cfg.get("rank_by"))
    runs = search(client, dataset, features, cfg.pred_len, cfg.paper_compat, source, rank_by)
    if rank_by == "mse":
        runs = runs.drop(columns="score")
    cutoffs = {}
    if source == "backtest":  # published values come from the papers' test protocol: none beside a backtest
        found = len(runs)
        runs, cutoffs = common_cutoffs(runs)
        published_csv = None
        if len(runs) < found:
            print(f"{found - len(runs)} backtest run(s) on other cutoffs left out: only identical cutoffs compare")
    table = best_per_cell(runs.drop(columns="cutoffs"), dataset, features, published_csv)
    stem = f"leaderboard-{dataset}" + (f"-{cfg.pred_len}" if cfg.pred_len else "") + \
        ("-backtest" if source == "backtest" else "") + (f"-{rank_by}" if rank_by != "mse" else "")
    title = f"{dataset} ({features}" + (f", H={cfg.pred_len}" if cfg.pred_len else "") + \
        (", paper_compat" if cfg.paper_compat else "") + (", backtest" if source == "backtest" else "") + \
        (f", by {rank_by}" if rank_by != "mse" else "") + f"): best of {len(runs)} runs"
    markdown = to_markdown(table, title, source, cutoffs, rank_by)
    plot = figure(table, title, f"{source} MSE (z-scored)") if rank_by == "mse" else \
        figure(table, title, f"{source} {rank_by}", "score")
    paths = write_report(Path(cfg.out_dir), stem, table, markdown, plot)
    print(markdown)
    run_id = None
    if cfg.log:
        mlflow.set_tracking_uri(cfg.tracking_uri)
        mlflow.set_experiment(cfg.experiment_name)
        tags = {"kind": "leaderboard", "dataset": dataset, "features": features, "source": source, "rank_by": rank_by,
                "horizon": str(cfg.pred_len or "all"), "paper_compat": str(cfg.paper_compat).lower()}
        with mlflow.start_run(run_name=stem, tags=tags) as run:
            mlflow.log_param("runs_compared", len(runs))
            mlflow.log_metrics({f"{r.model.replace(' ', '_').replace('=', '')}/{r.horizon}/{source}_{rank_by}":
                                float(r.mse if rank_by == "mse" else r.score) for r in table.itertuples()})
            for path in paths.values():
                mlflow.log_artifact(str(path))
            run_id = run.info.run_id
        print(f"logged to run {run_id} of experiment '{cfg.experiment_name}'")
    return {"table": table, "paths": paths, "run_id": run_id}
