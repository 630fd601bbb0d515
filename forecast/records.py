"""Benchmark records: accuracy and speed rows, published values, and the README made of them.

``benchmarks/accuracy.csv`` holds one row per tested model (``python train.py ... record=...``),
``benchmarks/speed.csv`` one per measured configuration (``scripts/benchmark.py``),
``benchmarks/published.csv`` the papers' values; ``benchmarks/README.md`` is rendered from the
three and ``benchmarks/notes.md``. Running things (subprocesses, timing) is
:mod:`forecast.pipelines.benchmark`'s business; this module only reads, writes and formats.

What a row of ``accuracy.csv`` says, beyond its numbers:

* ``protocol``: which test windows were scored with which weights. ``every-window`` (the house
  protocol: every test window, the best validation checkpoint, or a network without weights),
  ``drop-last`` (the last incomplete test batch dropped, as the papers' loaders did: the
  ``paper_compat`` switch), ``last-epoch, drop-last`` (also the last epoch's weights instead of
  the best checkpoint: D-PAD's official protocol) and ``last-epoch, every-window``.
* ``epochs``: epochs that trained the tested weights (the best epoch + 1 for a best checkpoint;
  blank where that was not recorded); ``epochs_run``: epochs the training ran, patience included.
* ``superseded`` (``true``/``false``) and ``notes`` (why, and anything else a reader needs):
  superseded rows stay in the file for the record but count nowhere (summaries, overview).
* ``command``: the command that produced the row; ``train_command``: the command that trained
  the tested weights (the same command, unless the row tested a checkpoint: then the run that
  wrote it, with its ``hydra.run.dir``).

One live row per (model, dataset, features, seq_len, pred_len, seed, precision, protocol): a
new row of the same setting and seed supersedes the older one (the later run is kept).
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import platform
import shlex
from pathlib import Path

import numpy as np
import torch
import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from forecast import tracking
from forecast.errors import ConfigError

ACCURACY_COLUMNS = [
    "model", "dataset", "features", "seq_len", "pred_len", "mse", "mae", "paper_mse", "paper_mae",
    "paper_compat", "protocol", "precision", "epochs", "epochs_run", "seed", "superseded", "notes",
    "command", "train_command", "machine", "date",
]
SPEED_COLUMNS = [
    "model", "dataset", "seq_len", "pred_len", "precision", "device", "threads", "batch_size", "warmup", "iters",
    "s_per_iter", "s_per_iter_min", "windows_per_s", "batches_per_epoch", "s_per_epoch", "peak_memory_gb", "memory",
    "parameters", "load_1min", "superseded", "notes", "command", "machine", "date",
    # side by side (``scripts/benchmark.py mode=peer``): the reference's figures measured in the same
    # interleaved rounds, ``speedup`` = reference s/iter / ours; the load after the last measurement
    "load_1min_after", "reference", "reference_s_per_iter", "reference_s_per_iter_min", "reference_peak_memory_gb",
    "speedup", "rounds",
]
# ``scripts/benchmark.py mode=peer_accuracy``: the reference trained and tested at our settings, one
# row per run; ``protocol`` as in ACCURACY_COLUMNS (TSLib: every-window; the official D-PAD code:
# last-epoch, drop-last); ``arguments`` is its full argument list, ``seconds`` the wall time of the run
REFERENCE_ACCURACY_COLUMNS = [
    "model", "dataset", "features", "seq_len", "pred_len", "seed", "reference", "protocol", "mse", "mae", "paper_mse",
    "epochs_run", "seconds", "threads", "superseded", "notes", "arguments", "command", "machine", "date",
]
# a (setting, seed) has one live row: these columns say what was measured
SETTING = ("model", "dataset", "features", "seq_len", "pred_len", "seed", "precision", "protocol")
PROTOCOLS = ("every-window", "drop-last", "last-epoch, drop-last", "last-epoch, every-window")
TRUE = ("true", "1", "yes")


def machine(threads: int | None = None, torch_build: bool = True) -> str:
    """CPU model, cores, torch build and threads, e.g. ``Intel Xeon … (2 cores), torch 2.13.0+cpu, 1 thread``.
    For a run of another process and interpreter (the reference of ``mode=peer_accuracy``): its
    ``threads``, and ``torch_build=False`` to leave out this interpreter's torch."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"{os.cpu_count()} cores"
    build = f", torch {torch.__version__}" if torch_build else ""
    return f"{cpu} ({device}){build}, {threads or torch.get_num_threads()} thread(s)"


