"""Where a training step's time goes, and how far it is from the matrix-product floor.

    python scripts/profile_step.py experiment=autoformer_etth1_96 --threads 1 --steps 3
    python scripts/profile_step.py experiment=karma_etth1_96 --threads 1 --steps 5 --top 25

Builds the network, loss and optimiser of ``python train.py <overrides>`` (the real
``ForecastModule``), takes real training batches, and runs warm-up steps then ``--steps`` profiled
ones of the plain loop (zero_grad, forward, loss, backward, optimiser step) under
``torch.profiler`` with FLOP counting. Prints one JSON object:

* ``gemm_gflops``: the FLOP/s of a large fp32 matrix product (``--gemm`` square, same threads,
  measured just before and after the step, the better one), this CPU's practical compute rate;
* ``step_s``: seconds per step (unprofiled, the median of ``--steps`` steps);
* ``matmul_gflop``: the FLOPs of the step's matrix products (mm, bmm, addmm, matmul, linear, conv
  as the profiler counts them; forward and backward), ``floor_s`` = ``matmul_gflop / gemm_gflops``:
  the time the step cannot go below at that rate, and ``step_over_floor``;
* ``matmul_share``: the profiled self-CPU time of the matrix-product kernels over all ops;
* ``top``: the ops with the most self-CPU time (ms per step, share).

A profile is a diagnosis, not a benchmark row: the figures vary with the machine's load (given
before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

MATMUL_OPS = ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::addbmm", "aten::mkldnn_convolution",
              "aten::_mkldnn_convolution", "aten::convolution_backward", "aten::_convolution")


def gemm_gflops(size: int, repeats: int = 5) -> float:
    """Best FLOP/s of ``size x size @ size x size`` in fp32 over ``repeats`` products."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="train.py overrides")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--gemm", type=int, default=2048)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import pytorch_lightning as pl

    from forecast.config import compose_train
    from forecast.memory import keep_freed_memory
    from forecast.pipelines.train import build_data, build_module

    load_before = os.getloadavg()[0]
    cfg = compose_train(["logger=none", *args.overrides])
    keep_freed_memory(int(cfg.malloc_keep_mb or 0))  # as train.py runs
    pl.seed_everything(cfg.seed, verbose=False)
    datamodule = build_data(cfg)
    datamodule.setup("fit")
    module = build_module(cfg, datamodule)
    module.train()
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    optimizer = optimizer[0][0] if isinstance(optimizer, tuple) else optimizer
    batches = iter(datamodule.train_dataloader())

    def step() -> float:
        batch = next(batches)
        t = time.perf_counter()
        optimizer.zero_grad()
        loss = module.loss(module(batch["x"], batch.get("x_mark"), batch.get("y_mark")), batch["y"])
        loss.backward()
        optimizer.step()
        return time.perf_counter() - t

    rate = gemm_gflops(args.gemm)
    for _ in range(args.warmup):
        step()
    plain = [step() for _ in range(args.steps)]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], with_flops=True) as prof:
        for _ in range(args.steps):
            step()
    rate = max(rate, gemm_gflops(args.gemm))
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    flops = sum(e.flops for e in events)  # the profiler counts FLOPs of the product ops only
    matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS)
    step_s = statistics.median(plain)
    gflop = flops / args.steps / 1e9
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]
    print(json.dumps({
        "overrides": args.overrides, "threads": args.threads, "step_s": round(step_s, 4),
        "gemm_gflops": round(rate, 1), "gemm_size": args.gemm, "matmul_gflop": round(gflop, 2),
        "floor_s": round(gflop / rate, 4), "step_over_floor": round(step_s / (gflop / rate), 2),
        "matmul_share": round(matmul / total, 3),
        "top": [{"op": e.key, "ms_per_step": round(e.self_cpu_time_total / 1e3 / args.steps, 2),
                 "share": round(e.self_cpu_time_total / total, 3), "calls_per_step": e.count // args.steps}
                for e in top],
        "load_1min_before": load_before, "load_1min_after": os.getloadavg()[0], "torch": torch.__version__,
    }, indent=1))


if __name__ == "__main__":
    main()
