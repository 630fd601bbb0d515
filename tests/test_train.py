"""The training system end to end: the pipeline, the MLflow record, the real entry point."""

import shlex
import subprocess

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from forecast import tracking
from forecast.errors import ConfigError
from forecast.pipelines.train import run
from tests.helpers import runs_of, sinusoid_frame, train_py


def test_parameter_free_network_is_only_tested_and_scored_exactly(make_config, write_csv):
    """A network without parameters skips fit; its test metrics equal a direct computation."""
    frame = sinusoid_frame(n=600, channels=2, noise=0.5)
    path = write_csv(frame)
    cfg = make_config("data=csv", f"data.path={path}", "data.seq_len=24", "data.pred_len=12")
    cfg.model = OmegaConf.create({"_target_": "tests.helpers.LastValue", "seq_len": "${data.seq_len}",
                                  "pred_len": "${data.pred_len}"})
    metrics = run(cfg)

    values = frame[["ch0", "OT"]].to_numpy()
    mean, std = values[:420].mean(0), values[:420].std(0)
    scaled = (values - mean) / std
    starts = range(480 - 24, 600 - 24 - 12 + 1)  # test border 480 (70/10/20 of 600)
    errors = np.stack([scaled[s + 24 : s + 36] - scaled[s + 23] for s in starts])
    assert metrics["test/mse"] == pytest.approx(np.mean(errors**2), rel=1e-5)
    assert metrics["test/mae_orig"] == pytest.approx(np.mean(np.abs(errors * std)), rel=1e-5)

    client, runs = runs_of(make_config.tracking_uri, "series")
    assert len(runs) == 1
    assert "train/loss" not in runs[0].data.metrics
    assert runs[0].data.tags["dataset"] == "series"  # data=csv names the run after the file
    assert not [a for a in client.list_artifacts(runs[0].info.run_id) if a.path == "checkpoints"]


def test_fit_logs_a_complete_mlflow_run(make_config):
    cfg = make_config("trainer.max_epochs=1", "data.seq_len=48", "data.pred_len=24", "+tags.purpose=test")
    metrics = run(cfg)
    client, runs = runs_of(make_config.tracking_uri, "etth1")
    assert len(runs) == 1
    r = runs[0]
    assert r.info.run_name == "dlinear-etth1-48-24" and r.info.status == "FINISHED"
    assert r.data.tags["dataset"] == "etth1" and r.data.tags["horizon"] == "24" and r.data.tags["purpose"] == "test"
    assert r.data.tags["paper_compat"] == "false" and r.data.tags["model"] == "dlinear"
    assert len(r.data.tags["git_commit"]) in (40, 7) or r.data.tags["git_commit"] == "unknown"
    assert r.data.params["data.seq_len"] == "48" and r.data.params["model.enc_in"] == "7"
    assert r.data.params["module.optimizer.lr"] == "0.005"  # recommended by conf/model/dlinear.yaml
    for key in ("test/mse", "test/mae", "test/mae_orig", "test/rmse_orig", "test/mase_orig", "test/smape_orig", "train/loss", "val/loss"):
        assert key in r.data.metrics, key
    assert r.data.metrics["test/mse"] == pytest.approx(metrics["test/mse"])
    artifacts = {a.path for a in client.list_artifacts(r.info.run_id)}
    assert {"config.yaml", "data.json", "plots", "checkpoints"} <= artifacts
    assert r.data.tags["data_sha256"] == "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066"
    lineage = mlflow.artifacts.load_dict(f"{r.info.artifact_uri}/data.json")
    assert (lineage["rows"], lineage["test_rows"], lineage["test_windows"]) == (17420, "11520-14399", 2880 - 24 + 1)
    assert [a.path for a in client.list_artifacts(r.info.run_id, "plots")] == ["plots/forecast.png"]
    config = OmegaConf.create(mlflow.artifacts.load_text(f"{r.info.artifact_uri}/config.yaml"))
    assert config.data.seq_len == 48 and config.model.enc_in == 7


def test_paper_compat_drops_the_last_test_batch_and_says_so(make_config):
    cfg = make_config("trainer.max_epochs=1", "data.seq_len=48", "data.pred_len=24",
                      "data.batch_size=32", "paper_compat=true")
    run(cfg)
    _, runs = runs_of(make_config.tracking_uri, "etth1")
    r = runs[0]
    assert r.data.tags["paper_compat"] == "true" and r.data.params["data.drop_last_test"] == "True"
    # 2,857 test windows: 89 full batches of 32 are scored, the last 9 windows are dropped
    lineage = mlflow.artifacts.load_dict(f"{r.info.artifact_uri}/data.json")
    assert lineage["test_windows"] == 2857
    cfg = make_config("data.seq_len=48", "data.pred_len=24", "data.batch_size=32", "paper_compat=true")
    from forecast.pipelines.train import build_data

    assert sum(len(b["y"]) for b in build_data(cfg).test_dataloader()) == 89 * 32


