"""Side-by-side speed against a reference implementation: ``scripts/benchmark.py mode=peer``.

A speed ratio holds only when both sides ran on the same machine, under the same load, with the
same threads and batch. So for each model the reference's training step and ours are timed in
rounds, alternately (round 1: ours then the reference; round 2: the reference then ours; …), each
measurement in a fresh process of this one process tree, with ``OMP_NUM_THREADS`` and
``torch.set_num_threads`` equal on both sides and the 1-minute load average read before and after
each measurement. One row of ``benchmarks/speed.csv`` carries both figures (the mean over the
rounds of each side's mean seconds per full-batch step), their ratio (``speedup``: reference
seconds / ours), the per-round figures and loads (``notes``), the threads and the loads before the
first and after the last measurement.

The reference is this repository at another git revision (``peer.revision``: our own code before
a change, in a temporary worktree, each cell at its paper configuration), or Time-Series-Library (thuml/Time-Series-Library, "TSLib"), given as the path of
a checkout (``peer.tslib``) and the interpreter of its environment (``peer.python``); its step is
timed by ``scripts/peers/tslib_step.py`` from TSLib's own experiment class, arguments and
parser. For ``models=[dpad]`` it can be the official D-PAD code (XYBbo5/D-PAD, ``peer.dpad``),
timed likewise by ``scripts/peers/dpad_step.py``, both sides at our paper configuration of the
cell (look-back 336, batch 512), the official arguments read from it. Ours is timed by
:func:`forecast.pipelines.benchmark.measure_speed` (the real Trainer and ``ForecastModule``,
Lightning's overhead included), which sets glibc's malloc thresholds itself (``malloc_keep_mb``);
with ``peer.same_malloc`` (the default) a TSLib or D-PAD process gets the same thresholds through
glibc's environment variables and its label in the row says so, so that the ratio is one of code
and not of a process setting that any user of the reference can give it. Nothing of the reference
is imported here or copied into the project.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from forecast import tracking
from forecast.errors import ConfigError
from forecast.records import SPEED_COLUMNS, append_speed_row

# our dataset name -> the reference's --data and file (TSLib and D-PAD alike; the ETT files, others are not wired)
TSLIB_DATA = {"etth1": ("ETTh1", "ETTh1.csv"), "etth2": ("ETTh2", "ETTh2.csv"),
              "ettm1": ("ETTm1", "ETTm1.csv"), "ettm2": ("ETTm2", "ETTm2.csv")}
OURS, REFERENCE = "ours", "reference"
# our model.fusion -> the official D-PAD network (the substring of --model_name that Exp_ETT picks it by)
DPAD_CLASSES = {"se": "DPAD_SE", "gcn": "DPAD_GCN"}
# our loss -> the official --loss
DPAD_LOSSES = {"torch.nn.L1Loss": "mae", "torch.nn.MSELoss": "mse"}


@dataclass
class Measurement:
    """One timed run of one side: the JSON its process printed and the loads around it."""

    side: str
    round: int
    result: dict
    load_before: float
    load_after: float

    @property
    def s_per_iter(self) -> float:
        return float(self.result["s_per_iter"])


@dataclass
class Comparison:
    """The rounds of one model, both sides, in the order they ran."""

    measurements: list[Measurement] = field(default_factory=list)

    def side(self, name: str) -> list[Measurement]:
        return [m for m in self.measurements if m.side == name]

    def mean(self, name: str) -> float:
        runs = self.side(name)
        return sum(m.s_per_iter for m in runs) / len(runs)

    @property
    def speedup(self) -> float:
        """Reference seconds per step over ours (above 1: ours is faster)."""
        return self.mean(REFERENCE) / self.mean(OURS)

    def round_speedups(self) -> list[float]:
        """The ratio of each round (the two measurements next to each other in time)."""
        ours = {m.round: m.s_per_iter for m in self.side(OURS)}
        return [m.s_per_iter / ours[m.round] for m in self.side(REFERENCE) if m.round in ours]


def interleave(measure: dict[str, Callable[[], dict]], rounds: int, loadavg: Callable[[], float]) -> Comparison:
    """Run ``measure[OURS]`` and ``measure[REFERENCE]`` ``rounds`` times each, alternating the order
    (ours first in odd rounds, the reference first in even ones), so a load that rises or falls
    during the comparison weighs on both sides alike. Each callable runs one measurement and returns
    its result dict (with ``s_per_iter``); ``loadavg`` gives the 1-minute load average."""
    if rounds < 1:
        raise ConfigError(f"peer.rounds={rounds}: need at least 1 (2 or more, so that each side runs first once).")
    out = Comparison()
    for r in range(1, rounds + 1):
        for side in (OURS, REFERENCE) if r % 2 else (REFERENCE, OURS):
            before = loadavg()
            result = measure[side]()
            out.measurements.append(Measurement(side, r, result, before, loadavg()))
    return out


def _g(x: float) -> str:
    return f"{x:.4g}"


def comparison_row(comparison: Comparison, reference: str, command: str, date: str) -> dict:
    """The ``speed.csv`` row of one comparison: our fields as ``scripts/benchmark.py`` speed rows
    (seconds per iteration the mean over the rounds, the minimum over every timed step, peak memory
    the largest of the rounds), the reference's beside them, ``speedup`` = reference / ours, and in
    ``notes`` each round's figures and loads and what the reference was built with."""
    ours, ref = comparison.side(OURS), comparison.side(REFERENCE)
    first = ours[0].result
    s = comparison.mean(OURS)
    batches = int(first["batches_per_epoch"])
    def one(m: Measurement) -> str:
        return f"{m.side} {_g(m.s_per_iter)} (load {m.load_before:.2f}→{m.load_after:.2f})"

    by_round: dict[int, list[Measurement]] = {}
    for m in comparison.measurements:
        by_round.setdefault(m.round, []).append(m)
    ratios = dict(zip((m.round for m in ref), comparison.round_speedups()))
    rounds = "; ".join(f"round {r}: {', then '.join(one(m) for m in ms)}: {ratios[r]:.2f}x" for r, ms in by_round.items())
    facts = ref[0].result
    built = ", ".join(f"{k} {facts[k]}" for k in ("model", "parameters", "d_model", "enc_hidden", "K_IMP", "levels", "dropout",
                                                  "learning_rate", "torch") if k in facts)
    notes = f"interleaved rounds, {rounds}; reference: {built}"
    if first.get("notes"):
        notes = f"{first['notes']}; {notes}"
    row = {k: first.get(k, "") for k in SPEED_COLUMNS}
    row.update({
        "iters": first["iters"], "s_per_iter": _g(s),
        "s_per_iter_min": _g(min(float(m.result["s_per_iter_min"]) for m in ours)),
        "windows_per_s": f"{int(first['batch_size']) / s:.1f}", "s_per_epoch": f"{s * batches:.1f}",
        "peak_memory_gb": f"{max(float(m.result['peak_memory_gb']) for m in ours):.2f}",
        "load_1min": f"{comparison.measurements[0].load_before:.2f}",
        "load_1min_after": f"{comparison.measurements[-1].load_after:.2f}",
        "reference": reference, "reference_s_per_iter": _g(comparison.mean(REFERENCE)),
        "reference_s_per_iter_min": _g(min(float(m.result["s_per_iter_min"]) for m in ref)),
        "reference_peak_memory_gb": f"{max(float(m.result['peak_memory_gb']) for m in ref):.2f}",
        "speedup": f"{comparison.speedup:.2f}", "rounds": len(ours),
        "superseded": "false", "notes": notes, "command": command, "date": date,
    })
    return row


