"""The reference trained at our settings (``scripts/benchmark.py mode=peer_accuracy``): the seeded
runner, the run.py arguments read from our experiment files, the settings TSLib cannot express,
the row per run and the README section. The reference itself is faked; nothing here trains."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from forecast import records
from forecast.config import compose_train
from forecast.errors import ConfigError
from forecast.pipelines import peer_accuracy
from forecast.pipelines.benchmark import run as benchmark_run
from tests.helpers import REPO, compose

RUNNER = REPO / "scripts" / "peers" / "tslib_train.py"
DPAD_RUNNER = RUNNER.parent / "dpad_train.py"
sys.path.insert(0, str(RUNNER.parent))
import dpad_train  # noqa: E402  (scripts of scripts/peers, not a package)
import tslib_train  # noqa: E402


def _data(folder: Path) -> Path:
    """A data folder with the two files the cells below read: exchange (8 series) and ILI (7)."""
    for sub, name, series in (("exchange_rate", "exchange_rate.csv", 8), ("illness", "national_illness.csv", 7),
                              ("ETT-small", "ETTh1.csv", 7)):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        header = ",".join(["date", *(f"s{i}" for i in range(series - 1)), "OT"])
        (folder / sub / name).write_text(f"{header}\n2020-01-01,{','.join(['1'] * series)}\n")
    return folder


# TSLib 4e938a1's Exp_Long_Term_Forecast.train in miniature (its loop, Adam, halving after each epoch,
# early stopping on a shuffled validation set) on a small network with dropout and a shuffled loader,
# so that every generator the resumed epochs depend on is drawn; FAKE_CRASH_AT=<k> ends the process
# as a kill would, when epoch k has begun
EXPERIMENT = """import os
import numpy as np
import torch
from torch import nn, optim

VALUE = 7


class EarlyStopping:
    def __init__(self, patience):
        self.patience, self.counter, self.best_score, self.early_stop, self.val_loss_min = patience, 0, None, False, np.inf

    def __call__(self, val_loss, model, path):
        if self.best_score is None or -val_loss > self.best_score:
            self.best_score, self.val_loss_min, self.counter = -val_loss, val_loss, 0
            torch.save(model.state_dict(), path + "/checkpoint.pth")
        else:
            self.counter += 1
            self.early_stop = self.counter >= self.patience


def adjust_learning_rate(optimizer, epoch, args):
    for group in optimizer.param_groups:
        group["lr"] = args.learning_rate * 0.5 ** epoch


class Exp_Long_Term_Forecast:
    def __init__(self, args):
        self.args = args
        self.model = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.3), nn.Linear(16, 1))

    def loader(self, n):
        x = torch.randn(n, 8, generator=torch.Generator().manual_seed(n))
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)),
                                           batch_size=8, shuffle=True)

    def vali(self, loader):
        self.model.eval()
        with torch.no_grad():
            loss = float(np.mean([float(((self.model(x) - y) ** 2).mean()) for x, y in loader]))
        self.model.train()
        return loss + float(np.random.rand()) * 1e-3 + __import__("random").random() * 1e-3

    def train(self, setting):
        path = os.path.join(self.args.checkpoints, setting)
        os.makedirs(path, exist_ok=True)
        train_loader, vali_loader = self.loader(64), self.loader(32)
        early_stopping = EarlyStopping(self.args.patience)
        model_optim = optim.Adam(self.model.parameters(), lr=self.args.learning_rate)
        for epoch in range(self.args.train_epochs):
            if int(os.environ.get("FAKE_CRASH_AT", 0)) == epoch + 1:
                os._exit(9)
            for x, y in train_loader:
                model_optim.zero_grad()
                loss = ((self.model(x) - y) ** 2).mean()
                loss.backward()
                model_optim.step()
            vali_loss = self.vali(vali_loader)
            print(f"Epoch: {epoch + 1} cost time: 0.1")
            print(f"Epoch: {epoch + 1}, Vali Loss: {vali_loss!r}")
            early_stopping(vali_loss, self.model, path)
            if early_stopping.early_stop:
                print("Early stopping")
                break

            adjust_learning_rate(model_optim, epoch + 1, self.args)

        self.model.load_state_dict(torch.load(path + "/checkpoint.pth"))
        weights = torch.cat([p.detach().flatten() for p in self.model.parameters()])
        print(f"mse:{float(weights.square().sum())!r}, mae:{float(weights.abs().sum())!r}")