# ------------------------------------------------------------------ files
def read_csv(path: Path) -> list[dict]:
    """The rows of a benchmark CSV (none when it does not exist yet)."""
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    """Write ``rows`` (keys among ``columns``) with the header; LF line endings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def replace_model_rows(path: Path, columns: list[str], rows: list[dict]) -> None:
    """Write ``rows`` into a benchmark CSV in place of the rows of the same models, keeping the
    other models' rows (keys outside ``columns`` are left out); LF line endings."""
    models = {r["model"] for r in rows}
    kept = [r for r in read_csv(path) if r["model"] not in models]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept + rows)


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


def append_speed_row(path: Path, row: dict) -> None:
    """Append ``row`` to a speed CSV; a file written with an older, shorter header (a prefix of
    ``SPEED_COLUMNS``) is rewritten with the full one first, its rows' new columns left empty."""
    if path.exists():
        with open(path, newline="") as fh:
            header = next(csv.reader(fh), [])
        if header != SPEED_COLUMNS:
            if header != SPEED_COLUMNS[: len(header)]:
                raise ConfigError(f"{path} has the columns {header}, not {SPEED_COLUMNS}. Fix: record into a new file.")
            write_csv(path, SPEED_COLUMNS, read_csv(path))
    append_row(path, SPEED_COLUMNS, row)


def published(path: Path, model: str, dataset: str, features: str, seq_len: int, pred_len: int) -> tuple[str, str]:
    """``(mse, mae)`` published for this setting, or empty strings."""
    for row in read_csv(path):
        if (row["model"], row["dataset"], row["features"], int(row["seq_len"]), int(row["pred_len"])) == (
            model, dataset, features, seq_len, pred_len
        ):
            return row["mse"], row["mae"]
    return "", ""


def superseded(row: dict) -> bool:
    return str(row.get("superseded", "")).strip().lower() in TRUE


def live(rows: list[dict]) -> list[dict]:
    """The rows that count: not superseded."""
    return [r for r in rows if not superseded(r)]


def setting_key(row: dict) -> tuple:
    return tuple(str(row.get(c, "")) for c in SETTING)


def duplicates(rows: list[dict]) -> list[tuple[int, int]]:
    """``(first, repeat)`` index pairs of live rows that share a (setting, seed)."""
    seen: dict[tuple, int] = {}
    out = []
    for i, row in enumerate(rows):
        if superseded(row):
            continue
        key = setting_key(row)
        if key in seen:
            out.append((seen[key], i))
        else:
            seen[key] = i
    return out


# -------------------------------------------------------- recording a run
# command-line options that leave what a row measures as the experiment defines it: where data and
# records live, what is logged, how and on what it runs (the machine and precision columns say), and
# what the row's own columns already say (dataset, shapes, seed, protocol). Any other option (a
# network option, module.* such as the learning rate, schedule, trainer.max_epochs, callbacks.*,
# init_from, …) makes the run a variant, recorded apart from the paper setting.
SAME_RESULT = {
    "seed", "num_threads", "malloc_keep_mb", "data_dir", "record", "train", "test", "validate", "ckpt_path",
    "paper_compat", "paper_quirks.test_last_epoch", "plot_windows", "log_model",
    "register", "register_name", "alias", "train_command", "experiment", "model", "data", "logger", "trainer",
    "data.seq_len", "data.pred_len", "data.features", "data.num_workers",
    "trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.log_every_n_steps", "trainer.accelerator",
    "trainer.devices", "trainer.num_nodes", "trainer.strategy", "trainer.precision",
    "model.workers", "model.progress", "model.backend",
}
SAME_RESULT_PREFIXES = ("hydra.", "logger.", "tags.", "intervals.")


