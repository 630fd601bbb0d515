"""The reference's test error at our settings: ``scripts/benchmark.py mode=peer_accuracy``.

Where a cell of ours misses its paper, the first question is whether the reference implementation,
trained here, does better. This mode answers it for the models Time-Series-Library ("TSLib", by
the Autoformer authors' group) implements: for each model x dataset x horizon and each of
``seeds``, TSLib's own ``run.py`` trains and tests the cell (its model, loader, Adam, MSE,
``type1`` halving, early stopping on validation, every test window) at the settings our experiment
file gives (window, batch, rate, epochs, patience and the network's sizes, read from our composed
configuration of the cell), on the same CSV file, with the seed set by
``scripts/peers/tslib_train.py``, in the checkout (TSLib finds its models in ``./models`` and
writes its ``checkpoints/`` and ``results/`` there, as for its users). One row per run goes to
``benchmarks/reference_accuracy.csv`` (:data:`forecast.records.REFERENCE_ACCURACY_COLUMNS`), with
the full argument list, the command that repeats it and the test protocol; ``benchmarks/README.md``
sets each beside our live fp32 run of the same cell, seed and protocol.

For ``models=[dpad]`` with ``peer.dpad=<checkout>`` the reference is the official D-PAD code
(XYBbo5/D-PAD): its ``singlecard.py`` (the one-process script; the paper's ETTh2 and ETTm runs used
``run_long.py`` on four GPUs) trains and tests the cell at our experiment file's settings (the
arguments of :func:`forecast.pipelines.peer.dpad_arguments`, with its epochs, patience and ``lradj 1``
decay), seeded by ``scripts/peers/dpad_train.py``, in a scratch folder (it writes its checkpoints and
results relative to the working folder). Its test drops the last incomplete batch and scores the
last epoch's weights, so its rows carry the protocol ``last-epoch, drop-last`` and sit beside our
``paper_compat=true`` runs of the same protocol.

An override in ``overrides`` that changes what is measured (``model.dropout=0.6``,
``trainer.max_epochs=1``; :func:`forecast.records.run_variant`) names the row's model as it names a
run of ours, ``dpad[dropout=0.6]``, so the README pairs it with our runs of that variant only.

With ``peer.same_malloc`` (the default) the reference process gets glibc's malloc thresholds of our
``malloc_keep_mb`` through its environment, as ``mode=peer`` gives them: our training sets them
itself, and they change the reference's time, not its arithmetic.

Settings the reference cannot express (another learning-rate schedule, gradient clipping, another
loss, univariate features, another early-stopping threshold for D-PAD) are refused with the fix,
so that a row never compares two different trainings. Nothing of the reference is imported here or
copied into the project.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from forecast import tracking
from forecast.errors import ConfigError
from forecast.records import REFERENCE_ACCURACY_COLUMNS, append_row, machine, published, run_variant, variant_name

# our model options -> TSLib run.py arguments of the same meaning (where our config has the key)
MODEL_ARGUMENTS = {"d_model": "--d_model", "n_heads": "--n_heads", "d_ff": "--d_ff", "e_layers": "--e_layers",
                   "d_layers": "--d_layers", "factor": "--factor", "dropout": "--dropout", "activation": "--activation",
                   "moving_avg": "--moving_avg", "kernel_size": "--moving_avg", "k": "--top_k"}
RESULT = re.compile(r"mse:\s*([0-9.eE+-]+),\s*mae:\s*([0-9.eE+-]+)")
EPOCH = re.compile(r"^Epoch: (\d+) cost time", re.MULTILINE)
RESUMED = re.compile(r"^Resuming after epoch (\d+) of \d+ from .* \((\d+) s before\)", re.MULTILINE)


def _is_decay(scheduler, gamma: float, hold: int) -> bool:
    """Our ``forecast.schedulers.epoch_decay`` at ``gamma`` and ``hold``: ``schedule=type1`` (0.5, 1;
    TSLib's ``--lradj type1``) or ``schedule=decay95`` (0.95, 0; D-PAD's ``--lradj 1``)."""
    return (scheduler is not None and str(scheduler.get("_target_", "")).endswith("epoch_decay")
            and float(scheduler.get("gamma", 0)) == gamma and int(scheduler.get("hold", -1)) == hold)


def _word(value) -> str:
    """A setting as a run.py argument: a whole float as an integer (TSLib parses ``--factor`` as int)."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def channels(path: Path) -> int:
    """The series in a CSV of the benchmark layout: every column but the first (the date)."""
    with open(path, newline="") as fh:
        return len(next(csv.reader(fh))) - 1