"""
RUN = """import argparse, random, sys
import numpy as np
import torch
from exp.exp_long_term_forecasting import Exp_Long_Term_Forecast

if __name__ == '__main__':
    fix_seed = 2021
    random.seed(fix_seed)
    torch.manual_seed(fix_seed)
    np.random.seed(fix_seed)
    parser = argparse.ArgumentParser()
    for flag, kind in (("--model_id", str), ("--train_epochs", int), ("--patience", int), ("--learning_rate", float),
                       ("--checkpoints", str)):
        parser.add_argument(flag, type=kind)
    args = parser.parse_args()
    Exp_Long_Term_Forecast(args).train(args.model_id)
"""


def _training_checkout(folder: Path) -> Path:
    """A checkout whose run.py trains ``EXPERIMENT`` as TSLib's trains its networks."""
    (folder / "exp").mkdir(parents=True)
    (folder / "exp" / "__init__.py").write_text("")
    (folder / "exp" / "exp_long_term_forecasting.py").write_text(EXPERIMENT)
    (folder / "run.py").write_text(RUN)
    return folder


def _fake_checkout(folder: Path, seed_lines: int = 1) -> Path:
    (folder / "exp").mkdir(parents=True, exist_ok=True)
    (folder / "exp" / "__init__.py").write_text("")
    (folder / "exp" / "exp_long_term_forecasting.py").write_text(EXPERIMENT)
    seeds = "    fix_seed = 2021\n" * seed_lines
    (folder / "run.py").write_text(
        "import sys\nif __name__ == '__main__':\n" + seeds
        + "    from exp.exp_long_term_forecasting import VALUE\n"
        + "    print('seed', fix_seed, 'args', sys.argv[1:], 'value', VALUE)\n")
    return folder


def _args(words: list[str]) -> dict[str, str]:
    flags = [w for w in words if w.startswith("--")]
    assert len(flags) == len(set(flags)), f"a flag given twice: {flags}"
    return {w: (words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("--") else "")
            for i, w in enumerate(words) if w.startswith("--")}


def test_the_runner_runs_the_checkouts_own_script_at_the_seed_given(tmp_path):
    checkout = _fake_checkout(tmp_path / "tslib")
    before = (checkout / "run.py").read_text()
    proc = subprocess.run([sys.executable, str(RUNNER), str(checkout), "2024", "--model", "DLinear"], cwd=checkout,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "seed 2024 args ['--model', 'DLinear'] value 7"
    assert (checkout / "run.py").read_text() == before  # changed in memory only


@pytest.mark.parametrize("lines", [0, 2])
def test_a_script_that_does_not_seed_in_one_line_is_refused(lines):
    source = "if __name__ == '__main__':\n" + "    fix_seed = 2021\n" * lines
    with pytest.raises(SystemExit, match=f"found {lines}"):
        tslib_train.seeded_source(source, 7)


def test_one_seed_line_is_replaced_and_nothing_else():
    source = "x = 1\n    fix_seed = 2021\nrandom.seed(fix_seed)\n"
    assert tslib_train.seeded_source(source, 2023) == "x = 1\n    fix_seed = 2023\nrandom.seed(fix_seed)\n"


def _train(checkout: Path, seed: int, folder: str, crash_at: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "FAKE_CRASH_AT": str(crash_at), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(RUNNER), str(checkout), str(seed), "--model_id", "cell", "--train_epochs",
                           "8", "--patience", "3", "--learning_rate", "0.05", "--checkpoints", folder],
                          cwd=checkout, capture_output=True, text=True, env=env)