def variant_options(overrides: list[str]) -> list[str]:
    """The options among command-line ``overrides`` that change what a run measures (see
    ``SAME_RESULT``): a network option without its ``model.`` prefix (``decomposition=atcd``), any
    other in full (``module.optimizer.lr=1e-4``)."""
    out = []
    for option in overrides:
        option = option.lstrip("+~")
        key = option.split("=", 1)[0]
        if key in SAME_RESULT or key.startswith(SAME_RESULT_PREFIXES):
            continue
        out.append(option[len("model."):] if key.startswith("model.") else option)
    return out


def run_variant(train_command: str, overrides: list[str]) -> str:
    """What makes a run a variant of its experiment, e.g. ``decomposition=atcd`` or
    ``module.optimizer.lr=1e-4``; empty when the experiment is used as it is. The options of
    ``train_command`` (the run that trained the tested weights) come first, then those of the run's
    own ``overrides`` on other keys."""
    options = variant_options(parse_command(train_command)[1][2:]) if train_command else []
    keys = {o.split("=", 1)[0] for o in options}
    return ",".join(options + [o for o in variant_options(overrides) if o.split("=", 1)[0] not in keys])


def variant_name(model: str, variant: str) -> str:
    """The ``model`` column of a run: ``karma[decomposition=atcd]`` for a variant, the model alone for
    none; our rows and the reference's (``mode=peer_accuracy``) are named by it, so the README pairs them."""
    return f"{model}[{variant}]" if variant else model


def model_variant(train_command: str = "") -> str:
    """:func:`run_variant` of this Hydra run (empty outside one)."""
    if not HydraConfig.initialized():
        return ""
    return run_variant(train_command, list(HydraConfig.get().overrides.task))


def trained_epochs(ckpt_path: str | Path | None) -> int:
    """How many epochs trained the weights of a Lightning checkpoint (its ``epoch`` counts from
    0), 0 without one."""
    if not ckpt_path:
        return 0
    return int(torch.load(ckpt_path, map_location="cpu", weights_only=False).get("epoch", -1)) + 1


def protocol(drop_last: bool, last_epoch: bool) -> str:
    """The ``protocol`` of a row: which test windows (``drop_last``: the last incomplete batch
    dropped) with which weights (``last_epoch``: the last epoch's, else the best checkpoint's)."""
    windows = "drop-last" if drop_last else "every-window"
    return f"last-epoch, {windows}" if last_epoch else windows


def _run_command() -> list[str]:
    """This run's ``train.py`` argv, with ``hydra.run.dir`` when it was given (it names the
    folder its checkpoints go to)."""
    hc = HydraConfig.get()
    run_dir = [o for o in hc.overrides.hydra if o.startswith("hydra.run.dir=")]
    return ["python", f"{hc.job.name}.py", *hc.overrides.task, *run_dir]


def saved_overrides(ckpt_path: str | Path) -> tuple[Path, list[str] | None]:
    """``(<run>/.hydra/overrides.yaml, its overrides)`` of the run whose ``checkpoints/`` folder
    holds ``ckpt_path``; the overrides are ``None`` when Hydra saved none there."""
    saved = Path(str(ckpt_path)).parent.parent / ".hydra" / "overrides.yaml"
    if not saved.exists():
        return saved, None
    return saved, [str(o) for o in (yaml.safe_load(saved.read_text()) or [])]


