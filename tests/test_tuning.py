"""Optuna studies (``python train.py -m hparams_search=<model>``): search spaces checked before any
trial, trials scored on validation only, pruning, resume, parallel workers, MLflow, and the best
trial's override line reproducing its value.

The end-to-end tests run real studies in subprocesses (``train.py -m``) of DLinear on a small
synthetic series, with a search space of their own in a temporary config folder and a data
module that records every read of the test split (:class:`SpyDataModule`)."""

from __future__ import annotations

import math
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from forecast.data.datamodule import ForecastDataModule
from forecast.errors import ConfigError
from tests.helpers import CONF, REPO, compose, runs_of, sinusoid_frame

optuna = pytest.importorskip("optuna")

from forecast.tuning.space import parse_space  # noqa: E402  (needs optuna)
from forecast.tuning.study import Study  # noqa: E402

SPY_ENV = "FORECAST_TEST_SPY"            # file the spy appends "<role> <what>" lines to
INTERRUPT_ENV = "FORECAST_TEST_INTERRUPT"  # trial number whose training is interrupted (Ctrl-C)


class SpyDataModule(ForecastDataModule):
    """The data module, recording each read of the test split (its loader, its windows) with the
    role of the job that read it (``trial`` or ``best``, from the study's environment), and
    interrupting the training of one trial as Ctrl-C would."""

    def _record(self, what: str) -> None:
        role = os.environ.get("FORECAST_TRIAL", "none").split(":")[0]
        with open(os.environ[SPY_ENV], "a") as spy:
            spy.write(f"{role} {what}\n")

    def setup(self, stage=None):
        super().setup(stage)
        if not isinstance(self.datasets, _Recording):
            self.datasets = _Recording(self.datasets, self._record)

    def test_dataloader(self):
        self._record("test_dataloader")
        return super().test_dataloader()

    def train_dataloader(self):
        trial = os.environ.get("FORECAST_TRIAL", "").split(":")
        if os.environ.get(INTERRUPT_ENV) and trial[0] == "trial" and trial[-1] == os.environ[INTERRUPT_ENV]:
            raise KeyboardInterrupt
        return super().train_dataloader()


class _Recording(dict):
    def __init__(self, data, record):
        super().__init__(data)
        self.record = record

    def __getitem__(self, key):
        if key == "test":
            self.record("test_windows")
        return super().__getitem__(key)


# ------------------------------------------------------------------ helpers

LR_SPACE = """\
# @package _global_
defaults:
  - override /model: dlinear
  - override /hydra/sweeper: optuna
hydra:
  sweeper:
    params:
      module.optimizer.lr: {lr}
"""


@pytest.fixture
def study_dir(tmp_path):
    """A folder with the series, a config folder holding search spaces of the tests' own, and the
    spy's file."""
    sinusoid_frame(n=1200, channels=2, period=24, noise=0.3).to_csv(tmp_path / "series.csv", index=False)
    spaces = tmp_path / "conf" / "hparams_search"
    spaces.mkdir(parents=True)
    (spaces / "lr.yaml").write_text(LR_SPACE.format(lr="tag(log, interval(1e-5, 1e-1))"))
    return tmp_path


