"""The LightningDataModule every model is trained and tested with."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Subset

from forecast.data.scaling import StandardScaler
from forecast.data.sources import TimeSeriesTable, load_table
from forecast.data.splits import Split, split_rows, splits_before
from forecast.data.timefeatures import time_features
from forecast.data.windows import OriginWindows, WindowDataset, collate_batch
from forecast.errors import ConfigError

FEATURE_MODES = ("M", "S", "MS")
log = logging.getLogger(__name__)


class ForecastDataModule(pl.LightningDataModule):
    """Read, validate, split, scale and window one series file.

    Batches are dicts: ``x [B, seq_len, enc_in]``, ``y [B, pred_len, c_out]`` (scaled),
    ``x_mark [B, seq_len, F]``, ``y_mark [B, pred_len, F]`` (calendar features).

    Feature modes: ``M`` all channels in and out; ``S`` the target alone; ``MS`` all channels
    in, the target out (``c_out = 1``, the last channel).

    Repairs of the file are opt-in (see :mod:`forecast.data.sources`): ``duplicates``
    (``first``, ``last`` or ``mean`` of the rows of a repeated timestamp; ``None`` refuses
    them), ``regularize`` (insert the missing timestamps of the step; ``fill`` fills them) and
    ``fill``. What they changed is logged and goes into :meth:`lineage`.

    ``cutoff`` (a row; ``None``: the data config's own splits) draws the splits of a model that
    may see only the rows before it (:func:`forecast.data.splits.splits_before`): validation is
    the last rows before the cutoff, as many as the config's own validation split has, training
    everything before them, and the scaler and the MASE scale are fit on that training part; the
    test windows forecast from the cutoff on. Nothing estimated here reads a row at or after
    the cutoff (those rows are only ever targets). ``origins`` (set by a backtest, not a config
    key) are the rows :meth:`predict_dataloader` forecasts from, each from the ``seq_len`` rows
    before it.

    ``enc_in`` and ``mark_dim`` are derived from the file; given as numbers they are checked
    against it. ``drop_last_test`` reproduces the Informer-era loaders that silently dropped the
    last incomplete test batch; it is off by default and only meant for ``paper_compat`` runs.

    Devices and processes (decided by the trainer this module is attached to):

    * Under DDP the validation and test windows are split across the processes without
      padding (Lightning's ``UnrepeatedDistributedSampler``): every window is scored exactly
      once, so the summed metrics equal a single process's. Training keeps Lightning's
      ``DistributedSampler``, which pads each epoch with at most ``world_size - 1`` repeated
      windows so that every process runs the same number of steps.
    * ``windows_on_device`` (``None``: on when training on CUDA with ``num_workers=0``) puts the
      scaled series and calendar on the GPU once and gathers each batch there, so only the
      batch's window indices cross the bus instead of ``B·(L+H)·(C+F)`` values.
    * ``pin_memory`` (``None``: on when training on CUDA with windows built on the host) lets
      the host-to-device copy of a batch run asynchronously.
    """

    def __init__(
        self,
        name: str,
        path: str,
        target: str | None = "OT",
        features: str = "M",
        seq_len: int = 96,
        pred_len: int = 96,
        freq: str | None = None,
        calendar_freq: str | None = None,
        date_col: str = "date",
        fill: str | None = None,
        duplicates: str | None = None,
        regularize: bool = False,
        split_by: str = "ratio",
        split_sizes: tuple = (0.7, 0.1, 0.2),
        allow_constant: bool = False,
        season_length: int = 1,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        windows_on_device: bool | None = None,
        drop_last_test: bool = False,
        enc_in: int | None = None,
        mark_dim: int | None = None,
        cutoff: int | None = None,
    ):
        super().__init__()
        if features not in FEATURE_MODES:
            raise ConfigError(f"data.features='{features}' is not a feature mode. Fix: use one of {FEATURE_MODES}.")
        for key, value in (("seq_len", seq_len), ("pred_len", pred_len), ("batch_size", batch_size), ("season_length", season_length)):
            if int(value) < 1:
                raise ConfigError(f"data.{key}={value} must be a positive integer.")
        self.name, self.path, self.target, self.features = name, Path(path), target, features
        self.seq_len, self.pred_len = int(seq_len), int(pred_len)
        self.freq, self.calendar_freq, self.date_col, self.fill = freq, calendar_freq, date_col, fill
        self.duplicates, self.regularize = duplicates, bool(regularize)
        self.split_by, self.split_sizes = split_by, tuple(split_sizes)
        self.allow_constant, self.season_length = allow_constant, int(season_length)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers, self.pin_memory, self.drop_last_test = num_workers, pin_memory, drop_last_test
        self.windows_on_device = windows_on_device
        self._device_datasets: dict[str, WindowDataset] = {}
        self._expected = {"enc_in": enc_in, "mark_dim": mark_dim}
        if cutoff is not None and (isinstance(cutoff, bool) or int(cutoff) != cutoff or int(cutoff) < 1):
            raise ConfigError(f"data.cutoff={cutoff} must be a row number of 1 or more (null: the config's own splits).")
        self.cutoff = None if cutoff is None else int(cutoff)
        self.origins: list[int] | None = None
        self.source: TimeSeriesTable | None = None  # set before load(): this table instead of reading the file again
        self.table: TimeSeriesTable | None = None
        self.datasets: dict[str, WindowDataset] = {}

    # ------------------------------------------------------------------ loading
    def load(self) -> "ForecastDataModule":
        """Read and validate the file, split, fit the scaler and build the series tensors.

        Idempotent; every data error surfaces here, before a logger or model is touched.
        """
        if self.table is not None:
            return self
        table = self.source or load_table(self.path, target=self.target, date_col=self.date_col, freq=self.freq,
                                          fill=self.fill, duplicates=self.duplicates, regularize=self.regularize)
        self._log_repairs(table)
        values = table.values[:, -1:] if self.features == "S" else table.values
        self.columns = table.columns[-1:] if self.features == "S" else table.columns
        self.enc_in = values.shape[1]
        self.c_out = self.enc_in if self.features == "M" else 1
        self.splits: dict[str, Split] = split_rows(
            table.n_rows, self.split_by, self.split_sizes, self.seq_len, self.pred_len, table.freq, source=str(self.path)
        )
        if self.cutoff is not None:  # rows from the cutoff on are only ever targets
            own_val = self.splits["val"].end - self.splits["val"].border
            self.splits = splits_before(table.n_rows, self.cutoff, own_val, self.seq_len, self.pred_len, table.dates,
                                        source=str(self.path))
        train_end = self.splits["train"].end
        self.scaler = StandardScaler.fit(values[:train_end], self.columns, self.allow_constant, source=str(self.path))
        self.target_scaler = self.scaler.select(slice(self.enc_in - self.c_out, None))
        self.mase_scale = self._naive_scale(values[:train_end, self.enc_in - self.c_out:])
        marks = time_features(table.dates, self.calendar_freq or table.freq)
        self.mark_dim = marks.shape[1]
        self.values = torch.from_numpy(self.scaler.transform(values).astype(np.float32))
        self.marks = torch.from_numpy(marks)
        for key, expected in self._expected.items():
            if expected is not None and int(expected) != getattr(self, key):
                raise ConfigError(
                    f"data.{key}={expected} but {self.path} gives {getattr(self, key)} in features mode "
                    f"{self.features}. Fix: set data.{key}=null to take it from the file."
                )
        self.table = table
        return self

    def _log_repairs(self, table: TimeSeriesTable) -> None:
        """One line per repair that changed the data, so a repaired run never reads as a clean one."""
        done = table.repairs
        if done["duplicates_dropped"]:
            log.warning("%s: data.duplicates=%s dropped %d row(s) with a repeated timestamp", self.path,
                        self.duplicates, done["duplicates_dropped"])
        if done["rows_inserted"]:
            log.warning("%s: data.regularize=true inserted %d missing timestamp(s) at the step '%s'", self.path,
                        done["rows_inserted"], table.freq.freqstr)
        if done["values_filled"]:
            log.warning("%s: data.fill=%s filled %d missing value(s)", self.path, self.fill, done["values_filled"])

    def _naive_scale(self, train_targets: np.ndarray) -> np.ndarray:
        return naive_scale(train_targets, self.season_length)

    def setup(self, stage: str | None = None) -> None:
        self.load()
        if not self.datasets:
            self.datasets = {
                name: WindowDataset(self.values, self.marks, split.start, split.end, self.seq_len, self.pred_len, self.c_out)
                for name, split in self.splits.items()
            }

    # ------------------------------------------------------------- data loaders
    def _device(self) -> torch.device:
        """The device of the trainer this module is attached to (CPU when there is none)."""
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _dataset(self, split: str) -> WindowDataset:
        """The split's windows, over a copy of the series on the training device when windows
        are built there (see the class docstring)."""
        device = self._device()
        on_device = self.windows_on_device
        if on_device is None:
            on_device = device.type == "cuda" and self.num_workers == 0
        if not on_device or device.type == "cpu":
            return self.datasets[split]
        if self.num_workers:
            raise ConfigError(f"data.windows_on_device=true with data.num_workers={self.num_workers}: worker "
                              "processes cannot index device tensors. Fix: set data.num_workers=0 (the windows "
                              "are gathered on the device) or data.windows_on_device=false.")
        if split not in self._device_datasets or self._device_datasets[split].values.device != device:
            values, marks = self.values.to(device), self.marks.to(device)
            self._device_datasets = {
                name: WindowDataset(values, marks, s.start, s.end, self.seq_len, self.pred_len, self.c_out)
                for name, s in self.splits.items()
            }
        return self._device_datasets[split]

    def eval_sampler(self, dataset, batch_size: int, drop_last: bool, world_size: int, rank: int):
        """``(dataset, sampler)`` for evaluating on process ``rank`` of ``world_size``: windows
        ``rank, rank + world_size, …`` of the split, none repeated, so the processes together
        score every window once (with ``drop_last``, every window of the full batches, as one
        process would)."""
        if drop_last:
            dataset = Subset(dataset, range(len(dataset) // batch_size * batch_size))
        return dataset, UnrepeatedDistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=False)

    def _loader(self, split: str, batch_size: int, shuffle: bool, drop_last: bool) -> DataLoader:
        self.setup()
        dataset, sampler = self._dataset(split), None
        trainer = getattr(self, "trainer", None)
        if split != "train" and trainer is not None and trainer.world_size > 1:
            dataset, sampler = self.eval_sampler(dataset, batch_size, drop_last, trainer.world_size, trainer.global_rank)
            drop_last = False
        on_host = dataset is self.datasets[split] or isinstance(dataset, Subset) and dataset.dataset is self.datasets[split]
        # only host tensors can be pinned; by default only when they are copied to a GPU
        pin = on_host and (self.pin_memory if self.pin_memory is not None else self._device().type == "cuda")
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=sampler,
            drop_last=drop_last,
            collate_fn=collate_batch,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=pin,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True, drop_last=False)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.eval_batch_size, shuffle=False, drop_last=False)

    def test_dataloader(self) -> DataLoader:
        # paper_compat only: the Informer-era loaders dropped the last test batch with the train batch size
        if self.drop_last_test:
            return self._loader("test", self.batch_size, shuffle=False, drop_last=True)
        return self._loader("test", self.eval_batch_size, shuffle=False, drop_last=False)

    def origin_windows(self, origins) -> OriginWindows:
        """The windows that forecast from each row of ``origins`` (on the host)."""
        self.setup()
        bad = [o for o in origins if o < self.seq_len or o + self.pred_len > self.table.n_rows]
        if bad:
            raise ConfigError(f"{self.path}: no window of seq_len={self.seq_len} input and pred_len={self.pred_len} "
                              f"rows forecasts from row(s) {bad[:5]} of {self.table.n_rows:,}.")
        return OriginWindows(self.values, self.marks, origins, self.seq_len, self.pred_len, self.c_out)

    def predict_dataloader(self) -> DataLoader:
        """The windows that forecast from :attr:`origins` (a backtest's cutoffs), in their order."""
        if not self.origins:
            raise ConfigError("the data module has no origins to forecast from (set by a backtest).")
        return DataLoader(self.origin_windows(self.origins), batch_size=self.eval_batch_size, shuffle=False,
                          collate_fn=collate_batch, num_workers=0)

    # ------------------------------------------------------------------ queries
    def window_dates(self, split: str, index: int):
        """Timestamps of the input and target rows of window ``index`` of ``split``."""
        s = self.splits[split].start + index
        dates = self.table.dates
        return dates[s : s + self.seq_len], dates[s + self.seq_len : s + self.seq_len + self.pred_len]

    def lineage(self) -> dict:
        """What identifies the data a run saw: file, digest, rows and the split borders (as dates)."""
        dates = self.table.dates
        info = {
            "name": self.name,
            "path": str(self.path),
            "sha256": self.table.sha256,
            "rows": self.table.n_rows,
            "freq": self.table.freq.freqstr,
            "first_timestamp": str(dates[0]),
            "last_timestamp": str(dates[-1]),
            # the opt-in repairs and what they changed (all 0: the file was used as it is)
            "repairs": {"duplicates": self.duplicates, "regularize": self.regularize, "fill": self.fill,
                        **self.table.repairs},
        }
        if self.cutoff is not None:
            info["cutoff"] = f"{self.cutoff} ({dates[self.cutoff]})"
        for name, split in self.splits.items():
            info[f"{name}_rows"] = f"{split.border}-{split.end - 1}"
            info[f"{name}_windows"] = split.n_windows(self.seq_len, self.pred_len)
        return info


def naive_scale(train_targets: np.ndarray, season_length: int) -> np.ndarray:
    """MASE denominator per target channel of ``train_targets [N, C]``: the in-sample MAE of the
    seasonal naive forecast (NaN where it is 0)."""
    m = season_length if season_length < len(train_targets) else 1
    scale = np.abs(train_targets[m:] - train_targets[:-m]).mean(axis=0)
    return np.where(scale > 0, scale, np.nan)