def test_a_run_stopped_and_started_again_ends_as_the_uninterrupted_run_to_the_last_digit(tmp_path):
    checkout = _training_checkout(tmp_path / "tslib")
    whole = _train(checkout, 2021, "whole")
    assert whole.returncode == 0, whole.stderr
    state = checkout / "split" / "cell" / "resume.pth"
    for crash_at in (2, 4):  # killed in epoch 2, started again and killed in epoch 4, started again
        stopped = _train(checkout, 2021, "split", crash_at=crash_at)
        assert stopped.returncode == 9 and "mse:" not in stopped.stdout and state.exists()
    resumed = _train(checkout, 2021, "split")
    assert resumed.returncode == 0, resumed.stderr
    first, rest = resumed.stdout.split("\n", 1)
    assert first.startswith(f"Resuming after epoch 3 of 8 from {os.path.join('split', 'cell', 'resume.pth')} (")
    # epochs 4 and 5 (their validation losses draw on the network, Adam and every generator), the
    # early stopping after the 5th that needs the counter and best loss of epochs 1-3, and the best
    # weights (epoch 2's, printed as mse and mae) are the uninterrupted run's
    assert "Epoch: 5, " in rest and "Early stopping" in rest and "Epoch: 6" not in whole.stdout
    assert rest == whole.stdout[whole.stdout.index("Epoch: 4 cost time"):]
    assert not state.exists()  # the run ended: its state went
    assert (checkout / "exp" / "exp_long_term_forecasting.py").read_text() == EXPERIMENT  # changed in memory only


def test_another_runs_state_is_refused_and_kept(tmp_path):
    checkout = _training_checkout(tmp_path / "tslib")
    assert _train(checkout, 2021, "ck", crash_at=2).returncode == 9
    state = checkout / "ck" / "cell" / "resume.pth"
    kept = state.read_bytes()
    other = _train(checkout, 2022, "ck")
    assert other.returncode != 0 and "mse:" not in other.stdout
    assert "holds another run's state (seed 2021" in other.stderr and "this run is seed 2022" in other.stderr
    assert "delete the file" in other.stderr and state.read_bytes() == kept


def test_a_training_loop_the_runner_does_not_know_is_refused():
    with pytest.raises(SystemExit, match="found 0 and 1"):
        tslib_train.resumable_source("for epoch in range(10):\n    adjust_learning_rate(model_optim, epoch + 1, self.args)\n")


def _cfg(*overrides: str):
    return compose("benchmark", ["mode=peer_accuracy", *overrides])


@pytest.mark.parametrize("experiment, expected", [
    ("dlinear_exchange_96", {"--model": "DLinear", "--data": "custom", "--data_path": "exchange_rate.csv",
                             "--enc_in": "8", "--c_out": "8", "--seq_len": "336", "--pred_len": "96",
                             "--batch_size": "8", "--learning_rate": "0.0005", "--moving_avg": "25"}),
    ("autoformer_ili_48", {"--model": "Autoformer", "--data": "custom", "--seq_len": "36", "--label_len": "18",
                           "--pred_len": "48", "--dropout": "0.05", "--factor": "3", "--d_layers": "1",
                           "--learning_rate": "0.0001", "--enc_in": "7"}),
    ("etsformer_etth1_720", {"--model": "ETSformer", "--data": "ETTh1", "--top_k": "5", "--e_layers": "2",
                             "--d_layers": "2", "--activation": "gelu", "--dropout": "0.1", "--pred_len": "720"}),
])
def test_the_reference_gets_the_settings_of_our_experiment_file(tmp_path, experiment, expected):
    data = _data(tmp_path / "data")
    train = compose_train([f"experiment={experiment}", f"data_dir={data}"])
    words = peer_accuracy.training_arguments(_cfg(), experiment.split("_")[0], train, "tag")
    value = _args(words)
    assert {k: value[k] for k in expected} == expected
    assert (value["--train_epochs"], value["--patience"], value["--lradj"], value["--features"]) == ("10", "3", "type1", "M")
    assert value["--root_path"] == f"{Path(train.data.path).resolve().parent}/" and "--no_use_gpu" in value
    shown = _args(peer_accuracy.training_arguments(_cfg(), experiment.split("_")[0], train, "tag", shown=True))
    assert shown["--root_path"] == f"{Path(str(train.data.path)).parent}/"


