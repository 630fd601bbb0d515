"""Read a time-series file and validate it before anything else sees it.

Two layouts are accepted:

* **wide** (the long-term forecasting literature): a ``date`` column, then one column per
  channel, the target among them (``OT`` by default);
* **long** (the Nixtla ecosystem): ``unique_id``, ``ds``, ``y``; pivoted to wide, one channel
  per ``unique_id`` in order of first appearance.

CSV (optionally compressed) and Parquet are read. Every check raises :class:`DataError`
naming the file, the column or the row (as the 1-based line number of a CSV with a header,
so it can be opened in an editor at that line) and the fix.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from forecast.errors import ConfigError, DataError

FILL_METHODS = ("ffill", "interpolate")
_SHOW = 5  # rows quoted in an error message


@dataclass(frozen=True)
class TimeSeriesTable:
    """A validated, regularly spaced multivariate series.

    ``values`` is float64 ``[T, C]`` with the target as the last column; ``dates`` has ``T``
    strictly increasing timestamps spaced by ``freq``.
    """

    path: Path
    dates: pd.DatetimeIndex
    values: np.ndarray
    columns: list[str]
    target: str
    freq: pd.offsets.BaseOffset
    sha256: str

    @property
    def n_rows(self) -> int:
        return len(self.dates)


def _line(row: int) -> str:
    """The file line of a 0-based data row (line 1 is the header)."""
    return f"line {row + 2:,}"


def _rows(rows, dates=None) -> str:
    rows = list(rows)
    shown = [
        _line(r) + (f" ({dates[r]})" if dates is not None else "") for r in rows[:_SHOW]
    ]
    more = f" and {len(rows) - _SHOW:,} more" if len(rows) > _SHOW else ""
    return ", ".join(shown) + more


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_frame(path: Path) -> pd.DataFrame:
    if not path.exists():
        from forecast.data.catalog import for_path  # the catalogue reads files through this module

        known = for_path(path)
        fix = (f"Fix: python scripts/download_data.py {known.name} (fetches it to where data={known.name} looks), or "
               "point FORECAST_DATA_DIR at a folder that holds it" if known else "Fix: set data.path to an existing file")
        raise DataError(
            f"{path}: file not found (resolved to {path.resolve()}). Relative paths are read "
            f"from the directory you run in. {fix}."
        )
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a file. Fix: set data.path to a CSV or Parquet file.")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty. Fix: point data.path at a file with a header and data rows.")
    suffixes = [s.lower() for s in path.suffixes]
    try:
        if suffixes and suffixes[-1] in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: the file is empty. Fix: point data.path at a file with a header and data rows.") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read as {'Parquet' if 'parquet' in str(suffixes) else 'CSV'}: {exc}") from exc
    if frame.empty:
        raise DataError(f"{path}: has a header but no data rows. Fix: add data rows or use another file.")
    return frame


def _pivot_long(frame: pd.DataFrame, path: Path, id_col: str, ds_col: str, y_col: str, date_col: str) -> pd.DataFrame:
    dup = frame.duplicated([id_col, ds_col], keep="first")
    if dup.any():
        raise DataError(
            f"{path}: long format has repeated ({id_col}, {ds_col}) pairs at {_rows(np.flatnonzero(dup))}. "
            "Fix: keep one value per series and timestamp."
        )
    ids = pd.unique(frame[id_col])
    # Parse before pivoting so the pivot sorts by time, not by the text of the timestamps.
    frame = frame.assign(**{ds_col: _to_datetime(frame[ds_col], path, ds_col)})
    wide = frame.pivot(index=ds_col, columns=id_col, values=y_col)
    wide = wide[list(ids)]
    wide.columns = [str(c) for c in wide.columns]
    wide.index.name = date_col
    return wide.reset_index()


def _to_datetime(raw: pd.Series, path: Path, col: str) -> pd.DatetimeIndex:
    if pd.api.types.is_datetime64_any_dtype(raw):
        dates = pd.DatetimeIndex(raw)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "could not infer format" is ours to report
            dates = pd.DatetimeIndex(pd.to_datetime(raw, errors="coerce"))
    bad = np.flatnonzero(dates.isna())
    if len(bad):
        examples = ", ".join(f"{_line(r)}: {raw.iloc[r]!r}" for r in bad[:_SHOW])
        raise DataError(
            f"{path}: column '{col}' has {len(bad):,} value(s) that are not dates ({examples}). "
            "Fix: correct or remove those rows; every row needs a parseable timestamp."
        )
    return dates


def _parse_dates(raw: pd.Series, path: Path, date_col: str) -> pd.DatetimeIndex:
    dates = _to_datetime(raw, path, date_col)
    dup = np.flatnonzero(dates.duplicated())
    if len(dup):
        raise DataError(
            f"{path}: duplicate timestamps at {_rows(dup, dates)}. "
            "Fix: keep one row per timestamp (aggregate or drop the repeats)."
        )
    back = np.flatnonzero(np.diff(dates.asi8) < 0) + 1
    if len(back):
        raise DataError(
            f"{path}: timestamps are not increasing at {_rows(back, dates)} (earlier than the row "
            "before). Fix: sort the file by its date column."
        )
    return dates


def _infer_freq(dates: pd.DatetimeIndex, path: Path) -> pd.offsets.BaseOffset:
    if len(dates) < 3:
        raise DataError(f"{path}: {len(dates)} rows are too few to infer a frequency. Fix: set data.freq.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas 3 deprecation chatter about the return type
        freq = pd.infer_freq(dates)
    if freq is not None:
        return to_offset(freq)
    # Irregular somewhere: take the most common step so the spacing check can name the rows.
    steps = pd.Series(dates[1:] - dates[:-1])
    return to_offset(steps.mode().iloc[0])


def _check_spacing(dates: pd.DatetimeIndex, freq: pd.offsets.BaseOffset, path: Path, declared: bool) -> None:
    expected = pd.date_range(dates[0], periods=len(dates), freq=freq)
    off = np.flatnonzero(expected != dates)
    if len(off):
        r = int(off[0])
        what = f"data.freq='{freq.freqstr}'" if declared else f"the inferred frequency '{freq.freqstr}'"
        previous = f" after {dates[r - 1]}" if r > 0 else ""
        raise DataError(
            f"{path}: timestamps are not spaced by {what}: {_line(r)} is {dates[r]}{previous}, "
            f"expected {expected[r]} (a gap, an extra row or a different step). "
            "Fix: make the series regular (insert the missing timestamps, leave values empty and "
            "set data.fill), or set data.freq to the file's real step."
        )


def _to_numeric(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    out = {}
    for col in frame.columns:
        raw = frame[col]
        if pd.api.types.is_bool_dtype(raw) or pd.api.types.is_numeric_dtype(raw):
            out[col] = raw.astype("float64")
            continue
        num = pd.to_numeric(raw, errors="coerce")
        bad = np.flatnonzero(num.isna() & raw.notna())
        if len(bad):
            examples = ", ".join(f"{_line(r)}: {raw.iloc[r]!r}" for r in bad[:_SHOW])
            raise DataError(
                f"{path}: column '{col}' is not numeric ({examples}). "
                "Fix: clean those cells, or drop the column from the file."
            )
        out[col] = num.astype("float64")
    return pd.DataFrame(out, index=frame.index)


def _fill_missing(values: pd.DataFrame, dates: pd.DatetimeIndex, path: Path, fill: str | None) -> pd.DataFrame:
    if fill is not None and fill not in FILL_METHODS:
        raise ConfigError(f"data.fill='{fill}' is not a fill method. Fix: use one of {FILL_METHODS} or null.")
    missing = values.isna()
    if not missing.to_numpy().any():
        return values
    if fill == "ffill":
        values = values.ffill()
    elif fill == "interpolate":
        values = values.interpolate(method="linear", limit_direction="both")
    still = values.isna()
    if not still.to_numpy().any():
        return values
    cols = [c for c in values.columns if still[c].any()]
    detail = "; ".join(f"'{c}' at {_rows(np.flatnonzero(still[c]), dates)}" for c in cols[:_SHOW])
    if fill == "ffill":
        raise DataError(
            f"{path}: missing values at the start of the series cannot be forward-filled: {detail}. "
            "Fix: use data.fill=interpolate, or trim the leading rows."
        )
    raise DataError(
        f"{path}: missing values in {detail}. "
        "Fix: clean the file, or opt in to filling with data.fill=ffill or data.fill=interpolate."
    )


def load_table(
    path: str | Path,
    target: str | None = "OT",
    date_col: str = "date",
    freq: str | None = None,
    fill: str | None = None,
    id_col: str = "unique_id",
    ds_col: str = "ds",
    y_col: str = "y",
) -> TimeSeriesTable:
    """Read and validate ``path``; return the series with the target as the last channel.

    ``target=None`` takes the last column (wide) or the last ``unique_id`` (long).
    ``freq=None`` infers the step; a given ``freq`` (a pandas alias: ``h``, ``15min``,
    ``D``, ``W-TUE``…) is checked against the file.
    """
    path = Path(path)
    frame = _read_frame(path)
    if {id_col, ds_col, y_col} <= set(frame.columns):
        frame = _pivot_long(frame, path, id_col, ds_col, y_col, date_col)
    frame.columns = [str(c) for c in frame.columns]
    if date_col not in frame.columns:
        raise DataError(
            f"{path}: no date column '{date_col}'; the columns are {list(frame.columns)}. "
            f"Fix: set data.date_col to the timestamp column, or use the long layout "
            f"({id_col}, {ds_col}, {y_col})."
        )
    dates = _parse_dates(frame[date_col], path, date_col)
    channels = frame.drop(columns=[date_col])
    if channels.shape[1] == 0:
        raise DataError(f"{path}: has a date column but no value columns. Fix: add at least one numeric column.")
    if target is None:
        target = str(channels.columns[-1])
    if target not in channels.columns:
        raise DataError(
            f"{path}: target column '{target}' not found; the value columns are {list(channels.columns)}. "
            "Fix: set data.target to one of them."
        )
    channels = channels[[c for c in channels.columns if c != target] + [target]]
    channels = _to_numeric(channels, path)
    if freq is None:
        offset = _infer_freq(dates, path)
    else:
        try:
            offset = to_offset(freq)
        except ValueError as exc:
            raise ConfigError(f"data.freq='{freq}' is not a pandas frequency alias (e.g. h, 15min, D, W-TUE, MS).") from exc
    _check_spacing(dates, offset, path, declared=freq is not None)
    channels = _fill_missing(channels, dates, path, fill)
    return TimeSeriesTable(
        path=path,
        dates=dates,
        values=channels.to_numpy(dtype=np.float64),
        columns=list(channels.columns),
        target=target,
        freq=offset,
        sha256=file_sha256(path),
    )