def _checked(train, problems: list[str], who: str, fix: str) -> Path:
    """The cell's data file, after refusing ``problems`` (the reference's own) and what neither
    reference does (gradient clipping, univariate features) with the fix; a missing file too."""
    from forecast.pipelines.benchmark import to_absolute

    data = train.data
    if train.trainer.get("gradient_clip_val"):
        problems.append(f"trainer.gradient_clip_val={train.trainer.gradient_clip_val} (the reference does not clip)")
    if str(data.features) != "M":
        problems.append(f"data.features={data.features} (this comparison wires the multivariate setting, M)")
    if problems:
        raise ConfigError(f"mode=peer_accuracy: {who} {data.name} {data.pred_len} differently: {'; '.join(problems)}. "
                          f"Fix: compare {fix}, or override those settings after --.")
    path = Path(to_absolute(str(data.path))).resolve()
    if not path.exists():
        raise ConfigError(f"mode=peer_accuracy: {path} does not exist. Fix: give the data folder after --, "
                          "e.g. -- data_dir=../shared/data (or set FORECAST_DATA_DIR).")
    return path


def training_arguments(cfg, model: str, train, tag: str, shown: bool = False) -> list[str]:
    """TSLib ``run.py`` arguments that train and test the cell our composed ``train`` config
    describes: every setting ours fixes, and the pairing's script arguments (``peer.pairs``) for
    the rest. ``shown``: the data folder as our config gives it (relative to the repository, for
    the record) instead of the absolute one the reference runs with."""
    from forecast.pipelines.peer import TSLIB_DATA

    data, net, module = train.data, train.model, train.module
    problems = []
    if not _is_decay(module.get("scheduler"), 0.5, 1):
        problems.append("a learning-rate schedule other than schedule=type1 (TSLib: --lradj type1)")
    if str(module.loss._target_) != "torch.nn.MSELoss":
        problems.append(f"module.loss={module.loss._target_} (TSLib trains on MSE)")
    path = _checked(train, problems, f"TSLib would train {model}", "a cell whose experiment TSLib can run as it is "
                    "(the TSLib re-run settings, e.g. experiment=etsformer_etth1_720)")
    n = channels(path)
    seq_len, horizon = int(data.seq_len), int(data.pred_len)
    label_len = net.get("label_len")
    label_len = int(label_len) if label_len is not None else seq_len // 2
    name = TSLIB_DATA.get(str(data.name), ("custom", ""))[0]
    pair = cfg.peer.pairs[model]
    folder = Path(str(data.path)).parent if shown else path.parent
    ours = {"--task_name": "long_term_forecast", "--is_training": "1", "--model_id": tag, "--model": str(pair.model),
            "--data": name, "--root_path": f"{folder}/", "--data_path": path.name, "--features": "M",
            "--target": str(data.target), "--seq_len": str(seq_len), "--label_len": str(label_len),
            "--pred_len": str(horizon)}
    ours.update({flag: _word(net[key]) for key, flag in MODEL_ARGUMENTS.items() if net.get(key) is not None})
    if model == "etsformer":  # our e_layers counts encoder layers and their damping layers alike
        ours["--d_layers"] = str(net.e_layers)
    ours.update({"--enc_in": str(n), "--dec_in": str(n), "--c_out": str(n), "--batch_size": str(int(data.batch_size)),
                 "--learning_rate": f"{float(module.optimizer.lr):g}",
                 "--train_epochs": str(int(train.trainer.max_epochs)),
                 "--patience": str(int(train.callbacks.early_stopping.patience)), "--lradj": "type1",
                 "--des": "Exp", "--itr": "1", "--num_workers": "0"})
    script = str(pair.args).split()  # the pairing's own settings where ours fix none
    rest = [(flag, value) for flag, value in zip(script[::2], script[1::2]) if flag not in ours]
    args = [word for flag, value in [*ours.items(), *rest] for word in (flag, value)]
    return [*args, *(["--individual"] if net.get("individual") else []), "--no_use_gpu"]


