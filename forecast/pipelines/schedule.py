"""The program behind ``python scripts/schedule.py``: run retrains on a clock, in-process, for
machines without cron (APScheduler, the ``schedule`` extra).

Each job runs in its own subprocess (``python scripts/retrain.py <args>``, or any ``command``),
so a crash or a leak in one retrain cannot take the scheduler down, and its output goes to a
log file per run under ``log_dir``. A job never overlaps itself (``max_instances=1``); runs
missed while the machine was off are coalesced into one. SIGINT/SIGTERM stop the scheduler
after the running jobs finish.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from omegaconf import DictConfig

from forecast.errors import ConfigError

log = logging.getLogger(__name__)

RETRAIN_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "retrain.py"


def checked_job(name: str, job) -> DictConfig:
    """A job entry against its schema: a misspelt key or a wrong type is named."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from forecast.config import ScheduleJob

    try:
        return OmegaConf.merge(OmegaConf.structured(ScheduleJob), job)
    except OmegaConfBaseException as error:
        raise ConfigError(f"jobs.{name}: {str(error).splitlines()[0]}. A job has cron or interval_seconds, and "
                          "retrain (the arguments of scripts/retrain.py) or command.") from None


def job_command(name: str, job) -> list[str]:
    if bool(job.retrain) == bool(job.command):
        raise ConfigError(f"jobs.{name}: give either retrain (the arguments of scripts/retrain.py) or command, not "
                          f"{'both' if job.retrain else 'neither'}.")
    return [sys.executable, str(RETRAIN_SCRIPT), *map(str, job.retrain)] if job.retrain else [str(a) for a in job.command]


def job_trigger(name: str, job, timezone):
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if (job.cron is None) == (job.interval_seconds is None):
        raise ConfigError(f"jobs.{name}: give either cron (e.g. '0 2 * * *', every night at 02:00) or "
                          "interval_seconds, not " + ("both." if job.cron else "neither."))
    if job.cron is not None:
        try:
            return CronTrigger.from_crontab(str(job.cron), timezone=timezone)
        except ValueError as error:
            raise ConfigError(f"jobs.{name}.cron='{job.cron}' is not a cron expression ({error}). Fix: five fields, "
                              "minute hour day-of-month month day-of-week, e.g. '30 1 * * *'.") from None
    if float(job.interval_seconds) <= 0:
        raise ConfigError(f"jobs.{name}.interval_seconds={job.interval_seconds} must be positive.")
    return IntervalTrigger(seconds=float(job.interval_seconds), timezone=timezone)


class Runner:
    """Runs one job's command, logs its exit status, counts runs toward ``max_runs``."""

    def __init__(self, log_dir: Path, max_runs: int | None, stop: threading.Event):
        self.log_dir, self.max_runs, self.stop = log_dir, max_runs, stop
        self.runs: list[dict] = []
        self.lock = threading.Lock()

    def __call__(self, name: str, command: list[str]) -> None:
        with self.lock:
            if self.max_runs is not None and len(self.runs) >= self.max_runs:
                return
            index = len(self.runs)
            self.runs.append({"job": name, "returncode": None})
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = self.log_dir / f"{name}-{stamp}-{index}.log"
        started = time.perf_counter()
        log.info("job %s: starting %s (log %s)", name, " ".join(command), out)
        with open(out, "w") as fh:
            code = subprocess.run(command, stdout=fh, stderr=subprocess.STDOUT).returncode
        seconds = time.perf_counter() - started
        level = logging.INFO if code == 0 else logging.WARNING
        log.log(level, "job %s: exit %d after %.1f s%s", name, code, seconds,
                "" if code == 0 else " (75: another retrain of that name was running)" if code == 75 else f"; see {out}")
        with self.lock:
            self.runs[index].update(returncode=code, seconds=seconds, log=str(out))
            if self.max_runs is not None and all(r["returncode"] is not None for r in self.runs) \
                    and len(self.runs) >= self.max_runs:
                self.stop.set()


def run(cfg: DictConfig, stop: threading.Event | None = None) -> list[dict]:
    """Schedule every job of ``cfg.jobs`` and block until ``stop`` is set (SIGINT, SIGTERM, or
    ``max_runs`` job runs done). Returns the runs: job, return code, seconds, log file."""
    from apscheduler.schedulers.background import BackgroundScheduler

    if not cfg.jobs:
        raise ConfigError("no jobs. Fix: add one under jobs: in conf/retrain_schedule.yaml, e.g. "
                          "jobs.etth1-dlinear.cron='0 2 * * *' and jobs.etth1-dlinear.retrain=[name=...,source=...].")
    stop = stop or threading.Event()
    log_dir = Path(cfg.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    runner = Runner(log_dir, cfg.max_runs, stop)
    scheduler = BackgroundScheduler(timezone=cfg.timezone) if cfg.timezone else BackgroundScheduler()
    for name, job in cfg.jobs.items():
        job = checked_job(name, job)
        trigger = job_trigger(name, job, cfg.timezone)
        scheduler.add_job(runner, trigger, args=[name, job_command(name, job)], id=name, name=name,
                          max_instances=1, coalesce=True, misfire_grace_time=3600)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, frame: stop.set())
    scheduler.start()
    for job in scheduler.get_jobs():
        log.info("job %s: next run %s", job.id, job.next_run_time)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        log.info("stopping: waiting for running jobs to finish")
        scheduler.shutdown(wait=True)
    return runner.runs
