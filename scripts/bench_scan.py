"""Benchmark: the pure-PyTorch selective scan against a plain sequential loop (autograd through
``T`` steps), forward + backward, same inputs, same process, alternating.

    python scripts/bench_scan.py --threads 1 --shape 32 96 256 16

``--shape B T D N`` gives the Mamba block's model width D; the scan runs over its inner width
E = 2·D (expand 2, as mamba_ssm's default). Prints one JSON object: median seconds of each, the
ratio, the megabytes each keeps for its backward pass (counted with saved-tensor hooks), threads
and the 1-minute load before the run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import time

import torch

from forecast.layers.mamba import selective_scan, sequential_scan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shape", type=int, nargs=4, default=[32, 96, 256, 16], metavar=("B", "T", "D", "N"))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--chunk", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batch, length, width, state = args.shape
    inner = 2 * width
    torch.manual_seed(0)
    inputs = (torch.randn(batch, length, inner), torch.nn.functional.softplus(torch.randn(batch, length, inner) - 3),
              -torch.exp(torch.log(torch.arange(1, state + 1.0)).repeat(inner, 1)), torch.randn(batch, length, state),
              torch.randn(batch, length, state), torch.ones(inner))
    load = os.getloadavg()[0]

    def once(fn, **kw):
        leaves = [t.clone().requires_grad_() for t in inputs]
        start = time.perf_counter()
        fn(*leaves, **kw).square().mean().backward()
        return time.perf_counter() - start

    def saved_mb(fn, **kw):
        total = 0

        def pack(tensor):
            nonlocal total
            total += tensor.numel() * tensor.element_size()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            fn(*[t.clone().requires_grad_() for t in inputs], **kw)
        return round(total / 2**20, 1)

    times = {"chunked_scan": [], "sequential_loop": []}
    for _ in range(args.repeats):
        times["chunked_scan"].append(once(selective_scan, chunk_size=args.chunk))
        times["sequential_loop"].append(once(sequential_scan))
    result = {name: round(statistics.median(v), 4) for name, v in times.items()}
    result["speedup"] = round(result["sequential_loop"] / result["chunked_scan"], 2)
    result["saved_for_backward_mb"] = {"chunked_scan": saved_mb(selective_scan, chunk_size=args.chunk),
                                       "sequential_loop": saved_mb(sequential_scan)}
    result.update(shape=dict(B=batch, T=length, D=width, E=inner, N=state), chunk=args.chunk, threads=args.threads,
                  load_before=round(load, 2), date=dt.date.today().isoformat(), torch=torch.__version__)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
