"""Benchmark records and the program behind ``scripts/benchmark.py``.

Accuracy: one row per run in ``benchmarks/accuracy.csv`` (``python train.py ... record=...``).
Speed: one row per measured configuration in ``benchmarks/speed.csv`` (``scripts/benchmark.py``:
the real Trainer and module, timed training steps after a warm-up, each configuration in a
fresh process). A row carries the command that produced it, the machine and the date (and the
published value of the same setting, ``benchmarks/published.csv``, for accuracy), and both
files are rendered together as ``benchmarks/README.md``.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from forecast import tracking
from forecast.errors import ConfigError

ACCURACY_COLUMNS = [
    "model", "dataset", "features", "seq_len", "pred_len", "mse", "mae", "paper_mse", "paper_mae",
    "paper_compat", "precision", "epochs", "seed", "command", "machine", "date",
]


def machine() -> str:
    """CPU model, cores, torch build and threads, e.g. ``Intel Xeon … (2 cores), torch 2.13.0+cpu, 1 thread``."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"{os.cpu_count()} cores"
    return f"{cpu} ({device}), torch {torch.__version__}, {torch.get_num_threads()} thread(s)"


def published(path: Path, model: str, dataset: str, features: str, seq_len: int, pred_len: int) -> tuple[str, str]:
    """``(mse, mae)`` published for this setting, or empty strings."""
    for row in read_csv(path):
        if (row["model"], row["dataset"], row["features"], int(row["seq_len"]), int(row["pred_len"])) == (
            model, dataset, features, seq_len, pred_len
        ):
            return row["mse"], row["mae"]
    return "", ""


def read_csv(path: Path) -> list[dict]:
    """The rows of a benchmark CSV (none when it does not exist yet)."""
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def append_row(path: Path, columns: list[str], row: dict) -> None:
    """Append ``row`` (keys among ``columns``) to a benchmark CSV, with its header when the file
    is new; LF line endings."""
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        if new:
            writer.writeheader()
        writer.writerow(row)


# network options that change how a run is computed, not what it computes
NOT_A_VARIANT = {"workers", "progress", "backend"}


def model_variant() -> str:
    """The network options set on the command line, e.g. ``decomposition=atcd`` for
    ``model.decomposition=atcd`` (empty when the model file and experiment are used as they
    are; options in ``NOT_A_VARIANT`` do not count)."""
    if not HydraConfig.initialized():
        return ""
    options = [o.lstrip("+~").split(".", 1)[1] for o in HydraConfig.get().overrides.task if o.lstrip("+~").startswith("model.")]
    return ",".join(o for o in options if o.split("=", 1)[0] not in NOT_A_VARIANT)


def record_accuracy(cfg: DictConfig, metrics: dict[str, float], epochs: int) -> dict:
    """Append this run's row to ``cfg.record`` and re-render the README beside it. A run that
    changes network options on the command line is recorded as a variant,
    ``karma[decomposition=atcd]``, so its rows are summarised apart from the paper setting's."""
    path = Path(cfg.record)
    model = tracking.model_name(cfg)
    paper_mse, paper_mae = published(
        path.parent / "published.csv", model, cfg.data.name, cfg.data.features, cfg.data.seq_len, cfg.data.pred_len
    )
    variant = model_variant()
    row = {
        "model": f"{model}[{variant}]" if variant else model, "dataset": cfg.data.name, "features": cfg.data.features,
        "seq_len": cfg.data.seq_len, "pred_len": cfg.data.pred_len,
        "mse": f"{metrics['test/mse']:.4f}", "mae": f"{metrics['test/mae']:.4f}",
        "paper_mse": paper_mse, "paper_mae": paper_mae,
        "paper_compat": str(bool(cfg.paper_compat)).lower(), "precision": str(cfg.trainer.get("precision") or "32-true"),
        "epochs": epochs, "seed": cfg.seed,
        "command": tracking.command_line(), "machine": machine(), "date": dt.date.today().isoformat(),
    }
    append_row(path, ACCURACY_COLUMNS, row)
    render_readme(path.parent)
    return row


