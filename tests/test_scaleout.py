"""Scale-out: trainer presets, DDP on CPU (gloo) through the real entry point, the evaluation
sampler, windows on the device, mixed precision, the SLURM launcher and the benchmark harness."""

from __future__ import annotations

import csv
import datetime as dt
import math
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate
from mlflow import MlflowClient
from omegaconf import OmegaConf

from forecast import config
from forecast.config import cpu_has_native_bf16, mixed_precision
from forecast.errors import ConfigError
from forecast.pipelines.benchmark import split_train_overrides
from forecast.pipelines.train import build_data, build_module, run
from forecast.records import SPEED_COLUMNS, render_readme
from tests.helpers import REPO, compose, sinusoid_frame

METRICS = ("test/mse", "test/mae", "test/mae_orig", "test/rmse_orig", "test/mase_orig", "test/smape_orig")


def _env(**extra):
    return {**os.environ, "OMP_NUM_THREADS": "1", "FORECAST_DATA_DIR": str(REPO / "data"), **extra}


# ------------------------------------------------------------------ DDP through train.py
def test_ddp_on_two_cpu_processes_logs_one_run_and_scores_like_one_process(tmp_path, make_config):
    """``python train.py trainer=ddp trainer.devices=2 trainer.accelerator=cpu``: two gloo processes
    share the training windows, only rank 0 writes to MLflow, and the test metrics of the trained
    checkpoint equal a single process's test of the same checkpoint."""
    data = tmp_path / "series.csv"
    sinusoid_frame(n=1200, channels=3).to_csv(data, index=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["data=csv", f"data.path={data}", "data.seq_len=48", "data.pred_len=24", "seed=1"]
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu", *args,
         "trainer.max_epochs=2", "trainer.deterministic=true", "num_threads=1", "trainer.enable_progress_bar=false",
         f"logger.tracking_uri={uri}", f"hydra.run.dir={tmp_path / 'ddp'}"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MEMBER: 2/2" in proc.stderr  # Lightning's line for the second of two processes
    assert (tmp_path / "ddp" / "train_ddp_process_1.log").exists()

    client = MlflowClient(uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 1  # rank 1 wrote nothing
    run_ = runs[0]
    assert run_.info.status == "FINISHED" and run_.data.params["trainer.devices"] == "2"
    assert [a.path for a in client.list_artifacts(run_.info.run_id, "plots")] == ["plots/forecast.png"]

    # 769 training windows shared by 2 processes: 385 each (one padded), 13 batches of 32 per epoch
    (best,) = (tmp_path / "ddp" / "checkpoints").glob("epoch=*.ckpt")
    assert best.name == f"epoch=1-step={2 * math.ceil(math.ceil(769 / 2) / 32)}.ckpt"

    # the same checkpoint tested by one process; 217 test windows (odd: a padding sampler would
    # have scored one of them twice)
    cfg = make_config(*args, "logger=none", "train=false", f"ckpt_path='{best}'")  # quoted: "=" in the name
    assert len(build_data(cfg).test_dataloader().dataset) == 217
    single = run(cfg)
    for key in METRICS:
        assert run_.data.metrics[key] == pytest.approx(single[key], abs=1e-6), key


@pytest.mark.slow
def test_ddp_preset_trains_a_network_with_unused_parameters(tmp_path):
    """ETSformer's last encoder layer has parameters outside the forecast (as the official code);
    plain DDP stops at the second step, the preset (find_unused_parameters) trains it."""
    data = tmp_path / "series.csv"
    sinusoid_frame(n=1200, channels=3).to_csv(data, index=False)
    base = [sys.executable, str(REPO / "train.py"), "trainer=ddp", "trainer.accelerator=cpu", "model=etsformer",
            "model.d_model=32", "model.d_ff=64", "model.n_heads=4", "data=csv", f"data.path={data}", "data.seq_len=48",
            "data.pred_len=24", "trainer.max_epochs=2", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2",
            "num_threads=1", "trainer.enable_progress_bar=false", "logger=none"]
    plain = subprocess.run([*base, "trainer.strategy=ddp", f"hydra.run.dir={tmp_path / 'a'}"], cwd=tmp_path, env=_env(),
                           capture_output=True, text=True, timeout=600)
    assert plain.returncode != 0 and "find_unused_parameters" in plain.stderr
    preset = subprocess.run([*base, f"hydra.run.dir={tmp_path / 'b'}"], cwd=tmp_path, env=_env(),
                            capture_output=True, text=True, timeout=600)
    assert preset.returncode == 0, preset.stderr[-3000:]


@pytest.mark.slow
def test_ddp_parameter_free_network_counts_every_series(tmp_path):
    """A classical baseline under DDP: each process forecasts its share of the test windows; the
    logged diagnostics count all of them (217 windows x 3 channels), not rank 0's share."""
    data = tmp_path / "series.csv"
    sinusoid_frame(n=1200, channels=3).to_csv(data, index=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu",
         "model=seasonalnaive", "data=csv", f"data.path={data}", "data.seq_len=48", "data.pred_len=24", "num_threads=1",
         "trainer.enable_progress_bar=false", f"logger.tracking_uri={uri}", f"hydra.run.dir={tmp_path / 'ddp'}"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(uri)
    (run_,) = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert run_.data.metrics["test/series"] == 217 * 3


def test_diagnostics_are_summed_over_processes():
    from forecast.pipelines.train import reduce_diagnostics

    shares = torch.tensor([[300.0, 1.0, 0.5], [351.0, 2.0, 0.7]], dtype=torch.float64)  # what each rank counted
    trainer = SimpleNamespace(world_size=2, strategy=SimpleNamespace(root_device=torch.device("cpu"),
                                                                     all_gather=lambda local: shares))
    values = {"series": 300.0, "fallbacks": 1.0, "forecast_seconds": 0.5}
    assert reduce_diagnostics(trainer, values) == {"test/series": 651.0, "test/fallbacks": 3.0, "test/forecast_seconds": 0.7}
    assert reduce_diagnostics(SimpleNamespace(world_size=1), values)["test/series"] == 300.0


# ------------------------------------------------------------------ the evaluation sampler
def _attach(datamodule, world_size: int, rank: int, device: str = "cpu"):
    datamodule.trainer = SimpleNamespace(world_size=world_size, global_rank=rank,
                                         strategy=SimpleNamespace(root_device=torch.device(device)))
    return datamodule


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_evaluation_windows_are_split_across_processes_without_repeats(make_config, write_csv, world_size, drop_last):
    path = write_csv(sinusoid_frame(n=700, channels=2))
    cfg = make_config("data=csv", f"data.path={path}", "data.seq_len=24", "data.pred_len=12", "data.batch_size=16",
                      f"data.drop_last_test={str(drop_last).lower()}")
    datamodule = build_data(cfg)
    datamodule.setup()
    n = len(datamodule.datasets["test"])  # 140 test rows, look-back before the border: 140 - 12 + 1
    assert n == 129
    expected = n // 16 * 16 if drop_last else n  # paper_compat scores the full batches only, as one process does
    targets, counts = [], []
    for rank in range(world_size):
        loader = _attach(datamodule, world_size, rank).test_dataloader()
        batches = [b["y"] for b in loader]
        targets.append(torch.cat(batches))
        counts.append(sum(len(b) for b in batches))
    assert sum(counts) == expected and max(counts) - min(counts) <= 1
    # every window once: the targets of the processes together are those of one process, reordered
    datamodule.trainer = None
    single = torch.cat([b["y"] for b in datamodule.test_dataloader()])
    assert single.shape[0] == expected
    together = torch.cat(targets)
    key = lambda t: sorted(map(tuple, t.flatten(1).tolist()))  # noqa: E731
    assert key(together) == key(single)
    # training keeps a plain loader: Lightning injects its (padding) DistributedSampler there
    assert type(_attach(datamodule, world_size, 0).train_dataloader().sampler).__name__ == "RandomSampler"


def test_windows_on_the_training_device(make_config, write_csv):
    """With windows_on_device the series is copied to the trainer's device once and batches are
    gathered there ('meta' stands in for a GPU); worker processes cannot do that."""
    path = write_csv(sinusoid_frame(n=500, channels=2))
    cfg = make_config("data=csv", f"data.path={path}", "data.seq_len=24", "data.pred_len=12",
                      "data.windows_on_device=true", "data.pin_memory=true")
    datamodule = _attach(build_data(cfg), 1, 0, device="meta")
    loader = datamodule.train_dataloader()
    batch = next(iter(loader))
    assert batch["x"].device.type == "meta" and batch["x"].shape == (32, 24, 2) and batch["y_mark"].shape[1] == 12
    assert loader.pin_memory is False  # device tensors are not pinned, even when asked to pin
    assert datamodule.datasets["train"].values.device.type == "cpu"  # the host copy stays for figures and serving
    datamodule.trainer = None
    assert datamodule.train_dataloader().dataset is datamodule.datasets["train"]  # no trainer: the host windows
    cfg = make_config("data=csv", f"data.path={path}", "data.seq_len=24", "data.pred_len=12", "data.windows_on_device=true",
                      "data.num_workers=1")
    with pytest.raises(ConfigError, match="data.num_workers=0"):
        _attach(build_data(cfg), 1, 0, device="meta").train_dataloader()


# ------------------------------------------------------------------ presets
def test_trainer_presets(make_config):
    cpu = instantiate(make_config("trainer=cpu").trainer, logger=False, callbacks=[])
    assert cpu.accelerator.__class__.__name__ == "CPUAccelerator" and cpu.num_devices == 1
    debug = make_config("trainer=debug").trainer
    assert (debug.max_steps, debug.limit_train_batches, debug.limit_test_batches, debug.deterministic) == (2, 2, 2, True)
    ddp = instantiate(make_config("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=3").trainer,
                      logger=False, callbacks=[])
    assert type(ddp.strategy).__name__ == "DDPStrategy" and ddp.strategy._ddp_kwargs["find_unused_parameters"]
    assert ddp.world_size == 3 and ddp.strategy._get_process_group_backend() == "gloo"
    gpu = make_config("trainer=gpu").trainer
    assert gpu.accelerator == "gpu" and gpu.devices == 1 and gpu.precision == mixed_precision()
    two_nodes = make_config("trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2").trainer
    assert (two_nodes.devices, two_nodes.num_nodes, two_nodes.strategy) == (4, 2, "ddp_find_unused_parameters_true")


def test_gpu_preset_picks_bf16_only_where_the_card_has_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert mixed_precision() == "bf16-mixed"  # CPU autocast
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))  # V100
    assert mixed_precision() == "32-true"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))  # H100
    assert mixed_precision() == "bf16-mixed"


