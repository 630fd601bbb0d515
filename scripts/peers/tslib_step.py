"""Time training steps of a Time-Series-Library (thuml/Time-Series-Library, "TSLib") checkout.

Run by ``scripts/benchmark.py mode=peer`` with the reference's own interpreter, from the root of
the checkout (nothing of the checkout is copied or changed; ``PYTHONDONTWRITEBYTECODE`` keeps its
folders free of byte-code):

    python <repo>/scripts/peers/tslib_step.py THREADS WARMUP ITERS [--profile] <TSLib run.py arguments>

It builds TSLib's own experiment (``exp.exp_long_term_forecasting.Exp_Long_Term_Forecast``: its
model, training loader, Adam and MSE) from TSLib's own ``run.py`` argument parser, and times the
body of that experiment's training loop for full batches: zero_grad, the inputs to float, the
decoder input (``label_len`` known steps, then zeros), forward, the horizon slice, MSE,
``loss.item()``, backward, Adam step. The batch fetch is not timed (our side times from
Lightning's batch start to its batch end, which excludes it too). Prints one JSON line.

With ``--profile`` (by hand, not by the harness), ITERS more steps run under ``torch.profiler``
and the line also gives the matrix-product FLOPs of a step, their share of its self-CPU time and
the FLOP/s of a large fp32 product at the same threads: the same figures as our
``scripts/profile_step.py``, so the reference's step can be set against the same floor.

Needs only torch and the checkout's own requirements; it imports nothing of ``forecast``.
"""

import argparse
import json
import os
import random
import resource
import sys
import textwrap
import time


def script_parser(script: str) -> argparse.ArgumentParser:
    """The argument parser a reference's entry script builds (TSLib's ``run.py``, D-PAD's
    ``singlecard.py``): the lines between ``ArgumentParser(`` and ``parse_args()``, executed as
    they are, so the arguments and defaults are the ones its users get (importing the script would
    parse our command line and run its experiment)."""
    source = open(script).read()
    start = source.index("parser = argparse.ArgumentParser")
    start = source.rindex("\n", 0, start) + 1
    end = source.index("args = parser.parse_args()")
    end = source.rindex("\n", 0, end) + 1
    namespace = {"argparse": argparse}
    exec(textwrap.dedent(source[start:end]), namespace)
    return namespace["parser"]


def step_figures(torch, wall: list[float], cpu: list[float], warmup: int, model, loader, batch_size: int) -> dict:
    """The figures both reference timers print: seconds per timed step (mean, min, CPU), the
    threads, batch, torch, peak memory, parameters and training batches."""
    timed = wall[warmup:]
    return {
        "s_per_iter": sum(timed) / len(timed), "s_per_iter_min": min(timed),
        "cpu_s_per_iter": sum(cpu[warmup:]) / len(timed), "iters": len(timed), "warmup": warmup,
        "threads": torch.get_num_threads(), "batch_size": batch_size, "torch": torch.__version__,
        "peak_memory_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "parameters": sum(p.numel() for p in model.parameters()), "train_batches": len(loader),
    }


def main(argv: list[str]) -> dict:
    threads, warmup, iters = int(argv[0]), int(argv[1]), int(argv[2])
    profile = len(argv) > 3 and argv[3] == "--profile"
    argv = [*argv[:3], *argv[4:]] if profile else argv
    sys.path.insert(0, os.getcwd())
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    args = script_parser("run.py").parse_args(argv[3:])
    random.seed(2021), np.random.seed(2021), torch.manual_seed(2021)  # run.py's fix_seed
    args.use_gpu = False
    args.device = torch.device("cpu")
    from exp.exp_long_term_forecasting import Exp_Long_Term_Forecast

    exp = Exp_Long_Term_Forecast(args)
    model = exp.model
    _, loader = exp._get_data(flag="train")
    optimizer, criterion = exp._select_optimizer(), exp._select_criterion()
    model.train()
    f_dim = -1 if args.features == "MS" else 0
    wall, cpu = [], []
    batches = iter(loader)
    while len(wall) < warmup + iters:
        try:
            batch_x, batch_y, batch_x_mark, batch_y_mark = next(batches)
        except StopIteration:
            batches = iter(loader)
            continue
        if len(batch_x) != args.batch_size:  # an epoch's short last batch: not a full step
            continue
        t0, c0 = time.perf_counter(), time.process_time()
        optimizer.zero_grad()
        batch_x, batch_y = batch_x.float(), batch_y.float()
        batch_x_mark, batch_y_mark = batch_x_mark.float(), batch_y_mark.float()
        dec_inp = torch.zeros_like(batch_y[:, -args.pred_len:, :]).float()
        dec_inp = torch.cat([batch_y[:, :args.label_len, :], dec_inp], dim=1).float()
        outputs = model(batch_x, batch_x_mark, dec_inp, batch_y_mark)
        outputs = outputs[:, -args.pred_len:, f_dim:]
        loss = criterion(outputs, batch_y[:, -args.pred_len:, f_dim:])
        loss.item()
        loss.backward()
        optimizer.step()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    extra = _profile(model, loader, optimizer, criterion, args, f_dim, iters, threads) if profile else {}
    return {**extra, **step_figures(torch, wall, cpu, warmup, model, loader, args.batch_size),
        "dropout": args.dropout, "d_model": args.d_model, "learning_rate": args.learning_rate,
        "loss_last": float(loss.item()),
    }


MATMUL_OPS = ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::addbmm", "aten::mkldnn_convolution",
              "aten::_mkldnn_convolution", "aten::convolution_backward", "aten::_convolution")


def _gemm_gflops(torch, size: int = 2048) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best / 1e9


def _profile(model, loader, optimizer, criterion, args, f_dim: int, steps: int, threads: int) -> dict:
    """``steps`` more full-batch steps under ``torch.profiler``: matmul FLOPs, share, floor."""
    import torch

    load_before = os.getloadavg()[0]
    rate = _gemm_gflops(torch)
    batches = [b for b in loader if len(b[0]) == args.batch_size][:steps]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], with_flops=True) as prof:
        for batch_x, batch_y, batch_x_mark, batch_y_mark in batches:
            optimizer.zero_grad()
            batch_y = batch_y.float()
            dec_inp = torch.cat([batch_y[:, :args.label_len, :], torch.zeros_like(batch_y[:, -args.pred_len:, :])], dim=1)
            outputs = model(batch_x.float(), batch_x_mark.float(), dec_inp, batch_y_mark.float())[:, -args.pred_len:, f_dim:]
            loss = criterion(outputs, batch_y[:, -args.pred_len:, f_dim:])
            loss.backward()
            optimizer.step()
    rate = max(rate, _gemm_gflops(torch))
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    gflop = sum(e.flops for e in events) / len(batches) / 1e9
    matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS)
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:10]
    return {"gemm_gflops": round(rate, 1), "matmul_gflop": round(gflop, 2), "floor_s": round(gflop / rate, 4),
            "matmul_share": round(matmul / total, 3), "profiled_steps": len(batches),
            "load_1min_before": load_before, "load_1min_after": os.getloadavg()[0],
            "top": [{"op": e.key, "ms_per_step": round(e.self_cpu_time_total / 1e3 / len(batches), 2),
                     "share": round(e.self_cpu_time_total / total, 3)} for e in top]}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