def _table(rows: list[dict], columns: list[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return lines


def _delta(value: float, paper: str) -> str:
    return f"{(value / float(paper) - 1) * 100:+.1f}%" if paper else ""


def _summary(rows: list[dict]) -> list[dict]:
    """One line per setting: mean ± sd of MSE and MAE over its runs (seeds)."""
    settings: dict[tuple, list[dict]] = {}
    for row in rows:
        key = (row["features"], int(row["seq_len"]), int(row["pred_len"]), row["paper_compat"], row["precision"])
        settings.setdefault(key, []).append(row)
    out = []
    for (features, seq_len, pred_len, compat, precision), runs in sorted(settings.items()):
        mse = np.array([float(r["mse"]) for r in runs])
        mae = np.array([float(r["mae"]) for r in runs])
        sd = lambda a: f" ± {a.std(ddof=1):.4f}" if len(a) > 1 else ""  # noqa: E731
        out.append({
            "features": features, "seq_len": seq_len, "pred_len": pred_len, "paper_compat": compat, "precision": precision,
            "runs": len(runs),
            "mse": f"{mse.mean():.4f}{sd(mse)}", "mae": f"{mae.mean():.4f}{sd(mae)}",
            "paper_mse": runs[0]["paper_mse"], "paper_mae": runs[0]["paper_mae"],
            "Δ mse (mean)": _delta(mse.mean(), runs[0]["paper_mse"]),
        })
    return out


def _overview(rows: list[dict]) -> list[dict]:
    """The headline accuracy of every model, dataset and horizon: fp32 runs on every test
    window (not ``paper_compat``), mean over the runs, beside the published value."""
    cells: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["paper_compat"] == "false" and row["precision"] == "32-true":
            key = (row["model"], row["dataset"], row["features"], int(row["seq_len"]), int(row["pred_len"]))
            cells.setdefault(key, []).append(row)
    out = []
    for (model, dataset, features, seq_len, pred_len), runs in sorted(cells.items()):
        mse = np.mean([float(r["mse"]) for r in runs])
        mae = np.mean([float(r["mae"]) for r in runs])
        out.append({"model": model, "dataset": dataset, "features": features, "seq_len": seq_len, "pred_len": pred_len,
                    "runs": len(runs), "mse": f"{mse:.4f}", "mae": f"{mae:.4f}", "paper_mse": runs[0]["paper_mse"],
                    "paper_mae": runs[0]["paper_mae"], "Δ mse": _delta(mse, runs[0]["paper_mse"])})
    return out


def _speed_tables(rows: list[dict]) -> list[str]:
    """One table per device (CPU first), rows in file order."""
    devices: dict[str, list[dict]] = {}
    for row in rows:
        devices.setdefault(row["device"], []).append(row)
    lines = []
    for device in sorted(devices, key=lambda d: (d != "cpu", d)):
        lines += [f"### {'CPU' if device == 'cpu' else device}", ""]
        shown = []
        for row in devices[device]:
            memory = f"{float(row['peak_memory_gb']):.2f} ({row['memory']})" if row["peak_memory_gb"] else ""
            shown.append({**row, "setting": f"{row['dataset']} {row['seq_len']} → {row['pred_len']}",
                          "s / iter": row["s_per_iter"], "windows / s": row["windows_per_s"],
                          "s / epoch": row["s_per_epoch"], "peak memory GB": memory,
                          "parameters": f"{int(row['parameters']):,}" if row["parameters"] else "",
                          "command": f"`{row['command']}`"})
        lines += _table(shown, ["model", "setting", "precision", "threads", "batch_size", "s / iter", "windows / s",
                                "s / epoch", "peak memory GB", "parameters", "load_1min", "date", "notes", "command",
                                "machine"])
        lines.append("")
    return lines


def render_readme(folder: Path) -> Path:
    """Write ``folder/README.md`` from ``folder/accuracy.csv`` and ``folder/speed.csv``: the
    accuracy overview, the speed tables, the accuracy rows grouped by model and dataset beside
    the published values, and the hand-written sections kept in ``folder/notes.md``."""
    rows = read_csv(folder / "accuracy.csv")
    speed = read_csv(folder / "speed.csv")
    lines = [
        "# Benchmarks",
        "",
        "Generated from `accuracy.csv` and `speed.csv` by `forecast.pipelines.benchmark.render_readme`",
        "(`python scripts/benchmark.py mode=render`); every row comes from the command in its `command`",
        "column, on the machine and date given. MSE/MAE are on the z-scored data over every test window",
        "(the papers' convention); `Δ mse` is relative to the published value; `epochs` counts the",
        "epochs that trained the tested weights (0: not trained, e.g. the classical baselines).",
        "",
    ]
    if rows:
        lines += ["## Accuracy at a glance", "",
                  "fp32 runs scored on every test window (not `paper_compat`), mean over the runs (seeds); every run,",
                  "the `paper_compat` and bf16 runs are in the sections per model below.", ""]
        lines += _table(_overview(rows), ["model", "dataset", "features", "seq_len", "pred_len", "runs", "mse", "mae",
                                          "paper_mse", "paper_mae", "Δ mse"])
        lines.append("")
    if speed:
        lines += ["## Training speed", "",
                  "Seconds per training iteration (forward, backward and optimiser step of one full batch through the",
                  "real Trainer and `ForecastModule`, validation excluded), timed after a warm-up in a fresh process at",
                  "the paper configuration (`conf/experiment/<model>_<dataset>_<horizon>.yaml`; DLinear's look-back is",
                  "336 there, D-PAD's 336 with batch 512); windows / s = timed windows / timed seconds; s / epoch = s / iter",
                  "x training batches per epoch. Peak memory is the process's maximum resident set size (`rss`, imports",
                  "and data included) or, on a GPU, `torch.cuda.max_memory_allocated` (`cuda`). `load_1min` is the",
                  "machine's 1-minute load average just before the run: on this project's 2-core server other trainings",
                  "often share the machine and slow a run down. Rows whose command is `python scripts/bench_speed.py",
                  "--threads N -- <overrides>` come from the script `scripts/benchmark.py` replaced, with the same",
                  "mechanics (5 warm-up and 50 timed steps; for D-PAD the mean also counted the short last batches of its",
                  "17-batch epochs); today's equivalent is",
                  "`python scripts/benchmark.py \"models=[<model>]\" threads=N warmup=5 iters=50 -- <overrides>`.",
                  ""]
        lines += _speed_tables(speed)
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["dataset"]), []).append(row)
    for (model, dataset), group in groups.items():
        lines += [f"## {model} on {dataset}", "", "Summary over seeds (mean ± standard deviation of the runs below):", ""]
        lines += _table(_summary(group), ["features", "seq_len", "pred_len", "paper_compat", "precision", "runs", "mse", "mae",
                                          "paper_mse", "paper_mae", "Δ mse (mean)"])
        lines += ["", "Every run:", ""]
        for row in group:
            row["Δ mse"] = _delta(float(row["mse"]), row["paper_mse"])
        lines += _table(group, ["features", "seq_len", "pred_len", "mse", "mae", "paper_mse", "paper_mae", "Δ mse",
                                "paper_compat", "precision", "epochs", "seed", "date", "command", "machine"])
        lines.append("")
    notes = folder / "notes.md"
    if notes.exists():
        lines += [notes.read_text().rstrip(), ""]
    out = folder / "README.md"
    out.write_text("\n".join(lines))
    return out