def tslib_arguments(cfg, model: str, dataset: str, horizon: int, root_path: str) -> list[str]:
    """TSLib ``run.py`` arguments of one cell: its long-term-forecasting ETT script's settings
    (``peer.pairs.<model>``) on this window, batch and data, on the CPU, without loader workers."""
    pair = cfg.peer.pairs[model]
    data, data_path = TSLIB_DATA[dataset]
    seq_len, batch = int(cfg.peer.seq_len), int(cfg.peer.batch_size)
    label_len = seq_len // 2
    return ["--task_name", "long_term_forecast", "--is_training", "1", "--root_path", root_path,
            "--data_path", data_path, "--model_id", f"{data}_{seq_len}_{horizon}", "--model", str(pair.model),
            "--data", data, "--features", "M", "--seq_len", str(seq_len), "--label_len", str(label_len),
            "--pred_len", str(horizon), *shlex.split(str(pair.args)), "--des", "Exp", "--itr", "1",
            "--batch_size", str(batch), "--num_workers", "0", "--no_use_gpu"]


def dpad_arguments(train, dataset: str, root_path: str) -> list[str]:
    """The official D-PAD ``singlecard.py`` arguments of one cell, read from our composed ``train``
    config of that cell (so an override after ``--`` reaches both sides): the network of the
    official ``scripts/run_ETTh1.sh`` (``DPAD_SE``; ``DPAD_GCN`` for ``model.fusion=gcn``),
    selected by ``--model_name`` as there, every model and training setting given explicitly (the
    defaults of ``singlecard.py`` and ``run_long.py`` differ), on the CPU without loader workers."""
    model, data = train.model, train.data
    loss = DPAD_LOSSES.get(str(train.module.loss._target_))
    problems = [f"model.{k}={model[k]} (official: {v})" for k, v in (("multiscale", False), ("sift_threshold", 0.1))
                if model[k] != v]
    problems += [] if str(model.fusion) in DPAD_CLASSES else [f"model.fusion={model.fusion} (official: {sorted(DPAD_CLASSES)})"]
    problems += [] if loss else [f"module.loss={train.module.loss._target_} (official: {sorted(DPAD_LOSSES)})"]
    if problems:
        raise ConfigError(f"peer.dpad: the official D-PAD code has no counterpart of {', '.join(problems)}. "
                          "Fix: drop those train.py overrides for this comparison.")
    network, (name, data_path) = DPAD_CLASSES[str(model.fusion)], TSLIB_DATA[dataset]
    seq_len, horizon, batch = int(data.seq_len), int(data.pred_len), int(data.batch_size)
    lr, dropout, hidden, levels = float(train.module.optimizer.lr), float(model.dropout), int(model.hidden), int(model.levels)
    model_name = f"{network}_{name}_I{seq_len}_o{horizon}_lr{lr:g}_bs{batch}_dp{dropout:g}_h{hidden}_l{levels}"  # as run_ETTh1.sh
    return ["--model", network, "--model_name", model_name, "--data", name, "--root_path", root_path,
            "--data_path", data_path, "--features", str(data.features), "--seq_len", str(seq_len), "--label_len", "0", "--pred_len", str(horizon), "--enc_hidden", str(hidden),
            "--dec_hidden", str(int(model.dec_hidden)), "--levels", str(levels), "--K_IMP", str(int(model.k)),
            "--dropout", f"{dropout:g}", "--RIN", str(int(bool(model.revin))), "--batch_size", str(batch),
            "--lr", f"{lr:g}", "--loss", loss, "--num_workers", "0"]


