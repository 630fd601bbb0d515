"""Which epoch does early stopping keep, and what would the others have scored?

Trains one experiment per seed for its full schedule with a checkpoint after every epoch
(``callbacks.model_checkpoint.save_top_k=-1``, early stopping off, nothing else changed: early
stopping draws no random numbers, so epochs 1..n are those of the paper run), then scores every
checkpoint on every validation and test window (and on the test windows the papers' loaders kept,
the last incomplete batch dropped), and replays the selection rules on the validation curve alone:

* ``paper``: early stopping (patience from the config, no minimum improvement) and the best
  validation checkpoint up to the stop, what ``python train.py experiment=<name>`` tests;
* ``best-val``: the best validation epoch of the whole schedule (no early stopping);
* ``last``: the last epoch.

    python scripts/epoch_selection.py experiment=dlinear_etth1_720 seeds=2021,2022,2023,2024,2025
    python scripts/epoch_selection.py experiment=dlinear_etth1_720 seeds=2021 train=false   # re-score

Writes ``<out>/epochs.csv`` (one row per seed and epoch), ``<out>/selection.csv`` (one row per seed
and rule) and ``<out>/epochs.png``; prints both tables as Markdown. Run from the repository root
with ``PYTHONPATH=.`` and ``FORECAST_DATA_DIR`` set as for ``train.py``.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent


def parse(argv: list[str]) -> dict[str, str]:
    args = {"experiment": "dlinear_etth1_720", "seeds": "2021,2022,2023,2024,2025", "out": "", "train": "true",
            "threads": "1"}
    for item in argv:
        key, _, value = item.partition("=")
        if key not in args:
            sys.exit(f"unknown argument {key!r}; known: {sorted(args)}")
        args[key] = value
    args["out"] = args["out"] or f"outputs/epoch_selection/{args['experiment']}"
    return args


def train(experiment: str, seed: int, folder: Path, threads: str) -> None:
    """The paper run of this experiment and seed, every epoch kept, early stopping off, no test."""
    command = [sys.executable, str(REPO / "train.py"), f"experiment={experiment}", f"seed={seed}",
               f"num_threads={threads}", "logger=none", "test=false", "trainer.enable_progress_bar=false",
               "callbacks.model_checkpoint.save_top_k=-1", "callbacks.early_stopping=null", f"hydra.run.dir={folder}"]
    print(" ".join(command[1:]), flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


@torch.no_grad()
def mse(module, loader) -> tuple[float, int]:
    """Mean squared error over every window of ``loader`` (all steps and channels) and the window count."""
    total, count, windows = 0.0, 0, 0
    for batch in loader:
        pred = module(batch["x"], batch["x_mark"], batch["y_mark"])
        total += float(((pred - batch["y"]) ** 2).sum())
        count += batch["y"].numel()
        windows += batch["y"].shape[0]
    return total / count, windows


def score(experiment: str, seed: int, folder: Path) -> list[dict]:
    """One row per epoch checkpoint in ``folder``: learning rate of that epoch, validation MSE,
    test MSE on every window and with the last incomplete test batch dropped."""
    from forecast.config import compose_train
    from forecast.pipelines.train import build_data, build_module

    cfg = compose_train([f"experiment={experiment}", f"seed={seed}"])
    datamodule = build_data(cfg)
    module = build_module(cfg, datamodule).eval()
    compat = compose_train([f"experiment={experiment}", f"seed={seed}", "paper_compat=true"])
    dropped = build_data(compat)
    loaders = {"val": datamodule.val_dataloader(), "test": datamodule.test_dataloader(),
               "test_drop_last": dropped.test_dataloader()}
    rows = []
    files = sorted(folder.glob("checkpoints/epoch=*.ckpt"), key=lambda p: int(re.search(r"epoch=(\d+)", p.name).group(1)))
    for path in files:
        state = torch.load(path, map_location="cpu", weights_only=False)
        module.load_state_dict(state["state_dict"])
        epoch = int(state["epoch"])
        # the scheduler has stepped at the end of this epoch: its last lr is the next epoch's
        scheduler = state["lr_schedulers"][0]
        lr_next = scheduler["_last_lr"][0]
        row = {"seed": seed, "epoch": epoch + 1, "lr_next": lr_next}
        for name, loader in loaders.items():
            row[f"{name}_mse"], row[f"{name}_windows"] = mse(module, loader)
        rows.append(row)
        print(f"seed {seed} epoch {epoch + 1}: val {row['val_mse']:.4f} test {row['test_mse']:.4f} "
              f"(drop-last {row['test_drop_last_mse']:.4f})", flush=True)
    # the rate each epoch trained at: the initial one, then what the scheduler set after the previous epoch
    lr0 = float(cfg.module.optimizer.lr)
    for i, row in enumerate(rows):
        row["lr"] = lr0 if i == 0 else rows[i - 1]["lr_next"]
    return rows


def early_stop(val: list[float], patience: int) -> tuple[int, int]:
    """``(epochs run, best epoch)`` (1-based) of Lightning's EarlyStopping (min, min_delta 0) and a
    best-validation checkpoint on the curve ``val``."""
    best, best_epoch, wait = float("inf"), 0, 0
    for epoch, value in enumerate(val, start=1):
        if value < best:
            best, best_epoch, wait = value, epoch, 0
        else:
            wait += 1
            if wait >= patience:
                return epoch, best_epoch
    return len(val), best_epoch


def select(rows: list[dict], patience: int) -> list[dict]:
    val = [r["val_mse"] for r in rows]
    ran, paper = early_stop(val, patience)
    picks = {"paper": paper, "best-val": int(np.argmin(val)) + 1, "last": len(rows)}
    out = []
    for rule, epoch in picks.items():
        r = rows[epoch - 1]
        out.append({"seed": r["seed"], "rule": rule, "epoch": epoch, "epochs_run": ran if rule == "paper" else len(rows),
                    "val_mse": r["val_mse"], "test_mse": r["test_mse"], "test_drop_last_mse": r["test_drop_last_mse"]})
    return out


def write(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def figure(rows: list[dict], selections: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = sorted({r["seed"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, seed in enumerate(seeds):
        mine = [r for r in rows if r["seed"] == seed]
        epochs = [r["epoch"] for r in mine]
        paper = next(s for s in selections if s["seed"] == seed and s["rule"] == "paper")
        for ax, key in zip(axes, ("val_mse", "test_mse")):
            ax.plot(epochs, [r[key] for r in mine], marker="o", ms=3, color=colours[i % len(colours)], label=str(seed))
            ax.plot([paper["epoch"]], [paper[key]], marker="*", ms=14, color=colours[i % len(colours)], mec="black")
            ax.axvline(paper["epochs_run"], color=colours[i % len(colours)], lw=0.6, ls=":")
    axes[0].set_title("validation MSE (every window)")
    axes[1].set_title("test MSE (every window)")
    first = [r for r in rows if r["seed"] == seeds[0]]
    rates = ", ".join(f"{r['lr']:.2g}" for r in first[:4])
    for ax in axes:
        ax.set_xlabel(f"epoch (learning rate {rates}, …)")
        ax.grid(alpha=0.3)
    axes[1].legend(title="seed; ★ kept by early stopping, ┆ its stop", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str]) -> None:
    args = parse(argv)
    out = Path(args["out"])
    out.mkdir(parents=True, exist_ok=True)
    from forecast.config import compose_train

    patience = int(compose_train([f"experiment={args['experiment']}"]).callbacks.early_stopping.patience)
    rows, selections = [], []
    for seed in (int(s) for s in args["seeds"].split(",")):
        folder = out / f"s{seed}"
        if args["train"] == "true" and not any(folder.glob("checkpoints/epoch=*.ckpt")):
            train(args["experiment"], seed, folder, args["threads"])
        mine = score(args["experiment"], seed, folder)
        rows += mine
        selections += select(mine, patience)
    write(out / "epochs.csv", rows)
    write(out / "selection.csv", selections)
    figure(rows, selections, out / "epochs.png", f"{args['experiment']}: every epoch of the paper schedule")
    print("\n| seed | epoch | lr | val MSE | test MSE | test MSE, last batch dropped |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['epoch']} | {r['lr']:.2e} | {r['val_mse']:.4f} | {r['test_mse']:.4f} | "
              f"{r['test_drop_last_mse']:.4f} |")
    print("\n| seed | rule | epoch | epochs run | val MSE | test MSE | test MSE, last batch dropped |\n|---|---|---|---|---|---|---|")
    for s in selections:
        print(f"| {s['seed']} | {s['rule']} | {s['epoch']} | {s['epochs_run']} | {s['val_mse']:.4f} | {s['test_mse']:.4f} | "
              f"{s['test_drop_last_mse']:.4f} |")
    for rule in ("paper", "best-val", "last"):
        test = np.array([s["test_mse"] for s in selections if s["rule"] == rule])
        print(f"{rule}: test MSE mean {test.mean():.4f}, sd {test.std(ddof=1) if len(test) > 1 else 0:.4f}, "
              f"range {test.min():.4f}-{test.max():.4f}")


if __name__ == "__main__":
    main(sys.argv[1:])
