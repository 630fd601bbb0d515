"""Accuracy records: one row per run in ``benchmarks/accuracy.csv``, rendered as Markdown.

A row carries the command that produced it, the machine and the date, and the published
value of the same model, dataset and horizon (``benchmarks/published.csv``) when there is one.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import platform
from pathlib import Path

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from forecast import tracking

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
    if not path.exists():
        return "", ""
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if (row["model"], row["dataset"], row["features"], int(row["seq_len"]), int(row["pred_len"])) == (
                model, dataset, features, seq_len, pred_len
            ):
                return row["mse"], row["mae"]
    return "", ""


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
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=ACCURACY_COLUMNS, lineterminator="\n")
        if new:
            writer.writeheader()
        writer.writerow(row)
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


def render_readme(folder: Path) -> Path:
    """Write ``folder/README.md``: the accuracy rows, grouped by model and dataset, beside the
    published values, and any hand-written sections kept in ``folder/notes.md``."""
    rows = []
    accuracy = folder / "accuracy.csv"
    if accuracy.exists():
        with open(accuracy, newline="") as fh:
            rows = list(csv.DictReader(fh))
    lines = [
        "# Benchmarks",
        "",
        "Generated from `accuracy.csv` by `forecast.pipelines.benchmark.render_readme`; every row comes",
        "from the command in its `command` column, on the machine and date given. MSE/MAE are on the",
        "z-scored data over every test window (the papers' convention); `Δ mse` is relative to the",
        "published value.",
        "",
    ]
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