def test_a_training_tslib_cannot_run_is_refused_with_the_fix(tmp_path):
    data = _data(tmp_path / "data")
    ets = compose_train(["experiment=etsformer_ettm2_96", f"data_dir={data}"])  # warm-up schedule, clipping
    with pytest.raises(ConfigError, match="schedule=type1.*gradient_clip_val=1.0.*Fix"):
        peer_accuracy.training_arguments(_cfg(), "etsformer", ets, "tag")
    missing = compose_train(["experiment=dlinear_exchange_96", f"data_dir={tmp_path / 'nowhere'}"])
    with pytest.raises(ConfigError, match="does not exist. Fix: .*data_dir"):
        peer_accuracy.training_arguments(_cfg(), "dlinear", missing, "tag")
    with pytest.raises(ConfigError, match="peer.revision is a reference of mode=peer only. Fix: peer.tslib"):
        peer_accuracy.run(_cfg("peer.revision=HEAD"), REPO, [("dlinear", "exchange", 96)], tmp_path / "out.csv")
    with pytest.raises(ConfigError, match=r"models=\[dpad\] only, not of \['dlinear'\]"):
        peer_accuracy.run(_cfg(f"peer.dpad={_fake_dpad(tmp_path / 'dpad')}"), REPO, [("dlinear", "exchange", 96)],
                          tmp_path / "out.csv")


def _fake_dpad(folder: Path) -> Path:
    """A D-PAD checkout whose singlecard.py seeds, parses and imports as the official one does, and
    prints what it was given."""
    (folder / "experiments").mkdir(parents=True, exist_ok=True)
    (folder / "experiments" / "__init__.py").write_text("")
    (folder / "experiments" / "exp_ETT.py").write_text("VALUE = 5\n")
    (folder / "singlecard.py").write_text(
        "from experiments.exp_ETT import VALUE\nimport argparse, sys\nimport torch\n"
        "parser = argparse.ArgumentParser()\nparser.add_argument('--rank', type=int, default=0)\n"
        "parser.add_argument('--data', type=str)\nargs = parser.parse_args()\n\n"
        "if __name__ == '__main__':\n    torch.manual_seed(79)  # reproducible\n    torch.cuda.manual_seed_all(79)\n"
        "    print('seed', torch.initial_seed(), 'rank', args.rank, 'data', args.data, 'value', VALUE)\n")
    return folder