def test_resume_and_test_from_a_checkpoint(make_config, tmp_path):
    cfg = make_config("trainer=debug", "logger=none", "data.seq_len=48", "data.pred_len=24")
    first = run(cfg)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert ckpt.exists()
    cfg = make_config("trainer=debug", "logger=none", "data.seq_len=48", "data.pred_len=24", "train=false", f"ckpt_path={ckpt}")
    assert run(cfg)["test/mse"] == pytest.approx(first["test/mse"], rel=1e-6)  # 1 epoch: last == best


def test_a_checkpoint_of_other_settings_is_refused_with_the_options_that_wrote_it(make_config, tmp_path):
    run(make_config("trainer=debug", "logger=none", "data.seq_len=48", "data.pred_len=24"))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    saved = tmp_path / "run" / ".hydra" / "overrides.yaml"  # what Hydra keeps beside a run's checkpoints
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text("- data.seq_len=48\n- data.pred_len=24\n- hydra.job.chdir=false\n")
    other = make_config("logger=none", "data.seq_len=96", "data.pred_len=24", "train=false", f"ckpt_path={ckpt}")
    with pytest.raises(ConfigError, match=r"do not fit .*seasonal_weight is \[1, 48, 24\] there, \[1, 96, 24\] here"
                                          r".*Fix: give the options of the run that wrote it .*: "
                                          r"data.seq_len=48 data.pred_len=24\.$"):
        run(other)
    with pytest.raises(ConfigError, match="no such file"):
        run(make_config("logger=none", "train=false", f"ckpt_path={tmp_path / 'missing.ckpt'}"))


def test_last_ckpt_is_the_latest_epoch_and_the_best_checkpoint_is_tested(make_config, tmp_path):
    # the best checkpoint by the *largest* val/loss: almost surely an early epoch, not the last
    cfg = make_config("logger=none", "data.seq_len=48", "data.pred_len=24", "trainer.max_epochs=3",
                      "+trainer.limit_train_batches=5", "+trainer.limit_val_batches=3", "+trainer.limit_test_batches=2",
                      "callbacks.model_checkpoint.mode=max", "callbacks.early_stopping=null")
    run(cfg)
    folder = tmp_path / "run" / "checkpoints"
    last = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 2  # resuming from last.ckpt continues after the third epoch
    best = [p for p in folder.glob("epoch=*.ckpt")]
    assert len(best) == 1 and best[0].name != "epoch=2-step=15.ckpt", best
    assert torch.load(best[0], map_location="cpu", weights_only=False)["epoch"] < 2