def test_cpu_fast_preset_is_bf16_only_where_the_cpu_multiplies_bf16_natively(make_config, monkeypatch):
    zen4 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n"
    sapphire_rapids = "flags\t\t: avx512f amx_bf16 amx_tile\n"
    zen3 = "flags\t\t: fpu avx2 fma\n"
    assert cpu_has_native_bf16(zen4) and cpu_has_native_bf16(sapphire_rapids)
    assert not cpu_has_native_bf16(zen3) and not cpu_has_native_bf16("")
    for native, precision in ((True, "bf16-mixed"), (False, "32-true")):
        monkeypatch.setattr(config, "cpu_has_native_bf16", lambda native=native: native)
        trainer = make_config("trainer=cpu_fast").trainer
        assert (trainer.accelerator, trainer.devices, trainer.precision) == ("cpu", 1, precision)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_preset_trains_and_tests_on_the_gpu(make_config):
    cfg = make_config("trainer=gpu", "trainer.max_steps=2", "trainer.limit_train_batches=2", "trainer.limit_val_batches=2",
                      "data.seq_len=48", "data.pred_len=24", "logger=none")
    metrics = run(cfg)
    assert all(math.isfinite(metrics[k]) for k in METRICS)
    assert cfg.trainer.precision == mixed_precision()


