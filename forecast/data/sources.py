"""Read a time-series file and validate it before anything else sees it.

Two layouts are accepted:

* **wide** (the long-term forecasting literature): a ``date`` column, then one column per
  channel, the target among them (``OT`` by default);
* **long** (the Nixtla ecosystem): ``unique_id``, ``ds``, ``y``; pivoted to wide, one channel
  per ``unique_id`` in order of first appearance.

CSV (optionally compressed) and Parquet are read. :func:`validate_frame` checks a table in one
pass and raises one :class:`DataError` naming every problem it found (unparseable or numeric
timestamps, duplicates, unsorted rows, gaps and irregular steps, non-numeric, infinite and
missing values, and, against a trained model, the columns, the step and the length), each
with its rows and fix, worded for the channel the data came by (:mod:`forecast.data.problems`).
The same function validates a training file, a history given to ``predict.py`` and a request
to the served model.

Repairs are opt-in and counted (:attr:`TimeSeriesTable.repairs`): ``duplicates`` keeps the
first, the last or the mean of the rows of a repeated timestamp, ``regularize`` inserts the
missing timestamps of the step, ``fill`` fills missing values (those inserted too).
"""

from __future__ import annotations

import dataclasses
import hashlib
import numbers
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from forecast.data import problems as wordings
from forecast.data.problems import SHOW, Problem, Wording
from forecast.errors import ConfigError, DataError

FILL_METHODS = ("ffill", "interpolate")
DUPLICATE_POLICIES = ("first", "last", "mean")
REPAIRS = ("duplicates_dropped", "rows_inserted", "values_filled")
FLOAT32_MAX = float(np.finfo(np.float32).max)
# a step that would turn the rows into more than this many times as many timestamps is a wrong
# step or a wrong timestamp, not a gap: refuse it before building the grid
_SPARSE = 10


@dataclass(frozen=True)
class TimeSeriesTable:
    """A validated, regularly spaced multivariate series.

    ``values`` is float64 ``[T, C]`` with the target as the last column; ``dates`` has ``T``
    strictly increasing timestamps spaced by ``freq``. ``repairs`` counts what the opt-in
    repairs changed (:data:`REPAIRS`; all 0 for data used as given).
    """

    path: Path
    dates: pd.DatetimeIndex
    values: np.ndarray
    columns: list[str]
    target: str
    freq: pd.offsets.BaseOffset
    sha256: str
    repairs: dict = field(default_factory=lambda: dict.fromkeys(REPAIRS, 0))

    @property
    def n_rows(self) -> int:
        return len(self.dates)


@dataclass(frozen=True)
class Expectation:
    """What a trained model needs of its input: exactly these channels (target last; the date
    column besides), rows at the step ``freq``, at least ``min_rows`` of them, and values that
    stay finite once scaled by ``(mean, std)`` into the network's float32."""

    columns: list[str]
    freq: str
    min_rows: int
    mean: np.ndarray | None = None
    std: np.ndarray | None = None


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


# ------------------------------------------------------------------ options
def check_options(freq: str | None = None, fill: str | None = None, duplicates: str | None = None,
                  prefix: str = "data.") -> pd.offsets.BaseOffset | None:
    """The repair options are known values (a :class:`ConfigError` otherwise); returns ``freq``
    as an offset."""
    if fill is not None and fill not in FILL_METHODS:
        raise ConfigError(f"{prefix}fill='{fill}' is not a fill method. Fix: use one of {FILL_METHODS} or null.")
    if duplicates is not None and duplicates not in DUPLICATE_POLICIES:
        raise ConfigError(f"{prefix}duplicates='{duplicates}' is not a duplicates policy. "
                          f"Fix: use one of {DUPLICATE_POLICIES}, or null to refuse repeated timestamps.")
    if freq is None:
        return None
    try:
        return to_offset(freq)
    except ValueError as exc:
        raise ConfigError(f"{prefix}freq='{freq}' is not a pandas frequency alias (e.g. h, 15min, D, W-TUE, MS).") from exc


