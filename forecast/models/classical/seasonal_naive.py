"""Seasonal naive: the last seasonal cycle repeated (:class:`SeasonalNaive`)."""

from __future__ import annotations

import torch

from forecast.models.classical import kernels
from forecast.models.classical.base import Classical

class SeasonalNaive(Classical):
    """The last seasonal cycle (the shortest period), repeated: ``ŷ[L+h] = x[L − m + (h mod m)]``.

    Needs ``seq_len ≥ m``; fully vectorised."""

    def __init__(self, seq_len: int, pred_len: int, periods: list | None = None):
        super().__init__(seq_len, pred_len, periods)

    def min_length(self, period: int) -> int:
        return period

    def _forecast(self, series, channels):
        return kernels.seasonal_naive(series, self.period, self.pred_len), torch.zeros(len(series), dtype=torch.bool)