def our_overrides(cfg, cell: list[str]) -> list[str]:
    """Our ``train.py`` overrides of a cell on the reference's window and batch."""
    return [*cell, f"data.seq_len={int(cfg.peer.seq_len)}", f"data.batch_size={int(cfg.peer.batch_size)}",
            *map(str, cfg.overrides)]


@contextmanager
def revision_checkout(repo: Path, revision: str):
    """``(folder, commit)``: a temporary detached worktree of ``repo`` at ``revision``, removed
    afterwards; a :class:`ConfigError` when ``revision`` names no commit."""
    proc = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"],
                          capture_output=True, text=True)
    if proc.returncode or not proc.stdout.strip():
        raise ConfigError(f"peer.revision={revision}: not a commit of {repo}. Fix: a branch, tag or commit of this "
                          "repository, e.g. peer.revision=main or peer.revision=HEAD~1.")
    commit = proc.stdout.strip()
    parent = Path(tempfile.mkdtemp(prefix="forecast-revision-"))
    folder = parent / commit[:7]
    try:
        proc = subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(folder), commit],
                              capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"git worktree add {commit[:7]} failed: {proc.stderr.strip()}")
        yield folder, commit
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(folder)], capture_output=True, text=True)
        shutil.rmtree(parent, ignore_errors=True)


