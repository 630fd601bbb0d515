"""Freeze a growing source before training on it (a writer may append while a retrain runs):
a copy of the file, or the dated files of a directory joined in name order; and write a
validated table's first rows back as the wide CSV a training run reads."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from forecast.data.sources import TimeSeriesTable, _read_frame, file_sha256
from forecast.errors import DataError


def snapshot(source: Path, pattern: str, folder: Path) -> tuple[Path, list[dict]]:
    """Freeze ``source`` into ``folder``: a copy of the file, or the files of a directory that
    match ``pattern``, joined in name order (same columns required). Returns the snapshot and
    the source files with their SHA-256."""
    folder.mkdir(parents=True, exist_ok=True)
    if not source.exists():
        raise DataError(f"source={source}: no such file or directory (resolved to {source.resolve()}). "
                        "Fix: point source at the growing data file or at the directory of dated files.")
    if source.is_file():
        target = folder / source.name
        shutil.copyfile(source, target)
        return target, [{"path": str(source), "sha256": file_sha256(target)}]
    files = sorted(p for p in source.glob(pattern) if p.is_file())
    if not files:
        raise DataError(f"source={source}: no files match '{pattern}'. Fix: put the dated files "
                        "(e.g. 2026-11-27.csv) there, or set pattern.")
    frames = []
    for path in files:
        frame = _read_frame(path)
        if frames and list(frame.columns) != list(frames[0].columns):
            raise DataError(f"{path}: its columns {list(frame.columns)} differ from those of {files[0]} "
                            f"{list(frames[0].columns)}. Fix: give every dated file the same columns in the same order.")
        frames.append(frame)
    target = folder / f"{source.name}.csv"
    pd.concat(frames, ignore_index=True).to_csv(target, index=False)
    return target, [{"path": str(p), "sha256": file_sha256(p)} for p in files]


def write_rows(table: TimeSeriesTable, end: int, path: Path, date_col: str) -> Path:
    """The validated rows ``[0, end)`` of ``table`` as a wide CSV (a training run's file)."""
    frame = pd.DataFrame(table.values[:end], columns=table.columns)
    frame.insert(0, date_col, table.dates[:end])
    frame.to_csv(path, index=False)
    return path
