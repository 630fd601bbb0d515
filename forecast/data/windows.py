"""Sliding windows over one series tensor, without copying per window.

Every split is a range of rows of a single ``[T, C]`` tensor. A window is a pair of slices
of that tensor (views); a batch is gathered from it with one indexing operation, so building
every window of a split costs nothing and a batch costs one copy of the batch itself.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


class WindowDataset(Dataset):
    """Windows ``x = values[s : s+L]``, ``y = values[s+L : s+L+H, -c_out:]`` for ``s`` in a range.

    Items are dicts of ``x [L, C]``, ``y [H, c_out]``, ``x_mark [L, F]``, ``y_mark [H, F]``
    (views); :meth:`__getitems__` returns whole batches ``[B, …]`` so a DataLoader with
    :func:`collate_batch` never stacks single windows.
    """

    def __init__(self, values: torch.Tensor, marks: torch.Tensor, start: int, end: int, seq_len: int, pred_len: int, c_out: int):
        if values.shape[0] != marks.shape[0]:
            raise ValueError(f"values has {values.shape[0]} rows but marks has {marks.shape[0]}")
        self.values, self.marks = values, marks
        self.start, self.end = start, end
        self.seq_len, self.pred_len, self.c_out = seq_len, pred_len, c_out
        # on the series' device: for a series on a GPU only the batch's start indices are copied there
        self._x_offsets = torch.arange(seq_len, device=values.device)
        self._y_offsets = torch.arange(seq_len, seq_len + pred_len, device=values.device)

    def __len__(self) -> int:
        return max(self.end - self.start - self.seq_len - self.pred_len + 1, 0)

    def _check(self, index: int) -> int:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"window {index} out of range for {n} windows")
        return self.start + index

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        s = self._check(int(index))
        mid, stop = s + self.seq_len, s + self.seq_len + self.pred_len
        return {
            "x": self.values[s:mid],
            "y": self.values[mid:stop, self.values.shape[1] - self.c_out:],
            "x_mark": self.marks[s:mid],
            "y_mark": self.marks[mid:stop],
        }

    def __getitems__(self, indices) -> dict[str, torch.Tensor]:
        starts = torch.as_tensor(indices, dtype=torch.long)
        if len(starts) and (starts.min() < 0 or starts.max() >= len(self)):
            raise IndexError(f"window indices out of range for {len(self)} windows")
        return self._gather(starts.to(self.values.device, non_blocking=True) + self.start)

    def _gather(self, starts: torch.Tensor) -> dict[str, torch.Tensor]:
        """The windows whose look-backs start at the rows ``starts``, in one indexing per tensor."""
        x_rows = starts[:, None] + self._x_offsets
        y_rows = starts[:, None] + self._y_offsets
        return {
            "x": self.values[x_rows],
            "y": self.values[y_rows, self.values.shape[1] - self.c_out:],
            "x_mark": self.marks[x_rows],
            "y_mark": self.marks[y_rows],
        }


class OriginWindows(WindowDataset):
    """The windows that forecast from given rows (a backtest's cutoffs): item ``i`` is the window
    whose horizon starts at ``origins[i]``, its input the ``seq_len`` rows before it."""

    def __init__(self, values: torch.Tensor, marks: torch.Tensor, origins, seq_len: int, pred_len: int, c_out: int):
        super().__init__(values, marks, 0, values.shape[0], seq_len, pred_len, c_out)
        self.starts = torch.as_tensor(list(origins), dtype=torch.long) - seq_len
        n = values.shape[0]
        bad = [int(o) for o in self.starts + seq_len if o < seq_len or o + pred_len > n]
        if bad:
            raise ValueError(f"origins {bad[:5]} leave no room for a look-back of {seq_len} and a horizon of {pred_len} "
                             f"rows in {n}")

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([int(index)]).items()}

    def __getitems__(self, indices) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        if len(index) and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"window indices out of range for {len(self)} windows")
        return self._gather(self.starts[index].to(self.values.device, non_blocking=True))


def collate_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DataLoader ``collate_fn``: batches arrive whole from :meth:`WindowDataset.__getitems__`,
    so there is nothing left to stack."""
    return batch