def test_train_py_entry_point_writes_a_run_mlflow_can_read(tmp_path):
    proc = train_py(tmp_path, "data.pred_len=24", "hydra.run.dir=out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    client, runs = runs_of(f"sqlite:///{tmp_path / 'mlflow.db'}", "etth1-debug")  # train_py runs trainer=debug
    assert len(runs) == 1
    r = runs[0]
    assert {"test/mse", "test/mae"} <= set(r.data.metrics)
    assert {"config.yaml", "plots"} <= {a.path for a in client.list_artifacts(r.info.run_id)}
    assert r.data.tags["command"].startswith("python train.py data.pred_len=24")
    assert (tmp_path / "out" / "checkpoints" / "last.ckpt").exists()  # Hydra's run dir, not the cwd


def test_train_py_multirun_sweep(tmp_path):
    proc = train_py(tmp_path, "-m", "data.pred_len=12,24", "hydra.sweep.dir=sweep")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, runs = runs_of(f"sqlite:///{tmp_path / 'mlflow.db'}", "etth1-debug")  # the sweep's parent goes with its jobs
    (parent,) = [r for r in runs if r.data.tags.get("kind") == "sweep"]  # one parent run per sweep
    jobs = [r for r in runs if r is not parent]
    assert sorted(r.info.run_name for r in jobs) == ["dlinear-etth1-96-12", "dlinear-etth1-96-24"]
    assert {r.data.tags["mlflow.parentRunId"] for r in jobs} == {parent.info.run_id}
    assert parent.info.status == "FINISHED" and parent.data.tags["jobs"] == "2"


def test_train_py_bad_data_fails_cleanly(tmp_path):
    bad = sinusoid_frame(n=300).drop(index=[100])  # a gap
    bad.to_csv(tmp_path / "gap.csv", index=False)
    proc = train_py(tmp_path, "data=csv", "data.path=gap.csv")
    assert proc.returncode != 0
    assert ("timestamps are not spaced by the inferred frequency 'h': 1 missing timestamp in 1 gap: 2020-01-05 04:00:00 "
            "between line 101 (2020-01-05 03:00:00) and line 102 (2020-01-05 05:00:00)") in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists")  # both runs share one output folder
def test_record_appends_an_accuracy_row_beside_the_published_value(make_config, tmp_path):
    folder = tmp_path / "bench"
    folder.mkdir()
    (folder / "published.csv").write_text("model,dataset,features,seq_len,pred_len,mse,mae,source\n"
                                          "dlinear,etth1,M,48,24,0.5,0.6,a paper\n")
    for seed in (1, 2):
        cfg = make_config("trainer.max_epochs=1", "logger=none", "data.seq_len=48", "data.pred_len=24", f"seed={seed}",
                          f"record={folder / 'accuracy.csv'}")
        metrics = run(cfg)
    rows = pd.read_csv(folder / "accuracy.csv")
    assert list(rows.columns) == ["model", "dataset", "features", "seq_len", "pred_len", "mse", "mae", "paper_mse",
                                  "paper_mae", "paper_compat", "protocol", "precision", "epochs", "epochs_run", "seed",
                                  "superseded", "notes", "command", "train_command", "machine", "date"]
    assert rows["seed"].tolist() == [1, 2] and (rows["paper_mse"] == 0.5).all() and (rows["epochs"] == 1).all()
    assert (rows["precision"] == "32-true").all() and (rows["protocol"] == "every-window").all()
    assert not rows["superseded"].any()
    assert rows["mse"].iloc[1] == pytest.approx(metrics["test/mse"], abs=5e-5)
    readme = (folder / "README.md").read_text()
    mean, sd = rows["mse"].mean(), rows["mse"].std(ddof=1)
    assert f"| M | 48 | 24 | every-window | 32-true | 2 | {mean:.4f} ± {sd:.4f} |" in readme


def test_a_row_recorded_from_a_checkpoint_counts_its_epochs_and_quotes_its_command(make_config, tmp_path):
    record = tmp_path / "bench" / "accuracy.csv"
    record.parent.mkdir()
    trained = ["trainer.max_epochs=3", "callbacks.early_stopping=null", "logger=none", "data.seq_len=48", "data.pred_len=24"]
    run(make_config(*trained))
    checkpoints = tmp_path / "run" / "checkpoints"
    ckpt = checkpoints / "epoch=2-step=6.ckpt"  # an '=' in the path: Hydra needs it quoted, so the shell does too
    (checkpoints / "last.ckpt").rename(ckpt)
    (tmp_path / "run" / ".hydra").mkdir(exist_ok=True)  # what a train.py run leaves beside its checkpoints
    (tmp_path / "run" / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in trained))
    override = f"ckpt_path='{ckpt}'"
    run(make_config("logger=none", "data.seq_len=48", "data.pred_len=24", "train=false", override, f"record={record}"))
    row = pd.read_csv(record).iloc[0]
    assert row["epochs"] == 3  # the tested weights' training, not the 0 epochs of this test-only run
    assert f'"{override}"' in row["command"]
    assert override in shlex.split(row["command"])  # and the shell hands it back as Hydra needs it
    assert shlex.split(row["train_command"]) == ["python", "train.py", *trained, f"hydra.run.dir={tmp_path / 'run'}"]
    assert row["protocol"] == "every-window"  # a best checkpoint (not last.ckpt), every window


@pytest.mark.parametrize("args", [
    ["python", "train.py", "seed=1", "models=[dlinear,karma]", "ckpt_path='out/epoch=6-step=7504.ckpt'"],
    ["~model.dropout", "tags.note=a b", "x=$HOME", 'q="quoted"', "back`tick`", "bang!", "", "+trainer.precision=bf16-mixed"],
])
def test_shell_join_gives_bash_the_same_arguments(args):
    line = tracking.shell_join(args)
    out = subprocess.run(["bash", "-c", f"printf '%s\\0' {line}"], capture_output=True, text=True, check=True).stdout
    assert out.split("\0")[:-1] == args
    if args[0] == "python":  # plain words stay bare; the rest read as Hydra's docs write them
        assert line == 'python train.py seed=1 "models=[dlinear,karma]" "ckpt_path=\'out/epoch=6-step=7504.ckpt\'"'