def test_slurm_launcher_composes_with_the_trainer_layout():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the slurm extra (hydra-submitit-launcher)")
    cfg = compose("train", overrides=["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2",
                                      "hydra.launcher.partition=gpu"], return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    # one SLURM task per DDP process: Lightning reads SLURM's environment and starts none itself
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (2, 4, 4)
    assert launcher["partition"] == "gpu" and launcher["timeout_min"] > 0
    launcher_object = instantiate(cfg.hydra.launcher)
    assert type(launcher_object).__name__ == "SlurmLauncher"


# ------------------------------------------------------------------ mixed precision
def test_fp32_blocks_compute_in_fp32_under_bf16_autocast():
    """Inside autocast, the FFT-based blocks, Auto-Correlation's curve and the moving average give
    exactly their fp32 results (without the guard the frequency attention's inverse DFT, the
    curve's Q·Kᵀ and the averaging product would run as bf16 products)."""
    from forecast.layers.autocorrelation import mean_correlation
    from forecast.layers.decomposition import moving_average
    from forecast.layers.exponential_smoothing import FrequencyAttention, causal_convolution
    from forecast.losses import TimeFrequencyLoss

    torch.manual_seed(0)
    z, kernel = torch.randn(4, 48, 16), torch.rand(48, 16)
    pred, target = torch.randn(4, 24, 3).bfloat16(), torch.randn(4, 24, 3)
    blocks = {
        "mean_correlation": lambda: mean_correlation(z, z.flip(1)),
        "causal_convolution": lambda: causal_convolution(z, kernel),
        "moving_average": lambda: moving_average(z + 100.0, 25),
        "frequency_attention": lambda: FrequencyAttention(pred_len=24, k=3)(z),
        "time_frequency_loss": lambda: TimeFrequencyLoss(0.8)(pred, target),
    }
    for name, block in blocks.items():
        reference = block()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = block()
        assert mixed.dtype == torch.float32, name
        assert torch.equal(mixed, reference), name


SMALL = {"dlinear": [], "autoformer": ["model.d_model=64", "model.d_ff=128", "model.n_heads=4"],
         "etsformer": ["model.d_model=64", "model.d_ff=128", "model.n_heads=4", "model.k=3"],
         "dpad": [], "karma": ["model.d_model=64"]}


@pytest.mark.filterwarnings("ignore:Mismatch dtype between input and weight")  # torch's CPU rms_norm under autocast
@pytest.mark.parametrize("model", sorted(SMALL))
def test_every_network_is_safe_under_bf16_autocast(model, make_config):
    """Forecasts under CPU bf16 autocast are finite and within bf16 rounding of fp32: 5 % relative
    RMS (measured: 0.03 % D-PAD to 2.8 % ETSformer, whose frequency and delay choices can flip) and
    the same MSE against the targets to 1 %."""
    cfg = make_config(f"model={model}", *SMALL[model])
    datamodule = build_data(cfg)
    datamodule.setup()
    torch.manual_seed(0)
    module = build_module(cfg, datamodule).eval()
    batch = datamodule.datasets["test"].__getitems__(list(range(0, 800, 100)))
    inputs = (batch["x"], batch["x_mark"], batch["y_mark"])
    with torch.no_grad():
        reference = module(*inputs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = module(*inputs).float()
    assert torch.isfinite(mixed).all()
    assert ((mixed - reference).norm() / reference.norm()).item() < 0.05
    mse = lambda p: (p - batch["y"]).square().mean().item()  # noqa: E731
    assert mse(mixed) == pytest.approx(mse(reference), rel=0.01)


# ------------------------------------------------------------------ the benchmark harness
def test_train_overrides_after_the_separator_become_one_quoted_list():
    argv = split_train_overrides(["benchmark.py", "iters=2", "--", "trainer=gpu", "tags.note=it's"])
    assert argv == ["benchmark.py", "iters=2", "overrides=['trainer=gpu','tags.note=it\\'s']"]
    assert split_train_overrides(["benchmark.py", "iters=2"]) == ["benchmark.py", "iters=2"]


def test_benchmark_script_writes_a_well_formed_speed_row(tmp_path):
    folder = tmp_path / "bench"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "benchmark.py"), "models=[dlinear]", "datasets=[etth1]", "horizons=[24]",
         "warmup=1", "iters=3", f"speed_csv={folder / 'speed.csv'}", f"accuracy_csv={folder / 'accuracy.csv'}",
         "--", "data.seq_len=48"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(folder / "speed.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames == SPEED_COLUMNS and len(rows) == 1
    row = rows[0]
    assert (row["model"], row["dataset"], row["seq_len"], row["pred_len"]) == ("dlinear", "etth1", "48", "24")
    assert (row["device"], row["threads"], row["iters"], row["warmup"], row["memory"]) == ("cpu", "1", "3", "1", "rss")
    assert row["precision"] == "32-true" and row["date"] == dt.date.today().isoformat()
    assert int(row["parameters"]) == 2 * (48 * 24 + 24)  # DLinear: two [L, H] maps with biases
    assert int(row["batches_per_epoch"]) == math.ceil((8640 - 48 - 24 + 1) / 32)  # ETTh1's training windows
    s_per_iter = float(row["s_per_iter"])
    assert 0 < float(row["s_per_iter_min"]) <= s_per_iter
    assert float(row["windows_per_s"]) == pytest.approx(32 / s_per_iter, rel=2e-3)
    assert float(row["s_per_epoch"]) == pytest.approx(s_per_iter * 268, rel=2e-3, abs=0.1)
    assert 0.1 < float(row["peak_memory_gb"]) < 8 and float(row["load_1min"]) >= 0
    assert row["command"] == ('python scripts/benchmark.py "models=[dlinear]" "datasets=[etth1]" "horizons=[24]" '
                              "warmup=1 iters=3 -- data.seq_len=48")
    readme = (folder / "README.md").read_text()
    assert "### CPU" in readme and f"`{row['command']}`" in readme


def test_accuracy_mode_runs_the_paper_setting_of_each_cell_per_seed(tmp_path, capsys):
    from forecast.pipelines.benchmark import run as run_benchmark

    cfg = compose("benchmark", overrides=["mode=accuracy", "models=[karma,naive]", "horizons=[96,336]", "seeds=[1,2]",
                                          "threads=2", "dry_run=true", f"accuracy_csv={tmp_path / 'acc.csv'}",
                                          "overrides=['trainer.max_epochs=1']"])
    assert run_benchmark(cfg, REPO / "scripts" / "benchmark.py", REPO) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("python train.py")]
    tail = f"record={tmp_path / 'acc.csv'} num_threads=2 trainer.enable_progress_bar=false trainer.max_epochs=1"
    assert lines[0] == f"python train.py experiment=karma_etth1_96 seed=1 {tail}"  # conf/experiment has it
    assert lines[3] == f"python train.py experiment=karma_etth1_336 seed=2 {tail}"
    assert lines[4] == f"python train.py model=naive data=etth1 data.pred_len=96 seed=1 {tail}"  # no paper setting
    assert len(lines) == 8 and not (tmp_path / "acc.csv").exists()  # a dry run runs nothing
    cfg = compose("benchmark", overrides=["models=[dlinar]", "dry_run=true"])
    with pytest.raises(ConfigError, match=r"model option\(s\) \['dlinar'\] not in conf/model/. Fix: use some of"):
        run_benchmark(cfg, REPO / "scripts" / "benchmark.py", REPO)


def test_readme_renders_speed_per_device_beside_the_accuracy(tmp_path):
    (tmp_path / "accuracy.csv").write_text(
        "model,dataset,features,seq_len,pred_len,mse,mae,paper_mse,paper_mae,paper_compat,protocol,precision,epochs,"
        "epochs_run,seed,superseded,notes,command,train_command,machine,date\n"
        "dlinear,etth1,M,96,96,0.3800,0.4000,0.386,0.400,false,every-window,32-true,8,8,1,false,,python train.py seed=1,"
        "python train.py seed=1,m,2026-11-27\n"
        "dlinear,etth1,M,96,96,0.3900,0.4100,0.386,0.400,false,every-window,32-true,8,8,2,false,,python train.py seed=2,"
        "python train.py seed=2,m,2026-11-27\n"
        "dlinear,etth1,M,96,96,0.3000,0.3000,0.386,0.400,true,drop-last,32-true,8,8,2,false,,"
        "python train.py paper_compat=true,python train.py paper_compat=true,m,2026-11-27\n")
    base = dict.fromkeys(SPEED_COLUMNS, "")
    rows = [{**base, "model": "karma", "dataset": "etth1", "seq_len": 96, "pred_len": 96, "device": device,
             "parameters": 2160430, "peak_memory_gb": "0.62", "memory": memory, "command": "python scripts/benchmark.py",
             "superseded": "false"}
            for device, memory in (("cpu", "rss"), ("NVIDIA H100", "cuda"))]
    with open(tmp_path / "speed.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=SPEED_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    readme = render_readme(tmp_path).read_text()
    assert readme.index("## Accuracy at a glance") < readme.index("#### CPU") < readme.index("#### NVIDIA H100")
    # the overview: the mean of the two every-window fp32 runs, not the paper_compat one
    assert "| dlinear | etth1 | M | 96 | 96 | 2 | 0.3850 | 0.4050 | 0.386 | 0.400 | -0.3% |" in readme
    assert readme.count("| karma | etth1 96 → 96 |") == 2 and "2,160,430" in readme and "0.62 (cuda)" in readme