def reference_malloc(cfg, train) -> dict[str, str]:
    """glibc's environment that gives a reference process the malloc thresholds our training sets
    itself (``malloc_keep_mb`` of the composed ``train``); none with ``peer.same_malloc=false``."""
    from forecast.memory import glibc_environment

    return glibc_environment(int(train.get("malloc_keep_mb") or 0)) if cfg.peer.same_malloc else {}


def shown_environment(env: dict[str, str]) -> str:
    """The reference's malloc settings of ``env``, a printed line each."""
    return "".join(f"\n  reference environment: {k}={v}" for k, v in env.items() if k.startswith("MALLOC_"))


def check(cfg, cells: list[tuple[str, str, int]], own_loaders: bool = True) -> tuple[Path, str]:
    """The reference checkout (``peer.tslib`` or ``peer.dpad``) and its interpreter, or a
    :class:`ConfigError` that says what to set. ``own_loaders``: the cells' datasets must be ones
    the reference loads by name (``TSLIB_DATA``); ``mode=peer_accuracy`` gives it our data file
    instead."""
    given = [f"peer.{k}" for k in ("tslib", "dpad", "revision") if cfg.peer.get(k)]
    if len(given) > 1:
        raise ConfigError(f"{' and '.join(given)} set together: a comparison has one reference. Fix: keep one of them.")
    if cfg.peer.get("reference_overrides") and not cfg.peer.get("revision"):
        raise ConfigError("peer.reference_overrides are train.py overrides of our own code at peer.revision; TSLib "
                          "and D-PAD take none. Fix: set peer.revision=<commit> (HEAD: the same code), or drop them.")
    if not given:
        raise ConfigError("mode=peer needs the path of a Time-Series-Library checkout. Fix: peer.tslib=<path> "
                          f"(git clone https://github.com/thuml/Time-Series-Library; git checkout {cfg.peer.commit}) "
                          "and peer.python=<the python of its environment>; or peer.dpad=<a D-PAD checkout> for "
                          "models=[dpad]; or peer.revision=<a git revision of this repository> to time our own code "
                          "before a change.")
    from forecast.pipelines.benchmark import to_absolute

    python = to_absolute(str(cfg.peer.python)) if cfg.peer.python else sys.executable
    if cfg.peer.get("dpad"):
        others = sorted({model for model, _, _ in cells if model != "dpad"})
        if others:
            raise ConfigError(f"peer.dpad is the official D-PAD code: it is the reference of models=[dpad] only, not "
                              f"of {others}. Fix: \"models=[dpad]\" (peer.tslib=<path> for the others, in another command).")
        checkout = Path(to_absolute(str(cfg.peer.dpad)))
        if not (checkout / "singlecard.py").exists() or not (checkout / "experiments" / "exp_ETT.py").exists():
            raise ConfigError(f"peer.dpad={cfg.peer.dpad}: no singlecard.py and experiments/exp_ETT.py in {checkout}. "
                              "Fix: the root of a D-PAD checkout (git clone https://github.com/XYBbo5/D-PAD; "
                              f"git checkout {cfg.peer.dpad_commit}).")
    else:
        checkout = Path(to_absolute(str(cfg.peer.tslib)))
        if not (checkout / "run.py").exists() or not (checkout / "exp" / "exp_long_term_forecasting.py").exists():
            raise ConfigError(f"peer.tslib={cfg.peer.tslib}: no run.py and exp/exp_long_term_forecasting.py in {checkout}. "
                              "Fix: the root of a Time-Series-Library checkout.")
        for model, _, _ in cells:
            if model not in cfg.peer.pairs:
                raise ConfigError(f"mode=peer: no reference pairing for model {model}. Fix: models among "
                                  f"{sorted(cfg.peer.pairs)}, or add peer.pairs.{model} to conf/benchmark.yaml.")
    for _, dataset, _ in cells if own_loaders else []:
        if dataset not in TSLIB_DATA:
            raise ConfigError(f"mode=peer: dataset {dataset} is not wired to the reference's loaders. Fix: one of {sorted(TSLIB_DATA)}.")
    return checkout, python


