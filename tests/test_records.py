"""The benchmark records: one live row per (setting, seed), commands that compose, summaries of
live rows only, and a recorder that writes what the columns promise."""

from __future__ import annotations

import csv
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from forecast import records
from forecast.config import compose_train
from forecast.errors import ConfigError
from forecast.pipelines.benchmark import cell_overrides
from forecast.pipelines.train import run
from tests.helpers import CONF, REPO

BENCH = REPO / "benchmarks"
ACCURACY = records.read_csv(BENCH / "accuracy.csv")
SPEED = records.read_csv(BENCH / "speed.csv")
# the key of the before-stop hook: paper_compat where the records have protocol
HOOK_KEY = ("model", "dataset", "features", "seq_len", "pred_len", "seed", "precision", "paper_compat")


def test_the_files_have_the_columns_of_the_recorder():
    with open(BENCH / "accuracy.csv", newline="") as fh:
        assert next(csv.reader(fh)) == records.ACCURACY_COLUMNS
    with open(BENCH / "speed.csv", newline="") as fh:
        assert next(csv.reader(fh)) == records.SPEED_COLUMNS


@pytest.mark.parametrize("key", [records.SETTING, HOOK_KEY], ids=["protocol", "paper_compat"])
def test_no_two_live_accuracy_rows_share_a_setting_and_seed(key):
    seen: dict[tuple, int] = {}
    for line, row in enumerate(ACCURACY, start=2):
        if records.superseded(row):
            continue
        k = tuple(row[c] for c in key)
        assert k not in seen, f"accuracy.csv lines {seen[k]} and {line} are live and share {dict(zip(key, k))}"
        seen[k] = line


def test_every_accuracy_row_says_what_was_scored_and_why_it_no_longer_counts():
    for line, row in enumerate(ACCURACY, start=2):
        assert row["protocol"] in records.PROTOCOLS, f"line {line}: protocol {row['protocol']!r}"
        assert (row["paper_compat"] == "true") == row["protocol"].endswith("drop-last"), f"line {line}"
        assert row["superseded"] in ("true", "false"), f"line {line}"
        assert row["epochs"] == "" or int(row["epochs"]) >= 0
        if row["epochs"] and row["epochs_run"] and row["protocol"].startswith("every-window"):
            assert int(row["epochs"]) <= int(row["epochs_run"]), f"line {line}: the best epoch after the last one"
        if records.superseded(row) or row["epochs"] == "":
            assert row["notes"], f"line {line} is superseded or lacks its epochs without a note saying why"
        assert row["train_command"], f"line {line} has no train_command"
        if "train=false" in shlex.split(row["command"]):
            assert row["train_command"] != row["command"], f"line {line} tested a checkpoint: its training is elsewhere"


def _model_class(row: dict) -> str:
    return row["model"].split("[", 1)[0]


def _train_argv(command: str, line: int) -> list[str]:
    env, argv = records.parse_command(command)
    assert not env and argv[:2] == ["python", "train.py"], f"line {line}: not a train.py command: {command}"
    return argv[2:]


@pytest.mark.parametrize("column", ["command", "train_command"])
def test_every_accuracy_command_composes_to_the_row_it_recorded(column):
    """Each `python train.py …` composes (conf/ as it is now); a live row's composes to the row's
    model, data, shapes, seed, precision and paper_compat switch. A superseded row's command only
    has to compose: a model file that changed since (a look-back re-chosen) is a reason rows are
    superseded, and its note says so."""
    composed: dict[str, object] = {}
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):  # once: compose_train reuses it
        for line, row in enumerate(ACCURACY, start=2):
            if row[column] not in composed:
                composed[row[column]] = compose_train(_train_argv(row[column], line))
    for line, row in enumerate(ACCURACY, start=2):
        command = row[column]
        cfg = composed[command]
        if records.superseded(row):
            assert row["notes"], f"line {line}"
            continue
        got = (cfg.model._target_.rsplit(".", 1)[-1].lower(), cfg.data.name, cfg.data.features, cfg.data.seq_len,
               cfg.data.pred_len, str(cfg.seed))
        want = (_model_class(row), row["dataset"], row["features"], int(row["seq_len"]), int(row["pred_len"]), row["seed"])
        assert got == want, f"line {line}: {column} composes to {got}, the row says {want}"
        if column == "command":
            assert str(cfg.trainer.get("precision") or "32-true") == row["precision"], f"line {line}"
            assert str(bool(cfg.paper_compat)).lower() == row["paper_compat"], f"line {line}"