def training_command(cfg: DictConfig, trains: bool) -> str:
    """The command that trained the weights this run tests (``train_command`` of its row).

    * A run that trains (``trains``), or a network without trained weights: this run's command.
    * ``train=false ckpt_path=<run>/checkpoints/x.ckpt``: the command Hydra saved beside that
      checkpoint, ``<run>/.hydra/overrides.yaml``, as ``python train.py <overrides>
      hydra.run.dir=<run>``, if that run trained (no ``train=false`` in it);
    * else what ``+train_command='python train.py …'`` gives.

    Called before testing, so a row that could not say where its weights come from fails
    before the test spends its time. Raises :class:`ConfigError` when none applies."""
    if not HydraConfig.initialized():
        return ""
    if trains or not cfg.ckpt_path:
        return tracking.shell_join(_run_command())
    saved, overrides = saved_overrides(cfg.ckpt_path)
    if overrides is not None and "train=false" not in overrides:
        return tracking.shell_join(["python", "train.py", *overrides, f"hydra.run.dir={saved.parent.parent}"])
    given = cfg.get("train_command")
    if given:
        return str(given)
    why = f"{saved} is missing" if not saved.exists() else f"{saved} holds a run that did not train (train=false)"
    raise ConfigError(
        f"record= with train=false needs the command that trained ckpt_path={cfg.ckpt_path}, and {why}. "
        "Fix: test a checkpoint in the folder of the run that wrote it, or add "
        "\"+train_command='python train.py <its overrides>'\"."
    )


def record_accuracy(cfg: DictConfig, metrics: dict[str, float], train_command: str, best: str = "",
                    epochs_run: int | None = None) -> dict:
    """Append this run's row to ``cfg.record`` and re-render the README beside it.

    ``best``: the best checkpoint of a run that trained (``""`` otherwise); ``epochs_run``: the
    epochs it ran (``None``: it did not train). The tested weights are, after training, the best
    checkpoint or (``paper_compat`` with ``paper_quirks.test_last_epoch``) the last epoch; without
    training, ``ckpt_path`` (``last.ckpt``: the last epoch). A run given an option that changes what
    it measures (or whose weights were trained with one) is recorded as a variant,
    ``karma[decomposition=atcd]``, ``karma[module.optimizer.lr=1e-4]`` (:func:`variant_options`), so
    its rows are summarised apart from the paper setting's. A live row of the same setting and seed is marked
    superseded by this one."""
    path = Path(cfg.record)
    model = tracking.model_name(cfg)
    paper_mse, paper_mae = published(
        path.parent / "published.csv", model, cfg.data.name, cfg.data.features, cfg.data.seq_len, cfg.data.pred_len
    )
    compat = bool(cfg.paper_compat)
    if epochs_run is not None:  # trained here
        last_epoch = compat and bool(cfg.paper_quirks.test_last_epoch)
        epochs = epochs_run if last_epoch or not best else trained_epochs(best)
    else:
        last_epoch = bool(cfg.ckpt_path) and Path(str(cfg.ckpt_path)).name == "last.ckpt"
        epochs = trained_epochs(cfg.ckpt_path)
        sibling = Path(str(cfg.ckpt_path)).with_name("last.ckpt") if cfg.ckpt_path else None
        epochs_run = trained_epochs(sibling) if sibling and sibling.exists() else ("" if cfg.ckpt_path else 0)
    variant = model_variant(train_command)
    row = {
        "model": variant_name(model, variant), "dataset": cfg.data.name, "features": cfg.data.features,
        "seq_len": cfg.data.seq_len, "pred_len": cfg.data.pred_len,
        "mse": f"{metrics['test/mse']:.4f}", "mae": f"{metrics['test/mae']:.4f}",
        "paper_mse": paper_mse, "paper_mae": paper_mae,
        "paper_compat": str(compat).lower(), "protocol": protocol(compat, last_epoch),
        "precision": str(cfg.trainer.get("precision") or "32-true"),
        "epochs": epochs, "epochs_run": epochs_run, "seed": cfg.seed, "superseded": "false", "notes": "",
        "command": tracking.command_line(), "train_command": train_command, "machine": machine(),
        "date": dt.date.today().isoformat(),
    }
    rows = read_csv(path)
    key = setting_key(row)
    for old in rows:
        if not superseded(old) and setting_key(old) == key:
            old["superseded"] = "true"
            reason = f"repeated by the row of {row['date']} (same setting and seed; the later run is kept)"
            old["notes"] = f"{old['notes']}; {reason}" if old.get("notes") else reason
    if rows and list(rows[0]) != ACCURACY_COLUMNS:
        raise ConfigError(f"{path} has the columns {list(rows[0])}, not {ACCURACY_COLUMNS}. Fix: record into a new file.")
    write_csv(path, ACCURACY_COLUMNS, [*rows, row])
    render_readme(path.parent)
    return row