def commit_of(tslib: Path, pinned: str) -> str:
    """The checkout's commit (``git rev-parse HEAD``), or the pinned one where it is not a git
    checkout (a copied snapshot of that commit)."""
    if not (tslib / ".git").exists():
        return pinned
    proc = subprocess.run(["git", "-C", str(tslib), "rev-parse", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else pinned


def _last_json(proc: subprocess.CompletedProcess, what: str) -> dict:
    if proc.returncode:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peer_command(cfg, model: str, dataset: str, horizon: int, revision: str | None = None) -> str:
    """The command that measures this one comparison again, with the settings this run was given
    (``revision``: the commit the reference was, in place of a branch name that moves on)."""
    from forecast.pipelines.benchmark import kept_overrides

    kept = kept_overrides("peer.revision")
    if revision:
        kept.append(f"peer.revision={revision}")
    train = ["--", *map(str, cfg.overrides)] if cfg.overrides else []
    return tracking.shell_join(["python", "scripts/benchmark.py", "mode=peer", f"models=[{model}]", f"datasets=[{dataset}]",
                                f"horizons=[{horizon}]", *kept, *train])


def run(cfg, script: Path, repo: Path, cells: list[tuple[str, str, int]], speed_csv: Path) -> int:
    """Compare every cell with the reference; append one row per cell; returns the failed cells."""
    if cfg.peer.get("revision"):
        if cfg.peer.tslib or cfg.peer.get("dpad"):
            check(cfg, cells)  # refuses two references
        with revision_checkout(repo, str(cfg.peer.revision)) as (checkout, commit):
            print(f"reference: this repository at {commit[:7]} ({cfg.peer.revision}), in {checkout}", flush=True)
            return _run(cfg, script, repo, cells, speed_csv, revision=(checkout, commit))
    return _run(cfg, script, repo, cells, speed_csv)


def _run(cfg, script: Path, repo: Path, cells, speed_csv: Path, revision: tuple[Path, str] | None = None) -> int:
    from forecast.config import compose_train
    from forecast.pipelines.benchmark import cell_overrides, to_absolute

    env = {**os.environ, "OMP_NUM_THREADS": str(cfg.threads), "MKL_NUM_THREADS": str(cfg.threads)}
    dpad = not revision and bool(cfg.peer.get("dpad"))
    if revision:
        where, commit = revision

        def first_on_path(folder: Path) -> str:  # each side imports its own package, not the installed one
            return os.pathsep.join([str(folder), *filter(None, [os.environ.get("PYTHONPATH")])])

        env["PYTHONPATH"] = first_on_path(repo)
        reference_env = {**env, "PYTHONPATH": first_on_path(where)}
    else:
        where, python = check(cfg, cells)
        pinned = str(cfg.peer.dpad_commit if dpad else cfg.peer.commit)
        commit = commit_of(where, pinned)
        if commit[:7] != pinned[:7]:
            print(f"warning: {where} is at {commit}, not the pinned {pinned} that "
                  f"{'the D-PAD arguments' if dpad else 'peer.pairs'} follow", file=sys.stderr)
        # absolute: the reference runs in its own checkout
        root_path = str(Path(to_absolute(str(cfg.peer.root_path))) if cfg.peer.root_path else repo / "data" / "ETT-small") + "/"
        reference_env = {**env, "PYTHONDONTWRITEBYTECODE": "1"}  # leave the checkout as it is
    failed = 0
    for model, dataset, horizon in cells:
        cell = cell_overrides(model, dataset, horizon, repo / "conf")
        if revision or dpad:  # the paper configuration (window, batch) on both sides, as mode=speed
            overrides = [*cell, *map(str, cfg.overrides)]
        else:
            overrides = our_overrides(cfg, cell)
        spec = {"overrides": overrides, "threads": cfg.threads, "warmup": cfg.warmup, "iters": cfg.iters}
        ours = [sys.executable, str(script), "--measure", json.dumps(spec)]
        cell_env = reference_env
        if revision:
            reference_overrides = [*map(str, cfg.peer.get("reference_overrides") or [])]
            theirs = {**spec, "overrides": [*overrides, *reference_overrides]}
            reference = [sys.executable, str(where / "scripts" / "benchmark.py"), "--measure", json.dumps(theirs)]
            label = " ".join([f"forecast {commit[:7]}", *reference_overrides])  # and the reference's own overrides
        else:
            train = compose_train(overrides)  # our composed configuration of the cell
            if dpad:  # the official arguments of it
                step, arguments = "dpad_step.py", dpad_arguments(train, dataset, root_path)
                label = f"D-PAD {commit[:7]} {arguments[arguments.index('--model') + 1]}"
            else:
                step, arguments = "tslib_step.py", tslib_arguments(cfg, model, dataset, horizon, root_path)
                label = f"TSLib {commit[:7]} {cfg.peer.pairs[model].model}"
            reference = [python, str(repo / "scripts" / "peers" / step), str(cfg.threads), str(cfg.warmup),
                         str(cfg.iters), *arguments]
            # our process sets glibc's malloc thresholds itself (malloc_keep_mb); the reference gets the same
            malloc = reference_malloc(cfg, train)
            cell_env = {**reference_env, **malloc}
            if malloc:
                label += f" ({' '.join(f'{k}={v}' for k, v in malloc.items())})"
        print(f"[{model} {dataset} {horizon}] {cfg.peer.rounds} interleaved rounds, {cfg.threads} thread(s)\n"
              f"  ours: {' '.join(overrides)}\n  reference (in {where}): {shlex.join(reference[1:])}"
              + shown_environment(cell_env),
              flush=True)
        if cfg.dry_run:
            continue
        measure = {
            OURS: lambda: _last_json(subprocess.run(ours, cwd=repo, env=env, capture_output=True, text=True), "ours"),
            REFERENCE: lambda: _last_json(subprocess.run(reference, cwd=where, env=cell_env, capture_output=True,
                                                         text=True), "the reference"),
        }
        try:
            comparison = interleave(measure, int(cfg.peer.rounds), lambda: os.getloadavg()[0])
        except (RuntimeError, json.JSONDecodeError, IndexError) as err:
            failed += 1
            print(err, file=sys.stderr)
            continue
        if "skipped" in comparison.side(OURS)[0].result:
            print(f"  skipped: {comparison.side(OURS)[0].result['skipped']}", flush=True)
            continue
        command = peer_command(cfg, model, dataset, horizon, commit[:7] if revision else None)
        row = comparison_row(comparison, label, command, dt.date.today().isoformat())
        row["model"] = model
        append_speed_row(speed_csv, row)
        print(f"  ours {row['s_per_iter']} s/iter, reference {row['reference_s_per_iter']} s/iter: {row['speedup']}x "
              f"(rounds: {', '.join(f'{x:.2f}x' for x in comparison.round_speedups())}); load {row['load_1min']} -> "
              f"{row['load_1min_after']}", flush=True)
    return failed
