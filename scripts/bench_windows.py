"""Benchmark: build every ETTm1 training window and iterate them once in batches.

Three ways of windowing, each in a fresh process so peak memory is its own:

* ``forecast``: this project's data layer (one tensor, windows as views, whole-batch gathers);
* ``per-window``: the Informer/TSLib style (a Dataset that slices numpy arrays per window and
  the DataLoader's default collate stacking them), written here for comparison;
* ``materialised``: every window copied up front into one ``[N, L, C]`` tensor.

    python scripts/bench_windows.py --path ../shared/data/ETT-small/ETTm1.csv --out benchmarks/windows.md
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

VARIANTS = ("forecast", "per-window", "materialised")


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(variant: str, path: str, seq_len: int, pred_len: int, batch_size: int) -> dict:
    import torch
    from torch.utils.data import DataLoader, Dataset

    from forecast.data.datamodule import ForecastDataModule

    torch.set_num_threads(1)
    torch.manual_seed(0)
    dm = ForecastDataModule(name="ettm1", path=path, freq="15min", split_by="months", split_sizes=[12, 4, 4],
                            seq_len=seq_len, pred_len=pred_len, batch_size=batch_size)
    start_rss, t_load = _rss_mb(), time.perf_counter()
    dm.load()  # read, validate, split, scale, calendar features: common to all variants
    load_s = time.perf_counter() - t_load
    before = _rss_mb()
    t0 = time.perf_counter()
    if variant == "forecast":
        dm.setup()
        loader = dm.train_dataloader()
    else:
        split = dm.splits["train"]
        values = dm.values[: split.end].numpy()
        marks = dm.marks[: split.end].numpy()
        n = split.n_windows(seq_len, pred_len)

        class PerWindow(Dataset):
            def __len__(self):
                return n

            def __getitem__(self, i):
                m = i + seq_len
                return values[i:m], values[m : m + pred_len], marks[i:m], marks[m : m + pred_len]

        if variant == "per-window":
            dataset = PerWindow()
        else:
            idx = torch.arange(n)[:, None]
            v, k = torch.from_numpy(values), torch.from_numpy(marks)
            xs, ys = v[idx + torch.arange(seq_len)], v[idx + torch.arange(seq_len, seq_len + pred_len)]
            xm, ym = k[idx + torch.arange(seq_len)], k[idx + torch.arange(seq_len, seq_len + pred_len)]
            dataset = torch.utils.data.TensorDataset(xs, ys, xm, ym)
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True)
    build = time.perf_counter() - t0
    t1 = time.perf_counter()
    windows = checksum = 0
    for batch in loader:
        x = batch["x"] if isinstance(batch, dict) else batch[0]
        windows += len(x)
        checksum += float(x[:, -1, -1].sum())
    epoch = time.perf_counter() - t1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"variant": variant, "load_s": load_s, "load_mb": before - start_rss, "windows": windows, "build_s": build, "epoch_s": epoch,
            "windows_per_s": windows / epoch, "peak_rss_mb": peak, "added_mb": peak - before, "checksum": round(checksum, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", default="../shared/data/ETT-small/ETTm1.csv")
    parser.add_argument("--seq-len", type=int, default=96)
    parser.add_argument("--pred-len", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None, help="write a Markdown report here")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(measure(args.variant, args.path, args.seq_len, args.pred_len, args.batch_size)))
        return

    load = os.getloadavg()[0]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    results = {v: [] for v in VARIANTS}
    for _ in range(args.repeats):
        for variant in VARIANTS:
            out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--variant", variant], env=env,
                                 capture_output=True, text=True, check=True).stdout
            results[variant].append(json.loads(out.strip().splitlines()[-1]))
    best = {v: min(rs, key=lambda r: r["build_s"] + r["epoch_s"]) for v, rs in results.items()}
    sums = [r["checksum"] for r in best.values()]
    assert len({r["windows"] for r in best.values()}) == 1 and max(sums) - min(sums) <= 1e-6 * max(abs(s) for s in sums), best
    base = best["per-window"]["build_s"] + best["per-window"]["epoch_s"]
    import torch

    from forecast.records import machine
    from forecast.tracking import shell_join

    torch.set_num_threads(1)  # as in the measuring processes, so machine() reports it

    lines = [
        "# Building every ETTm1 training window",
        "",
        f"`{shell_join(['python', 'scripts/bench_windows.py', *sys.argv[1:]])}`, {dt.date.today().isoformat()}, "
        f"{machine()}, 1-minute load average at the start {load:.2f}. "
        f"ETTm1 train split, seq_len {args.seq_len}, pred_len {args.pred_len}, batch {args.batch_size}, "
        f"shuffled; best of {args.repeats} fresh processes each. `added MB` is the peak RSS above the RSS "
        "after the CSV was read and scaled.",
        "",
        "| variant | windows | build s | one pass s | windows/s | speed-up (build + pass) vs per-window | peak RSS MB | added MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for v, r in best.items():
        total = r["build_s"] + r["epoch_s"]
        lines.append(f"| {v} | {r['windows']:,} | {r['build_s']:.4f} | {r['epoch_s']:.2f} | {r['windows_per_s']:,.0f} | "
                     f"{base / total:.1f}× | {r['peak_rss_mb']:.0f} | {r['added_mb']:.0f} |")
    common = best["forecast"]
    lines += ["", f"Common to all three and not in the table: reading, validating, splitting and scaling the CSV and "
              f"computing its calendar features took {common['load_s']:.2f} s and {common['load_mb']:.0f} MB "
              "(the `forecast` process)."]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        Path(args.out).write_text(report)


if __name__ == "__main__":
    main()
