"""Benchmarks with one command behind every number in ``benchmarks/``:
``python scripts/benchmark.py [mode=speed|accuracy|render] models=[...] datasets=[...] horizons=[...] [-- train.py overrides]``.

For each model x dataset x horizon, the paper configuration (``conf/experiment/<model>_<dataset>_<horizon>``,
else the model file's settings on that dataset and horizon):

* ``mode=speed`` (default): in a fresh process, ``warmup`` training steps, then ``iters`` timed
  ones; appends seconds per iteration, windows per second, peak memory (CPU RSS or CUDA max
  allocated), parameter count, device, threads and load to ``benchmarks/speed.csv``;
* ``mode=accuracy``: the full training schedule with ``python train.py ... record=benchmarks/accuracy.csv``
  for each of ``seeds`` (train.py appends the row with its own command);
* ``mode=render``: nothing is run;

and then renders ``benchmarks/README.md`` from both files. See ``conf/benchmark.yaml``.
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from forecast.config import register_configs
from forecast.errors import config_errors, exit_on_error

REPO = Path(__file__).resolve().parents[1]
register_configs()


@hydra.main(config_path="../conf", config_name="benchmark", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from forecast.pipelines.benchmark import run

    with exit_on_error():
        failed = run(cfg, Path(__file__).resolve(), REPO)
    if failed:
        print(f"error: {failed} cell(s) failed (see above)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--measure":  # one speed cell, in the fresh process run() started
        from forecast.pipelines.benchmark import measure_main

        measure_main(sys.argv[2])
    else:
        from forecast.pipelines.benchmark import split_train_overrides

        sys.argv = split_train_overrides(sys.argv)
        with exit_on_error(), config_errors():  # a misspelt key or a bad setting: one line with the fix
            main()