def dpad_training_arguments(train, dataset: str, shown: bool = False) -> list[str]:
    """The official D-PAD ``singlecard.py`` arguments that train and test the cell our composed
    ``train`` config describes: the network and batch of
    :func:`forecast.pipelines.peer.dpad_arguments`, our epochs and patience, its ``lradj 1``
    decay, one run (``--itr 0``), checkpoints under the working folder. ``shown``: the data folder
    as our config gives it, for the record."""
    from forecast.pipelines.peer import dpad_arguments

    data, module = train.data, train.module
    stopping = train.callbacks.early_stopping
    problems = []
    if not _is_decay(module.get("scheduler"), 0.95, 0):
        problems.append("a learning-rate schedule other than schedule=decay95 (official: x 0.95 after every epoch, --lradj 1)")
    if float(stopping.get("min_delta") or 0) != 2e-4:
        problems.append(f"callbacks.early_stopping.min_delta={stopping.get('min_delta')} (official: 0.0002, fixed in its code)")
    path = _checked(train, problems, "the official D-PAD code would train dpad",
                    "a cell of its paper setting (experiment=dpad_<ett>_<horizon>)")
    folder = Path(str(data.path)).parent if shown else path.parent
    return [*dpad_arguments(train, dataset, f"{folder}/"), "--train_epochs", str(int(train.trainer.max_epochs)),
            "--patience", str(int(stopping.patience)), "--lradj", "1", "--itr", "0", "--checkpoints", "checkpoints/"]


def parse_result(output: str) -> dict:
    """TSLib's printed test error (its last ``mse:…, mae:…``), the epochs it trained and, for a run
    resumed by ``scripts/peers/tslib_train.py``, the epoch it resumed after and the seconds it had
    trained before (``resumed_after``, ``resumed_seconds``; 0 otherwise); an error quoting the end
    of the output when there is no test error (the run failed)."""
    found = RESULT.findall(output)
    if not found:
        raise RuntimeError(f"the reference printed no test error; the end of its output:\n{output[-3000:]}")
    mse, mae = found[-1]
    resumed = RESUMED.findall(output)
    before, seconds = (int(resumed[-1][0]), int(resumed[-1][1])) if resumed else (0, 0)
    return {"mse": float(mse), "mae": float(mae), "epochs_run": max(map(int, EPOCH.findall(output)), default=before),
            "resumed_after": before, "resumed_seconds": seconds}


def reference_command(model: str, dataset: str, horizon: int, seed: int, overrides) -> str:
    """The command that repeats one reference run, with the settings this one was given."""
    from forecast.pipelines.benchmark import kept_overrides

    kept = kept_overrides("seeds")  # the row's own seed is given instead
    train = ["--", *map(str, overrides)] if overrides else []
    return tracking.shell_join(["python", "scripts/benchmark.py", "mode=peer_accuracy", f"models=[{model}]",
                                f"datasets=[{dataset}]", f"horizons=[{horizon}]", f"seeds=[{seed}]", *kept, *train])


def _stream(command: list[str], cwd: str, env: dict) -> tuple[int, str]:
    """Run the reference, echoing its progress as it comes (its every-100-steps loss, speed and time
    left, and each epoch's losses); ``(exit code, whole output)``."""
    lines = []
    with subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            lines.append(line)
            if line.lstrip().startswith(("iters:", "speed:", "Epoch:", "Early stopping", "mse:", "Final", "Resuming")):
                print(f"  {line.strip()}", flush=True)
    return proc.returncode, "".join(lines)


