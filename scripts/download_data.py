"""Fetch benchmark datasets from their public sources: ``python scripts/download_data.py ettm1 [ili …|all]``.

Each file is checked against its SHA-256 and saved where ``data=<name>`` reads it:
``$FORECAST_DATA_DIR`` if set, else ``data/`` (or ``--dir``). ``FORECAST_DATA_MIRROR`` points at
a server holding the files in the same layout (a local mirror behind a firewall).
"""

import argparse
import sys
from pathlib import Path

from forecast.data.catalog import DATASETS, data_dir, download
from forecast.errors import exit_on_error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", metavar="name", help=f"{', '.join(DATASETS)} or all")
    parser.add_argument("--dir", type=Path, default=None, help="data folder (default: $FORECAST_DATA_DIR, else data/)")
    parser.add_argument("--force", action="store_true", help="download again even if a verified file is in place")
    args = parser.parse_args()
    names = list(DATASETS) if "all" in args.names else args.names
    with exit_on_error():
        for name in names:
            path = download(name, args.dir or data_dir(), force=args.force)
            print(f"{name}: {path} (SHA-256 verified; licence: {DATASETS[name].licence})")
    if args.dir is not None and args.dir.resolve() != data_dir().resolve():  # not where train.py looks by default
        print(f"train with: FORECAST_DATA_DIR={args.dir} python train.py data={names[0]}", file=sys.stderr)


if __name__ == "__main__":
    main()
