"""An Optuna study driven as a Hydra sweep: ``python train.py -m hparams_search=<model>``.

The sweeper (``hydra_plugins/forecast_sweeper``) builds a :class:`Study` and calls
:meth:`Study.run`, which

1. checks everything before any trial: the search space (:mod:`forecast.tuning.space`), the
   objective, the trainer (no batch/step limits: those make smoke runs, never results; one
   device: DDP inside a trial is not supported), and composes the config at every choice and
   bound of the space;
2. creates the study in its storage, or loads it (a resumed study must search the same space
   with the same overrides), and its MLflow parent run (``kind=study``);
3. asks Optuna for trials (ask-and-tell) while the study has fewer than ``n_trials`` finished
   ones, hands each to Hydra's launcher as a job (:class:`forecast.tuning.trial.TrialTask`) and
   tells Optuna the outcome: complete, pruned or failed;
4. when the study is complete, tests the best trial's checkpoint on the test split (the only
   look at it), logs the summary to the parent run and prints the override line that
   reproduces the best trial.

Several processes may run the same command against one storage: each asks its own trials
(SQLite: under a file lock, so the study never overshoots ``n_trials``). A trial whose process
died (no heartbeat for ``3 × heartbeat`` seconds) or was interrupted is run again with the same
parameters by the next process that works on the study.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from forecast import tracking
from forecast.errors import ConfigError, config_error
from forecast.tuning.space import Param, check_keys, fingerprint, parse_space
from forecast.tuning.trial import TRIAL_ENV, ObjectiveError, TrialTask, storage

log = logging.getLogger(__name__)

DIRECTIONS = ("minimize", "maximize")
OBJECTIVE_PREFIXES = {"val/": "a metric of the validation split, logged after every epoch"}
FUTURE_OBJECTIVES = {"backtest/": "a rolling-origin backtest on cutoffs before the test split"}


def validation_metrics() -> list[str]:
    """The ``val/`` keys every run logs (``val/loss`` and the metrics of :class:`forecast.metrics.ForecastMetrics`)."""
    import torch

    from forecast.metrics import ForecastMetrics

    metrics = ForecastMetrics(torch.zeros(1), torch.ones(1), torch.ones(1), c_out=1)
    metrics.update(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1))
    return ["val/loss", *(f"val/{k}" for k in metrics.compute())]


def redact(url: str) -> str:
    """A storage URL without its password (``postgresql://user:***@host/db``)."""
    head, sep, rest = url.partition("://")
    if "@" in rest.split("/", 1)[0]:
        credentials, _, host = rest.partition("@")
        user = credentials.split(":", 1)[0]
        return f"{head}{sep}{user}:***@{host}"
    return url


class Study:
    """One study: its settings, search space and the master config of the sweep."""

    def __init__(self, settings: dict[str, Any], config: DictConfig):
        self.config = config
        self.settings = settings
        choices = config.hydra.runtime.choices
        self.model = choices.get("model") or "model"
        search = choices.get("hparams_search")
        self.where = f"conf/hparams_search/{search}.yaml" if search else "hydra.sweeper.params"
        self.objective = str(settings["objective"])
        self.direction = str(settings["direction"])
        self.n_trials = int(settings["n_trials"])
        self.timeout = settings.get("timeout")
        self.n_jobs = int(settings.get("n_jobs") or 1)
        self.heartbeat = settings.get("heartbeat")
        self.sampler_node = settings.get("sampler") or {"_target_": "optuna.samplers.TPESampler"}
        self.pruner_node = settings.get("pruner") or {"_target_": "optuna.pruners.NopPruner"}
        self.check_settings()
        self.space: list[Param] = parse_space(settings.get("params") or {}, self.where)
        check_keys(self.space, config, self.where)
        self.check_run(config)
        data = config.data
        self.name = str(settings.get("study_name") or f"{self.model}-{data.name}-{data.pred_len}")
        self.url = self.resolve_storage(settings.get("storage"))
        self.logged = bool(config.get("logger")) and "tracking_uri" in config.logger
        self.tracking_uri = str(config.logger.tracking_uri) if self.logged else None
        self.experiment = str(config.logger.experiment_name) if self.logged else None

    # ------------------------------------------------------------------ checks (no I/O)
    def check_settings(self) -> None:
        s = "hydra.sweeper"
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"{s}.direction={self.direction}: not a direction. Fix: minimize or maximize.")
        if self.n_trials < 1:
            raise ConfigError(f"{s}.n_trials={self.n_trials}: a study needs at least one trial. Fix: set it to 1 or more.")
        if self.timeout is not None and float(self.timeout) <= 0:
            raise ConfigError(f"{s}.timeout={self.timeout}: must be positive seconds. Fix: give seconds, or null for none.")
        if self.n_jobs < 1:
            raise ConfigError(f"{s}.n_jobs={self.n_jobs}: must be 1 or more. Fix: set the trials per launcher batch.")
        later = next((p for p in FUTURE_OBJECTIVES if self.objective.startswith(p)), None)
        if later:
            raise ConfigError(f"{s}.objective={self.objective}: {FUTURE_OBJECTIVES[later]} is not an objective yet. "
                              "Fix: use a validation metric (val/mse, the default).")
        valid = validation_metrics()
        if self.objective not in valid:
            raise ConfigError(f"{s}.objective={self.objective}: not a metric the trials log. Fix: choose one of "
                              f"{', '.join(valid)}.")
        for key in ("sampler", "pruner"):
            node = self.settings.get(key)
            if node is not None and not (isinstance(node, dict) and "_target_" in node):
                raise ConfigError(f"{s}.{key}: needs a _target_ (e.g. optuna.pruners.MedianPruner). Fix: give the class and its arguments.")

    def check_run(self, config: DictConfig) -> None:
        """The run-level settings a study refuses: smoke-run limits, several devices, record=."""
        debug = tracking.debug_reasons(config)
        if debug:
            raise ConfigError(f"a study refuses trainer batch/step limits ({', '.join(debug)}): its trials would be smoke runs, "
                              "never results. Fix: give the trials a smaller budget with trainer.max_epochs instead.")
        trainer = config.trainer
        devices = trainer.get("devices", 1)
        several = (OmegaConf.is_list(devices) and len(devices) > 1) or (not OmegaConf.is_list(devices) and str(devices) not in ("1", "None"))
        strategy = str(trainer.get("strategy") or "")
        if several or int(trainer.get("num_nodes") or 1) > 1 or any(k in strategy for k in ("ddp", "fsdp", "deepspeed")):
            raise ConfigError(f"a study runs each trial on one device (trainer.devices={devices}, trainer.num_nodes="
                              f"{trainer.get('num_nodes', 1)}, trainer.strategy={strategy or 'auto'}): DDP inside a trial is not "
                              "supported, since every process would ask Optuna for a trial of its own. Fix: trainer=gpu or "
                              "trainer=cpu, and run trials in parallel as workers (several processes on one storage) or SLURM jobs.")
        for key, why in (("record", "record the best trial afterwards with its override line"),
                         ("ckpt_path", "each trial trains from scratch")):
            if config.get(key):
                raise ConfigError(f"{key}={config[key]}: a study refuses it ({why}). Fix: drop {key}=.")
        if not config.get("train", True):
            raise ConfigError("train=false: a study trains its trials. Fix: drop train=false.")

    def check_arguments(self, arguments: list[str]) -> list[str]:
        """The command line's overrides, less searched keys it fixes (the command line wins, and
        one line says so); a sweep on the command line (``a=1,2``) is refused."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parsed = OverridesParser.create().parse_overrides(arguments)
        fixed = set()
        for override in parsed:
            if override.is_sweep_override():
                raise ConfigError(f"{override.input_line}: a study runs one configuration per trial, not a sweep of its own. "
                                  f"Fix: search {override.key_or_group} in {self.where}, or run one study per value.")
            fixed.add(override.key_or_group)
        kept = []
        for param in self.space:
            if param.name in fixed:
                log.info("%s is set on the command line: fixed, not searched", param.name)
            else:
                kept.append(param)
        self.space = kept
        if not any(p.distribution is not None for p in self.space):
            raise ConfigError(f"{self.where}: nothing left to search (the command line fixes every key). Fix: drop those overrides.")
        return arguments

    def check_composition(self, base: list[str], validate_batch: Callable) -> None:
        """Compose the config at every choice and bound of the space, so that a value the config
        refuses (a wrong type, an unknown option) fails now, not in trial 17."""
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        def refused(candidates: list[str]) -> Exception | None:
            try:
                validate_batch([[*base, *candidates]])
            except (HydraException, OmegaConfBaseException) as error:
                return error
            return None

        def message(values: str, error: Exception) -> str:
            why = str(config_error(error))
            return f"{self.where}: {values}: {why}" + ("" if "Fix:" in why else " Fix: change or drop this value in the search space.")

        # round i sets every key to its i-th candidate: a few compositions instead of one per value
        columns = [p.candidates() for p in self.space]
        for i in range(max(len(c) for c in columns)):
            if refused([c[i % len(c)] for c in columns]) is None:
                continue
            for candidates in columns:  # find the value the config refuses
                error = refused([candidates[i % len(candidates)]])
                if error is not None:
                    raise ConfigError(message(candidates[i % len(candidates)], error)) from None
            together = [c[i % len(c)] for c in columns]
            raise ConfigError(message(" ".join(together), refused(together))) from None

    @staticmethod
    def resolve_storage(url: str | None) -> str:
        """The storage URL, a SQLite file made absolute (jobs may run elsewhere) and its folder created."""
        url = str(url or "sqlite:///optuna.db")
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            path = Path(url[len("sqlite:///"):]).expanduser().resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            return f"sqlite:///{path}"
        if url.startswith("sqlite"):
            raise ConfigError(f"hydra.sweeper.storage={url}: a study needs a file every worker can open. Fix: sqlite:///<file>.")
        if "://" not in url:
            raise ConfigError(f"hydra.sweeper.storage={url}: not a database URL. Fix: sqlite:///optuna.db, or "
                              "postgresql://user@host/db for workers on several machines.")
        return url

    # ------------------------------------------------------------------ the task and the lock
    def task(self) -> TrialTask:
        return TrialTask(self.url, self.name, self.objective, self.direction, pruner=self.pruner_node,
                         tags={"study": self.name})

    @contextlib.contextmanager
    def lock(self):
        """Held while counting and asking trials, creating the study and claiming the final test:
        an exclusive lock on ``<db>.lock`` beside a SQLite storage (the workers of one machine);
        nothing for a database server (Optuna's transactions only)."""
        if not self.url.startswith("sqlite:///"):
            yield
            return
        import fcntl

        with open(self.url[len("sqlite:///"):] + ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ the study
    def open(self, base: list[str]):
        """Create the study or load it; a loaded one must have been started with the same space,
        objective and overrides. The first process also creates the MLflow parent run."""
        import optuna

        fields = {"search_space": fingerprint(self.space), "objective": self.objective, "direction": self.direction,
                  "overrides": base}
        with self.lock():
            store = storage(self.url, self.heartbeat)
            try:
                study = optuna.create_study(study_name=self.name, storage=store, direction=self.direction)
            except optuna.exceptions.DuplicatedStudyError:
                study = optuna.load_study(study_name=self.name, storage=store)
            attrs = study.user_attrs
            if "uid" not in attrs and not self.url.startswith("sqlite:///"):
                attrs = self.wait_for_uid(study)
            if "uid" in attrs:
                for key, value in fields.items():
                    if attrs.get(key) != value:
                        raise ConfigError(
                            f"study '{self.name}' in {redact(self.url)} was started with {key} {json.dumps(attrs.get(key))}; "
                            f"this command has {json.dumps(value)}. Fix: resume it with its own command, or start "
                            "another study (hydra.sweeper.study_name=<new name>, or another storage).")
            else:  # a new study (or one created outside this program): its fingerprint, its parent run, then its uid
                for key, value in fields.items():
                    study.set_user_attr(key, value)
                uid = uuid.uuid4().hex[:16]
                if self.logged:
                    study.set_user_attr("mlflow_parent", self.create_parent(uid, base))
                study.set_user_attr("uid", uid)
        return store, study

    def wait_for_uid(self, study, seconds: float = 30.0) -> dict:
        """Another worker may be creating this study: wait for its uid (set last), then adopt it."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            attrs = study.user_attrs
            if "uid" in attrs:
                return attrs
            time.sleep(1.0)
        return study.user_attrs

    def sampler(self, number: int):
        """The sampler for trial ``number``: seeded with ``seed + number`` when a seed is given, so
        a study draws the same trials however many workers and resumes it took."""
        from hydra.utils import instantiate

        node = dict(self.sampler_node)
        if node.get("seed") is not None:
            node["seed"] = int(node["seed"]) + number
        return instantiate(node)

    def ask(self, study) -> tuple[Any, list[str]]:
        """A new trial (a waiting one first: a retry or an enqueued one) and its overrides."""
        with warnings.catch_warnings():  # "heartbeat is supposed to be used with Study.optimize": this loop beats itself
            warnings.filterwarnings("ignore", message=".*[Hh]eartbeat.*")
            trial = study.ask()
        study.sampler = self.sampler(trial.number)
        overrides = []
        for param in self.space:
            if param.distribution is None:
                overrides.append(param.override(None))
                continue
            value = _suggest(trial, param)
            overrides.append(param.override(value))
        trial.set_user_attr("overrides", overrides)
        return trial, overrides

    @staticmethod
    def tally(trials) -> dict[str, list]:
        """The study's trials by what they count for: ``done`` (complete, pruned, or failed with an
        error), ``running``, ``lost`` (failed without one: interrupted or silent, and not yet retried)."""
        from optuna.trial import TrialState

        retried = {t.user_attrs.get("retry_of") for t in trials}
        out: dict[str, list] = {"done": [], "running": [], "lost": [], "complete": [], "pruned": [], "failed": []}
        for t in trials:
            if t.state == TrialState.COMPLETE:
                out["done"].append(t), out["complete"].append(t)
            elif t.state == TrialState.PRUNED:
                out["done"].append(t), out["pruned"].append(t)
            elif t.state == TrialState.FAIL and "error" in t.user_attrs:
                out["done"].append(t), out["failed"].append(t)
            elif t.state == TrialState.FAIL and t.number not in retried:
                out["lost"].append(t)
            elif t.state == TrialState.RUNNING:
                out["running"].append(t)
        return out

    def retry_lost(self, study) -> None:
        """Queue again, with the same parameters, each trial that stopped without a result (its
        process killed or interrupted): the next asks run it."""
        import optuna

        if self.heartbeat:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
        for trial in self.tally(study.get_trials(deepcopy=False))["lost"]:
            log.info("trial %d stopped without a result (interrupted or its process died): queued again", trial.number)
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})

    # ------------------------------------------------------------------ the loop
    def run(self, arguments: list[str], launcher, validate_batch: Callable) -> list[dict[str, Any]]:
        base = self.check_arguments(arguments)
        self.check_composition(base, validate_batch)
        store, study = self.open(base)
        uid = study.user_attrs["uid"]
        parent = study.user_attrs.get("mlflow_parent")
        if parent:
            self.parent_client().update_run(parent, status="RUNNING")
        log.info("study '%s' in %s: %d trials wanted, searching %s on %s (%s)", self.name, redact(self.url), self.n_trials,
                 ", ".join(p.name for p in self.space if p.distribution is not None), self.objective, self.direction)
        start = time.monotonic()
        results: list[dict[str, Any]] = []
        while True:
            with self.lock():
                self.retry_lost(study)
                tally = self.tally(study.get_trials(deepcopy=False))
                free = self.n_trials - len(tally["done"]) - len(tally["running"])
                if free <= 0:
                    break
                if self.timeout is not None and time.monotonic() - start > float(self.timeout):
                    log.info("timeout of %ss reached: no new trial from this process", self.timeout)
                    break
                batch = [self.ask(study) for _ in range(min(self.n_jobs, free))]
            results += self.launch(store, study, batch, base, launcher, uid, parent)
        self.finish(study, base, launcher, uid, parent)
        return results

    def job(self, base: list[str], overrides: list[str], role: str, subdir: str, uid: str) -> list[str]:
        """A job's overrides: the command line's, the trial's, and (Hydra's own, outside the run's
        command) the trial it belongs to, the MLflow parent and its own output folder."""
        return [*base, *overrides, f"++hydra.job.env_set.{TRIAL_ENV}={role}", f"++hydra.job.env_set.{tracking.SWEEP_ENV}={uid}",
                f"hydra.sweep.subdir={subdir}"]

    def launch(self, store, study, batch, base, launcher, uid, parent) -> list[dict[str, Any]]:
        from optuna.trial import TrialState

        jobs = [self.job(base, overrides, f"trial:{trial._trial_id}:{trial.number}", f"trial_{trial.number}", uid)
                for trial, overrides in batch]  # _trial_id: the storage's id, which a job needs to find its trial
        beat = _Heartbeat(store, [t._trial_id for t, _ in batch], self.heartbeat)
        try:
            returns = launcher.launch(jobs, initial_job_idx=batch[0][0].number)
        except BaseException:  # Ctrl-C, a killed launcher: the trials in flight are queued again by the next run
            states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
            for trial, _ in batch:
                if states.get(trial.number) == TrialState.RUNNING:
                    trial.set_user_attr("interrupted", True)
                    study.tell(trial, state=TrialState.FAIL)
            if parent:
                with contextlib.suppress(Exception):
                    self.parent_client().set_terminated(parent, "KILLED")
            raise
        finally:
            beat.stop()
        results = []
        for (trial, overrides), ret in zip(batch, returns):
            results.append(self.tell(study, trial, overrides, ret))
        return results

    def tell(self, study, trial, overrides: list[str], ret) -> dict[str, Any]:
        """Tell Optuna one job's outcome and mark its MLflow run with it."""
        from optuna.trial import TrialState

        error = None
        try:
            result = dict(ret.return_value or {})  # a failed job raises its exception here
        except Exception as raised:
            error = raised
            result = {"state": "FAIL", "error": f"{type(error).__name__}: {error}"}
        for key in ("checkpoint", "run_id", "epochs", "trained"):
            if result.get(key) not in (None, ""):
                trial.set_user_attr(key, result[key])
        state = result["state"]
        if state == "COMPLETE":
            study.tell(trial, result["value"])
        elif state == "PRUNED":
            study.tell(trial, state=TrialState.PRUNED)
        else:
            trial.set_user_attr("error", result.get("error", "failed")[:2000])
            study.tell(trial, state=TrialState.FAIL)
        shown = " ".join(overrides)
        if state == "FAIL":
            log.warning("trial %d failed (%s): %s", trial.number, shown, result.get("error"))
        else:
            log.info("trial %d %s after %d epoch(s): %s %.6g (%s)", trial.number, state.lower(), result.get("epochs", 0),
                     self.objective, result.get("value", float("nan")), shown)
        if self.logged and result.get("run_id"):
            client = self.parent_client()
            client.set_tag(result["run_id"], "trial_state", state)
            client.set_tag(result["run_id"], "trial_params", shown[:5000])
            if result.get("value") is not None and math.isfinite(result["value"]):
                client.log_metric(result["run_id"], "objective", result["value"])
        if error is not None and (isinstance(error, ObjectiveError) or not isinstance(error, _TRIAL_ERRORS)):
            raise error  # every trial would fail, or a bug, not a property of this trial: the study stops
        return {"number": trial.number, **result}

    # ------------------------------------------------------------------ the end
    def finish(self, study, base: list[str], launcher, uid: str, parent: str | None) -> None:
        """The summary (log lines and the parent run); when the study is complete and nothing runs,
        the best trial's test, once."""
        tally = self.tally(study.get_trials(deepcopy=False))
        done, running = len(tally["done"]), len(tally["running"])
        complete = done >= self.n_trials and not running
        counts = f"{len(tally['complete'])} complete, {len(tally['pruned'])} pruned, {len(tally['failed'])} failed"
        if not tally["complete"]:
            log.warning("study '%s': no complete trial yet (%s)", self.name, counts)
            self.summarise_parent(study, parent, None, tally, complete)
            return
        best = study.best_trial
        line = self.override_line(base, best.user_attrs.get("overrides", []), trained=best.user_attrs.get("trained", True))
        log.info("study '%s' (%d of %d trials: %s): best trial %d, %s %.6g", self.name, done, self.n_trials, counts,
                 best.number, self.objective, best.value)
        log.info("reproduce the best trial: %s", line)
        tested = None
        if complete and self.settings.get("test_best", True):
            with self.lock():
                claimed = study.user_attrs.get("tested_trial") != best.number
                if claimed:
                    study.set_user_attr("tested_trial", best.number)
            if claimed:
                try:
                    tested = self.test_best(best, base, launcher, uid)
                except BaseException:
                    study.set_user_attr("tested_trial", None)  # the next run of the command tests it again
                    raise
        elif not complete:
            log.info("the study is not complete (%d of %d finished, %d running): the test split is scored when it is", done,
                     self.n_trials, running)
        self.summarise_parent(study, parent, (best, line, tested), tally, complete)

    def override_line(self, base: list[str], overrides: list[str], trained: bool = True) -> str:
        """``python train.py model=<model> <the command line's overrides> <the trial's>`` (and
        ``validate=true`` for a network that is not trained, whose value comes from that pass)."""
        args = [f"model={self.model}" if a.startswith("hparams_search=") else a for a in base]
        if not any(a.startswith("model=") for a in args):
            args.insert(0, f"model={self.model}")
        return tracking.shell_join(["python", "train.py", *args, *overrides, *([] if trained else ["validate=true"])])

    def test_best(self, best, base: list[str], launcher, uid: str) -> dict[str, Any] | None:
        """Test the best trial's checkpoint on the test split, as one more job of the launcher."""
        overrides = list(best.user_attrs.get("overrides", []))
        checkpoint = best.user_attrs.get("checkpoint")
        if checkpoint:
            overrides += ["train=false", f"ckpt_path='{checkpoint}'"]
        job = self.job(base, [*overrides, "test=true"], f"best:{best.number}", "best", uid)
        log.info("testing the best trial (%d) on the test split: the study's only look at it", best.number)
        ret = launcher.launch([job], initial_job_idx=best.number)[0]
        result = ret.return_value  # a failed test raises here, with the job's own error
        metrics = {k: v for k, v in result["metrics"].items() if k.startswith("test/")}
        log.info("best trial %d on the test split (scored for this trial only): %s", best.number,
                 ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()) if k in ("test/mse", "test/mae")))
        return result

    # ------------------------------------------------------------------ MLflow
    def parent_client(self):
        return tracking.client(self.tracking_uri)

    def create_parent(self, uid: str, base: list[str]) -> str:
        """The study's MLflow parent run (``kind=study``): its trials and the best trial's test are
        its children (found through the ``sweep`` tag, as the jobs of any sweep)."""
        client = self.parent_client()
        experiment = tracking.experiment_id(client, self.experiment)
        tags = {"kind": "study", "sweep": uid, "study": self.name, "mlflow.runName": f"study {self.name}",
                "model": self.model, "dataset": str(self.config.data.name), "horizon": str(self.config.data.pred_len),
                "objective": self.objective, "direction": self.direction, "storage": redact(self.url),
                "command": tracking.shell_join(["python", Path(sys.argv[0]).name, *sys.argv[1:]]), **tracking.code_tags()}
        run = client.create_run(experiment, tags=tags)
        for param in self.space:
            client.log_param(run.info.run_id, f"space.{param.name}", param.text[:6000])
        client.log_param(run.info.run_id, "overrides", " ".join(base)[:6000])
        return run.info.run_id

    def summarise_parent(self, study, parent: str | None, best, tally, complete: bool) -> None:
        """Best value, parameters and override line, counts, the figures and the trials table on the parent run."""
        if not parent:
            return
        import matplotlib.pyplot as plt

        client = self.parent_client()
        done = len(tally["done"])
        for key in ("complete", "pruned", "failed"):
            client.log_metric(parent, f"trials_{key}", len(tally[key]), step=done)
        client.set_tag(parent, "n_trials", str(self.n_trials))
        if best is not None:
            trial, line, tested = best
            client.log_metric(parent, "best_value", trial.value, step=done)
            client.set_tag(parent, "best_trial", str(trial.number))
            client.set_tag(parent, "best_overrides", line[:5000])
            for override in trial.user_attrs.get("overrides", []):
                key, _, value = override.lstrip("+").partition("=")
                client.set_tag(parent, f"best.{key}", value)
            client.log_dict(parent, {"trial": trial.number, "value": trial.value, "objective": self.objective,
                                     "params": trial.params, "command": line}, "best_params.json")
            client.log_text(parent, line + "\n", "best_command.txt")
            if tested:
                for key, value in tested["metrics"].items():
                    if key.startswith("test/"):
                        client.log_metric(parent, f"best_{key.replace('/', '_')}", value)
                client.set_tag(parent, "test_scored", f"trial {trial.number} only, chosen on {self.objective}; "
                                                      "no trial read the test split")
                if tested.get("run_id"):
                    client.set_tag(parent, "best_test_run", tested["run_id"])
            for name, plot in _figures(study):
                client.log_figure(parent, plot, f"plots/{name}.png")
                plt.close(plot)
        with contextlib.suppress(Exception):
            client.log_text(parent, study.trials_dataframe().to_csv(index=False), "trials.csv")
        client.set_terminated(parent, "FINISHED" if complete else "KILLED")
        if not complete:
            client.set_tag(parent, "study_state", f"stopped at {done} of {self.n_trials} trials: the same command resumes it")
        else:
            client.set_tag(parent, "study_state", "complete")