# ------------------------------------------------------------------ speed
SPEED_COLUMNS = [
    "model", "dataset", "seq_len", "pred_len", "precision", "device", "threads", "batch_size", "warmup", "iters",
    "s_per_iter", "s_per_iter_min", "windows_per_s", "batches_per_epoch", "s_per_epoch", "peak_memory_gb", "memory",
    "parameters", "load_1min", "notes", "command", "machine", "date",
]


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
    from forecast.pipelines.train import build_data, build_module

    torch.set_num_threads(threads)
    cfg = compose_train(["logger=none", *overrides])
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


MODES = ("speed", "accuracy", "render")
# keys of the reproduction command that say where rows go, not what was measured
_NOT_IN_COMMAND = ("models", "datasets", "horizons", "speed_csv", "accuracy_csv", "render", "dry_run", "mode")


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


def _cell_command(model: str, dataset: str, horizon: int, overrides) -> str:
    """The command that measures this one cell again, with the settings this run was given."""
    given = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    kept = [o for o in given if o.lstrip("+~").split("=", 1)[0] not in (*_NOT_IN_COMMAND, "overrides")]
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
    if cfg.mode == "speed" and (cfg.warmup < 0 or cfg.iters < 1):
        raise ConfigError(f"warmup={cfg.warmup}, iters={cfg.iters}: need warmup >= 0 and iters >= 1.")
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
            result.update(model=model, load_1min=f"{load:.2f}", command=_cell_command(model, dataset, horizon, cfg.overrides),
                          date=dt.date.today().isoformat())
            append_row(speed_csv, SPEED_COLUMNS, result)
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
