"""Naive: the last observed value repeated (:class:`Naive`)."""

from __future__ import annotations

import torch

from forecast.models.classical import kernels
from forecast.models.classical.base import Classical

class Naive(Classical):
    """The last observed value, repeated over the horizon (the random-walk forecast).

    ``forward(x [B, L, C]) -> [B, H, C]``; no statsmodels call, fully vectorised."""

    needs_period = False

    def __init__(self, seq_len: int, pred_len: int, periods: list | None = None):
        super().__init__(seq_len, pred_len, periods)

    def _forecast(self, series, channels):
        return kernels.naive(series, self.pred_len), torch.zeros(len(series), dtype=torch.bool)