# ------------------------------------------------------------------ cells
def _is_number(value) -> bool:
    """A number (or a boolean) where a timestamp belongs; NaN is a missing timestamp instead."""
    if isinstance(value, (bool, np.bool_)):
        return True
    return isinstance(value, numbers.Number) and not pd.isna(value)


def _parse_dates(raw: pd.Series, col: str, wording: Wording, found: list[Problem]) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """``(timestamps with NaT where unusable, usable mask)``. Numbers are refused rather than
    read: pandas would read epoch seconds as nanoseconds after 1970."""
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = pd.DatetimeIndex(raw)
        numeric = np.zeros(len(raw), dtype=bool)
    else:
        if pd.api.types.is_bool_dtype(raw) or pd.api.types.is_numeric_dtype(raw):
            numeric = raw.notna().to_numpy()
        elif raw.dtype == object and pd.api.types.infer_dtype(raw, skipna=True) != "string":
            numeric = raw.map(_is_number).to_numpy(dtype=bool)
        else:  # text only (what a CSV or a JSON request holds): no cell is a number
            numeric = np.zeros(len(raw), dtype=bool)
        text = raw.astype(object).where(~numeric, None) if numeric.any() else raw
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "could not infer format" is ours to report
            parsed = pd.DatetimeIndex(pd.to_datetime(text, errors="coerce"))
    bad = np.asarray(parsed.isna()) & ~numeric
    if numeric.any():
        rows = np.flatnonzero(numeric)
        found.append(Problem("numeric_dates", f"column '{col}' holds numbers, not timestamps, at {wording.rows(rows)} "
                                              f"(e.g. {raw.iloc[rows[0]]!r})"))
    if bad.any():
        rows = np.flatnonzero(bad)
        examples = ", ".join(f"{wording.at(r)}: {raw.iloc[r]!r}" for r in rows[:SHOW])
        found.append(Problem("bad_dates", f"column '{col}' has {len(rows):,} value(s) that are not dates ({examples})"))
    return parsed, ~(bad | numeric)


