"""The leaderboard ranked by a probabilistic score (``rank_by``): which runs count, the order,
the files, and the scores that cannot rank."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from forecast import leaderboard, tracking
from forecast.errors import ConfigError


def _run(client, experiment, model, mse, **scores):
    run = client.create_run(experiment, tags={"dataset": "syn", "model": model, "horizon": "24", "seq_len": "48",
                                              "features": "M", "paper_compat": "false"})
    client.log_metric(run.info.run_id, "test/mse", mse)
    client.log_metric(run.info.run_id, "test/mae", mse / 2)
    for key, value in scores.items():
        client.log_metric(run.info.run_id, f"test/{key}", value)
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lb")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = tracking.client(uri)
    exp = client.create_experiment("runs")
    ids = {
        # the lowest MSE has the worst quantile loss: ranking by wql must reverse the order
        "sharp": _run(client, exp, "dlinear", 0.30, wql=0.40, msis_95=9.0, coverage_95=0.70),
        "honest": _run(client, exp, "karma", 0.35, wql=0.20, msis_95=5.0, coverage_95=0.95),
        "honest_worse": _run(client, exp, "karma", 0.36, wql=0.25, msis_95=4.0),
        "points": _run(client, exp, "ets", 0.10),  # no intervals: no score to rank by
    }
    return {"uri": uri, "tmp": tmp, "ids": ids, "client": client}


def _compare(store, **keys):
    cfg = OmegaConf.create({"data": {"name": "syn", "features": "M"}, "pred_len": None, "paper_compat": False,
                            "published": None, "out_dir": str(store["tmp"] / "out"), "log": True,
                            "tracking_uri": store["uri"], "source": "test", "experiment_name": "leaderboard", **keys})
    return leaderboard.compare(cfg)


def test_rank_by_wql_orders_by_the_score_and_leaves_out_runs_without_it(store):
    ids = store["ids"]
    by_mse = _compare(store)["table"]
    assert by_mse["model"].tolist() == ["ets", "dlinear", "karma"] and "score" not in by_mse

    result = _compare(store, rank_by="wql")
    table = result["table"]
    assert table["model"].tolist() == ["karma", "dlinear"]              # ets logged no test/wql
    assert table["run_id"].tolist() == [ids["honest"], ids["sharp"]]    # karma's better wql run, not its other one
    assert table["score"].tolist() == [0.20, 0.40] and table["mse"].tolist() == [0.35, 0.30]
    assert table["rank"].tolist() == [1, 2]
    markdown = result["paths"]["md"].read_text()
    assert result["paths"]["md"].name == "leaderboard-syn-wql.md"
    assert "Ranked by `test/wql`" in markdown and "| 24 | 1 | karma | 48 | 0.2000 | 0.3500 |" in markdown
    logged = store["client"].get_run(result["run_id"]).data
    assert logged.tags["rank_by"] == "wql" and logged.metrics["karma/24/test_wql"] == 0.20

    table = _compare(store, rank_by="msis_95")["table"]
    assert table["run_id"].tolist() == [ids["honest_worse"], ids["sharp"]]  # karma's lower MSIS is its higher-MSE run
    assert np.allclose(table["score"], [4.0, 9.0])


@pytest.mark.parametrize("bad", ["coverage_95", "width_80", "msis_100", "crps"])
def test_scores_that_cannot_rank_are_refused_with_the_fix(store, bad):
    with pytest.raises(ConfigError, match=rf"rank_by={bad} .*Fix: e.g. rank_by=wql"):
        _compare(store, rank_by=bad)
