"""The program behind ``scripts/benchmark.py``: runs the benchmark cells.

Speed: one row per measured configuration in ``benchmarks/speed.csv`` (the real Trainer and
module, timed training steps after a warm-up, each configuration in a fresh process).
Side by side (``mode=peer``): the reference's training step and ours, interleaved in rounds
(:mod:`forecast.pipelines.peer`); the reference's test error at our settings (``mode=peer_accuracy``,
:mod:`forecast.pipelines.peer_accuracy`). Accuracy: the full training schedule per seed, ``python train.py ... record=...`` (train.py
appends the row). The rows, their columns and ``benchmarks/README.md`` belong to
:mod:`forecast.records`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from forecast import tracking
from forecast.errors import ConfigError
from forecast.records import append_speed_row, machine, render_readme


def measure_speed(overrides: list[str], threads: int, warmup: int, iters: int) -> dict:
    """Time ``iters`` training steps after ``warmup`` ones of the config that ``python train.py
    <overrides>`` would run (no logger, no validation, no checkpoints), in this process.

    Each step is timed from Lightning's ``on_train_batch_start`` to ``on_train_batch_end`` (the
    optimiser step included; on a GPU after a synchronisation). Seconds per iteration are the mean
    over the timed full batches (not an epoch's short last one); windows per second count every
    timed window. Returns the measured fields of a
    ``SPEED_COLUMNS`` row, or ``{"skipped": why}`` for a network with nothing to train."""
    import pytorch_lightning as pl

    from forecast.config import compose_train
    from forecast.memory import keep_freed_memory
    from forecast.pipelines.train import build_data, build_module

    torch.set_num_threads(threads)
    cfg = compose_train(["logger=none", *overrides])
    keep_freed_memory(int(cfg.malloc_keep_mb or 0))  # as train.py runs
    pl.seed_everything(cfg.seed, verbose=False)
    datamodule = build_data(cfg)
    module = build_module(cfg, datamodule)
    if not module.trainable:
        return {"skipped": "no trainable parameters: nothing to time (its forecast time is test/forecast_seconds)"}
    times: list[float] = []
    sizes: list[int] = []
    sift: list[torch.Tensor] = []

    class Clock(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if pl_module.device.type == "cuda":
                torch.cuda.synchronize()
            self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if pl_module.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.start)
            sizes.append(len(batch["y"]))
            for steps in pl_module.network.iteration_counts():  # D-PAD: steps per IMF and series
                sift.append(steps.flatten().float().cpu())

    fixed = dict(max_steps=warmup + iters, max_epochs=-1, min_epochs=None, limit_val_batches=0, logger=False,
                 enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[Clock()])
    trainer_cfg = {k: v for k, v in OmegaConf.to_container(cfg.trainer, resolve=True).items()
                   if k not in fixed and k != "_target_"}
    trainer = pl.Trainer(**trainer_cfg, **fixed)
    if trainer.world_size > 1:
        raise ConfigError(f"speed mode times one process, but the trainer has {trainer.world_size} (devices x nodes). "
                          "Fix: drop trainer=ddp / trainer.devices from the overrides; per-process speed is what DDP multiplies.")
    trainer.fit(module, datamodule=datamodule)
    timed, timed_sizes = times[warmup:], sizes[warmup:]
    if not timed:
        raise ConfigError(f"only {len(times)} training steps ran, fewer than warmup={warmup} + 1. Fix: a longer "
                          "training split, a smaller data.batch_size, or a smaller warmup.")
    # seconds per iteration of a full batch (the short last batch of an epoch would flatter it);
    # windows per second over every timed step
    full = [t for t, n in zip(timed, timed_sizes) if n == cfg.data.batch_size] or timed
    per_iter = sum(full) / len(full)
    batches = len(datamodule.train_dataloader())
    cuda = module.device.type == "cuda"
    notes = ""
    if sift:
        steps = torch.cat(sift)
        notes = f"sifting steps per IMF {steps.mean().item():.2f} (max {int(steps.max())})"
    return {
        "model": tracking.model_name(cfg), "dataset": cfg.data.name, "seq_len": cfg.data.seq_len, "pred_len": cfg.data.pred_len,
        "precision": str(trainer.precision),
        "device": torch.cuda.get_device_name(module.device) if cuda else module.device.type,
        "threads": threads, "batch_size": cfg.data.batch_size, "warmup": warmup, "iters": len(timed),
        "s_per_iter": f"{per_iter:.4g}", "s_per_iter_min": f"{min(full):.4g}",
        "windows_per_s": f"{sum(timed_sizes) / sum(timed):.1f}", "batches_per_epoch": batches,
        "s_per_epoch": f"{per_iter * batches:.1f}",
        "peak_memory_gb": f"{(torch.cuda.max_memory_allocated(module.device) / 2**30 if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20):.2f}",
        "memory": "cuda" if cuda else "rss",
        "parameters": sum(p.numel() for p in module.network.parameters()),
        "notes": notes, "machine": machine(),
    }


MODES = ("speed", "peer", "peer_accuracy", "accuracy", "render")
# keys of the reproduction command that say where rows go, not what was measured
_NOT_IN_COMMAND = ("models", "datasets", "horizons", "speed_csv", "accuracy_csv", "reference_accuracy_csv", "render",
                   "dry_run", "mode")


def cell_overrides(model: str, dataset: str, horizon: int, conf_dir: Path) -> list[str]:
    """The ``train.py`` overrides of one cell: its paper setting ``experiment=<model>_<dataset>_<horizon>``
    where ``conf/experiment`` has one, else the model file's own settings on that dataset and horizon."""
    name = f"{model}_{dataset}_{horizon}"
    if (conf_dir / "experiment" / f"{name}.yaml").exists():
        return [f"experiment={name}"]
    return [f"model={model}", f"data={dataset}", f"data.pred_len={horizon}"]


def split_train_overrides(argv: list[str]) -> list[str]:
    """``[script, a=1, --, trainer=gpu, x.y=2]`` -> ``[script, a=1, "overrides=['trainer=gpu','x.y=2']"]``:
    train.py overrides after ``--`` become the ``overrides`` list, quoted for Hydra."""
    if "--" not in argv:
        return argv
    cut = argv.index("--")
    quoted = ",".join("'" + o.replace("\\", "\\\\").replace("'", "\\'") + "'" for o in argv[cut + 1:])
    return [*argv[:cut], f"overrides=[{quoted}]"]


def kept_overrides(*dropped: str) -> list[str]:
    """This command's own overrides that a row's reproduction command keeps: all but those that say
    where rows go (``_NOT_IN_COMMAND``), the train.py ``overrides`` (given after ``--``) and ``dropped``."""
    given = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    return [o for o in given if o.lstrip("+~").split("=", 1)[0] not in (*_NOT_IN_COMMAND, "overrides", *dropped)]


def _cell_command(model: str, dataset: str, horizon: int, overrides) -> str:
    """The command that measures this one cell again, with the settings this run was given."""
    kept = kept_overrides()
    train = ["--", *map(str, overrides)] if overrides else []
    return tracking.shell_join(["python", "scripts/benchmark.py", f"models=[{model}]", f"datasets=[{dataset}]",
                                f"horizons=[{horizon}]", *kept, *train])


def run(cfg: DictConfig, script: Path, repo: Path) -> int:
    """Run every model x dataset x horizon cell in ``cfg.mode``; returns the number of cells that
    failed (their error is printed; the other cells still run)."""
    if cfg.mode not in MODES:
        raise ConfigError(f"mode={cfg.mode} is not a benchmark mode. Fix: use one of {MODES}.")
    conf_dir = repo / "conf"
    speed_csv, accuracy_csv = (Path(to_absolute(p)) for p in (cfg.speed_csv, cfg.accuracy_csv))
    failed = 0
    cells = [(str(m), str(d), int(h)) for m in cfg.models for d in cfg.datasets for h in cfg.horizons]
    if cfg.mode != "render" and not cells:
        raise ConfigError("no cell to run: models, datasets and horizons must each name at least one. "
                          "Fix: e.g. models=[dlinear] datasets=[etth1] horizons=[96].")
    for group, names in (("model", cfg.models), ("data", cfg.datasets)):
        missing = [str(n) for n in names if not (conf_dir / group / f"{n}.yaml").exists()]
        if missing and cfg.mode != "render":
            known = sorted(f.stem for f in (conf_dir / group).glob("*.yaml"))
            raise ConfigError(f"{group} option(s) {missing} not in conf/{group}/. Fix: use some of {known}.")
    if cfg.mode in ("speed", "peer") and (cfg.warmup < 0 or cfg.iters < 1):
        raise ConfigError(f"warmup={cfg.warmup}, iters={cfg.iters}: need warmup >= 0 and iters >= 1.")
    if cfg.mode == "peer":
        from forecast.pipelines import peer

        failed = peer.run(cfg, script, repo, cells, speed_csv)
        if cfg.render and not cfg.dry_run:
            print(f"rendered {render_readme(speed_csv.parent)}", flush=True)
        return failed
    if cfg.mode == "peer_accuracy":
        from forecast.pipelines import peer_accuracy

        out = Path(to_absolute(cfg.reference_accuracy_csv))
        failed = peer_accuracy.run(cfg, repo, cells, out)
        if cfg.render and not cfg.dry_run:
            print(f"rendered {render_readme(out.parent)}", flush=True)
        return failed
    env = {**os.environ, "OMP_NUM_THREADS": str(cfg.threads)}
    for model, dataset, horizon in cells if cfg.mode != "render" else []:
        cell, extra = cell_overrides(model, dataset, horizon, conf_dir), [str(o) for o in cfg.overrides]
        overrides = cell + extra
        if cfg.mode == "speed":
            spec = {"overrides": overrides, "threads": cfg.threads, "warmup": cfg.warmup, "iters": cfg.iters}
            command = [sys.executable, str(script), "--measure", json.dumps(spec)]
            print(f"[{model} {dataset} {horizon}] speed: {' '.join(overrides)}", flush=True)
            if cfg.dry_run:
                continue
            load = os.getloadavg()[0]
            proc = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
            if proc.returncode:
                failed += 1
                print(proc.stderr[-3000:], file=sys.stderr)
                continue
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            if "skipped" in result:
                print(f"  skipped: {result['skipped']}", flush=True)
                continue
            result.update(model=model, load_1min=f"{load:.2f}", load_1min_after=f"{os.getloadavg()[0]:.2f}",
                          command=_cell_command(model, dataset, horizon, cfg.overrides),
                          superseded="false", date=dt.date.today().isoformat())
            append_speed_row(speed_csv, result)
            print(f"  {result['s_per_iter']} s/iter, {result['windows_per_s']} windows/s, "
                  f"{result['peak_memory_gb']} GB ({result['memory']}), {result['parameters']} parameters", flush=True)
        else:  # accuracy: the full training schedule; train.py appends the row (its command included)
            for seed in cfg.seeds:
                command = [sys.executable, "train.py", *cell, f"seed={seed}", f"record={accuracy_csv}",
                           f"num_threads={cfg.threads}", "trainer.enable_progress_bar=false", *extra]
                print(tracking.shell_join(["python", *command[1:]]), flush=True)
                if cfg.dry_run:
                    continue
                proc = subprocess.run(command, cwd=repo, env=env)
                failed += proc.returncode != 0
    if cfg.render and not cfg.dry_run:
        for folder in {speed_csv.parent, accuracy_csv.parent}:
            print(f"rendered {render_readme(folder)}", flush=True)
    return failed


def to_absolute(path: str) -> str:
    """``path`` from the directory the command was started in (Hydra's original cwd)."""
    from hydra.utils import to_absolute_path

    return to_absolute_path(str(path)) if HydraConfig.initialized() else str(Path(path).resolve())


def measure_main(spec: str) -> None:
    """``scripts/benchmark.py --measure '<json>'``: one speed cell in this fresh process, as JSON."""
    args = json.loads(spec)
    print(json.dumps(measure_speed(args["overrides"], args["threads"], args["warmup"], args["iters"])))
