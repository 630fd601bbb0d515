"""Benchmark: training speed of a configured model, through the real Trainer and module.

Each configuration runs in a fresh process (so its peak memory is its own): the config that
``python train.py <overrides>`` would run is composed, the first ``--warmup`` training steps
are discarded and the next ``--iters`` are timed, each from the batch's start to the end of
its optimiser step (Lightning's ``on_train_batch_start``/``on_train_batch_end``). Seconds per
epoch = mean seconds per iteration x training batches per epoch (validation not included).
Peak memory is the process's maximum resident set size. For D-PAD the JSON also gives the
sifting steps per IMF extraction and series (mean, max) over the timed and warm-up steps.

    python scripts/bench_speed.py --threads 2 --label fp32 -- experiment=autoformer_etth1_96
    python scripts/bench_speed.py --threads 2 --label bf16 -- experiment=autoformer_etth1_96 +trainer.precision=bf16-mixed

Prints one JSON object per configuration and, with ``--out``, appends a Markdown table row.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measure(overrides: list[str], threads: int, warmup: int, iters: int) -> dict:
    import pytorch_lightning as pl
    import torch
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from forecast.config import register_configs
    from forecast.pipelines.train import build_data, build_module

    torch.set_num_threads(threads)
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["logger=none", *overrides])
    with open_dict(cfg):
        cfg.data.num_workers = 0
    pl.seed_everything(cfg.seed, verbose=False)
    datamodule = build_data(cfg)
    module = build_module(cfg, datamodule)
    times: list[float] = []
    sift: list[torch.Tensor] = []

    class Clock(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if pl_module.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.start)
            for steps in getattr(pl_module.network, "sift_iterations", []):  # D-PAD: steps per IMF and series
                sift.append(steps.flatten().float().cpu())

    fixed = dict(max_steps=warmup + iters, max_epochs=-1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                 enable_progress_bar=False, enable_model_summary=False, callbacks=[Clock()])
    trainer_cfg = {k: v for k, v in cfg.trainer.items() if k not in fixed and k != "_target_"}
    trainer = pl.Trainer(**trainer_cfg, **fixed)
    trainer.fit(module, datamodule=datamodule)
    timed = times[warmup:]
    per_iter = sum(timed) / len(timed)
    batches = len(datamodule.train_dataloader())
    result = {
        "overrides": " ".join(overrides),
        "threads": threads,
        "precision": str(trainer.precision),
        "iters": len(timed),
        "s_per_iter": round(per_iter, 4),
        "s_per_iter_min": round(min(timed), 4),
        "batches_per_epoch": batches,
        "s_per_epoch": round(per_iter * batches, 1),
        "samples_per_s": round(cfg.data.batch_size / per_iter, 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "parameters": sum(p.numel() for p in module.network.parameters()),
    }
    if sift:
        steps = torch.cat(sift)
        result.update(sift_iterations_mean=round(steps.mean().item(), 3), sift_iterations_max=int(steps.max()))
    if torch.cuda.is_available() and module.device.type == "cuda":
        result["peak_cuda_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--label", default="", help="a name for the row")
    parser.add_argument("--out", type=Path, help="append a Markdown row to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="train.py overrides (after --)")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.overrides, args.threads, args.warmup, args.iters)))
        return
    cmd = [sys.executable, __file__, "--child", "--threads", str(args.threads), "--warmup", str(args.warmup),
           "--iters", str(args.iters), "--", *args.overrides]
    load = os.getloadavg()[0]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if out.returncode:
        sys.exit(out.stderr[-3000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result.update(label=args.label, load_before=round(load, 2), date=dt.date.today().isoformat())
    print(json.dumps(result))
    if args.out:
        row = (f"| {result['label']} | `{result['overrides']}` | {result['precision']} | {result['threads']} | "
               f"{result['s_per_iter']:.3f} | {result['s_per_epoch']:.0f} | {result['peak_rss_gb']:.2f} | "
               f"{result['load_before']} | {result['date']} |\n")
        with open(args.out, "a") as fh:
            fh.write(row)


if __name__ == "__main__":
    main()