def _parse_values(frame: pd.DataFrame, columns: list[str], wording: Wording, found: list[Problem],
                  expect: Expectation | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(values [N, C] float64, flagged [N, C])``: NaN where a cell is missing or flagged
    (not a number, a boolean, infinite, or too large for the model); the flagged cells are
    reported here, the missing ones after the repairs (a fill may take care of them)."""
    n = len(frame)
    values = np.full((n, len(columns)), np.nan)
    flagged = np.zeros((n, len(columns)), dtype=bool)
    for j, col in enumerate(columns):
        raw = frame[col]
        text = np.zeros(n, dtype=bool)
        if pd.api.types.is_bool_dtype(raw):  # before the numeric test: pandas counts booleans as numbers
            booleans, v = raw.notna().to_numpy(), np.full(n, np.nan)
        elif pd.api.types.is_numeric_dtype(raw):
            booleans, v = np.zeros(n, dtype=bool), raw.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            cells = raw.astype(object)
            booleans = cells.map(lambda x: isinstance(x, (bool, np.bool_))).to_numpy(dtype=bool)
            blank = cells.map(lambda x: isinstance(x, str) and not x.strip()).to_numpy(dtype=bool)
            num = pd.to_numeric(cells.where(~(booleans | blank), None), errors="coerce")
            v = num.to_numpy(dtype=np.float64, na_value=np.nan)
            text = np.isnan(v) & cells.notna().to_numpy() & ~blank & ~booleans
        bad = text | booleans
        if bad.any():
            rows = np.flatnonzero(bad)
            examples = ", ".join(f"{wording.at(r)}: {raw.iloc[r]!r}" for r in rows[:SHOW])
            more = f" and {len(rows) - SHOW:,} more" if len(rows) > SHOW else ""
            found.append(Problem("non_numeric", f"column '{col}' is not numeric ({examples}{more})"))
        infinite = np.isinf(v)
        if infinite.any():
            rows = np.flatnonzero(infinite)
            found.append(Problem("non_finite", f"column '{col}' has infinite values at {wording.rows(rows)}"))
        large = np.zeros(n, dtype=bool)
        if expect is not None and expect.mean is not None:
            k = list(expect.columns).index(col)  # the model's position: a missing column shifts the others
            with np.errstate(over="ignore", invalid="ignore"):
                scaled = (v - expect.mean[k]) / expect.std[k]
            large = np.isfinite(v) & ~(np.abs(scaled) <= FLOAT32_MAX)
            if large.any():
                rows = np.flatnonzero(large)
                found.append(Problem(
                    "too_large", f"column '{col}' has values the model cannot compute with at "
                                 f"{wording.rows(rows)} (e.g. {v[rows[0]]!r}; scaled by the training data they exceed "
                                 f"float32's largest number, {FLOAT32_MAX:.3g})"))
        flagged[:, j] = bad | infinite | large
        v = v.copy()
        v[flagged[:, j]] = np.nan
        values[:, j] = v
    return values, flagged


# ------------------------------------------------------------------ the step
def _infer_freq(dates: pd.DatetimeIndex) -> pd.offsets.BaseOffset:
    """The step of sorted unique ``dates`` (at least 3): pandas' inference, else the most
    common step, so that the spacing check can name the rows that break it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas 3 deprecation chatter about the return type
        freq = pd.infer_freq(dates)
    if freq is not None:
        return to_offset(freq)
    steps = pd.Series(dates[1:] - dates[:-1])
    return to_offset(steps.mode().iloc[0])


def _own_step(dates: pd.DatetimeIndex, offset: pd.offsets.BaseOffset) -> pd.offsets.BaseOffset | None:
    """The step the rows themselves have when it is not ``offset`` (a history at another
    frequency than the model's), else None."""
    if len(dates) >= 3:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inferred = pd.infer_freq(dates)
        if inferred is not None:
            own = to_offset(inferred)
            return None if own == offset else own
    if len(dates) >= 2 and isinstance(offset, pd.offsets.Tick):
        common = pd.Series(dates[1:] - dates[:-1]).mode().iloc[0]
        if common != pd.Timedelta(offset):
            return to_offset(common)
    return None


def _grid_size(first: pd.Timestamp, last: pd.Timestamp, offset: pd.offsets.BaseOffset) -> float:
    """About how many timestamps of ``offset`` lie from ``first`` to ``last``."""
    step = (first + 2 * offset) - (first + offset)
    return (last - first) / step + 1 if step > pd.Timedelta(0) else float("inf")


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _describe_gaps(grid: pd.DatetimeIndex, absent: np.ndarray, position: dict, wording: Wording) -> tuple[int, str]:
    """``(number of gaps, their description)``: each run of missing timestamps with the rows
    on either side."""
    idx = np.flatnonzero(absent)
    runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
    parts = []
    for run in runs[:SHOW]:
        a, b = int(run[0]), int(run[-1])
        what = f"{grid[a]}" if a == b else f"{b - a + 1:,} from {grid[a]} to {grid[b]}"
        before = wording.at(position.get(grid[a - 1]), grid[a - 1]) if a > 0 else None
        after = wording.at(position.get(grid[b + 1]), grid[b + 1]) if b + 1 < len(grid) else None
        around = " and ".join(x for x in (before, after) if x)
        parts.append(f"{what} between {around}" if before and after else f"{what} next to {around}")
    more = f"; and {len(runs) - SHOW:,} more gaps" if len(runs) > SHOW else ""
    return len(runs), "; ".join(parts) + more


# ------------------------------------------------------------------ one table
def _error(wording: Wording, found: list[Problem], context: dict) -> DataError:
    """One error for every problem found, their fixes filled from the table's context."""
    return wording.error([dataclasses.replace(p, context={**context, **p.context}) for p in found])


def validate_frame(
    frame: pd.DataFrame,
    wording: Wording,
    *,
    date_col: str = "date",
    target: str | None = "OT",
    freq: str | None = None,
    fill: str | None = None,
    duplicates: str | None = None,
    regularize: bool = False,
    expect: Expectation | None = None,
    dropped: int = 0,
) -> TimeSeriesTable:
    """Validate a wide table (the date column and the channels) and apply the opt-in repairs.

    Every problem is collected and raised together as one :class:`DataError`, worded by
    ``wording``. With ``expect`` (a trained model's input), the channels must be exactly
    ``expect.columns`` (any order; extra columns are refused), the step is the model's and the
    table needs ``expect.min_rows`` rows; ``target`` and ``freq`` are then ignored.
    ``dropped`` counts duplicates already removed by the caller (a long-format file).
    """
    given = check_options(None if expect else freq, fill, duplicates)
    found: list[Problem] = []
    context = {"date_col": date_col, "id_col": "unique_id", "ds_col": "ds", "y_col": "y"}
    if expect is not None:
        context.update(freq=to_offset(expect.freq).freqstr, min_rows=expect.min_rows, expected=list(expect.columns))
    frame = frame.reset_index(drop=True)
    names = [str(c) for c in frame.columns]
    frame = frame.set_axis(names, axis=1)
    if len(frame) == 0 or not names:
        raise _error(wording, [Problem("empty", "has no rows")], context)
    repeated = sorted({c for c in names if names.count(c) > 1})
    if repeated:
        found.append(Problem("duplicate_names", f"the column(s) {repeated} appear more than once", context))
        frame = frame.loc[:, ~frame.columns.duplicated()]
        names = list(frame.columns)

    # --- columns
    channels = [c for c in names if c != date_col]
    if expect is not None:
        missing = [c for c in expect.columns if c not in channels]
        extra = [c for c in channels if c not in expect.columns]
        if missing or extra:
            lacks = f"it lacks {missing}" if missing else ""
            has = f"it has the extra column(s) {extra}" if extra else ""
            change = "; ".join(x for x in (f"add {missing}" if missing else "", f"drop {extra}" if extra else "") if x)
            found.append(Problem("columns", f"the model was trained on the columns {list(expect.columns)} (and the date "
                                            f"column '{date_col}'), but {' and '.join(x for x in (lacks, has) if x)}",
                                 {**context, "change": change}))
        columns = [c for c in expect.columns if c in channels]
        target = expect.columns[-1]
    else:
        if not channels:
            found.append(Problem("no_values", "has a date column but no value columns", context))
        if target is None and channels:
            target = channels[-1]
        if channels and target not in channels:
            found.append(Problem("target", f"target column '{target}' not found; the value columns are {channels}", context))
        columns = [c for c in channels if c != target] + ([target] if target in channels else [])

    # --- timestamps and values, cell by cell
    if date_col in names:
        dates, usable = _parse_dates(frame[date_col], date_col, wording, found)
    else:
        found.append(Problem("no_date_column", f"no date column '{date_col}'; the columns are {names}", context))
        dates, usable = None, None
    values, flagged = _parse_values(frame, columns, wording, found, expect)
    if dates is None:
        raise _error(wording, found, context)

    # --- repeated timestamps: refused, or one row kept per timestamp
    rows = np.flatnonzero(usable)
    stamps = dates[rows]
    repeats = np.asarray(stamps.duplicated(keep="first"))
    if repeats.any() and duplicates is None:
        found.append(Problem("duplicates", f"duplicate timestamps at {wording.rows(rows[repeats], stamps[repeats])}", context))
    if repeats.any() and duplicates == "mean":
        codes, _ = pd.factorize(stamps)  # codes in order of first appearance
        values_k = pd.DataFrame(values[rows]).groupby(codes, sort=True).mean().to_numpy()
        flagged_k = pd.DataFrame(flagged[rows]).groupby(codes, sort=True).any().to_numpy()
        keep = ~repeats
    else:
        keep = ~np.asarray(stamps.duplicated(keep="last" if duplicates == "last" else "first"))
        values_k, flagged_k = values[rows[keep]], flagged[rows[keep]]
    if duplicates is not None:
        dropped += int(repeats.sum())
    rows, stamps = rows[keep], stamps[keep]

    # --- order: a row earlier than any row before it
    back = np.array([], dtype=int)
    if len(stamps) > 1:
        before = np.maximum.accumulate(stamps[:-1].to_numpy())
        back = np.flatnonzero(stamps[1:].to_numpy() < before) + 1
    if len(back):
        found.append(Problem("unsorted", f"timestamps are not increasing at {wording.rows(rows[back], stamps[back])} "
                                         "(earlier than a row before)", context))
    order = np.argsort(stamps.to_numpy(), kind="stable")
    rows, stamps, values_k, flagged_k = rows[order], stamps[order], values_k[order], flagged_k[order]

    # --- the step: gaps, rows off the step, another frequency
    if expect is not None:
        offset, what = to_offset(expect.freq), f"the model's step '{to_offset(expect.freq).freqstr}'"
    elif given is not None:
        offset, what = given, f"data.freq='{freq}'"
    elif len(stamps) >= 3:
        offset = _infer_freq(stamps)
        what = f"the inferred frequency '{offset.freqstr}'"
    else:
        offset, what = None, ""
        found.append(Problem("few_dates", f"{len(stamps)} rows are too few to infer a frequency", context))
    context["freq"] = offset.freqstr if offset is not None else ""
    inserted = 0
    if offset is not None and len(stamps) >= 2:
        own = _own_step(stamps, offset) if expect is not None or given is not None else None
        size = _grid_size(stamps[0], stamps[-1], offset)
        if own is not None:
            said = (f"but the model was trained on '{offset.freqstr}' data" if expect is not None
                    else f"not by data.freq='{freq}'")
            found.append(Problem("wrong_freq", f"the rows are spaced by '{own.freqstr}', {said}",
                                 {"own": own.freqstr}))
        elif size > _SPARSE * len(stamps) + 1000:
            widest = int(np.argmax(np.diff(stamps.to_numpy()))) + 1
            found.append(Problem("too_sparse", f"timestamps are not spaced by {what}: from {stamps[0]} to {stamps[-1]} "
                                               f"that step makes about {size:,.0f} timestamps for {len(stamps):,} rows "
                                               f"(the widest gap ends at {wording.at(rows[widest], stamps[widest])})", context))
        else:
            grid = pd.date_range(stamps[0], stamps[-1], freq=offset)
            on = np.asarray(stamps.isin(grid))
            absent = ~np.asarray(grid.isin(stamps))
            if not on.all():
                found.append(Problem("off_grid", f"timestamps are not spaced by {what}: {wording.rows(rows[~on], stamps[~on])} "
                                                 f"fall between its steps (counted from {grid[0]})", context))
            if absent.any() and regularize and on.all():
                # insert the missing steps: rows without a file line (-1), values missing until filled
                at = grid.get_indexer(stamps)
                full = np.full((len(grid), values_k.shape[1]), np.nan)
                full[at] = values_k
                full_flags = np.zeros_like(full, dtype=bool)
                full_flags[at] = flagged_k
                full_rows = np.full(len(grid), -1)
                full_rows[at] = rows
                inserted = int(absent.sum())
                rows, stamps, values_k, flagged_k = full_rows, grid, full, full_flags
            elif absent.any():
                position = dict(zip(stamps, rows))
                gaps, detail = _describe_gaps(grid, absent, position, wording)
                found.append(Problem("gaps", f"timestamps are not spaced by {what}: {_count(int(absent.sum()), 'missing timestamp')} "
                                             f"in {_count(gaps, 'gap')}: {detail}", context))

    # --- missing values (the inserted rows' too), filled if asked
    missing = np.isnan(values_k) & ~flagged_k
    filled = 0
    if fill is not None and missing.any():
        table = pd.DataFrame(values_k)
        table = table.ffill() if fill == "ffill" else table.interpolate(method="linear", limit_direction="both")
        values_k = table.to_numpy(dtype=np.float64)
        filled = int((missing & ~np.isnan(values_k)).sum())
    still = missing & np.isnan(values_k)
    if still.any():
        cells = [c for j, c in enumerate(columns) if still[:, j].any()]
        detail = "; ".join(f"'{c}' at {wording.rows(rows[still[:, columns.index(c)]], stamps[still[:, columns.index(c)]])}"
                           for c in cells[:SHOW])
        note = (f" (the {inserted:,} row(s) inserted by data.regularize=true have no values yet)"
                if inserted and still[rows < 0].any() else "")
        if fill == "ffill":
            found.append(Problem("ffill_start", f"missing values at the start of the series cannot be forward-filled: "
                                                f"{detail}", context))
        else:
            found.append(Problem("missing", f"missing values in {detail}{note}", context))

    if expect is not None and len(stamps) < expect.min_rows:
        usable_only = "" if usable.all() else " with a usable timestamp"
        found.append(Problem("too_short", f"has {len(stamps):,} rows{usable_only}, but the model forecasts from the last "
                                          f"seq_len={expect.min_rows} rows", context))
    if found:
        raise _error(wording, found, context)
    return TimeSeriesTable(
        path=Path(wording.source), dates=pd.DatetimeIndex(stamps), values=np.ascontiguousarray(values_k, dtype=np.float64),
        columns=list(columns), target=str(target), freq=offset, sha256="",
        repairs={"duplicates_dropped": dropped, "rows_inserted": inserted, "values_filled": filled},
    )


def _pivot_long(frame: pd.DataFrame, wording: Wording, id_col: str, ds_col: str, y_col: str, date_col: str,
                duplicates: str | None) -> tuple[pd.DataFrame, int]:
    """The long table as a wide one (``date_col`` + one column per ``unique_id``, in order of
    first appearance) and the number of repeated (id, timestamp) rows dropped or averaged.
    Problems of the long rows are raised here, with their file lines."""
    found: list[Problem] = []
    stamps, usable = _parse_dates(frame[ds_col], ds_col, wording, found)
    values, flagged = _parse_values(frame, [y_col], wording, found)
    key = pd.DataFrame({id_col: frame[id_col].to_numpy(), ds_col: stamps})
    repeats = key.duplicated(keep="first").to_numpy() & usable
    if repeats.any() and duplicates is None:
        found.append(Problem("duplicates", f"long format has repeated ({id_col}, {ds_col}) pairs at "
                                           f"{wording.rows(np.flatnonzero(repeats))}",
                             {"date_col": date_col}))
    if found:
        raise wording.error(found)
    long = key.assign(**{y_col: np.where(flagged[:, 0], np.nan, values[:, 0])})
    ids = pd.unique(long[id_col])
    if duplicates == "mean":
        long = long.groupby([id_col, ds_col], sort=False, as_index=False)[y_col].mean()
    else:
        long = long[~long.duplicated([id_col, ds_col], keep="last" if duplicates == "last" else "first")]
    wide = long.pivot(index=ds_col, columns=id_col, values=y_col)[list(ids)]
    wide.columns = [str(c) for c in wide.columns]
    wide.index.name = date_col
    return wide.reset_index(), int(repeats.sum()) if duplicates is not None else 0


def load_table(
    path: str | Path,
    target: str | None = "OT",
    date_col: str = "date",
    freq: str | None = None,
    fill: str | None = None,
    id_col: str = "unique_id",
    ds_col: str = "ds",
    y_col: str = "y",
    duplicates: str | None = None,
    regularize: bool = False,
    expect: Expectation | None = None,
    wording: Wording | None = None,
) -> TimeSeriesTable:
    """Read and validate ``path``; return the series with the target as the last channel.

    ``target=None`` takes the last column (wide) or the last ``unique_id`` (long).
    ``freq=None`` infers the step; a given ``freq`` (a pandas alias: ``h``, ``15min``,
    ``D``, ``W-TUE``…) is checked against the file. ``duplicates``, ``regularize`` and
    ``fill`` are the opt-in repairs (see :func:`validate_frame`); ``wording`` says the
    problems for the program that reads the file (``train.py``'s options by default).
    """
    path = Path(path)
    wording = wording or wordings.train_file(path)
    check_options(freq if expect is None else None, fill, duplicates)
    frame = _read_frame(path)
    dropped = 0
    if {id_col, ds_col, y_col} <= set(map(str, frame.columns)):
        frame, dropped = _pivot_long(frame, wording, id_col, ds_col, y_col, date_col, duplicates)
        wording = dataclasses.replace(wording, numbering="date")  # pivoted rows are no file lines
    table = validate_frame(frame, wording, date_col=date_col, target=target, freq=freq, fill=fill,
                           duplicates=duplicates, regularize=regularize, expect=expect, dropped=dropped)
    return dataclasses.replace(table, path=path, sha256=file_sha256(path))