# ------------------------------------------------------------------ README
def _table(rows: list[dict], columns: list[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return lines


def _delta(value: float, paper: str) -> str:
    return f"{(value / float(paper) - 1) * 100:+.1f}%" if paper else ""


def _one_per_seed(rows: list[dict]) -> list[dict]:
    """The live rows, refusing two of one (setting, seed): they would count as two seeds."""
    kept = live(rows)
    if pairs := duplicates(kept):
        first, repeat = pairs[0]
        raise ConfigError(f"two live rows of one setting and seed: {setting_key(kept[first])} (dates "
                          f"{kept[first]['date']} and {kept[repeat]['date']}). Fix: mark one superseded=true with a note.")
    return kept


def _summary(rows: list[dict]) -> list[dict]:
    """One line per setting: mean ± sd of MSE and MAE over its live runs, one per seed."""
    settings: dict[tuple, list[dict]] = {}
    for row in _one_per_seed(rows):
        key = (row["features"], int(row["seq_len"]), int(row["pred_len"]), row["protocol"], row["precision"])
        settings.setdefault(key, []).append(row)
    out = []
    for (features, seq_len, pred_len, proto, precision), runs in sorted(settings.items()):
        mse = np.array([float(r["mse"]) for r in runs])
        mae = np.array([float(r["mae"]) for r in runs])
        sd = lambda a: f" ± {a.std(ddof=1):.4f}" if len(a) > 1 else ""  # noqa: E731
        out.append({
            "features": features, "seq_len": seq_len, "pred_len": pred_len, "protocol": proto, "precision": precision,
            "runs": len(runs),
            "mse": f"{mse.mean():.4f}{sd(mse)}", "mae": f"{mae.mean():.4f}{sd(mae)}",
            "paper_mse": runs[0]["paper_mse"], "paper_mae": runs[0]["paper_mae"],
            "Δ mse (mean)": _delta(mse.mean(), runs[0]["paper_mse"]),
        })
    return out


def _headline(rows: list[dict]) -> list[dict]:
    """The runs that headline a cell: live fp32 runs on every test window with the best checkpoint
    (protocol ``every-window``), one per seed."""
    return [r for r in _one_per_seed(rows) if r["protocol"] == "every-window" and r["precision"] == "32-true"]


def _overview(rows: list[dict]) -> list[dict]:
    """The headline accuracy of every model, dataset and horizon (:func:`_headline`), mean over
    the seeds, beside the published value."""
    cells: dict[tuple, list[dict]] = {}
    for row in _headline(rows):
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
        lines += [f"#### {'CPU' if device == 'cpu' else device}", ""]
        shown = []
        for row in devices[device]:
            memory = f"{float(row['peak_memory_gb']):.2f} ({row['memory']})" if row["peak_memory_gb"] else ""
            shown.append({**row, "setting": f"{row['dataset']} {row['seq_len']} → {row['pred_len']}",
                          "s / iter": row["s_per_iter"], "windows / s": row["windows_per_s"],
                          "s / epoch": row["s_per_epoch"], "peak memory GB": memory,
                          "parameters": f"{int(row['parameters']):,}" if row["parameters"] else "",
                          "command": f"`{row['command']}`"})
        lines += _table(shown, ["model", "setting", "precision", "threads", "batch_size", "warmup", "iters", "s / iter",
                                "windows / s", "s / epoch", "peak memory GB", "parameters", "load_1min", "date", "notes",
                                "command", "machine"])
        lines.append("")
    return lines


def _peer_table(rows: list[dict]) -> list[str]:
    shown = [{**r, "setting": f"{r['dataset']} {r['seq_len']} → {r['pred_len']}",
              "reference s / iter": r["reference_s_per_iter"], "ours s / iter": r["s_per_iter"],
              "speedup": f"{r['speedup']}x", "peak memory GB (reference / ours)":
              f"{r['reference_peak_memory_gb']} / {r['peak_memory_gb']}",
              "load (before → after)": f"{r['load_1min']} → {r['load_1min_after']}", "command": f"`{r['command']}`"}
             for r in rows]
    return [*_table(shown, ["model", "setting", "precision", "threads", "batch_size", "rounds", "warmup", "iters",
                            "reference", "reference s / iter", "ours s / iter", "speedup",
                            "peak memory GB (reference / ours)", "load (before → after)", "date", "notes", "command",
                            "machine"]), ""]


def _cell_seed(row: dict) -> tuple:
    """(model, dataset, seq_len, pred_len, seed): what pairs a reference run with a run of ours."""
    return row["model"], row["dataset"], int(row["seq_len"]), int(row["pred_len"]), int(row["seed"])


def _reference_tables(reference: list[dict], rows: list[dict]) -> list[str]:
    """Per cell: the reference's mean over its seeds beside ours (live fp32 runs of the plain model
    with the reference's test protocol) over the same seeds; then every run."""
    def mine(r: dict) -> tuple:
        return (*_cell_seed(r), r["protocol"])

    ours = {mine(r): float(r["mse"]) for r in _one_per_seed(rows) if r["seed"] and r["precision"] == "32-true"}

    cells: dict[tuple, list[dict]] = {}
    for r in live(reference):
        cells.setdefault((*_cell_seed(r)[:4], r["reference"], r["protocol"]), []).append(r)
    summary = []
    for (model, dataset, seq_len, pred_len, label, protocol), runs in cells.items():
        seeds = [int(r["seed"]) for r in runs]
        ref = float(np.mean([float(r["mse"]) for r in runs]))
        same = [ours[mine(r)] for r in runs if mine(r) in ours]
        mean = float(np.mean(same)) if len(same) == len(runs) else None
        paper = runs[0]["paper_mse"]
        summary.append({"model": model, "setting": f"{dataset} {seq_len} → {pred_len}", "reference": label,
                        "protocol": protocol, "seeds": ", ".join(map(str, seeds)), "reference mse": f"{ref:.4f}",
                        "Δ reference": _delta(ref, paper),
                        "ours mse (same seeds)": f"{mean:.4f}" if mean is not None else "not all run",
                        "Δ ours": _delta(mean, paper) if mean is not None else "", "paper_mse": paper})
    shown = [{**r, "setting": f"{r['dataset']} {r['seq_len']} → {r['pred_len']}",
              "ours mse": f"{ours[mine(r)]:.4f}" if mine(r) in ours else "",
              "superseded": "**yes**" if superseded(r) else "", "arguments": f"`{r['arguments']}`",
              "command": f"`{r['command']}`"} for r in reference]
    return [*_table(summary, ["model", "setting", "reference", "protocol", "seeds", "reference mse", "Δ reference",
                              "ours mse (same seeds)", "Δ ours", "paper_mse"]), "", "Every run:", "",
            *_table(shown, ["model", "setting", "seed", "reference", "protocol", "mse", "mae", "ours mse", "paper_mse",
                            "epochs_run", "seconds", "threads", "superseded", "notes", "date", "command", "arguments",
                            "machine"]), ""]


def render_readme(folder: Path) -> Path:
    """Write ``folder/README.md`` from ``folder/accuracy.csv``, ``folder/speed.csv`` and
    ``folder/reference_accuracy.csv``: the accuracy overview, the reference at our settings, the
    speed tables (current, then historical), the accuracy rows grouped by model and dataset beside
    the published values, and the hand-written sections kept in ``folder/notes.md``."""
    rows = read_csv(folder / "accuracy.csv")
    speed = read_csv(folder / "speed.csv")
    reference = read_csv(folder / "reference_accuracy.csv")
    lines = [
        "# Benchmarks",
        "",
        "Generated from `accuracy.csv`, `speed.csv` and `reference_accuracy.csv` by `forecast.records.render_readme`",
        "(`python scripts/benchmark.py mode=render`); every row comes from the command in its `command`",
        "column, on the machine and date given. MSE/MAE are on the z-scored data (the papers' convention);",
        "`protocol` says which test windows were scored with which weights (`every-window`: every test",
        "window, best validation checkpoint; `drop-last`: the last incomplete test batch dropped, as the",
        "papers' loaders did; `last-epoch, …`: the last epoch's weights instead of the best checkpoint);",
        "`Δ mse` is relative to the published value; `epochs` counts the epochs that trained the tested",
        "weights (0: not trained, e.g. the classical baselines; blank: not recorded), `epochs_run` those the",
        "training ran; `train_command` is the command that trained the tested weights. Rows marked",
        "`superseded` (the reason is in `notes`) are kept for the record and count in no summary. A run",
        "that changed what its experiment measures (a network option, the learning rate, the epochs, …;",
        "`forecast.records.SAME_RESULT` lists the options that do not) is a variant, named in its model",
        "column (`karma[decomposition=atcd]`, `karma[module.optimizer.lr=1e-4]`) and summarised apart.",
        "",
    ]
    if rows:
        lines += ["## Accuracy at a glance", "",
                  "Live fp32 runs with protocol `every-window`, mean over the seeds (one run per seed); every run,",
                  "the other protocols and bf16 are in the sections per model below.", ""]
        lines += _table(_overview(rows), ["model", "dataset", "features", "seq_len", "pred_len", "runs", "mse", "mae",
                                          "paper_mse", "paper_mae", "Δ mse"])
        lines.append("")
    if reference:
        lines += ["## The reference trained at our settings (`scripts/benchmark.py mode=peer_accuracy`)", "",
                  "Time-Series-Library's own `run.py` (its model, loader, training loop, early stopping and test on every",
                  "test window), or for D-PAD the official code's `singlecard.py` (its test drops the last incomplete",
                  "batch and scores the last epoch's weights), trained and tested at the settings of our experiment file",
                  "of the cell, on the same CSV file, at the seed given (`scripts/peers/tslib_train.py`,",
                  "`scripts/peers/dpad_train.py`); `arguments` is its full argument list. `ours mse` is our live fp32",
                  "run of the same cell and seed with the reference's `protocol`; the summary compares the means over",
                  "the same seeds. Where both sides miss the paper alike, the gap is not ours.", ""]
        lines += _reference_tables(reference, rows)
    if speed:
        lines += ["## Training speed", "",
                  "Seconds per training iteration (forward, backward and optimiser step of one full batch through the",
                  "real Trainer and `ForecastModule`, validation excluded), timed after `warmup` untimed steps in a fresh",
                  "process at the paper configuration (`conf/experiment/<model>_<dataset>_<horizon>.yaml`; DLinear's",
                  "look-back is 336 there, D-PAD's 336 with batch 512); windows / s = timed windows / timed seconds;",
                  "s / epoch = s / iter x training batches per epoch. Peak memory is the process's maximum resident set",
                  "size (`rss`, imports and data included) or, on a GPU, `torch.cuda.max_memory_allocated` (`cuda`).",
                  "`load_1min` is the machine's 1-minute load average just before the run: on this project's 2-core",
                  "server other trainings often share the machine and slow a run down.", ""]
        current, historical = live(speed), [r for r in speed if superseded(r)]
        side_by_side = [r for r in current if r.get("reference")]
        current = [r for r in current if not r.get("reference")]
        if side_by_side:
            lines += ["### Side by side with the reference (`scripts/benchmark.py mode=peer`)", "",
                      "The reference's training step (TSLib's: its own experiment class, model, loader and Adam, timed by",
                      "`scripts/peers/tslib_step.py`; D-PAD's: the official code's, by `scripts/peers/dpad_step.py`;",
                      "or `forecast <commit>`: this project's code at that commit, `peer.revision`) and ours (the real",
                      "Trainer and module) in interleaved rounds of one command, the same threads, window and batch;",
                      "each figure is the mean over the rounds of a side's mean seconds per full-batch step, `speedup` =",
                      "reference / ours, loads before the first and after the last measurement; each round's figures and",
                      "loads are in `notes`.", ""]
            lines += _peer_table(side_by_side)
        if current:
            lines += ["### Current (`scripts/benchmark.py`)", ""]
            lines += _speed_tables(current)
        replaced_pairs = [r for r in historical if r.get("reference")]
        historical = [r for r in historical if not r.get("reference")]
        if replaced_pairs:
            lines += ["### Side by side, superseded", "",
                      "Side-by-side rows that a later measurement of the same setting replaced (why: `notes`); kept",
                      "for the record, quoted nowhere.", ""]
            lines += _peer_table(replaced_pairs)
        if historical:
            lines += ["### Historical", "",
                      "Measured by `scripts/bench_speed.py`, which `scripts/benchmark.py` replaced (deleted in fa2058d;",
                      "`git show fa2058d^:scripts/bench_speed.py` prints it): the same mechanics (a fresh process, warm-up",
                      "steps, then timed ones, each from the batch's start to the end of its optimiser step), but its mean",
                      "also counted an epoch's short last batch (D-PAD's 17-batch epochs) and it did not synchronise CUDA",
                      "before a step. No command in the repository reproduces these rows exactly; `notes` names the",
                      "nearest one. They count in no comparison made in this folder.", ""]
            lines += _speed_tables(historical)
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["dataset"]), []).append(row)
    for (model, dataset), group in groups.items():
        lines += [f"## {model} on {dataset}", "",
                  "Summary over seeds (mean ± standard deviation of the live runs below, one per seed):", ""]
        lines += _table(_summary(group), ["features", "seq_len", "pred_len", "protocol", "precision", "runs", "mse", "mae",
                                          "paper_mse", "paper_mae", "Δ mse (mean)"])
        lines += ["", "Every run:", ""]
        shown = [{**r, "Δ mse": _delta(float(r["mse"]), r["paper_mse"]), "superseded": "**yes**" if superseded(r) else "",
                  "command": f"`{r['command']}`",
                  "train_command": "same" if r["train_command"] == r["command"] else f"`{r['train_command']}`"}
                 for r in group]
        lines += _table(shown, ["features", "seq_len", "pred_len", "mse", "mae", "paper_mse", "paper_mae", "Δ mse",
                                "protocol", "precision", "epochs", "epochs_run", "seed", "superseded", "notes", "date",
                                "command", "train_command", "machine"])
        lines.append("")
    notes = folder / "notes.md"
    if notes.exists():
        lines += [notes.read_text().rstrip(), ""]
    out = folder / "README.md"
    out.write_text("\n".join(lines))
    return out


def parse_command(command: str) -> tuple[dict[str, str], list[str]]:
    """``'A=1 python train.py x=1 "y=[a,b]"'`` -> ``({'A': '1'}, ['python', 'train.py', 'x=1', 'y=[a,b]'])``:
    the environment assignments before the program, then the argv as a shell would pass it."""
    words = shlex.split(command)
    env = {}
    while words and "=" in words[0] and words[0].split("=", 1)[0].isidentifier():
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    return env, words