def test_the_dpad_runner_runs_the_official_script_at_the_seed_on_the_cpu(tmp_path):
    checkout = _fake_dpad(tmp_path / "dpad")
    before = (checkout / "singlecard.py").read_text()
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run([sys.executable, str(DPAD_RUNNER), str(checkout), "2024", "--data", "ETTh2"], cwd=work,
                          capture_output=True, text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "seed 2024 rank cpu data ETTh2 value 5"  # no CUDA here: the rank is the CPU
    assert (checkout / "singlecard.py").read_text() == before and not list(work.iterdir())


def test_the_dpad_seed_lines_and_rank_are_replaced_and_nothing_else():
    source = ("args = parser.parse_args()\nx = 79\nif 1:\n    torch.manual_seed(79)  # reproducible\n"
              "    torch.cuda.manual_seed_all(79)\n")
    assert dpad_train.seeded_source(source, 7, cpu=False) == source.replace("(79)", "(7)")
    assert dpad_train.seeded_source(source, 7, cpu=True) == source.replace("(79)", "(7)").replace(
        "parse_args()\n", "parse_args()\nargs.rank = \"cpu\"\n")
    with pytest.raises(SystemExit, match="found 1 seed lines and 1 parse lines. Fix"):
        dpad_train.seeded_source(source.replace("    torch.cuda.manual_seed_all(79)\n", ""), 7, cpu=True)


def test_the_official_dpad_code_gets_the_settings_of_our_experiment_file(tmp_path):
    data = _data(tmp_path / "data")
    train = compose_train(["experiment=dpad_etth1_336", f"data_dir={data}"])
    value = _args(peer_accuracy.dpad_training_arguments(train, "etth1"))
    assert {k: value[k] for k in ("--model", "--data", "--data_path", "--seq_len", "--pred_len", "--batch_size",
                                  "--lr", "--loss", "--train_epochs", "--patience", "--lradj", "--itr")} == {
        "--model": "DPAD_SE", "--data": "ETTh1", "--data_path": "ETTh1.csv", "--seq_len": str(train.data.seq_len),
        "--pred_len": "336", "--batch_size": str(train.data.batch_size), "--lr": f"{float(train.module.optimizer.lr):g}",
        "--loss": "mae", "--train_epochs": str(train.trainer.max_epochs),
        "--patience": str(train.callbacks.early_stopping.patience), "--lradj": "1", "--itr": "0"}
    assert value["--root_path"] == f"{Path(train.data.path).resolve().parent}/"
    assert value["--checkpoints"] == "checkpoints/"  # relative: under the run's scratch folder
    shown = _args(peer_accuracy.dpad_training_arguments(train, "etth1", shown=True))
    assert shown["--root_path"] == f"{Path(str(train.data.path)).parent}/"
    other = compose_train(["experiment=dpad_etth1_336", f"data_dir={data}", "schedule=type1",
                           "callbacks.early_stopping.min_delta=0"])
    with pytest.raises(ConfigError, match="schedule=decay95.*min_delta=0.*Fix"):
        peer_accuracy.dpad_training_arguments(other, "etth1")


OUTPUT = """Use CPU
\titers: 100, epoch: 1 | loss: 0.1500000
\tspeed: 0.0100s/iter; left time: 10.0000s
Epoch: 1 cost time: 1.6
Epoch: 1, Steps: 610 | Train Loss: 0.14 Vali Loss: 0.17 Test Loss: 0.08
Epoch: 2 cost time: 1.5
Epoch: 2, Steps: 610 | Train Loss: 0.12 Vali Loss: 0.18 Test Loss: 0.09
Early stopping
>>>>>>>testing : long_term_forecast_tag<<<<
test shape: (1422, 96, 8) (1422, 96, 8)
mse:{mse}, mae:0.2077, dtw:Not calculated
"""


def test_the_printed_test_error_and_epochs_are_read():
    assert peer_accuracy.parse_result(OUTPUT.format(mse="0.0846")) == {"mse": 0.0846, "mae": 0.2077, "epochs_run": 2,
                                                                       "resumed_after": 0, "resumed_seconds": 0}
    # a run resumed after its 4th epoch counts the epochs and seconds before it
    resumed = "Use CPU\nResuming after epoch 4 of 10 from ./checkpoints/x/resume.pth (7200 s before)\n" + \
        OUTPUT.replace("Epoch: 1", "Epoch: 5").replace("Epoch: 2", "Epoch: 6").format(mse="0.5")
    assert peer_accuracy.parse_result(resumed) == {"mse": 0.5, "mae": 0.2077, "epochs_run": 6, "resumed_after": 4,
                                                  "resumed_seconds": 7200}
    stopped_at_once = "Resuming after epoch 4 of 4 from ./r.pth (60 s before)\nmse:0.5, mae:0.25\n"
    assert peer_accuracy.parse_result(stopped_at_once)["epochs_run"] == 4
    with pytest.raises(RuntimeError, match="printed no test error"):
        peer_accuracy.parse_result("Traceback ...\nValueError: boom\n")


_POPEN = subprocess.Popen


class _Process:
    """A ``subprocess.Popen`` faked for the reference's ``runner`` script (a context: itself); every
    other program (git, the ``uname`` that ``platform.processor()`` runs, …) runs as it is."""
    runner = ""

    def __new__(cls, command, *args, **kwargs):
        if cls.runner and len(command) > 1 and str(command[1]).endswith(cls.runner):
            return super().__new__(cls)
        return _POPEN(command, *args, **kwargs)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


RESUMED = "Resuming after epoch 4 of 10 from ./checkpoints/tag/resume.pth (7200 s before)\n" + \
    OUTPUT.replace("Epoch: 1", "Epoch: 5").replace("Epoch: 2", "Epoch: 6")


def _fake_tslib(monkeypatch, resumed: str = "") -> list[tuple]:
    """TSLib's runner faked: each call's (script, folder, seed, threads, malloc thresholds) is
    recorded; seed 2023 fails, the others print ``OUTPUT`` with MSE 0.1<last digit of the seed>
    (seed ``resumed``: ``RESUMED``, a run resumed after its 4th epoch)."""
    calls = []

    class FakePopen(_Process):
        runner = "tslib_train.py"

        def __init__(self, command, cwd, env, stdout, stderr, text):
            seed = command[3]
            calls.append((Path(command[1]).name, Path(cwd), seed, env["OMP_NUM_THREADS"],
                          env.get("MALLOC_MMAP_THRESHOLD_"), env.get("MALLOC_TRIM_THRESHOLD_")))
            self.returncode = 1 if seed == "2023" else 0
            output = RESUMED if seed == resumed else OUTPUT
            self.stdout = iter(output.format(mse="0.1" + seed[-1]).splitlines(keepends=True)) if not self.returncode \
                else iter(["Traceback\n"])

    monkeypatch.setattr(peer_accuracy.subprocess, "Popen", FakePopen)
    return calls


def test_one_row_per_seed_and_a_failed_run_writes_none(tmp_path, monkeypatch, capsys):
    checkout = _fake_checkout(tmp_path / "tslib")
    data = _data(tmp_path / "data")
    calls = _fake_tslib(monkeypatch, resumed="2022")
    out = tmp_path / "bench" / "reference_accuracy.csv"
    cfg = _cfg("models=[dlinear]", "datasets=[exchange]", "horizons=[96]", "seeds=[2021,2022,2023]", "threads=2",
               f"peer.tslib={checkout}", f"reference_accuracy_csv={out}", "render=false",
               f"overrides=['data_dir={data}','malloc_keep_mb=64']")
    assert benchmark_run(cfg, REPO / "scripts" / "benchmark.py", REPO) == 1  # seed 2023 failed
    shown = capsys.readouterr().out  # the reference's progress is echoed as it comes, its other chatter is not
    assert "  speed: 0.0100s/iter; left time: 10.0000s" in shown and "Use CPU" not in shown
    assert [c[2] for c in calls] == ["2021", "2022", "2023"]
    assert all(name == "tslib_train.py" and cwd == checkout and threads == "2" for name, cwd, _, threads, *_ in calls)
    # the reference process gets the malloc thresholds our training sets itself: blocks below 64 MiB
    # from the heap, freed ones kept up to 128 MiB
    assert {c[4:] for c in calls} == {(str(64 * 2**20), str(128 * 2**20))}
    assert f"reference environment: MALLOC_MMAP_THRESHOLD_={64 * 2**20}" in shown
    rows = records.read_csv(out)
    assert [(r["seed"], r["mse"], r["epochs_run"], r["reference"]) for r in rows] == [
        ("2021", "0.1100", "2", "TSLib 4e938a1 DLinear"), ("2022", "0.1200", "6", "TSLib 4e938a1 DLinear")]
    # seed 2022 resumed after its 4th epoch: the row says so and counts the 2 hours before
    assert [r["notes"] for r in rows] == ["", "resumed after epoch 4"]
    assert int(rows[0]["seconds"]) < 60 and 7200 <= int(rows[1]["seconds"]) < 7260
    assert "  Resuming after epoch 4 of 10" in shown
    assert rows[0]["paper_mse"] == "0.081" and rows[0]["threads"] == "2"
    assert '"seeds=[2021]"' in rows[0]["command"] and "mode=peer_accuracy" in rows[0]["command"]
    assert f"--root_path {data}/exchange_rate/" in rows[0]["arguments"]


@pytest.mark.parametrize("same_malloc, keep_mb", [("false", 64), ("true", 0)])
def test_the_reference_runs_with_malloc_as_it_ships_when_asked_or_when_ours_keeps_none(tmp_path, monkeypatch,
                                                                                       same_malloc, keep_mb):
    checkout = _fake_checkout(tmp_path / "tslib")
    data = _data(tmp_path / "data")
    calls = _fake_tslib(monkeypatch)
    out = tmp_path / "reference_accuracy.csv"
    cfg = _cfg("models=[dlinear]", "datasets=[exchange]", "horizons=[96]", "seeds=[2021]", f"peer.tslib={checkout}",
               f"reference_accuracy_csv={out}", "render=false", f"peer.same_malloc={same_malloc}",
               f"overrides=['data_dir={data}','malloc_keep_mb={keep_mb}']")
    assert benchmark_run(cfg, REPO / "scripts" / "benchmark.py", REPO) == 0
    assert [c[4:] for c in calls] == [(None, None)] and len(records.read_csv(out)) == 1


DPAD_OUTPUT = """train 8209
Epoch: 1 cost time: 10.5
Epoch: 1, Steps: 16 | Train Loss: 0.5000000 valid Loss: 0.6000000 Test Loss: 0.4000000
Epoch: 2 cost time: 10.1
Epoch: 2, Steps: 16 | Train Loss: 0.4000000 valid Loss: 0.5500000 Test Loss: 0.3900000
|  Normed  | mse:0.3999 | mae:0.4200 | rmse:0.6300 | mape:1.0000 | mspe:9.0000 | corr:0.5000 |
Final mean normed mse:{mse},mae:0.4200
"""


def test_the_official_dpad_code_runs_in_a_scratch_folder_and_its_rows_carry_its_protocol(tmp_path, monkeypatch):
    checkout = _fake_dpad(tmp_path / "dpad")
    data = _data(tmp_path / "data")
    calls = []

    class FakePopen(_Process):
        runner = "dpad_train.py"

        def __init__(self, command, cwd, env, stdout, stderr, text):
            calls.append((Path(command[1]).name, Path(cwd), Path(cwd).is_dir(), command[3]))
            self.returncode, self.stdout = 0, iter(DPAD_OUTPUT.format(mse="0.41" + command[3][-1]).splitlines(True))

    monkeypatch.setattr(peer_accuracy.subprocess, "Popen", FakePopen)
    out = tmp_path / "bench" / "reference_accuracy.csv"
    cfg = _cfg("models=[dpad]", "datasets=[etth1]", "horizons=[336]", "seeds=[2021,2022]", f"peer.dpad={checkout}",
               f"reference_accuracy_csv={out}", "render=false", f"overrides=['data_dir={data}']")
    assert benchmark_run(cfg, REPO / "scripts" / "benchmark.py", REPO) == 0
    assert [(name, seed, alive) for name, _, alive, seed in calls] == [("dpad_train.py", "2021", True),
                                                                         ("dpad_train.py", "2022", True)]
    folders = [cwd for _, cwd, _, _ in calls]
    assert checkout not in folders and folders[0] != folders[1] and not any(f.exists() for f in folders)
    rows = records.read_csv(out)
    assert [(r["seed"], r["mse"], r["mae"], r["epochs_run"], r["reference"], r["protocol"]) for r in rows] == [
        ("2021", "0.4110", "0.4200", "2", "D-PAD 718fc3e DPAD_SE", "last-epoch, drop-last"),
        ("2022", "0.4120", "0.4200", "2", "D-PAD 718fc3e DPAD_SE", "last-epoch, drop-last")]
    assert "--lradj 1" in rows[0]["arguments"] and f"--root_path {data}/ETT-small/" in rows[0]["arguments"]


def test_a_reference_run_at_another_setting_is_named_as_our_variant_of_it(tmp_path, monkeypatch):
    checkout = _fake_dpad(tmp_path / "dpad")
    data = _data(tmp_path / "data")

    class FakePopen(_Process):
        runner = "dpad_train.py"

        def __init__(self, command, cwd, env, stdout, stderr, text):
            self.returncode, self.stdout = 0, iter(DPAD_OUTPUT.format(mse="0.410").splitlines(True))

    monkeypatch.setattr(peer_accuracy.subprocess, "Popen", FakePopen)
    out = tmp_path / "reference_accuracy.csv"
    cfg = _cfg("models=[dpad]", "datasets=[etth1]", "horizons=[336]", "seeds=[2021]", f"peer.dpad={checkout}",
               f"reference_accuracy_csv={out}", "render=false",
               f"overrides=['data_dir={data}','model.dropout=0.6','malloc_keep_mb=64']")
    assert benchmark_run(cfg, REPO / "scripts" / "benchmark.py", REPO) == 0
    (row,) = records.read_csv(out)
    # the data folder and the malloc setting change nothing measured; the dropout does, as in our rows
    assert row["model"] == "dpad[dropout=0.6]" and "--dropout 0.6" in row["arguments"]
    assert row["paper_mse"] == "0.374"  # the published cell is the plain model's


def _accuracy(seed: int, mse: float, **extra) -> dict:
    return {"model": "dlinear", "dataset": "exchange", "features": "M", "seq_len": "336", "pred_len": "96",
            "mse": f"{mse}", "mae": "0.2", "paper_mse": "0.081", "protocol": "every-window", "precision": "32-true",
            "seed": str(seed), "superseded": "false", **extra}


def _reference(seed: int, mse: float, **extra) -> dict:
    return {"model": "dlinear", "dataset": "exchange", "features": "M", "seq_len": "336", "pred_len": "96",
            "seed": str(seed), "reference": "TSLib 4e938a1 DLinear", "protocol": "every-window", **extra,
            "mse": f"{mse}", "mae": "0.2", "paper_mse": "0.081",
            "epochs_run": "4", "seconds": "20", "threads": "1", "superseded": "false", "arguments": "--model DLinear",
            "command": "python scripts/benchmark.py mode=peer_accuracy", "machine": "cpu", "date": "2026-12-04"}


def test_the_readme_sets_the_reference_beside_our_runs_of_the_same_seeds(tmp_path):
    records.write_csv(tmp_path / "accuracy.csv", records.ACCURACY_COLUMNS, [
        _accuracy(2021, 0.08), _accuracy(2022, 0.10), _accuracy(2022, 0.50, superseded="true"),
        _accuracy(2023, 0.90, protocol="drop-last")])
    records.write_csv(tmp_path / "reference_accuracy.csv", records.REFERENCE_ACCURACY_COLUMNS,
                      [_reference(2021, 0.07), _reference(2022, 0.11)])
    text = records.render_readme(tmp_path).read_text()
    section = text.split("## The reference trained at our settings")[1]
    summary = next(line for line in section.splitlines() if line.startswith("| dlinear | exchange 336 → 96"))
    cells = [c.strip() for c in summary.strip("|").split("|")]
    # reference mean 0.09 (+11.1 %), ours over the same seeds 0.09 (the superseded 0.50 left out)
    assert cells[3:9] == ["every-window", "2021, 2022", "0.0900", "+11.1%", "0.0900", "+11.1%"]
    # a seed of the reference without a live every-window run of ours: no mean of ours is made up
    records.write_csv(tmp_path / "reference_accuracy.csv", records.REFERENCE_ACCURACY_COLUMNS,
                      [_reference(2021, 0.07), _reference(2023, 0.11)])
    section = records.render_readme(tmp_path).read_text().split("## The reference trained at our settings")[1]
    assert "| not all run |" in section
    # a reference that tests as the official D-PAD code does sits beside our runs of that protocol
    records.write_csv(tmp_path / "accuracy.csv", records.ACCURACY_COLUMNS, [
        _accuracy(2021, 0.08), _accuracy(2021, 0.06, protocol="last-epoch, drop-last"),
        _accuracy(2022, 0.10), _accuracy(2022, 0.04, protocol="last-epoch, drop-last")])
    official = {"reference": "D-PAD 718fc3e DPAD_SE", "protocol": "last-epoch, drop-last"}
    records.write_csv(tmp_path / "reference_accuracy.csv", records.REFERENCE_ACCURACY_COLUMNS,
                      [_reference(2021, 0.07), _reference(2021, 0.09, **official), _reference(2022, 0.07, **official)])
    section = records.render_readme(tmp_path).read_text().split("## The reference trained at our settings")[1]
    lines = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()
             if line.startswith("| dlinear | exchange 336 → 96")][:2]
    assert [line[2:8] for line in lines] == [
        ["TSLib 4e938a1 DLinear", "every-window", "2021", "0.0700", "-13.6%", "0.0800"],
        ["D-PAD 718fc3e DPAD_SE", "last-epoch, drop-last", "2021, 2022", "0.0800", "-1.2%", "0.0500"]]
    # a reference run at a variant setting sits beside our runs of that variant, not the plain model's
    records.write_csv(tmp_path / "accuracy.csv", records.ACCURACY_COLUMNS, [
        _accuracy(2021, 0.08), _accuracy(2021, 0.05, model="dlinear[individual=true]")])
    records.write_csv(tmp_path / "reference_accuracy.csv", records.REFERENCE_ACCURACY_COLUMNS,
                      [_reference(2021, 0.07, model="dlinear[individual=true]")])
    section = records.render_readme(tmp_path).read_text().split("## The reference trained at our settings")[1]
    line = next(line for line in section.splitlines() if line.startswith("| dlinear[individual=true] |"))
    assert [c.strip() for c in line.strip("|").split("|")][7] == "0.0500"