def _compose_benchmark(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("benchmark", overrides=overrides)


@pytest.mark.parametrize("line", range(2, len(SPEED) + 2))
def test_every_speed_command_runs_a_script_that_exists_or_says_it_is_history(line):
    """A `scripts/benchmark.py` command composes, and its cells are the row's model and data; any
    other command names a script of the repository, or the row is superseded with a note naming
    the deleted script; train.py overrides after `--` compose either way."""
    row = SPEED[line - 2]
    env, argv = records.parse_command(row["command"])
    program = argv[1] if argv[0] in ("python", "bash") else argv[0]
    cut = argv.index("--") if "--" in argv else len(argv)
    own, train = argv[2:cut], argv[cut + 1:]
    if program == "scripts/benchmark.py":
        cfg = _compose_benchmark(own)
        cells = [(str(m), str(d), int(h)) for m in cfg.models for d in cfg.datasets for h in cfg.horizons]
        assert cells == [(row["model"], row["dataset"], int(row["pred_len"]))] or \
            (row["model"], row["dataset"]) in {(m, d) for m, d, _ in cells}, f"speed.csv line {line}"
        for model, dataset, horizon in cells:
            compose_train([*cell_overrides(model, dataset, horizon, CONF), *train])
        return
    if (REPO / program).exists():
        assert records.superseded(row) and "bench_speed.py" in row["notes"], \
            f"speed.csv line {line}: {program} does not write speed rows today; the row must say what measured it"
    else:
        assert records.superseded(row) and f"{program} was deleted" in row["notes"], f"speed.csv line {line}"
        cfg = compose_train(train)
        assert (cfg.model._target_.rsplit(".", 1)[-1].lower(), cfg.data.name) == (row["model"], row["dataset"])


# ------------------------------------------------------------------ summaries
def _row(seed, mse, protocol="every-window", superseded="false", model="dlinear"):
    return {"model": model, "dataset": "etth1", "features": "M", "seq_len": "96", "pred_len": "96", "mse": f"{mse:.4f}",
            "mae": "0.4000", "paper_mse": "0.386", "paper_mae": "0.400",
            "paper_compat": str(protocol != "every-window").lower(), "protocol": protocol, "precision": "32-true",
            "epochs": "3", "epochs_run": "6", "seed": str(seed), "superseded": superseded,
            "notes": "repeat" if superseded == "true" else "", "command": f"python train.py seed={seed}",
            "train_command": f"python train.py seed={seed}", "machine": "m", "date": "2026-12-02"}


def test_summaries_count_live_rows_once_per_seed(tmp_path):
    rows = [_row(1, 0.30), _row(2, 0.40), _row(2, 0.90, superseded="true"), _row(1, 0.10, protocol="drop-last"),
            _row(1, 0.20, protocol="last-epoch, drop-last")]
    records.write_csv(tmp_path / "accuracy.csv", records.ACCURACY_COLUMNS, rows)
    readme = records.render_readme(tmp_path).read_text()
    # the superseded 0.90 would make the every-window mean 0.5333 and three runs
    assert "| M | 96 | 96 | every-window | 32-true | 2 | 0.3500 ± 0.0707 |" in readme
    assert "| dlinear | etth1 | M | 96 | 96 | 2 | 0.3500 |" in readme  # the overview: every-window only
    assert "| M | 96 | 96 | drop-last | 32-true | 1 | 0.1000 |" in readme
    assert "| M | 96 | 96 | last-epoch, drop-last | 32-true | 1 | 0.2000 |" in readme
    assert readme.count("**yes**") == 1  # and the superseded row is still listed, marked


def test_a_second_live_row_of_one_seed_is_refused_not_averaged(tmp_path):
    records.write_csv(tmp_path / "accuracy.csv", records.ACCURACY_COLUMNS, [_row(1, 0.30), _row(1, 0.32)])
    assert records.duplicates(records.read_csv(tmp_path / "accuracy.csv")) == [(0, 1)]
    with pytest.raises(ConfigError, match="two live rows of one setting and seed"):
        records.render_readme(tmp_path)


def test_protocol_names():
    assert records.protocol(drop_last=False, last_epoch=False) == "every-window"
    assert records.protocol(drop_last=True, last_epoch=False) == "drop-last"
    assert records.protocol(drop_last=True, last_epoch=True) == "last-epoch, drop-last"
    assert set(records.PROTOCOLS) == {records.protocol(d, e) for d in (False, True) for e in (False, True)}


# ------------------------------------------------------------------ the recorder
SMALL = ["trainer.max_epochs=1", "logger=none", "data.seq_len=48", "data.pred_len=24"]


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists")
def test_a_repeated_seed_supersedes_the_earlier_row_and_a_variant_does_not(make_config, tmp_path):
    record = tmp_path / "bench" / "accuracy.csv"
    for _ in range(2):  # a re-run (after a code change): same setting and seed
        run(make_config(*SMALL, "seed=7", f"record={record}"))
    run(make_config(*SMALL, "seed=7", "module.optimizer.lr=1e-3", f"record={record}"))  # not the experiment's rate
    rows = pd.read_csv(record, dtype=str, keep_default_na=False)
    assert rows["superseded"].tolist() == ["true", "false", "false"]
    assert "the later run is kept" in rows["notes"].iloc[0] and rows["notes"].iloc[1] == ""
    assert rows["model"].tolist() == ["dlinear[trainer.max_epochs=1]"] * 2 + \
        ["dlinear[trainer.max_epochs=1,module.optimizer.lr=1e-3]"]
    assert (rows["train_command"] == rows["command"] + f" hydra.run.dir={tmp_path / 'run'}").all()
    assert rows["protocol"].tolist() == ["every-window"] * 3 and rows["epochs"].tolist() == ["1", "1", "1"]
    # testing those weights without the option on its own command line is still the variant
    trained = rows["train_command"].iloc[2]
    run(make_config(*SMALL, "seed=7", "train=false", f"ckpt_path={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}",
                    "paper_compat=true", f"record={record}", f"+train_command='{trained}'"))
    tested = pd.read_csv(record, dtype=str, keep_default_na=False).iloc[3]
    assert tested["model"] == "dlinear[trainer.max_epochs=1,module.optimizer.lr=1e-3]" and tested["superseded"] == "false"


def test_what_makes_a_run_a_variant():
    plain = ["experiment=karma_exchange_96", "seed=2022", "num_threads=1", "data_dir=../shared/data",
             "record=benchmarks/accuracy.csv", "trainer.enable_progress_bar=false", "trainer=cpu_fast", "paper_compat=true",
             "trainer.precision=bf16-mixed", "hydra.run.dir=outputs/x", "logger=none", "+tags.purpose=check",
             "model.workers=1", "data.pred_len=192", "ckpt_path=outputs/x/checkpoints/last.ckpt", "train=false"]
    assert records.variant_options(plain) == []
    assert records.variant_options([*plain, "model.decomposition=atcd", "module.optimizer.lr=1e-4", "schedule=none",
                                    "trainer.max_epochs=3", "callbacks.early_stopping.patience=10", "init_from=w.ckpt",
                                    "data.batch_size=8", "+model.extra=1"]) == \
        ["decomposition=atcd", "module.optimizer.lr=1e-4", "schedule=none", "trainer.max_epochs=3",
         "callbacks.early_stopping.patience=10", "init_from=w.ckpt", "data.batch_size=8", "extra=1"]
    # a tested checkpoint carries its training's options; its own add only other keys
    trained = "python train.py experiment=dpad_etth2_720 model.dropout=0.6 seed=2021 hydra.run.dir=outputs/d"
    assert records.run_variant(trained, ["train=false", "model.dropout=0.5", "schedule=none"]) == "dropout=0.6,schedule=none"
    assert records.run_variant("", ["seed=1"]) == ""


def test_every_accuracy_row_names_the_variant_its_commands_ran():
    """A row whose training or test changed what the experiment measures (a network option, the
    learning rate, the epochs, …) says so in its model column, so it is never summarised as the
    paper setting."""
    for line, row in enumerate(ACCURACY, start=2):
        variant = records.run_variant(row["train_command"], records.parse_command(row["command"])[1][2:])
        want = f"{_model_class(row)}[{variant}]" if variant else _model_class(row)
        assert row["model"] == want, f"line {line}: its commands make it {want}"


def test_testing_a_checkpoint_without_its_training_command_stops_before_testing(make_config, tmp_path):
    run(make_config(*SMALL))
    ckpt = tmp_path / "elsewhere" / "last.ckpt"  # moved out of the run folder: no .hydra beside it
    ckpt.parent.mkdir()
    (tmp_path / "run" / "checkpoints" / "last.ckpt").rename(ckpt)
    record = tmp_path / "bench" / "accuracy.csv"
    with pytest.raises(ConfigError, match=r"needs the command that trained ckpt_path=.*\+train_command"):
        run(make_config(*SMALL, "train=false", f"ckpt_path={ckpt}", f"record={record}"))
    assert not record.exists()
    given = "python train.py trainer.max_epochs=1 data.seq_len=48 data.pred_len=24"
    run(make_config(*SMALL, "train=false", f"ckpt_path={ckpt}", f"record={record}", f"+train_command='{given}'"))
    row = pd.read_csv(record, dtype=str, keep_default_na=False).iloc[0]
    assert row["train_command"] == given
    # last.ckpt: the last epoch's weights, every window (no paper_compat); its own epoch count
    assert row["protocol"] == "last-epoch, every-window" and row["epochs"] == "1" and row["epochs_run"] == "1"


def test_train_py_records_the_training_command_of_a_tested_checkpoint(tmp_path):
    """Through train.py itself: Hydra leaves `.hydra/overrides.yaml` beside the checkpoints, and a
    later `train=false ckpt_path=…` row names that run as its train_command; with paper_compat on
    D-PAD-style `paper_quirks.test_last_epoch`, testing last.ckpt is the last-epoch protocol."""
    env = {**os.environ, "FORECAST_DATA_DIR": str(REPO / "data"), "OMP_NUM_THREADS": "1"}
    base = [sys.executable, str(REPO / "train.py"), "trainer.max_epochs=1", "logger=none", "num_threads=1",
            "trainer.enable_progress_bar=false", "data.seq_len=48", "data.pred_len=24"]
    trained = subprocess.run([*base, "seed=3", "hydra.run.dir=out"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=600)
    assert trained.returncode == 0, trained.stderr[-3000:]
    tested = subprocess.run([*base, "seed=3", "train=false", "ckpt_path=out/checkpoints/last.ckpt", "paper_compat=true",
                             "record=bench/accuracy.csv", "hydra.run.dir=test"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert tested.returncode == 0, tested.stderr[-3000:]
    row = pd.read_csv(tmp_path / "bench" / "accuracy.csv", dtype=str, keep_default_na=False).iloc[0]
    assert shlex.split(row["train_command"]) == ["python", "train.py", "trainer.max_epochs=1", "logger=none", "num_threads=1",
                                                 "trainer.enable_progress_bar=false", "data.seq_len=48",
                                                 "data.pred_len=24", "seed=3", "hydra.run.dir=out"]
    assert row["protocol"] == "last-epoch, drop-last" and row["paper_compat"] == "true"
    assert Path(tmp_path / "bench" / "README.md").exists()