def run(cfg, repo: Path, cells: list[tuple[str, str, int]], out_csv: Path) -> int:
    """Train every cell at every seed with the reference (TSLib's ``run.py``, or the official D-PAD
    ``singlecard.py`` with ``peer.dpad``); one row each; returns the failed runs."""
    from forecast.config import compose_train
    from forecast.pipelines.benchmark import cell_overrides
    from forecast.pipelines.peer import DPAD_CLASSES, check, commit_of, reference_malloc, shown_environment

    if cfg.peer.get("revision"):
        raise ConfigError("mode=peer_accuracy trains a reference's own code (peer.tslib, or peer.dpad for "
                          "models=[dpad]); peer.revision is a reference of mode=peer only. Fix: peer.tslib=<checkout>.")
    dpad = bool(cfg.peer.get("dpad"))
    checkout, python = check(cfg, cells, own_loaders=dpad)  # the official D-PAD code loads ETT by its own names
    commit = commit_of(checkout, str(cfg.peer.dpad_commit if dpad else cfg.peer.commit))
    env = {**os.environ, "OMP_NUM_THREADS": str(cfg.threads), "MKL_NUM_THREADS": str(cfg.threads),
           "PYTHONDONTWRITEBYTECODE": "1"}
    extra = [str(o) for o in cfg.overrides]
    variant = run_variant("", extra)  # dpad[dropout=0.6], as our rows name it (the module's docstring)
    planned = []
    for model, dataset, horizon in cells:  # every refusal before the first hour of training
        train = compose_train([*cell_overrides(model, dataset, horizon, repo / "conf"), *extra])
        for seed in cfg.seeds:
            tag = f"{model}_{dataset}_{train.data.seq_len}_{horizon}_s{seed}"
            if dpad:
                label = f"D-PAD {commit[:7]} {DPAD_CLASSES[str(train.model.fusion)]}"
                args, shown = dpad_training_arguments(train, dataset), dpad_training_arguments(train, dataset, shown=True)
            else:
                label = f"TSLib {commit[:7]} {cfg.peer.pairs[model].model}"
                args, shown = training_arguments(cfg, model, train, tag), training_arguments(cfg, model, train, tag, shown=True)
            planned.append((model, dataset, horizon, int(seed), train, label, args, shown))
    failed = 0
    runner = str(repo / "scripts" / "peers" / ("dpad_train.py" if dpad else "tslib_train.py"))
    # TSLib finds its models in ./models and writes there, as for its users; the official D-PAD code
    # writes its checkpoints and results relative to the working folder: a scratch one per run
    protocol = "last-epoch, drop-last" if dpad else "every-window"
    for model, dataset, horizon, seed, train, label, args, shown in planned:
        command = [python, runner, str(checkout), str(seed), *args]
        malloc = reference_malloc(cfg, train)  # the thresholds our training sets itself
        print(f"[{model} {dataset} {horizon} seed {seed}] {label}, {cfg.threads} thread(s):\n"
              f"  {tracking.shell_join(command[1:])}{shown_environment(malloc)}", flush=True)
        if cfg.dry_run:
            continue
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="dpad-run-") if dpad else contextlib.nullcontext(checkout) as cwd:
            code, output = _stream(command, str(cwd), {**env, **malloc})
        try:
            if code:
                raise RuntimeError(f"the reference failed (exit {code}):\n{output[-3000:]}")
            result = parse_result(output)
        except RuntimeError as err:
            failed += 1
            print(err, file=sys.stderr)
            continue
        data = train.data
        paper_mse, _ = published(repo / "benchmarks" / "published.csv", model, dataset, "M", int(data.seq_len), horizon)
        row = {"model": variant_name(model, variant), "dataset": dataset, "features": "M",
               "seq_len": int(data.seq_len), "pred_len": horizon,
               "seed": seed, "reference": label, "protocol": protocol,
               "mse": f"{result['mse']:.4f}", "mae": f"{result['mae']:.4f}", "paper_mse": paper_mse,
               "epochs_run": result["epochs_run"],
               "seconds": f"{time.perf_counter() - start + result['resumed_seconds']:.0f}",
               "threads": cfg.threads, "superseded": "false",
               "notes": f"resumed after epoch {result['resumed_after']}" if result["resumed_after"] else "",
               "arguments": " ".join(shown), "command": reference_command(model, dataset, horizon, seed, cfg.overrides),
               "machine": machine(threads=cfg.threads, torch_build=False), "date": dt.date.today().isoformat()}
        append_row(out_csv, REFERENCE_ACCURACY_COLUMNS, row)
        print(f"  reference test MSE {row['mse']}, MAE {row['mae']} after {row['epochs_run']} epochs "
              f"({row['seconds']} s)", flush=True)
    return failed
