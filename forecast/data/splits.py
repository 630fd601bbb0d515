"""Train/validation/test borders as the long-term forecasting literature draws them.

* ``months``: fixed calendar borders of 30-day months (ETT: 12/4/4 months, i.e. rows
  0-8,639 / 8,640-11,519 / 11,520-14,399 for hourly data and ×4 for 15-minute data); rows
  after the last border are unused.
* ``ratio``: by row count in time order: train = floor(0.7·N), test = floor(0.2·N),
  validation = what lies between.

Validation and test slices start ``seq_len`` rows before their border, so the first window of
each split forecasts from exactly its border and no target row is counted in two splits.

:func:`splits_before` draws them again for a model that may see only the rows before a cutoff
(a backtest's refit): validation is the last rows before the cutoff, training everything
before it, and the test windows forecast from the cutoff on.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from forecast.errors import ConfigError, DataError

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """Rows ``[start, end)`` of one split; ``border`` is the nominal split border.

    Validation and test windows forecast from ``border`` on; ``start = border - seq_len`` is
    look-back only. The train split starts at row 0 with ``start == border == 0``.
    """

    name: str
    start: int
    border: int
    end: int

    def n_windows(self, seq_len: int, pred_len: int) -> int:
        return self.end - self.start - seq_len - pred_len + 1


def _rows_per_month(freq: pd.offsets.BaseOffset) -> int:
    try:
        step = pd.Timedelta(freq)
    except ValueError as exc:
        raise ConfigError(
            f"split_by=months needs a fixed step, but the frequency is '{freq.freqstr}'. "
            "Fix: use data.split_by=ratio."
        ) from exc
    rows = pd.Timedelta(days=30) / step
    if rows != int(rows):
        raise ConfigError(f"a 30-day month is not a whole number of '{freq.freqstr}' steps. Fix: use data.split_by=ratio.")
    return int(rows)


def split_rows(
    n_rows: int,
    split_by: str,
    sizes,
    seq_len: int,
    pred_len: int,
    freq: pd.offsets.BaseOffset | None = None,
    source: str = "the series",
) -> dict[str, Split]:
    """The three splits of an ``n_rows`` series, each checked to hold at least one window."""
    sizes = list(sizes)
    if len(sizes) != 3 or any(s <= 0 for s in sizes):
        raise ConfigError(f"data.split_sizes={sizes} must be three positive numbers (train, val, test).")
    if split_by == "months":
        per_month = _rows_per_month(freq)
        lengths = [int(round(m * per_month)) for m in sizes]
        if sum(lengths) > n_rows:
            raise DataError(
                f"{source}: {n_rows:,} rows are fewer than the {sum(lengths):,} that {sizes} months "
                f"of 30 days need at '{freq.freqstr}'. Fix: use data.split_by=ratio or smaller data.split_sizes."
            )
    elif split_by == "ratio":
        if abs(sum(sizes) - 1.0) > 1e-9:
            raise ConfigError(f"data.split_sizes={sizes} must sum to 1 with data.split_by=ratio.")
        n_train, n_test = int(n_rows * sizes[0]), int(n_rows * sizes[2])
        lengths = [n_train, n_rows - n_train - n_test, n_test]
    else:
        raise ConfigError(f"data.split_by='{split_by}' is unknown. Fix: use 'ratio' or 'months'.")

    borders = [0, lengths[0], lengths[0] + lengths[1]]
    splits = {}
    # Train comes first and needs seq_len + pred_len rows, so val/test always have their look-back.
    for name, border, length in zip(SPLIT_NAMES, borders, lengths):
        split = Split(name, border - seq_len if name != "train" else 0, border, border + length)
        if split.n_windows(seq_len, pred_len) < 1:
            need = f"seq_len + pred_len = {seq_len} + {pred_len} rows" if name == "train" else f"pred_len={pred_len} rows"
            raise DataError(
                f"{source}: the {name} split has {length:,} rows, fewer than the {need} of one window. "
                "Fix: lower data.seq_len or data.pred_len, change data.split_sizes, or use a longer series."
            )
        splits[name] = split
    return splits


def splits_before(n_rows: int, cutoff: int, val_rows: int, seq_len: int, pred_len: int, dates=None,
                  source: str = "the series") -> dict[str, Split]:
    """The splits of a model that sees only rows ``0 .. cutoff - 1``: validation is the last
    ``val_rows`` of them (the length of the data config's own validation split), training every
    row before that; the test windows forecast from ``cutoff`` to the end of the series.

    With the cutoff at the data config's own test border these are its own train and validation
    splits. ``DataError`` when the rows before the cutoff hold no training window and one
    validation window (early stopping needs both), or no window forecasts from the cutoff."""
    when = f" ({dates[cutoff]})" if dates is not None and 0 <= cutoff < len(dates) else ""
    if not 0 < cutoff < n_rows:
        raise DataError(f"{source}: the cutoff row {cutoff}{when} is outside the series of {n_rows:,} rows. "
                        f"Fix: give a cutoff between 1 and {n_rows - 1}.")
    border = cutoff - val_rows
    need = seq_len + pred_len + val_rows
    if border < seq_len + pred_len:
        raise DataError(
            f"{source}: the {cutoff:,} rows before the cutoff at row {cutoff}{when} are too few to train with early "
            f"stopping: a training window of seq_len + pred_len = {seq_len} + {pred_len} rows and the {val_rows:,} "
            f"validation rows (the length of data.split_sizes' validation split) need {need:,}. Fix: a later first "
            "cutoff (backtest.start), a shorter validation split (data.split_sizes) or a shorter data.seq_len.")
    if cutoff + pred_len > n_rows:
        raise DataError(f"{source}: no window of pred_len={pred_len} rows forecasts from the cutoff at row {cutoff}{when}: "
                        f"the series ends at row {n_rows}. Fix: an earlier cutoff.")
    return {
        "train": Split("train", 0, 0, border),
        "val": Split("val", border - seq_len, border, cutoff),
        "test": Split("test", cutoff - seq_len, cutoff, n_rows),
    }
