"""The side-by-side speed harness (``scripts/benchmark.py mode=peer``) with fake timers: the
order of the rounds, the figures and their ratio, and the row it writes. Nothing here is timed."""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from forecast import records
from forecast.errors import ConfigError
from forecast.pipelines import peer
from forecast.pipelines.benchmark import run as benchmark_run
from tests.helpers import CONF, REPO


def _benchmark(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("benchmark", overrides=overrides)


def _ours(s_per_iter: float, **extra) -> dict:
    return {"model": "autoformer", "dataset": "etth1", "seq_len": 96, "pred_len": 96, "precision": "32-true",
            "device": "cpu", "threads": 1, "batch_size": 32, "warmup": 3, "iters": 20, "s_per_iter": f"{s_per_iter:.4g}",
            "s_per_iter_min": f"{s_per_iter * 0.9:.4g}", "windows_per_s": "1", "batches_per_epoch": 265,
            "s_per_epoch": "1", "peak_memory_gb": "1.60", "memory": "rss", "parameters": 10535943, "notes": "",
            "machine": "fake CPU, 1 thread(s)", **extra}


def _reference(s_per_iter: float) -> dict:
    return {"s_per_iter": s_per_iter, "s_per_iter_min": s_per_iter * 0.95, "peak_memory_gb": 3.6, "parameters": 10535946,
            "d_model": 512, "dropout": 0.1, "learning_rate": 1e-4, "torch": "2.13.0+cpu"}


def test_rounds_alternate_which_side_runs_first_and_read_the_load_around_each_run():
    log, loads = [], itertools.count(1.0)
    measure = {peer.OURS: lambda: log.append("ours") or _ours(2.0),
               peer.REFERENCE: lambda: log.append("ref") or _reference(3.0)}
    comparison = peer.interleave(measure, rounds=3, loadavg=lambda: next(loads))
    assert log == ["ours", "ref", "ref", "ours", "ours", "ref"]
    assert [(m.side, m.round) for m in comparison.measurements] == [
        ("ours", 1), ("reference", 1), ("reference", 2), ("ours", 2), ("ours", 3), ("reference", 3)]
    assert [(m.load_before, m.load_after) for m in comparison.measurements] == [
        (1.0, 2.0), (3.0, 4.0), (5.0, 6.0), (7.0, 8.0), (9.0, 10.0), (11.0, 12.0)]
    with pytest.raises(ConfigError, match="rounds"):
        peer.interleave(measure, rounds=0, loadavg=lambda: 0.0)


def test_the_ratio_is_reference_over_ours_of_the_round_means_and_each_round_is_paired():
    ours, ref = iter([2.0, 3.0]), iter([4.0, 4.5])
    comparison = peer.interleave({peer.OURS: lambda: _ours(next(ours)), peer.REFERENCE: lambda: _reference(next(ref))},
                                 rounds=2, loadavg=lambda: 1.5)
    assert comparison.mean(peer.OURS) == pytest.approx(2.5)
    assert comparison.mean(peer.REFERENCE) == pytest.approx(4.25)
    assert comparison.speedup == pytest.approx(4.25 / 2.5)
    assert comparison.round_speedups() == pytest.approx([2.0, 1.5])


def test_the_row_carries_both_figures_the_ratio_threads_and_loads(tmp_path):
    ours, ref, loads = iter([2.0, 3.0]), iter([4.0, 4.5]), iter([3.1, 3.2, 3.3, 3.4, 3.5, 3.6, 3.7, 3.8])
    comparison = peer.interleave({peer.OURS: lambda: _ours(next(ours)), peer.REFERENCE: lambda: _reference(next(ref))},
                                 rounds=2, loadavg=lambda: next(loads))
    row = peer.comparison_row(comparison, "TSLib 4e938a1 Autoformer", "python scripts/benchmark.py mode=peer", "2026-12-02")
    path = tmp_path / "speed.csv"
    records.append_speed_row(path, row)
    with open(path, newline="") as fh:
        assert next(csv.reader(fh)) == records.SPEED_COLUMNS
    (back,) = records.read_csv(path)
    assert (back["s_per_iter"], back["reference_s_per_iter"], back["speedup"]) == ("2.5", "4.25", "1.70")
    assert (back["threads"], back["batch_size"], back["rounds"], back["iters"]) == ("1", "32", "2", "20")
    assert (back["load_1min"], back["load_1min_after"]) == ("3.10", "3.80")  # before the first, after the last run
    assert (back["peak_memory_gb"], back["reference_peak_memory_gb"]) == ("1.60", "3.60")
    assert back["s_per_iter_min"] == "1.8" and back["reference_s_per_iter_min"] == "3.8"
    assert back["reference"] == "TSLib 4e938a1 Autoformer" and back["superseded"] == "false"
    assert "round 1: ours 2 (load 3.10→3.20), then reference 4 (load 3.30→3.40): 2.00x" in back["notes"]
    assert "round 2: reference 4.5 (load 3.50→3.60), then ours 3 (load 3.70→3.80): 1.50x" in back["notes"]
    assert "parameters 10535946" in back["notes"]
    # the rendered README shows the pair in its own table
    text = records.render_readme(tmp_path).read_text()
    assert "Side by side with the reference" in text and "| 4.25 | 2.5 | 1.70x |" in text
    # a superseded pair leaves that table for its own, and is not called a bench_speed.py row
    records.write_csv(path, records.SPEED_COLUMNS, [{**back, "superseded": "true", "notes": "replaced"}])
    text = records.render_readme(tmp_path).read_text()
    assert "Side by side with the reference" not in text and "### Historical" not in text
    assert "### Side by side, superseded" in text and "| 4.25 | 2.5 | 1.70x |" in text


def test_an_older_speed_file_gets_the_new_columns_and_keeps_its_rows(tmp_path):
    path = tmp_path / "speed.csv"
    old_columns = records.SPEED_COLUMNS[: records.SPEED_COLUMNS.index("date") + 1]
    records.write_csv(path, old_columns, [{"model": "karma", "s_per_iter": "0.16", "date": "2026-11-27"}])
    records.append_speed_row(path, {"model": "dlinear", "s_per_iter": "0.001", "speedup": "1.35"})
    rows = records.read_csv(path)
    assert [(r["model"], r["s_per_iter"], r["speedup"]) for r in rows] == [("karma", "0.16", ""), ("dlinear", "0.001", "1.35")]
    records.write_csv(path, ["model", "other"], [{"model": "x", "other": "y"}])
    with pytest.raises(ConfigError, match="columns"):
        records.append_speed_row(path, {"model": "dlinear"})


def test_both_sides_get_the_same_window_batch_and_horizon():
    cfg = _benchmark(["mode=peer"])
    args = peer.tslib_arguments(cfg, "autoformer", "etth1", 336, "/data/")
    value = {a: b for a, b in zip(args, args[1:]) if a.startswith("--")}
    assert (value["--model"], value["--data"], value["--seq_len"], value["--label_len"], value["--pred_len"]) == (
        "Autoformer", "ETTh1", "96", "48", "336")
    assert (value["--batch_size"], value["--root_path"], value["--data_path"], value["--num_workers"]) == (
        "32", "/data/", "ETTh1.csv", "0")
    assert "--no_use_gpu" in args
    ours = peer.our_overrides(cfg, ["experiment=dlinear_etth1_96"])
    assert ours == ["experiment=dlinear_etth1_96", "data.seq_len=96", "data.batch_size=32"]


def test_a_missing_or_wrong_checkout_is_a_one_line_fix(tmp_path):
    with pytest.raises(ConfigError, match="peer.tslib=<path>"):
        peer.check(_benchmark(["mode=peer"]), [("autoformer", "etth1", 96)])
    with pytest.raises(ConfigError, match="no run.py"):
        peer.check(_benchmark(["mode=peer", f"peer.tslib={tmp_path}"]), [("autoformer", "etth1", 96)])
    _fake_checkout(tmp_path)
    with pytest.raises(ConfigError, match="no reference pairing for model karma"):
        peer.check(_benchmark(["mode=peer", f"peer.tslib={tmp_path}"]), [("karma", "etth1", 96)])
    with pytest.raises(ConfigError, match="not wired"):
        peer.check(_benchmark(["mode=peer", f"peer.tslib={tmp_path}"]), [("autoformer", "ili", 24)])


def _fake_checkout(folder: Path) -> None:
    (folder / "exp").mkdir(exist_ok=True)
    (folder / "run.py").write_text("")
    (folder / "exp" / "exp_long_term_forecasting.py").write_text("")


def test_a_peer_run_writes_one_row_per_model_from_the_two_processes(tmp_path, monkeypatch):
    """``run`` with the two measuring processes faked: which program runs where, with which threads,
    and the row that comes out."""
    checkout = tmp_path / "tslib"
    checkout.mkdir()
    _fake_checkout(checkout)
    calls, mallocs = [], []
    times = {"ours": iter([1.0, 1.2]), "ref": iter([2.0, 2.2])}

    def fake_run(command, cwd, env, capture_output, text):
        reference = command[1].endswith("tslib_step.py")
        calls.append(("ref" if reference else "ours", Path(cwd), env["OMP_NUM_THREADS"], env.get("PYTHONDONTWRITEBYTECODE")))
        mallocs.append(("ref" if reference else "ours", env.get("MALLOC_MMAP_THRESHOLD_"), env.get("MALLOC_TRIM_THRESHOLD_")))
        result = _reference(next(times["ref"])) if reference else _ours(next(times["ours"]), threads=2)
        return subprocess.CompletedProcess(command, 0, stdout="log line\n" + json.dumps(result) + "\n", stderr="")

    monkeypatch.setattr(peer.subprocess, "run", fake_run)
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    speed_csv = tmp_path / "out" / "speed.csv"
    cfg = _benchmark(["mode=peer", "models=[autoformer]", "threads=2", f"peer.tslib={checkout}",
                      f"speed_csv={speed_csv}", "render=false"])
    assert benchmark_run(cfg, REPO / "scripts" / "benchmark.py", REPO) == 0
    assert [c[0] for c in calls] == ["ours", "ref", "ref", "ours"]
    assert {c[2] for c in calls} == {"2"}
    assert all(cwd == checkout and bytecode == "1" for side, cwd, _, bytecode in calls if side == "ref")
    assert all(cwd == REPO for side, cwd, _, _ in calls if side == "ours")
    (row,) = records.read_csv(speed_csv)
    assert (row["model"], row["threads"], row["s_per_iter"], row["reference_s_per_iter"], row["speedup"]) == (
        "autoformer", "2", "1.1", "2.1", "1.91")
    # the reference runs with our malloc thresholds (malloc_keep_mb=256: 256 MB and twice that), ours sets its own
    assert {m for m in mallocs if m[0] == "ref"} == {("ref", str(256 << 20), str(512 << 20))}
    assert {m for m in mallocs if m[0] == "ours"} == {("ours", None, None)}
    # a copied snapshot: the pinned commit; the label names the setting
    assert row["reference"] == ("TSLib 4e938a1 Autoformer "
                                "(MALLOC_MMAP_THRESHOLD_=268435456 MALLOC_TRIM_THRESHOLD_=536870912)")
    assert row["command"].startswith("python scripts/benchmark.py mode=peer \"models=[autoformer]\"")


@pytest.mark.parametrize("given, threshold", [(["peer.same_malloc=false"], None),
                                              (["--", "malloc_keep_mb=64"], str(64 << 20)),
                                              (["--", "malloc_keep_mb=0"], None)])
def test_the_reference_gets_our_malloc_thresholds_unless_told_not_to(tmp_path, monkeypatch, given, threshold):
    """``peer.same_malloc=false``: each side as it ships; our side's ``malloc_keep_mb`` (after ``--``)
    is what the reference gets, and 0 gives it nothing."""
    checkout = tmp_path / "tslib"
    checkout.mkdir()
    _fake_checkout(checkout)
    seen = []

    def fake_run(command, cwd, env, capture_output, text):
        reference = command[1].endswith("tslib_step.py")
        if reference:
            seen.append(env.get("MALLOC_MMAP_THRESHOLD_"))
        return subprocess.CompletedProcess(command, 0, stdout=json.dumps(_reference(2.0) if reference else _ours(1.0)),
                                           stderr="")

    monkeypatch.setattr(peer.subprocess, "run", fake_run)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    speed_csv = tmp_path / "speed.csv"
    options, train = (given, []) if given[0] != "--" else ([], given[1:])
    cfg = _benchmark(["mode=peer", "models=[autoformer]", f"peer.tslib={checkout}", f"speed_csv={speed_csv}",
                      "render=false", "peer.rounds=1", *options, f"overrides=[{','.join(repr(t) for t in train)}]"])
    assert benchmark_run(cfg, REPO / "scripts" / "benchmark.py", REPO) == 0
    assert seen == [threshold]
    (row,) = records.read_csv(speed_csv)
    assert row["reference"] == "TSLib 4e938a1 Autoformer" + (
        f" (MALLOC_MMAP_THRESHOLD_={threshold} MALLOC_TRIM_THRESHOLD_={2 * int(threshold)})" if threshold else "")


def test_peer_revision_times_our_code_at_that_commit_beside_the_working_tree(tmp_path, monkeypatch):
    """``peer.revision``: the reference process runs the other revision's own benchmark script, from
    a temporary worktree of that commit with its package first on the path; the worktree is gone
    afterwards; the row names the commit."""
    real_run = subprocess.run
    head = real_run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    calls = []
    times = {"ours": iter([1.0, 1.0]), "ref": iter([1.5, 1.7])}

    def fake_run(command, cwd=None, env=None, capture_output=False, text=False, **kw):
        if command[0] == "git":
            return real_run(command, cwd=cwd, env=env, capture_output=capture_output, text=text, **kw)
        side = "ours" if Path(cwd) == REPO else "ref"
        calls.append((side, Path(cwd), Path(command[1]), env["PYTHONPATH"].split(":")[0], env["OMP_NUM_THREADS"]))
        assert (Path(cwd) / "scripts" / "benchmark.py").exists() and (Path(cwd) / "forecast").is_dir()
        spec = json.loads(command[3])
        assert spec["overrides"][:1] == ["experiment=karma_etth1_96"]  # the paper configuration on both sides
        result = _ours(next(times[side]), model="karma")
        return subprocess.CompletedProcess(command, 0, stdout=json.dumps(result) + "\n", stderr="")

    monkeypatch.setattr(peer.subprocess, "run", fake_run)
    speed_csv = tmp_path / "speed.csv"
    cfg = _benchmark(["mode=peer", "models=[karma]", "peer.revision=HEAD", f"speed_csv={speed_csv}", "render=false"])
    assert benchmark_run(cfg, REPO / "scripts" / "benchmark.py", REPO) == 0
    assert [c[0] for c in calls] == ["ours", "ref", "ref", "ours"]
    ours, ref = calls[0], calls[1]
    assert ours[2] == REPO / "scripts" / "benchmark.py" and ours[3] == str(REPO)
    assert ref[1] != REPO and ref[2] == ref[1] / "scripts" / "benchmark.py" and ref[3] == str(ref[1])
    assert not ref[1].exists()  # the temporary worktree is removed
    (row,) = records.read_csv(speed_csv)
    assert (row["reference"], row["reference_s_per_iter"], row["s_per_iter"], row["speedup"]) == (
        f"forecast {head[:7]}", "1.6", "1", "1.60")
    assert f"peer.revision={head[:7]}" in row["command"]  # the commit, not a name that moves on
    worktrees = real_run(["git", "-C", str(REPO), "worktree", "list"], capture_output=True, text=True).stdout
    assert str(ref[1]) not in worktrees


def test_a_revision_that_names_no_commit_is_a_one_line_fix(tmp_path):
    cfg = _benchmark(["mode=peer", "models=[karma]", "peer.revision=no-such-branch-xyz", f"speed_csv={tmp_path / 's.csv'}"])
    with pytest.raises(ConfigError, match="peer.revision=no-such-branch-xyz: not a commit"):
        benchmark_run(cfg, REPO / "scripts" / "benchmark.py", REPO)
    assert not (tmp_path / "s.csv").exists()


def test_reference_overrides_reach_the_reference_side_only(tmp_path, monkeypatch):
    """``peer.revision=HEAD peer.reference_overrides=[trainer=cpu] -- trainer=cpu_fast``: the same
    code on both sides, the preset on ours and fp32 on the reference; the row names both. Without
    a revision the overrides are refused (TSLib takes none)."""
    real_run = subprocess.run
    specs = {}

    def fake_run(command, cwd=None, env=None, capture_output=False, text=False, **kw):
        if command[0] == "git":
            return real_run(command, cwd=cwd, env=env, capture_output=capture_output, text=text, **kw)
        side = "ours" if Path(cwd) == REPO else "ref"
        specs[side] = json.loads(command[3])["overrides"]
        return subprocess.CompletedProcess(command, 0, stdout=json.dumps(_ours(1.0, model="karma")) + "\n", stderr="")

    monkeypatch.setattr(peer.subprocess, "run", fake_run)
    speed_csv = tmp_path / "speed.csv"
    cfg = _benchmark(["mode=peer", "models=[karma]", "peer.revision=HEAD", "peer.reference_overrides=['trainer=cpu']",
                      "overrides=['trainer=cpu_fast']", f"speed_csv={speed_csv}", "render=false"])
    assert benchmark_run(cfg, REPO / "scripts" / "benchmark.py", REPO) == 0
    assert specs["ours"][-1] == "trainer=cpu_fast" and "trainer=cpu" not in specs["ours"]
    assert specs["ref"][-2:] == ["trainer=cpu_fast", "trainer=cpu"]  # the reference's own override comes last
    (row,) = records.read_csv(speed_csv)
    assert row["reference"].endswith(" trainer=cpu") and row["reference"].startswith("forecast ")
    bad = _benchmark(["mode=peer", "models=[karma]", f"peer.tslib={tmp_path}", "peer.reference_overrides=['trainer=cpu']"])
    with pytest.raises(ConfigError, match="peer.reference_overrides"):
        peer.check(bad, [("karma", "etth1", 96)])


def _fake_dpad(folder: Path, exp: bool = True) -> Path:
    (folder / "experiments").mkdir(parents=True, exist_ok=True)
    (folder / "singlecard.py").write_text("")
    if exp:
        (folder / "experiments" / "exp_ETT.py").write_text("")
    return folder


def _flags(arguments: list[str]) -> dict[str, str]:
    return {a: b for a, b in zip(arguments, arguments[1:]) if a.startswith("--")}


def test_the_dpad_reference_is_the_official_step_in_its_checkout_at_our_paper_setting(tmp_path, monkeypatch):
    """``peer.dpad``: the reference process is ``dpad_step.py`` with the given python, run from the
    checkout (no byte-code written there), with the official arguments of ``experiment=dpad_etth1_96``
    (336 -> 96, batch 512, not the TSLib pairs' 96 / 32); ours runs that experiment unchanged; the
    row names the official network and the pinned commit of a snapshot."""
    checkout = _fake_dpad(tmp_path / "dpad")
    python = tmp_path / "dpad-env" / "bin" / "python"
    calls = []
    times = {"ours": iter([2.0, 2.2]), "ref": iter([3.0, 3.4])}

    def fake_run(command, cwd, env, capture_output, text):
        reference = command[1].endswith("dpad_step.py")
        calls.append(("ref" if reference else "ours", command, Path(cwd), env))
        result = _reference(next(times["ref"])) if reference else _ours(next(times["ours"]), model="dpad", batch_size=512)
        return subprocess.CompletedProcess(command, 0, stdout="train 8209\n" + json.dumps(result) + "\n", stderr="")

    monkeypatch.setattr(peer.subprocess, "run", fake_run)
    speed_csv = tmp_path / "speed.csv"
    cfg = _benchmark(["mode=peer", "models=[dpad]", "threads=2", "warmup=1", "iters=5", f"peer.dpad={checkout}",
                      f"peer.python={python}", "peer.root_path=/data/ETT-small", f"speed_csv={speed_csv}", "render=false"])
    assert benchmark_run(cfg, REPO / "scripts" / "benchmark.py", REPO) == 0
    assert [c[0] for c in calls] == ["ours", "ref", "ref", "ours"]
    _, command, cwd, env = calls[1]
    assert command[:5] == [str(python.resolve()), str(REPO / "scripts" / "peers" / "dpad_step.py"), "2", "1", "5"]
    assert cwd == checkout.resolve() and env["PYTHONDONTWRITEBYTECODE"] == "1" and env["OMP_NUM_THREADS"] == "2"
    flags = _flags(command[5:])
    assert (flags["--model"], flags["--data"], flags["--data_path"], flags["--root_path"], flags["--features"]) == (
        "DPAD_SE", "ETTh1", "ETTh1.csv", "/data/ETT-small/", "M")
    assert flags["--model_name"].startswith("DPAD_SE_ETTh1_I336_o96")  # what Exp_ETT picks the network by
    assert (flags["--seq_len"], flags["--label_len"], flags["--pred_len"], flags["--batch_size"]) == ("336", "0", "96", "512")
    assert (flags["--enc_hidden"], flags["--dec_hidden"], flags["--levels"], flags["--K_IMP"], flags["--dropout"]) == (
        "336", "336", "2", "6", "0.5")
    assert (flags["--lr"], flags["--loss"], flags["--RIN"], flags["--num_workers"]) == ("0.0001", "mae", "1", "0")
    ours = [c for c in calls if c[0] == "ours"]
    assert all(json.loads(c[1][3])["overrides"] == ["experiment=dpad_etth1_96"] for c in ours)  # no 96 / 32 override
    assert all(c[2] == REPO and c[1][1] == str(REPO / "scripts" / "benchmark.py") for c in ours)
    (row,) = records.read_csv(speed_csv)
    assert (row["model"], row["reference"], row["s_per_iter"], row["reference_s_per_iter"], row["speedup"]) == (
        "dpad", "D-PAD 718fc3e DPAD_SE (MALLOC_MMAP_THRESHOLD_=268435456 MALLOC_TRIM_THRESHOLD_=536870912)",
        "2.1", "3.2", "1.52")
    assert row["command"].startswith("python scripts/benchmark.py mode=peer \"models=[dpad]\"")


def test_the_dpad_arguments_follow_our_overrides_or_refuse_what_the_official_code_lacks():
    from forecast.config import compose_train

    flags = _flags(peer.dpad_arguments(compose_train(["experiment=dpad_etth1_96", "model.dropout=0.6", "model.fusion=gcn",
                                                      "data.pred_len=192"]), "etth1", "/d/"))
    assert (flags["--model"], flags["--dropout"], flags["--pred_len"], flags["--seq_len"]) == ("DPAD_GCN", "0.6", "192", "336")
    assert flags["--model_name"].startswith("DPAD_GCN_ETTh1_I336_o192")
    with pytest.raises(ConfigError, match="model.multiscale=True"):
        peer.dpad_arguments(compose_train(["experiment=dpad_etth1_96", "model.multiscale=true"]), "etth1", "/d/")
    with pytest.raises(ConfigError, match="module.loss=torch.nn.HuberLoss"):
        peer.dpad_arguments(compose_train(["experiment=dpad_etth1_96", "module.loss._target_=torch.nn.HuberLoss"]),
                            "etth1", "/d/")


def test_a_dpad_reference_alone_for_dpad_only_in_a_checkout_of_it(tmp_path):
    cells = [("dpad", "etth1", 96)]
    with pytest.raises(ConfigError, match="peer.tslib and peer.dpad set together"):
        peer.check(_benchmark(["mode=peer", f"peer.tslib={tmp_path}", f"peer.dpad={tmp_path}"]), cells)
    cfg = _benchmark(["mode=peer", "models=[dpad]", "peer.revision=HEAD", f"peer.dpad={tmp_path}",
                      f"speed_csv={tmp_path / 's.csv'}"])
    with pytest.raises(ConfigError, match="peer.dpad and peer.revision set together"):
        benchmark_run(cfg, REPO / "scripts" / "benchmark.py", REPO)
    with pytest.raises(ConfigError, match=r"models=\[dpad\] only, not of \['autoformer'\]"):
        peer.check(_benchmark(["mode=peer", f"peer.dpad={_fake_dpad(tmp_path)}"]), [*cells, ("autoformer", "etth1", 96)])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no singlecard.py and experiments/exp_ETT.py"):
        peer.check(_benchmark(["mode=peer", f"peer.dpad={empty}"]), cells)
    with pytest.raises(ConfigError, match="no singlecard.py and experiments/exp_ETT.py"):
        peer.check(_benchmark(["mode=peer", f"peer.dpad={_fake_dpad(tmp_path / 'half', exp=False)}"]), cells)
    with pytest.raises(ConfigError, match="not wired"):
        peer.check(_benchmark(["mode=peer", f"peer.dpad={tmp_path}"]), [("dpad", "ili", 24)])
    assert peer.check(_benchmark(["mode=peer", f"peer.dpad={tmp_path}"]), cells) == (tmp_path.resolve(), sys.executable)