# the errors that end one trial (its settings), not the study: a ForecastError (a network's
# check), running out of memory
def _trial_errors() -> tuple[type, ...]:
    import torch

    from forecast.errors import ForecastError

    return (ForecastError, torch.OutOfMemoryError, MemoryError)


_TRIAL_ERRORS = _trial_errors()


def _suggest(trial, param: Param):
    """The trial's value of ``param`` through Optuna's public ``suggest_*``."""
    import optuna

    d = param.distribution
    if isinstance(d, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(param.name, d.choices)
    if isinstance(d, optuna.distributions.IntDistribution):
        return trial.suggest_int(param.name, d.low, d.high, step=d.step, log=d.log)
    return trial.suggest_float(param.name, d.low, d.high, step=d.step, log=d.log)


def _figures(study):
    """Optuna's optimisation-history and parameter-importance figures (matplotlib), those that
    can be drawn (importances need two complete trials)."""
    from optuna.visualization import matplotlib as plots

    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "experimental" notices of optuna.visualization.matplotlib
        for name, draw in (("optimization_history", plots.plot_optimization_history),
                           ("param_importances", plots.plot_param_importances)):
            try:
                axes = draw(study)
            except (ValueError, RuntimeError, ImportError, ZeroDivisionError) as error:
                log.info("no %s figure: %s", name, error)
                continue
            figure = axes.figure if hasattr(axes, "figure") else axes[0].figure
            figure.set_size_inches(8, 5)
            figure.tight_layout()
            out.append((name, figure))
    return out


class _Heartbeat:
    """Marks trials as alive in the storage every ``interval`` seconds while their jobs run, so
    that a worker that dies leaves trials the next one can tell from running ones."""

    def __init__(self, store, trial_ids: list[int], interval: int | None):
        self.stopped = threading.Event()
        self.thread = None
        if interval:
            for trial_id in trial_ids:
                store.record_heartbeat(trial_id)
            self.thread = threading.Thread(target=self.beat, args=(store, trial_ids, interval), daemon=True)
            self.thread.start()

    def beat(self, store, trial_ids, interval) -> None:
        while not self.stopped.wait(interval):
            for trial_id in trial_ids:
                with contextlib.suppress(Exception):
                    store.record_heartbeat(trial_id)

    def stop(self) -> None:
        self.stopped.set()