def study_py(where: Path, *args: str, env: dict | None = None, wait: bool = True):
    """``python train.py -m hparams_search=lr …`` in ``where``: storage, MLflow and outputs there."""
    command = [sys.executable, str(REPO / "train.py"), "-m", "hparams_search=lr", "data=csv", f"data.path={where / 'series.csv'}",
               "data.seq_len=48", "data.pred_len=24", f"data._target_={__name__}.SpyDataModule", "trainer.max_epochs=3",
               "num_threads=1", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
               f"hydra.searchpath=[file://{where / 'conf'}]", f"hydra.sweeper.storage=sqlite:///{where / 'optuna.db'}",
               f"hydra.sweep.dir={where / 'multirun'}", *args]
    full_env = {**os.environ, "FORECAST_DATA_DIR": str(REPO / "data"), "MLFLOW_TRACKING_URI": f"sqlite:///{where / 'mlflow.db'}",
                "OMP_NUM_THREADS": "1", SPY_ENV: str(where / "spy.txt"), **(env or {})}
    run = subprocess.Popen(command, cwd=where, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not wait:
        return run
    out, _ = run.communicate(timeout=900)
    return subprocess.CompletedProcess(command, run.returncode, out, "")


def load(where: Path, name: str = "dlinear-series-24"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{where / 'optuna.db'}")


def children(where: Path):
    """``(parents, trial runs by number, best-test runs)`` of the study's MLflow experiment."""
    client, runs = runs_of(f"sqlite:///{where / 'mlflow.db'}", "series")
    parents = [r for r in runs if r.data.tags.get("kind") == "study"]
    trials: dict[int, list] = {}
    for r in runs:
        if r.data.tags.get("kind") == "trial":
            trials.setdefault(int(r.data.tags["trial"]), []).append(r)
    best = [r for r in runs if r.data.tags.get("kind") == "study-best"]
    return client, parents, trials, best


def spy_lines(where: Path) -> list[str]:
    path = where / "spy.txt"
    return path.read_text().splitlines() if path.exists() else []


def trials_run(output: str) -> set[int]:
    """The trials a study process ran to an end, from its log lines "trial 3 complete after 3 epoch(s): …"."""
    return {int(m.group(1)) for m in re.finditer(r"\] trial (\d+) (?:complete|pruned|failed)", output)}


def log_distance(a: float, b: float) -> float:
    return abs(math.log10(a) - math.log10(b))


# ------------------------------------------------------------------ a whole study

GOOD_LR = 1e-2  # on this series and budget, rates from ~3e-3 to 3e-2 do best; 1e-5 barely moves DLinear in 3 epochs


def test_study_finds_a_better_rate_logs_its_trials_and_reproduces_its_best_value(study_dir):
    proc = study_py(study_dir, "hydra.sweeper.n_trials=6", "register=true")
    assert proc.returncode == 0, proc.stdout[-5000:]
    study = load(study_dir)
    done = [t for t in study.trials if t.state.is_finished()]
    assert len(study.trials) == 6 and len(done) == 6
    rates = {t.number: t.params["module.optimizer.lr"] for t in study.trials}
    assert len(set(rates.values())) == 6  # six distinct trials
    scored = [t for t in study.trials if t.value is not None]
    worst = max(scored, key=lambda t: t.value)
    best = study.best_trial
    assert best.value < worst.value
    assert log_distance(best.params["module.optimizer.lr"], GOOD_LR) < log_distance(worst.params["module.optimizer.lr"], GOOD_LR)

    # MLflow: one parent (kind=study), six trial children with their state and objective, one test of the best
    client, parents, trials, tested = children(study_dir)
    assert len(parents) == 1
    parent = parents[0]
    assert sorted(trials) == list(range(6)) and all(len(runs) == 1 for runs in trials.values())
    for number, (run,) in trials.items():
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["trial_state"] == study.trials[number].state.name
        assert run.data.params["module.optimizer.lr"] == repr(rates[number]) or float(run.data.params["module.optimizer.lr"]) == rates[number]
        assert "test/mse" not in run.data.metrics  # trials never test
    assert trials[best.number][0].data.metrics["objective"] == pytest.approx(best.value, abs=1e-9)
    assert len(tested) == 1 and tested[0].data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert tested[0].data.tags["trial"] == str(best.number) and "test/mse" in tested[0].data.metrics
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best_value"] == pytest.approx(best.value, abs=1e-9)
    assert parent.data.metrics["best_test_mse"] == pytest.approx(tested[0].data.metrics["test/mse"], abs=1e-9)
    assert parent.data.tags["best_trial"] == str(best.number)
    assert float(parent.data.tags["best.module.optimizer.lr"]) == best.params["module.optimizer.lr"]
    assert "only" in parent.data.tags["test_scored"]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)} | \
        {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"best_params.json", "best_command.txt", "trials.csv", "plots/optimization_history.png",
            "plots/param_importances.png"} <= artifacts
    assert "test/mse" in proc.stdout and "scored for this trial only" in proc.stdout
    # register=true: the best trial's tested model, and no trial's
    (version,) = client.search_model_versions("name = 'series-dlinear'")
    assert version.run_id == tested[0].info.run_id and "model_uri" not in trials[best.number][0].data.tags

    # the test split: never read by a trial, read by the best trial's test
    reads = spy_lines(study_dir)
    assert reads and all(line.startswith("best ") for line in reads), reads

    # the override line reproduces the best value in a plain run of train.py
    line = parent.data.tags["best_overrides"]
    args = shlex.split(line)
    assert args[:3] == ["python", "train.py", "model=dlinear"] and not any(a.startswith("hparams_search") for a in args)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{study_dir / 'again.db'}", "OMP_NUM_THREADS": "1",
           SPY_ENV: str(study_dir / "spy-again.txt")}
    again = subprocess.run([sys.executable, str(REPO / "train.py"), *args[2:], f"hydra.run.dir={study_dir / 'again'}"],
                           cwd=study_dir, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    client, (run,) = runs_of(f"sqlite:///{study_dir / 'again.db'}", "series")
    history = [m.value for m in client.get_metric_history(run.info.run_id, "val/mse")]
    assert len(history) == best.user_attrs["epochs"]
    assert min(history) == pytest.approx(best.value, abs=1e-6)


# ------------------------------------------------------------------ pruning

def test_a_trial_far_above_the_median_is_pruned_before_its_last_epoch(study_dir):
    storage = f"sqlite:///{study_dir / 'optuna.db'}"
    queued = optuna.create_study(study_name="prune", storage=storage, direction="minimize")
    queued.enqueue_trial({"module.optimizer.lr": 1e-2})  # a good rate, then one that leaves the network untrained
    queued.enqueue_trial({"module.optimizer.lr": 1e-9})
    proc = study_py(study_dir, "hydra.sweeper.study_name=prune", "hydra.sweeper.n_trials=2", "trainer.max_epochs=4",
                    "hydra.sweeper.pruner.n_startup_trials=1", "hydra.sweeper.pruner.n_warmup_steps=0",
                    "hydra.sweeper.test_best=false")
    assert proc.returncode == 0, proc.stdout[-5000:]
    first, second = load(study_dir, "prune").trials
    assert first.state == optuna.trial.TrialState.COMPLETE and len(first.intermediate_values) == 4
    assert second.state == optuna.trial.TrialState.PRUNED
    assert len(second.intermediate_values) < 4  # stopped before its last epoch
    assert second.intermediate_values[0] > 2 * first.intermediate_values[0]  # far above the median (of one trial)

    client, parents, trials, tested = children(study_dir)
    assert trials[1][0].data.tags["trial_state"] == "PRUNED" and trials[0][0].data.tags["trial_state"] == "COMPLETE"
    epochs = client.get_metric_history(trials[1][0].info.run_id, "val/mse")
    assert len(epochs) == len(second.intermediate_values) < 4
    assert tested == [] and spy_lines(study_dir) == []  # test_best=false: nothing read the test split


# ------------------------------------------------------------------ resume

def test_an_interrupted_study_continues_where_it_stopped(study_dir):
    first = study_py(study_dir, "hydra.sweeper.n_trials=6", env={INTERRUPT_ENV: "3"})  # Ctrl-C in trial 3's training
    assert first.returncode != 0
    study = load(study_dir)
    states = [t.state for t in study.trials]
    assert states[:3] == [optuna.trial.TrialState.COMPLETE] * 3 or all(s.is_finished() for s in states[:3])
    assert states[3] == optuna.trial.TrialState.FAIL and study.trials[3].user_attrs.get("interrupted")
    before = {t.number: t.params for t in study.trials[:3]}
    _, parents, trials, _ = children(study_dir)
    assert parents[0].info.status == "KILLED"

    second = study_py(study_dir, "hydra.sweeper.n_trials=6")
    assert second.returncode == 0, second.stdout[-5000:]
    study = load(study_dir)
    finished = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(finished) == 6
    assert {t.number: t.params for t in study.trials[:3]} == before  # the first three stand
    retry = [t for t in study.trials if t.user_attrs.get("retry_of") == 3]
    assert len(retry) == 1 and retry[0].params == study.trials[3].params  # the interrupted trial, run again once
    assert len({t.params["module.optimizer.lr"] for t in finished}) == 6
    _, parents, trials, tested = children(study_dir)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert all(len(runs) == 1 for runs in trials.values())  # no trial ran twice
    assert trials_run(second.stdout) == {4, 5, 6}
    assert len(tested) == 1


# ------------------------------------------------------------------ parallel workers

def test_two_workers_on_one_storage_run_distinct_trials(study_dir):
    args = ("hydra.sweeper.n_trials=6", "trainer.max_epochs=2")
    workers = [study_py(study_dir, *args, f"hydra.sweep.dir={study_dir / f'worker{i}'}", wait=False) for i in range(2)]
    outs = [w.communicate(timeout=900)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    study = load(study_dir)
    assert len(study.trials) == 6 and all(t.state.is_finished() for t in study.trials)  # none lost, none extra
    ran = [trials_run(out) for out in outs]
    assert ran[0] and ran[1] and not ran[0] & ran[1] and ran[0] | ran[1] == set(range(6))  # each worker its own trials
    assert len({t.params["module.optimizer.lr"] for t in study.trials}) == 6
    _, parents, trials, tested = children(study_dir)
    assert len(parents) == 1 and sorted(trials) == list(range(6)) and all(len(r) == 1 for r in trials.values())
    assert len(tested) == 1  # the best trial is tested once, by the worker that finished the study


# ------------------------------------------------------------------ checks before any trial

def sweep_config(*overrides: str, space: str | None = None, conf: Path = CONF):
    """The master config of ``train.py -m hparams_search=… <overrides>`` (with its ``hydra`` node)."""
    cfg = compose("train", ["hparams_search=dlinear", *overrides], conf_dir=conf, return_hydra_config=True)
    settings = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
    if space is not None:
        settings["params"] = OmegaConf.to_container(OmegaConf.create(space))
    return settings, cfg


@pytest.mark.parametrize("space, message", [
    ({"model.kernal_size": "choice(13, 25)"}, "model.kernal_size: no such setting in this run's config. Did you mean model.kernel_size?"),
    ({"module.optimizer.lr": "interval(0.1, 0.001)"}, "the low bound 0.1 is above the high bound 0.001. Fix: write the smaller bound first"),
    ({"data.batch_size": "choice()"}, "empty choice is not legal"),
    ({"data.batch_size": "range(64, 16)"}, "the low bound 64 is above the high bound 16"),
    ({"module.optimizer.lr": "tag(log, interval(0, 0.1))"}, "a log scale needs a low bound above 0"),
    ({"model.individual": "choice(true, true)"}, "lists a value twice"),
    ({"data.batch_size": "between(1, 2)"}, "is not a search range"),
    ({"trainer.limit_train_batches": "choice(2, 4)"}, "cannot be searched"),
    ({"test": "choice(true, false)"}, "cannot be searched"),
    ({}, "the search space is empty"),
])
def test_bad_search_spaces_are_refused_with_the_key_and_a_fix(space, message):
    settings, cfg = sweep_config(space=space)
    with pytest.raises(ConfigError) as error:
        Study(settings, cfg)
    assert message in str(error.value) and "conf/hparams_search/dlinear.yaml" in str(error.value)
    assert "Fix:" in str(error.value)


@pytest.mark.parametrize("overrides, message", [
    (["trainer=ddp"], "DDP inside a trial is not supported"),
    (["trainer=gpu", "trainer.devices=2"], "DDP inside a trial is not supported"),
    (["trainer=debug"], "refuses trainer batch/step limits"),
    (["trainer.limit_train_batches=5"], "refuses trainer batch/step limits"),
    (["record=benchmarks/accuracy.csv"], "record the best trial afterwards"),
    (["hydra.sweeper.objective=val/mape"], "not a metric the trials log"),
    (["hydra.sweeper.objective=backtest/mse"], "is not an objective yet"),
    (["hydra.sweeper.direction=down"], "not a direction"),
])
def test_a_study_refuses_ddp_smoke_limits_and_bad_settings(overrides, message):
    settings, cfg = sweep_config(*overrides)
    with pytest.raises(ConfigError, match="Fix:") as error:
        Study(settings, cfg)
    assert message in str(error.value)


def test_a_value_the_config_refuses_fails_the_composition_check():
    settings, cfg = sweep_config(space={"model.kernel_size": "choice(13, 25)", "data.seq_len": "choice(96, abc)",
                                        "model.individual": "choice(false, true)"})
    study = Study(settings, cfg)

    def validate_batch(batch):  # raises as Hydra's config loader does inside a sweep
        for overrides in batch:
            compose("train", overrides)

    with pytest.raises(ConfigError) as error:
        study.check_composition(["hparams_search=dlinear"], validate_batch)
    assert str(error.value).startswith("conf/hparams_search/dlinear.yaml: data.seq_len=abc: ")
    assert "Fix:" in str(error.value)


def test_a_bad_space_fails_before_any_trial_and_writes_nothing(study_dir):
    (study_dir / "conf" / "hparams_search" / "lr.yaml").write_text(LR_SPACE.format(lr="choice()"))
    proc = study_py(study_dir, "hydra.sweeper.n_trials=2")
    assert proc.returncode == 1
    assert proc.stdout.strip().splitlines()[-1].startswith("error: conf/hparams_search/lr.yaml: module.optimizer.lr: 'choice()'")
    assert not (study_dir / "optuna.db").exists() and not (study_dir / "mlflow.db").exists()
    assert spy_lines(study_dir) == []


def test_hparams_search_without_a_multirun_is_refused(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), "hparams_search=dlinear", "logger=none"], cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "runs a study only as a multirun. Fix: add -m" in proc.stderr


def test_the_trial_task_travels_to_other_processes():
    """A launcher that runs jobs elsewhere (SLURM, submitit) pickles the task: it must carry
    everything a trial needs (storage, study, objective, pruner), and the SLURM launcher composes
    one task per trial."""
    import pickle

    settings, cfg = sweep_config("hydra/launcher=slurm")
    task = Study(settings, cfg).task()
    again = pickle.loads(pickle.dumps(task))
    assert again == task and again.pruner["_target_"] == "optuna.pruners.MedianPruner"
    assert again.storage_url.startswith("sqlite:////") and again.study_name == "dlinear-etth1-96"
    assert cfg.hydra.launcher.tasks_per_node == 1 and cfg.hydra.launcher.nodes == 1


@pytest.mark.slow
def test_each_trial_a_job_of_the_submitit_launcher(study_dir):
    """hydra/launcher=submitit_local (the SLURM launcher's local twin): each trial its own process."""
    proc = study_py(study_dir, "hydra/launcher=submitit_local", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
                    "trainer.max_epochs=2")
    assert proc.returncode == 0, proc.stdout[-5000:]
    study = load(study_dir)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert all(len(t.intermediate_values) == 2 for t in study.trials)  # reported from the job's process
    _, parents, trials, tested = children(study_dir)
    assert len(parents) == 1 and sorted(trials) == [0, 1] and len(tested) == 1
    assert all(line.startswith("best ") for line in spy_lines(study_dir))


def test_command_line_values_are_fixed_and_sweeps_refused():
    settings, cfg = sweep_config()
    study = Study(settings, cfg)
    assert {p.name for p in study.space} >= {"data.seq_len", "module.optimizer.lr"}
    study.check_arguments(["hparams_search=dlinear", "data.seq_len=96"])
    assert "data.seq_len" not in {p.name for p in study.space}
    with pytest.raises(ConfigError, match="not a sweep of its own"):
        study.check_arguments(["hparams_search=dlinear", "data.pred_len=96,192"])


# ------------------------------------------------------------------ the shipped search spaces

DEEP = ["dlinear", "autoformer", "etsformer", "dpad", "karma"]


def test_every_deep_model_has_a_search_space_and_each_space_is_sound():
    spaces = sorted(p.stem for p in (CONF / "hparams_search").glob("*.yaml"))
    assert set(DEEP) <= set(spaces) and {"holtwinters", "ets"} <= set(spaces)
    for name in spaces:
        raw = OmegaConf.to_container(OmegaConf.load(CONF / "hparams_search" / f"{name}.yaml"))
        # only the search: a setting of the runs would be missing from the best trial's override line
        assert set(raw) == {"defaults", "hydra"}, name
        assert f"override /model: {name}" in [f"{k}: {v}" for entry in raw["defaults"] for k, v in entry.items()]
        cfg = compose("train", [f"hparams_search={name}"], return_hydra_config=True)
        assert cfg.hydra.runtime.choices.model == name
        settings = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
        study = Study(settings, cfg)  # keys exist, ranges parse
        searched = {p.name for p in study.space if p.distribution is not None}
        assert len(searched) >= 3, name
        if name in DEEP:
            assert {"module.optimizer.lr", "data.seq_len"} <= searched, name
        composed = []

        def validate_batch(batch):  # as the sweeper's launcher would compose each job
            for overrides in batch:
                composed.append(compose("train", overrides))

        study.check_composition([f"hparams_search={name}"], validate_batch)  # every choice and bound composes
        assert {p.name: p.candidates() for p in study.space if p.distribution is not None}
        assert len(composed) == max(len(p.candidates()) for p in study.space)  # in rounds: all keys at once


def test_ranges_follow_the_hydra_optuna_sweeper_grammar():
    space = {p.name: p for p in parse_space({
        "a": "choice(16, 32)", "b": "range(1, 3)", "c": "tag(log, interval(1e-4, 1e-1))", "d": "interval(0, 0.5)",
        "e": "choice([24], [168])", "f": "range(0.1, 0.5, 0.2)", "g": "tag(log, range(16, 512))", "h": "choice(true, false)",
        "i": 7}, "x.yaml")}
    D = optuna.distributions
    assert space["a"].distribution == D.CategoricalDistribution([16, 32])
    assert space["b"].distribution == D.IntDistribution(1, 3)
    assert space["c"].distribution == D.FloatDistribution(1e-4, 1e-1, log=True)
    assert space["d"].distribution == D.FloatDistribution(0.0, 0.5)
    assert space["e"].override("[168]") == "e=[168]"
    assert space["f"].distribution == D.FloatDistribution(0.1, 0.5, step=0.2)
    assert space["g"].distribution == D.IntDistribution(16, 512, log=True)
    assert space["h"].override(True) == "h=true" and space["h"].override(False) == "h=false"
    assert space["i"].distribution is None and space["i"].override(None) == "i=7"
    assert space["c"].override(0.0031622776601683794) == "c=0.0031622776601683794"  # exact, so the line reproduces


# ------------------------------------------------------------------ networks that are not trained

def test_validate_scores_a_network_that_is_not_trained_on_the_validation_split(make_config, write_csv):
    from forecast.pipelines.train import run
    from forecast.tuning.trial import TrialCallback

    path = write_csv(sinusoid_frame(n=600, channels=2, period=24, noise=0.1))
    cfg = make_config("data=csv", f"data.path={path}", "model=seasonalnaive", "data.seq_len=48", "data.pred_len=24",
                      "validate=true", "test=false", "logger=none")
    callback = TrialCallback()
    callback.trial = object()  # any trial: a network that is not trained reports nothing to it
    metrics = run(cfg, callbacks=[callback])
    assert metrics == {} and len(callback.values) == 1 and not callback.trained
    assert 0 < callback.values[0] < 0.1  # a daily sinusoid with little noise: the seasonal naive forecast is close
    result = callback.result()
    assert result["state"] == "COMPLETE" and result["value"] == callback.values[0]
