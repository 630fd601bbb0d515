"""How a data problem is told to whoever sent the data.

The checks of :mod:`forecast.data.sources` find problems (a kind, the rows, the column); this
module words them for the channel the data came by, because the same problem has a different
fix on each:

* a file given to ``train.py`` (``data.*`` options, 1-based file lines);
* a file given to ``predict.py`` (the options ``predict.py`` accepts; the model fixes the
  columns, the step and the length);
* a request to the served model (no options: what to send instead; rows counted from 0, as in
  ``dataframe_split.data``).

All problems of one input go into one :class:`~forecast.errors.DataError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import pandas as pd

from forecast.errors import DataError

SHOW = 5  # rows quoted per problem

# The fix of each kind of problem, per channel. Placeholders are filled from the problem's context.
TRAIN_FIXES = {
    "empty": "add data rows or use another file",
    "duplicate_names": "give every column its own name",
    "no_date_column": "set data.date_col to the timestamp column, or use the long layout ({id_col}, {ds_col}, {y_col})",
    "no_values": "add at least one numeric column",
    "target": "set data.target to one of them",
    "numeric_dates": "write the timestamps as dates (e.g. 2016-07-01 00:00:00); numbers such as epoch seconds or "
                     "20160701 are not read as dates",
    "bad_dates": "correct or remove those rows; every row needs a parseable timestamp",
    "duplicates": "keep one row per timestamp (aggregate or drop the repeats), or set "
                  "data.duplicates=first|last|mean to keep the first, the last or their mean",
    "unsorted": "sort the file by its date column",
    "few_dates": "set data.freq",
    "gaps": "insert the missing timestamps (their values empty, with data.fill), or set data.regularize=true "
            "and data.fill=ffill|interpolate to insert and fill them, or set data.freq to the file's real step",
    "too_sparse": "check the timestamps around that gap and data.freq",
    "off_grid": "remove those rows, or set data.freq to the file's real step",
    "wrong_freq": "set data.freq='{own}', the file's step (or null to infer it)",
    "non_numeric": "clean those cells, or drop the column from the file",
    "non_finite": "replace them with numbers, or empty those cells and set data.fill=ffill|interpolate",
    "missing": "clean the file, or opt in to filling with data.fill=ffill or data.fill=interpolate",
    "ffill_start": "use data.fill=interpolate, or trim the leading rows",
}

PREDICT_FIXES = {
    **TRAIN_FIXES,
    "no_date_column": "set data.date_col to the file's timestamp column (the model calls it '{date_col}')",
    "columns": "give the columns the model was trained on ({change})",
    "few_dates": "give at least {min_rows} rows",
    "gaps": "insert the missing timestamps, or set data.regularize=true with data.fill=ffill|interpolate "
            "to insert and fill them",
    "off_grid": "remove those rows, or resample the file to the model's step '{freq}'",
    "wrong_freq": "resample the file to '{freq}', or use a model trained at this frequency",
    "too_sparse": "check the timestamps around that gap; the model's step is '{freq}'",
    "too_short": "give at least {min_rows} consecutive rows of history",
    "too_large": "check those values: the network computes in float32, scaled by the training data's "
                 "mean and std",
}

REQUEST_FIXES = {
    "empty": "send at least {min_rows} rows",
    "duplicate_names": "send each column once",
    "no_date_column": "send the timestamps in a column named '{date_col}'",
    "columns": "send exactly the columns ['{date_col}'] + {expected}, in any order ({change})",
    "numeric_dates": "send the timestamps as text, e.g. \"2018-06-26 19:00:00\" (ISO 8601); numbers such as "
                     "epoch seconds or milliseconds are not read as dates",
    "bad_dates": "send a timestamp such as \"2018-06-26 19:00:00\" (ISO 8601) in every row",
    "duplicates": "send one row per timestamp",
    "unsorted": "send the rows in time order, oldest first",
    "few_dates": "send at least {min_rows} rows",
    "gaps": "send a row for every step of '{freq}' from the first timestamp to the last",
    "too_sparse": "send consecutive rows at the step '{freq}'",
    "off_grid": "send rows spaced by the model's step '{freq}'",
    "wrong_freq": "send rows spaced by the model's step '{freq}'",
    "non_numeric": "send numbers (JSON numbers, or numeric text in a CSV body), not text or true/false",
    "non_finite": "send finite numbers (no Infinity or -Infinity)",
    "missing": "send a number in every cell (null, NaN and empty cells are missing values)",
    "ffill_start": "start the history at a row with every value",
    "too_short": "send at least {min_rows} consecutive rows",
    "too_large": "check those values: the network computes in float32, scaled by the training data's "
                 "mean and std",
}


@dataclass(frozen=True)
class Problem:
    """One kind of problem in the input: the sentence (without its fix) and the fix's context."""

    kind: str
    text: str
    context: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Wording:
    """Where the data came from and how its rows and fixes are told.

    ``numbering``: ``"line"`` (1-based file lines, line 1 the header), ``"row"`` (0-based
    positions, as in a request body) or ``"date"`` (no positions: a long-format file, whose
    rows became one per timestamp when pivoted).
    """

    source: str
    fixes: Mapping[str, str]
    numbering: str = "line"
    legend: str = ""          # said once per message: how rows are counted

    def at(self, position: int | None, date=None) -> str:
        """One row: ``line 5 (2020-01-01 02:00:00)``, ``row 3 (…)``, or the timestamp alone
        (``position`` None; -1: a row inserted by ``regularize``)."""
        stamp = "" if date is None or pd.isna(date) else str(date)
        if position is not None and position < 0:  # a row a repair inserted: it has no line
            return f"the inserted row {stamp}"
        if position is None or self.numbering == "date":
            return f"timestamp {stamp}" if stamp else "a row"
        where = f"line {position + 2:,}" if self.numbering == "line" else f"row {position:,}"
        return f"{where} ({stamp})" if stamp else where

    def rows(self, positions, dates=None) -> str:
        """Up to :data:`SHOW` rows and how many more."""
        positions = list(positions)
        shown = [self.at(p, None if dates is None else dates[i]) for i, p in enumerate(positions[:SHOW])]
        more = f" and {len(positions) - SHOW:,} more" if len(positions) > SHOW else ""
        return ", ".join(shown) + more

    def fix(self, problem: Problem) -> str:
        return self.fixes[problem.kind].format_map(_Context(problem.context))

    def error(self, problems: list[Problem]) -> DataError:
        """One error naming every problem, each with its fix."""
        legend = f" {self.legend}" if self.legend and self.numbering == "row" else ""
        if len(problems) == 1:
            (p,) = problems
            return DataError(f"{self.source}: {p.text}. Fix: {self.fix(p)}.{legend}")
        items = "\n".join(f"  - {p.text}. Fix: {self.fix(p)}." for p in problems)
        return DataError(f"{self.source}: {len(problems)} problems.{legend}\n{items}")


class _Context(dict):
    """Fix placeholders a problem did not fill stay as they are, so a missing key never hides
    the message it belongs to."""

    def __missing__(self, key):
        return "{" + key + "}"


def train_file(path) -> Wording:
    return Wording(str(path), TRAIN_FIXES)


def predict_file(path) -> Wording:
    return Wording(str(path), PREDICT_FIXES)


def request(source: str = "the request") -> Wording:
    return Wording(source, REQUEST_FIXES, numbering="row",
                   legend="(Rows are counted from 0 as in dataframe_split.data; in a CSV body row r is line r + 2.)")
